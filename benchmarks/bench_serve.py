"""What Serve costs: the project's Serve app over HTTP vs the same search called directly.

One private Ray instance on 127.0.0.1 runs the real app (`cluster.serve.app:build_app`, default
backend `shapes_cluster`: coordinator and replicas) and, beside it, a second cluster built by
the same factory for the direct calls. Interleaved repetitions time:

- serve: a small waited search (random, 12 NFEs, one prompt) as POST /v1/search over HTTP;
- direct: the same SearchRequest (built by the app's own parser) through `backend.run`;
- direct_events: the same, relaying progress events as the Serve worker does;
- healthz: GET /healthz, i.e. HTTP + proxy + ingress with no search behind it.

Then a bounded load: K client threads, each sending at most M waited searches and none after
T seconds, against small admission limits, counting 200 / 429 / other answers.
Headline: serve_overhead_ratio = serve p50 / direct p50.

Usage: python -m benchmarks.bench_serve [--json] [--repeats 30] [--load-threads 8]
       [--load-requests 25] [--load-seconds 10]
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable

import numpy as np

from benchmarks.common import hardware, median, time_interleaved, write_result
from cluster.local_ray import use_local_ray_env

SEARCH = {"prompts": ["a red circle"], "method": "random", "budget": 12, "wait": True}
APP_LIMITS = {"max_active_jobs": 4, "max_running_jobs": 2}  # small, so the load reaches 429
RAY_CPUS = 4  # logical: the app's cluster and the direct one each reserve 1.75 CPUs (they take turns)

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy


def http_call(url: str, body: dict | None = None, timeout: float = 60.0) -> tuple[int, bytes]:
    """POST `body` as JSON (GET when None); (status, body), status 0 when no HTTP answer came."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    try:
        with _OPENER.open(urllib.request.Request(url, data=data, headers=headers), timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except (OSError, http.client.HTTPException):
        return 0, b""


def bounded_load(send: Callable[[], int], threads: int, max_requests: int, max_seconds: float) -> dict:
    """`threads` clients call `send` (returning a status code) until each has sent `max_requests`
    or `max_seconds` have passed, so the load always stops by itself; counts answers by status."""
    deadline = time.monotonic() + max_seconds
    counts: Counter[int] = Counter()
    lock = threading.Lock()

    def client() -> None:
        for _ in range(max_requests):
            if time.monotonic() >= deadline:
                return
            status = send()
            with lock:
                counts[status] += 1

    workers = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - t0
    total = sum(counts.values())
    return {
        "threads": threads,
        "max_requests_per_thread": max_requests,
        "max_seconds": max_seconds,
        "wall_s": wall,
        "requests": total,
        "status": {str(code): n for code, n in sorted(counts.items())},
        "ok": counts[200],
        "rejected_429": counts[429],
        "errors": total - counts[200] - counts[429],
        "requests_per_s": total / wall,
        "ok_per_s": counts[200] / wall,
    }


def latency_ms(times_s: list[float]) -> dict[str, float]:
    ms = np.asarray(times_s) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "n": len(ms)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _expect_ok(url: str, body: dict | None = None) -> None:
    status, content = http_call(url, body)
    if status != 200:
        raise RuntimeError(f"{url} answered {status}: {content[:300]!r}")
    if body is not None and json.loads(content)["status"] != "succeeded":
        raise RuntimeError(f"search did not succeed: {content[:300]!r}")


def bench(repeats: int, load_threads: int, load_requests: int, load_seconds: float) -> dict:
    import ray
    from ray import serve

    from cluster.serve.app import build_app
    from cluster.serve.backend import shapes_cluster
    from cluster.serve.schema import parse_body, to_requests
    from cluster.serve.settings import ServeArgs

    args = ServeArgs(**APP_LIMITS)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    ray.init(address="local", num_cpus=RAY_CPUS, include_dashboard=False, log_to_driver=False)
    signal.signal(signal.SIGTERM, _stop)  # after ray.init, which installs its own handler
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(args), name="varsearch-bench", route_prefix="/")
        served = shapes_cluster()  # the app's default backend, built again here for the direct calls
        requests, _ = to_requests(parse_body(SEARCH), served.info, args)

        def direct() -> None:
            list(served.backend.run(requests))

        def direct_events() -> None:
            list(served.backend.run(requests, lambda index, row: None))

        times = time_interleaved(
            {
                "serve": lambda: _expect_ok(f"{base}/v1/search", SEARCH),
                "direct": direct,
                "direct_events": direct_events,
                "healthz": lambda: _expect_ok(f"{base}/healthz"),
            },
            repeats=repeats,
            warmup=2,
        )
        load = bounded_load(
            lambda: http_call(f"{base}/v1/search", SEARCH)[0], load_threads, load_requests, load_seconds
        )
        alive_after_load = http_call(f"{base}/healthz")[0] == 200
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
    latency = {name: latency_ms(t) for name, t in times.items()}
    return {
        "search": SEARCH,
        "app_limits": APP_LIMITS,
        "repeats": repeats,
        "latency": latency,
        "serve_overhead_ratio": median(times["serve"]) / median(times["direct"]),
        "serve_vs_direct_events": median(times["serve"]) / median(times["direct_events"]),
        "healthz_p50_ms": latency["healthz"]["p50_ms"],
        "load": load,
        "load_requests_per_s": load["requests_per_s"],
        "load_ok_per_s": load["ok_per_s"],
        "load_errors": load["errors"],
        "healthz_after_load": alive_after_load,
    }


def _stop(signum: int, frame: object) -> None:
    sys.exit(128 + signum)  # SystemExit runs the finally blocks that shut Serve and Ray down


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeats", type=int, default=30, help="interleaved timed repetitions of each call")
    parser.add_argument("--load-threads", type=int, default=8)
    parser.add_argument("--load-requests", type=int, default=25, help="at most this many requests per thread")
    parser.add_argument("--load-seconds", type=float, default=10.0, help="no request starts after this")
    args = parser.parse_args()
    use_local_ray_env()
    result = {
        "benchmark": "bench_serve",
        "hardware": hardware(),
        **bench(args.repeats, args.load_threads, args.load_requests, args.load_seconds),
    }
    path = write_result("bench_serve", result)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        lat = result["latency"]
        print(
            f"serve {lat['serve']['p50_ms']:.0f} ms vs direct {lat['direct']['p50_ms']:.0f} ms p50 "
            f"(serve_overhead_ratio {result['serve_overhead_ratio']:.2f}), healthz {result['healthz_p50_ms']:.1f} ms, "
            f"load {result['load_requests_per_s']:.1f} req/s {result['load']['status']} -> {path}"
        )


if __name__ == "__main__":
    main()
