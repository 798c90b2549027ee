"""`varsearch serve`: a local Ray instance on loopback running the Serve app until Ctrl-C.

For a running cluster use cluster/serve_config.yaml with `serve deploy` instead.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

from cluster.local_ray import is_loopback, use_local_ray_env
from cluster.serve.settings import TOKEN_ENV, ServeArgs


def check_exposure(args: ServeArgs, host: str) -> None:
    """Anything but loopback makes the API reachable from other machines: only with a token."""
    if not is_loopback(host) and args.token is None and not os.environ.get(TOKEN_ENV):
        raise ValueError(f"binding {host} exposes the API beyond this machine; give a token (--token)")


def serve_forever(args: ServeArgs, host: str = "127.0.0.1", port: int = 8000, echo: Callable = print) -> None:
    """Start Ray and the app, print the URL, block until Ctrl-C or SIGTERM, then shut both down."""
    check_exposure(args, host)
    use_local_ray_env()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray
    from ray import serve

    from cluster.serve.app import build_app

    signal.signal(signal.SIGTERM, _raise_interrupt)
    ray.init(address="local", include_dashboard=False)
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(build_app(args), name="varsearch", route_prefix="/")
        echo(f"varsearch serve: http://{host}:{port}/  (GET /v1/models; Ctrl-C stops)")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        echo("varsearch serve: stopping")
    finally:
        serve.shutdown()
        ray.shutdown()


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
