"""The Serve app over real HTTP on 127.0.0.1 for tests: small limits, a token, and request helpers.

Shared by tests/test_serve.py and tests/test_bad_input.py; each module starts its own app.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator

import pytest
import requests

from cluster.local_ray import LOCAL_RAY_ENV
from cluster.serve.settings import ServeArgs

TOKEN = "test-token-0123"
ARGS = ServeArgs(
    token=TOKEN, max_prompts=3, max_budget_nfe=6000, max_body_bytes=4096, max_active_jobs=2, max_running_jobs=1,
    wait_max_nfe=200, wait_timeout_s=5, retry_after_s=2,
)  # fmt: skip
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(args: ServeArgs = ARGS) -> Iterator[str]:
    """A local Ray instance running the app on a free loopback port; yields its base URL."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in LOCAL_RAY_ENV.items():
            mp.setenv(key, value)
        import ray
        from ray import serve

        from cluster.serve.app import build_app

        port = free_port()
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            serve.run(build_app(args), name="varsearch-test", route_prefix="/")
            yield f"http://127.0.0.1:{port}"
        finally:
            serve.shutdown()
            ray.shutdown()


def post(url: str, body, headers: dict | None = None) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **AUTH, **(headers or {})}
    return requests.post(f"{url}/v1/search", data=data, headers=headers, timeout=60)


def get(url: str, path: str, headers: dict | None = None, **kw) -> requests.Response:
    return requests.get(f"{url}{path}", headers={**AUTH, **(headers or {})}, timeout=60, **kw)


def wait_for(url: str, job_id: str, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = get(url, f"/v1/search/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout_s} s")
