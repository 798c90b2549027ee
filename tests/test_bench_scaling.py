"""benchmarks/bench_scaling.py on its smallest grids: every point present, sane numbers, plots written."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch

from benchmarks import bench_scaling, scaling_plots
from search.budget import Budget
from search.request import SearchRequest
from search.run import SearchConfig


def _png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5_000  # axes, lines and labels, not an empty canvas


def test_grid() -> None:
    assert bench_scaling.grid(256) == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert bench_scaling.grid(256, 4) == [1, 4, 16, 64, 256]
    assert bench_scaling.grid(100, 4) == [1, 4, 16, 64, 100]
    assert bench_scaling.grid(1) == [1]
    with pytest.raises(ValueError):
        bench_scaling.grid(0)


@pytest.fixture
def one_thread():
    """As the benchmark runs its decode sweep (--threads 1): steady on shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_decode_sweep(one_thread, tmp_path: Path) -> None:
    engine, sampling = bench_scaling.load_engine("shapes", "cpu")
    decode = {"engine": "shapes", **bench_scaling.decode_sweep(engine, sampling, [1, 2], repeats=2)}
    scales = engine.schedule.num_scales
    assert [p["candidates"] for p in decode["points"]] == [1, 2]
    for p in decode["points"]:
        assert len(p["cumulative_s"]) == scales and len(p["total_s_runs"]) == 2
        assert all(0 < a < b for a, b in zip(p["cumulative_s"], p["cumulative_s"][1:], strict=False))
        assert all(a < b for a, b in zip(p["kv_cache_bytes"], p["kv_cache_bytes"][1:], strict=False))
    one, two = decode["points"]
    assert [2 * b for b in one["kv_cache_bytes"]] == two["kv_cache_bytes"]  # exact: rows x tokens x layers
    # KV bytes of one candidate: layers x (keys + values) x CFG rows x tokens x width x 4 bytes (float32)
    cfg = engine.model.cfg
    assert one["kv_cache_bytes"][-1] == cfg.depth * 2 * 2 * engine.schedule.total_tokens * cfg.embed_dim * 4
    if decode["memory_method"] is not None:
        assert two["peak_memory_growth_bytes"] > 0
    assert decode["per_candidate_speedup_256_vs_1"] is None  # 256 was not in the grid
    assert decode["per_candidate_speedup_max_vs_1"] == pytest.approx(one["per_candidate_s"] / two["per_candidate_s"])
    _png(scaling_plots.plot_decode(decode, tmp_path / "decode.png"))
    _png(scaling_plots.plot_memory(decode, tmp_path / "memory.png"))


def test_run_writes_every_listed_plot_and_only_measured_headlines(one_thread, tmp_path: Path) -> None:
    args = bench_scaling.parser().parse_args(["--sweeps", "decode", "--max-candidates", "2", "--repeats", "1"])
    result = bench_scaling.run(args, tmp_path)
    assert result["hardware"]["torch_threads"] == 1
    assert result["plots"] == ["scaling_decode.png", "scaling_memory.png"]
    for name in result["plots"]:
        _png(tmp_path / name)
    assert "per_candidate_speedup_256_vs_1" not in result  # 256 not in the grid: left out, never None
    no_replica = {"replicas": {"max_replicas_measured": 0, "efficiency_at_max_replicas": None}}
    assert bench_scaling.headlines(no_replica) == {"sim_max_replicas_measured": 0}


@pytest.fixture(scope="module")
def local_ray():
    with bench_scaling.local_ray():
        yield


def test_replica_sweep(local_ray, tmp_path: Path) -> None:
    # start_timeout_s: on shared, loaded cores Ray took over the default 120 s to start one actor
    replicas = bench_scaling.replica_sweep(
        [1, 2], step_s=0.01, searches_per_replica=1, num_verifiers=1, start_timeout_s=600, time_limit_s=600
    )
    assert [p["replicas"] for p in replicas["points"]] == [1, 2]
    assert replicas["max_replicas_measured"] == 2
    for p in replicas["points"]:
        assert p["nfe"] == 84 * p["searches"] and p["replica_calls"] > 0
        assert p["replica_steps"] >= p["replica_calls"]
        assert 0 < p["efficiency"] <= 1.0 and 0 <= p["idle_fraction"] < 1
        assert p["ideal_steps_per_s"] == pytest.approx(p["replicas"] / 0.01)
    _png(scaling_plots.plot_replicas(replicas, tmp_path / "replicas.png"))


def test_replica_sweep_reports_points_past_the_time_limit(local_ray) -> None:
    replicas = bench_scaling.replica_sweep([1, 2], time_limit_s=0, num_verifiers=1)
    assert replicas["max_replicas_measured"] == 0 and replicas["efficiency_at_max_replicas"] is None
    assert [p["replicas"] for p in replicas["points"]] == [1, 2]
    assert all("time limit" in p["not_measured"] for p in replicas["points"])


class _SlowBackend:
    """Records how many searches run at once."""

    def __init__(self) -> None:
        self.running = self.peak = 0
        self._lock = threading.Lock()

    def run(self, requests, on_event=None):
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        time.sleep(0.05)
        with self._lock:
            self.running -= 1
        yield 0, type("Result", (), {"totals": {"nfe": 6}, "prompt": requests[0].prompt})()


def test_bounded_backend_keeps_concurrency_and_counts_nfe() -> None:
    inner = _SlowBackend()
    bounded = bench_scaling.BoundedBackend(inner, 3)
    requests = [SearchRequest(f"p{i}", i, SearchConfig("base", Budget(nfe=6))) for i in range(7)]
    out = dict(bounded.run(requests))
    assert sorted(out) == list(range(7))
    assert [out[i].prompt for i in range(7)] == [r.prompt for r in requests]  # indices map back to requests
    assert inner.peak == 3 and bounded.nfe == 42


def test_study_sweep(local_ray, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n")
    study = bench_scaling.study_sweep([1, 2], repeats=1, prompts=str(prompts))
    assert study["searches"] == 2  # random and beam
    assert [p["concurrency"] for p in study["points"]] == [1, 2]
    for p in study["points"]:
        assert p["nfe"] == 42 + 39 and p["searches_per_s"] > 0  # random 7 x 6; beam's mid-scale plan 3 x 13
        assert p["nfe_per_s"] == pytest.approx(p["nfe"] / p["wall_s"])
    _png(scaling_plots.plot_study(study, tmp_path / "study.png"))
