"""The benchmark report's rendering, and the bounded load generator against a local HTTP server.

No Ray: the report is rendered from hand-made results, and the load runs against http.server on
127.0.0.1 in a thread, so the request and time bounds are checked against what the server saw.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from benchmarks import __main__ as report
from benchmarks.bench_serve import bounded_load, http_call

HARDWARE = {"processor": "x86_64", "cpu_count": 2, "cuda": None, "torch": "2.x"}


def render(monkeypatch: pytest.MonkeyPatch, benchmarks: dict, headline_keys: dict[str, list[str]]) -> str:
    for name, keys in headline_keys.items():
        monkeypatch.setitem(report.BENCHMARKS, name, ([], keys))
    return report.markdown({"hardware": HARDWARE, "benchmarks": benchmarks})


def table_rows(md: str) -> list[list[str]]:
    rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| benchmark")]
    return [[c.strip() for c in row.strip("|").split(" | ")] for row in rows]


def test_headline_values_of_every_type(monkeypatch: pytest.MonkeyPatch) -> None:
    result = {
        "ratio": 1.23456,
        "big": 12345.6,
        "count": 7,
        "met": False,
        "status": {"200": 3, "429": 1},
        "wall_s": 61.2,
    }
    md = render(monkeypatch, {"bench_x": result}, {"bench_x": ["ratio", "big", "count", "met", "status", "renamed"]})
    assert table_rows(md) == [
        ["bench_x", "ratio", "1.23"],
        ["bench_x", "big", "12346"],
        ["bench_x", "count", "7"],
        ["bench_x", "met", "no"],
        ["bench_x", "status", '{"200": 3, "429": 1}'],
        ["bench_x", "renamed", "n/a"],  # a headline key the result lacks is shown, not dropped
    ]
    assert "Hardware: x86_64, 2 cores, CUDA: None" in md
    assert "Wall time per module: bench_x 61 s." in md


def test_per_verifier_headlines_when_no_keys_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    result = {"shapes-clip": {"batched_speedup": 2.5}, "clip": {"batched_speedup": 1.5}, "hardware": HARDWARE}
    md = render(monkeypatch, {"bench_v": result}, {"bench_v": []})
    assert table_rows(md) == [
        ["bench_v", "shapes-clip.batched_speedup", "2.5"],
        ["bench_v", "clip.batched_speedup", "1.5"],
    ]


def test_errors_are_one_escaped_row_and_plots_follow_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    benchmarks = {
        "bench_fails": {"error": ["ValueError: a | b"], "wall_s": 3.0},
        "bench_plots": {"speedup": 3.0, "plots": ["scaling.png", "idle.png"], "wall_s": 10.0},
        "bench_more": {"speedup": 1.0, "plots": ["more.png"]},
    }
    keys = {"bench_fails": ["speedup"], "bench_plots": ["speedup"], "bench_more": ["speedup"]}
    md = render(monkeypatch, benchmarks, keys)
    assert "| bench_fails | error | ValueError: a \\| b |" in md
    assert ["bench_fails", "speedup", "n/a"] not in table_rows(md)  # a failed module has only its error row
    lines = md.splitlines()
    images = [i for i, line in enumerate(lines) if line.startswith("![")]
    assert [lines[i] for i in images] == [
        "![bench_plots: scaling.png](scaling.png)",
        "![bench_plots: idle.png](idle.png)",
        "![bench_more: more.png](more.png)",
    ]
    last_row = max(i for i, line in enumerate(lines) if line.startswith("|"))
    assert min(images) > last_row and all(lines[i - 1] == "" for i in images)
    assert "Wall time per module: bench_fails 3 s, bench_plots 10 s." in md


class _Handler(BaseHTTPRequestHandler):
    """GET /status/<code>[/<delay s>]: answers that code after that delay; counts every request."""

    def do_GET(self) -> None:
        _, _, code, *delay = self.path.split("/")
        with self.server.lock:
            self.server.hits += 1
        time.sleep(float(delay[0]) if delay else 0.0)
        self.send_response(int(code))
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.hits, httpd.lock = 0, threading.Lock()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def url(httpd: ThreadingHTTPServer, path: str) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}{path}"


def test_load_stops_at_its_request_bound(server: ThreadingHTTPServer) -> None:
    load = bounded_load(lambda: http_call(url(server, "/status/200"))[0], threads=3, max_requests=4, max_seconds=60)
    assert server.hits == load["requests"] == 12 and load["status"] == {"200": 12}
    assert load["ok"] == 12 and load["errors"] == 0 and load["wall_s"] < 10
    assert load["requests_per_s"] == pytest.approx(12 / load["wall_s"])


def test_load_stops_at_its_time_bound(server: ThreadingHTTPServer) -> None:
    delay, max_seconds = 0.05, 0.5

    def send() -> int:
        return http_call(url(server, f"/status/200/{delay}"))[0]

    load = bounded_load(send, threads=2, max_requests=10_000, max_seconds=max_seconds)
    assert load["wall_s"] < max_seconds + 1.0  # no request starts after the bound; the last one takes 50 ms
    assert load["requests"] == server.hits  # every request the clients sent was answered and counted
    assert 2 <= load["requests"] <= 2 * (max_seconds / delay + 1)


def test_load_counts_429_apart_from_errors(server: ThreadingHTTPServer) -> None:
    codes = iter([200, 429, 429, 500, 503, 200])
    lock = threading.Lock()

    def send() -> int:
        with lock:
            code = next(codes)
        return http_call(url(server, f"/status/{code}"))[0]

    load = bounded_load(send, threads=2, max_requests=3, max_seconds=60)
    assert load["status"] == {"200": 2, "429": 2, "500": 1, "503": 1}
    assert (load["ok"], load["rejected_429"], load["errors"]) == (2, 2, 2)


def test_no_answer_is_status_zero_and_an_error(server: ThreadingHTTPServer) -> None:
    dead = url(server, "/")
    server.shutdown()
    server.server_close()  # nothing listens on that port now
    load = bounded_load(lambda: http_call(dead, timeout=2)[0], threads=1, max_requests=2, max_seconds=60)
    assert load["status"] == {"0": 2} and load["errors"] == 2
