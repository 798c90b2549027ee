"""How cost grows as work grows: three sweeps, each with every point measured in one run, and plots.

1. decode: N candidates (1, 2, 4, ... 256) advanced as one batch through every scale; cumulative
   time to reach scale k, exact KV cache bytes and measured peak memory growth. Default engine:
   the shipped shapes world (what `make run`, the studies and sweeps 2-3 run, trained weights, 6
   scales / 130 tokens); `--engine infinity-small` is bench_generator's random 7-scale model.
2. replicas: the coordinator over 1, 2, 4, ... 128 simulated generator replicas (a fixed cost
   per step, no model; benchmarks/sim_replicas.py), 2 beam searches per replica; achieved over
   ideal replica throughput and the coordinator's time per replica call.
3. study: a small shapes-world study through the study driver on Ray (one generator replica)
   with 1, 2, 4, 8 searches in flight; searches/s and NFE/s.

Grids step by --grid-factor (2; 4 for --quick). Writes bench_scaling.json and scaling_*.png to
--out-dir (results/).

Usage: python -m benchmarks.bench_scaling [--json] [--repeats 3] [--max-candidates 256]
       [--max-replicas 128] [--max-concurrency 8] [--grid-factor 2] [--threads 1]
       [--sweeps decode,replicas,study] [--out-dir results]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path

import ray
import torch

from benchmarks import scaling_plots
from benchmarks.bench_ray import _drain
from benchmarks.common import RESULTS_DIR, hardware, median, sync, write_result
from benchmarks.sim_replicas import SimGeneratorReplica, SimSampling, SimVerifierReplica
from cluster.local_ray import use_local_ray_env
from generators.engine import InfinityEngine
from generators.kv_cache import KVCache
from generators.sampling import SamplingParams
from generators.shapes import world
from search.budget import Budget
from search.request import EventCallback, SearchBackend, SearchRequest
from search.run import SearchConfig, SearchResult

SWEEPS = ("decode", "replicas", "study")
PROMPTS = [p for _, p in world.eval_prompts(1, seed=0)]


def grid(maximum: int, factor: int = 2) -> list[int]:
    """1, factor, factor**2, ... up to `maximum`, which is always the last point."""
    if maximum < 1 or factor < 2:
        raise ValueError(f"need maximum >= 1 and factor >= 2, got {maximum}, {factor}")
    points = [1]
    while points[-1] * factor < maximum:
        points.append(points[-1] * factor)
    return points if points[-1] == maximum else [*points, maximum]


def _ratio(points: dict[int, dict], num: int, den: int, key: str) -> float | None:
    """points[num][key] / points[den][key], or None if either point was not in the grid."""
    return points[num][key] / points[den][key] if num in points and den in points else None


# ---- 1. decode time and memory against N ---------------------------------------------------------


def load_engine(name: str, device: str) -> tuple[InfinityEngine, SamplingParams]:
    """The engine to decode with and the sampling its searches use."""
    if name == "shapes":
        from generators.shapes import evaluate, model

        return model.load_engine(device=device), evaluate.DEFAULT_SAMPLING
    if name == "infinity-small":
        if device != "cpu":
            raise ValueError("bench_generator's random infinity-small engine is built on the CPU")
        from benchmarks.bench_generator import build_engine

        return build_engine("infinity-small", "0.06M"), SamplingParams()
    raise ValueError(f"unknown engine {name!r} (shapes or infinity-small)")


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise OSError(f"{field} not in /proc/self/status")


def memory_method(device: str) -> str | None:
    """How peak memory growth is measured here, or None where it cannot be (a CPU without Linux's
    resettable VmHWM or glibc's malloc_trim)."""
    if device.startswith("cuda"):
        return "torch.cuda.max_memory_allocated"
    try:
        ctypes.CDLL("libc.so.6").malloc_trim  # noqa: B018  (present, or AttributeError)
        Path("/proc/self/clear_refs").write_text("5")
        _status_bytes("VmHWM")
        return "peak RSS (VmHWM)"
    except (OSError, AttributeError):
        return None


def _memory_start(device: str, method: str | None) -> int | None:
    """Reset the peak counter; returns the baseline. On CPU freed heap is trimmed first, so an earlier
    larger batch's freed memory, still resident, does not hide this batch's growth."""
    if method is None:
        return None
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    return _status_bytes("VmRSS")


def _memory_peak(device: str, baseline: int | None) -> int | None:
    if baseline is None:
        return None
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() - baseline
    return _status_bytes("VmHWM") - baseline


def cache_bytes(cache: KVCache) -> int:
    return sum(t.numel() * t.element_size() for t in [*cache.keys, *cache.values] if t is not None)


def decode_point(engine: InfinityEngine, n: int, sampling: SamplingParams, method: str | None) -> dict:
    """One batch of n candidates through every scale: cumulative seconds and KV bytes per scale."""
    device = str(engine.device)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(n)]
    batch = engine.start(prompts, list(range(n)), sampling, paths=[(i,) for i in range(n)])
    baseline = _memory_start(device, method)
    elapsed, cumulative, kv = 0.0, [], []
    for k in range(1, engine.schedule.num_scales + 1):
        sync()
        t0 = time.perf_counter()
        batch, _ = engine.advance(batch, to_scale=k)
        sync()
        elapsed += time.perf_counter() - t0
        cumulative.append(elapsed)
        kv.append(cache_bytes(batch.cache))
    return {"cumulative_s": cumulative, "kv_cache_bytes": kv, "peak_bytes": _memory_peak(device, baseline)}


def decode_sweep(engine: InfinityEngine, sampling: SamplingParams, counts: Sequence[int], repeats: int) -> dict:
    """Every N in every repetition (ascending, interleaved); medians per N and scale."""
    method = memory_method(str(engine.device))
    decode_point(engine, 1, sampling, method)  # warm-up: lazy initialisation, prompt encodings
    runs: dict[int, list[dict]] = {n: [] for n in counts}
    for _ in range(repeats):
        for n in counts:
            runs[n].append(decode_point(engine, n, sampling, method))
    points = []
    for n in counts:
        cumulative = [median([r["cumulative_s"][k] for r in runs[n]]) for k in range(engine.schedule.num_scales)]
        peaks = [r["peak_bytes"] for r in runs[n] if r["peak_bytes"] is not None]
        points.append(
            {
                "candidates": n,
                "cumulative_s": cumulative,
                "per_candidate_s": cumulative[-1] / n,
                "candidates_per_s": n / cumulative[-1],
                "kv_cache_bytes": runs[n][0]["kv_cache_bytes"],
                "peak_memory_growth_bytes": int(median(peaks)) if peaks else None,
                "total_s_runs": [r["cumulative_s"][-1] for r in runs[n]],
            }
        )
    by_n = {p["candidates"]: p for p in points}
    return {
        "device": str(engine.device),
        "torch_threads": torch.get_num_threads(),
        "schedule": [list(s) for s in engine.schedule.scales],
        "tokens_per_candidate": engine.schedule.total_tokens,
        "repeats": repeats,
        "memory_method": method,
        "points": points,
        "per_candidate_speedup_256_vs_1": _ratio(by_n, 1, 256, "per_candidate_s"),
        "per_candidate_speedup_max_vs_1": _ratio(by_n, 1, counts[-1], "per_candidate_s"),
    }


@contextmanager
def local_ray() -> Iterator[None]:
    """A private Ray instance on 127.0.0.1 with this machine's CPUs, never a cluster found running."""
    use_local_ray_env()
    ray.init(address="local", num_cpus=os.cpu_count() or 2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


# ---- 2. coordinator overhead against simulated replicas ------------------------------------------


class CountingSimReplica(SimGeneratorReplica):
    """A simulated replica that also counts its calls and scale steps (the ideal throughput's unit)."""

    def __init__(self, step_s: float) -> None:
        super().__init__(step_s)
        self._calls = self._steps = 0

    async def advance(self, items, to_scale, release=(), decode_final=False):
        self._calls += 1
        self._steps += to_scale - len(items[0].address.bits)
        return await super().advance(items, to_scale, release, decode_final)

    def counters(self) -> tuple[int, int, float]:
        return self._calls, self._steps, self.busy_seconds()


def _sums(handles: Sequence) -> tuple[int, int, float]:
    calls, steps, busy = zip(*ray.get([h.counters.remote() for h in handles]), strict=True)
    return sum(calls), sum(steps), sum(busy)


def replica_point(generators: Sequence, verifiers: Sequence, step_s: float, searches: int) -> dict:
    """`searches` concurrent 84-NFE beam searches through a fresh coordinator over `generators`."""
    from actors.coordinator import RayBackend, SearchCoordinator

    coordinator = (
        ray.remote(SearchCoordinator)
        .options(num_cpus=0, max_concurrency=searches + 4)
        .remote(list(generators), {"sim": list(verifiers)})
    )
    try:
        ray.get(coordinator.status.remote())
        config = SearchConfig("beam", Budget(nfe=84))
        requests = [SearchRequest(f"search {i}", i, config, SimSampling(), "sim") for i in range(searches)]
        before = _sums(generators)
        t0 = time.perf_counter()
        nfe = _drain(RayBackend(coordinator), requests)
        wall = time.perf_counter() - t0
        after = _sums(generators)
    finally:
        ray.kill(coordinator)
    calls, steps, busy = (a - b for a, b in zip(after, before, strict=True))
    r = len(generators)
    return {
        "replicas": r,
        "searches": searches,
        "wall_s": wall,
        "nfe": nfe,
        "nfe_per_s": nfe / wall,
        "replica_calls": calls,
        "replica_steps": steps,
        "steps_per_s": steps / wall,
        "ideal_steps_per_s": r / step_s,
        "efficiency": steps * step_s / (wall * r),
        "idle_fraction": 1 - busy / (wall * r),
        "wall_s_per_call": wall / calls,
        "idle_s_per_call": (wall * r - busy) / calls,
    }


def replica_sweep(
    counts: Sequence[int],
    step_s: float = 0.05,
    searches_per_replica: int = 2,
    time_limit_s: float = 240.0,
    start_timeout_s: float = 120.0,
    num_verifiers: int = 4,
) -> dict:
    """Replicas are started once, as the grid grows (1 + 2 + ... would start twice as many processes),
    on the local Ray node (`local_ray`) with 1/100 CPU each, and killed at the end; points past the
    time limit or a failed start are reported as not measured, with the reason."""
    t_start = time.perf_counter()
    points: list[dict] = []
    sim = ray.remote(CountingSimReplica).options(num_cpus=0.01)
    verifiers = [ray.remote(SimVerifierReplica).options(num_cpus=0.01).remote() for _ in range(num_verifiers)]
    generators: list = []
    try:
        for r in counts:
            if time.perf_counter() - t_start > time_limit_s:
                points.append({"replicas": r, "not_measured": f"time limit of {time_limit_s:.0f} s reached"})
                continue
            new = [sim.remote(step_s) for _ in range(r - len(generators))]
            t0 = time.perf_counter()
            try:
                ray.get([h.describe.remote() for h in [*new, *verifiers]], timeout=start_timeout_s)
            except ray.exceptions.GetTimeoutError:
                points.append({"replicas": r, "not_measured": f"{r} replicas not up within {start_timeout_s:.0f} s"})
                break
            generators += new
            point = replica_point(generators, verifiers, step_s, searches_per_replica * r)
            points.append({**point, "start_s": time.perf_counter() - t0 - point["wall_s"]})
    finally:
        for handle in [*generators, *verifiers]:
            ray.kill(handle)
    measured = [p for p in points if "wall_s" in p]
    return {
        "step_s": step_s,
        "searches_per_replica": searches_per_replica,
        "actor_num_cpus": 0.01,
        "points": points,
        "max_replicas_measured": measured[-1]["replicas"] if measured else 0,
        "efficiency_at_max_replicas": measured[-1]["efficiency"] if measured else None,
        "sweep_s": time.perf_counter() - t_start,
    }


# ---- 3. study throughput against concurrent searches ---------------------------------------------


class BoundedBackend:
    """Keeps at most `concurrency` searches of `backend` in flight (RayBackend submits every request at
    once, so the coordinator's thread count would set the concurrency), and counts their NFEs."""

    def __init__(self, backend: SearchBackend, concurrency: int) -> None:
        self.backend, self.concurrency, self.nfe = backend, concurrency, 0

    def _one(self, index: int, request: SearchRequest, on_event: EventCallback | None) -> SearchResult:
        events = None if on_event is None else (lambda _, row: on_event(index, row))
        return next(result for _, result in self.backend.run([request], events))

    def run(
        self, requests: Sequence[SearchRequest], on_event: EventCallback | None = None
    ) -> Iterator[tuple[int, SearchResult]]:
        with ThreadPoolExecutor(self.concurrency) as pool:
            futures = {pool.submit(self._one, i, r, on_event): i for i, r in enumerate(requests)}
            for future in as_completed(futures):
                result = future.result()
                self.nfe += result.totals["nfe"]
                yield futures[future], result


def study_config(prompts: str):
    """`varsearch study shapes-beam --prompts PROMPTS` with random and beam search at 42 NFEs, one seed
    (built as tests/small_study.py builds its config)."""
    from cluster.config import load_config, parse_set

    overrides = parse_set(["study.methods=[random, beam]", "study.budgets=[42]", "seeds=[0]"])
    return load_config("shapes-beam", {**overrides, "study.prompts": prompts})


def study_sweep(concurrencies: Sequence[int], repeats: int, prompts: str = "shapes:heldout:1") -> dict:
    """The same study into a fresh folder per point, concurrency interleaved within each repetition,
    on one shapes generator replica and one verifier replica on the local Ray node (`local_ray`)."""
    from actors.launch import ClusterLayout, Resources
    from cluster.ray_runtime import shapes_search_cluster
    from cluster.study import expand, run_study

    config = study_config(prompts)
    searches = len(expand(config))
    layout = ClusterLayout(  # as `varsearch study` lays it out (cluster/build.py ray_backend)
        generators=1, generator_resources=Resources(num_cpus=1), verifier_resources=Resources(num_cpus=0.5)
    )
    cluster = shapes_search_cluster(layout)
    try:
        backend = cluster.backend()
        _drain(backend, [row.request for row in expand(config)[:2]])  # warm-up: replicas' first forwards
        runs: dict[int, list[tuple[float, int]]] = {c: [] for c in concurrencies}
        for _ in range(repeats):
            for c in concurrencies:
                bounded = BoundedBackend(backend, c)
                with tempfile.TemporaryDirectory() as out:
                    t0 = time.perf_counter()
                    summary = run_study(config, Path(out) / "study", bounded, progress=False)
                    wall = time.perf_counter() - t0
                if summary["ran"] != searches:
                    raise RuntimeError(f"study ran {summary['ran']} of {searches} searches")
                runs[c].append((wall, bounded.nfe))
    finally:
        cluster.shutdown()
    points = []
    for c in concurrencies:
        wall = median([w for w, _ in runs[c]])
        nfe = runs[c][0][1]
        points.append(
            {
                "concurrency": c,
                "wall_s": wall,
                "nfe": nfe,
                "searches_per_s": searches / wall,
                "nfe_per_s": nfe / wall,
                "wall_s_runs": [w for w, _ in runs[c]],
            }
        )
    by_c = {p["concurrency"]: p for p in points}
    return {
        "searches": searches,
        "prompts": prompts,
        "methods": ["random", "beam"],
        "budget_nfe": 42,
        "repeats": repeats,
        "generator_replicas": 1,
        "points": points,
        "speedup_max_vs_1": _ratio(by_c, concurrencies[-1], 1, "searches_per_s"),
    }


# ---- the run ---------------------------------------------------------------------------------------


def run(args: argparse.Namespace, out_dir: Path = RESULTS_DIR) -> dict:
    """Every requested sweep, then its plot; the result dict as written to bench_scaling.json."""
    sweeps = [s.strip() for s in args.sweeps.split(",") if s.strip()]
    unknown = sorted(set(sweeps) - set(SWEEPS))
    if unknown:
        raise ValueError(f"unknown sweep(s) {unknown}; known: {list(SWEEPS)}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)  # before hardware(), which records it
    t0 = time.perf_counter()
    result: dict = {"benchmark": "bench_scaling", "hardware": hardware(), "plots": []}
    if "decode" in sweeps:
        torch.manual_seed(0)
        engine, sampling = load_engine(args.engine, args.device)
        counts = grid(args.max_candidates, args.grid_factor)
        decode = {"engine": args.engine, **decode_sweep(engine, sampling, counts, args.repeats)}
        result["decode"] = decode
        scaling_plots.plot_decode(decode, out_dir / "scaling_decode.png")
        scaling_plots.plot_memory(decode, out_dir / "scaling_memory.png")
        result["plots"] += ["scaling_decode.png", "scaling_memory.png"]
    if "replicas" in sweeps or "study" in sweeps:
        with local_ray():  # one Ray instance for both; each sweep kills its actors when done
            if "replicas" in sweeps:
                counts = grid(args.max_replicas, args.grid_factor)
                result["replicas"] = replica_sweep(counts, args.step_s, time_limit_s=args.replica_time_limit_s)
            if "study" in sweeps:
                counts = grid(args.max_concurrency, args.grid_factor)
                result["study"] = study_sweep(counts, args.repeats, args.study_prompts)
    if result.get("replicas", {}).get("max_replicas_measured"):
        scaling_plots.plot_replicas(result["replicas"], out_dir / "scaling_replicas.png")
        result["plots"].append("scaling_replicas.png")
    if "study" in result:
        scaling_plots.plot_study(result["study"], out_dir / "scaling_study.png")
        result["plots"].append("scaling_study.png")
    result.update(headlines(result))
    result["wall_s"] = time.perf_counter() - t0
    return result


def headlines(result: dict) -> dict[str, float]:
    """The numbers the report table shows; a point outside this run's grid is left out, never None."""
    sources = {
        "per_candidate_speedup_256_vs_1": ("decode", "per_candidate_speedup_256_vs_1"),
        "sim_max_replicas_measured": ("replicas", "max_replicas_measured"),
        "sim_efficiency_at_max_replicas": ("replicas", "efficiency_at_max_replicas"),
        "study_speedup_max_vs_1_concurrent": ("study", "speedup_max_vs_1"),
    }
    found = {key: result.get(sweep, {}).get(field) for key, (sweep, field) in sources.items()}
    return {key: value for key, value in found.items() if value is not None}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="where bench_scaling.json and the PNGs go")
    p.add_argument("--sweeps", default=",".join(SWEEPS), help="comma-separated: decode, replicas, study")
    p.add_argument("--engine", default="shapes", choices=["shapes", "infinity-small"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of the decode sweep (0: torch's default; one keeps it steady on shared cores, where "
        "two threads' small forwards wait on each other: 2.8 s instead of 0.035 s for one candidate)",
    )
    p.add_argument("--repeats", type=int, default=3, help="interleaved repetitions (decode and study)")
    p.add_argument("--grid-factor", type=int, default=2, help="ratio between grid points (4: a quicker grid)")
    p.add_argument("--max-candidates", type=int, default=256)
    p.add_argument("--max-replicas", type=int, default=128)
    p.add_argument("--max-concurrency", type=int, default=8)
    p.add_argument("--step-s", type=float, default=0.05, help="simulated replicas' seconds per scale step")
    p.add_argument("--replica-time-limit-s", type=float, default=240.0, help="no new replica point after this")
    p.add_argument("--study-prompts", default="shapes:heldout:1", help="prompt file or shapes:heldout:N (x2 methods)")
    return p


def main() -> None:
    args = parser().parse_args()
    result = run(args, args.out_dir)
    path = write_result("bench_scaling", result, args.out_dir)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    headline = {k: v for k, v in result.items() if not isinstance(v, dict | list) and k != "benchmark"}
    print(", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in headline.items()), "->", path)


if __name__ == "__main__":
    main()
