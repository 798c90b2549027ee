"""What the Ray layer costs and gains, as ratios measured side by side in one run.

- continuous_batching_speedup: 8 concurrent beam searches on ONE generator replica (their steps
  share forwards) over the same 8 searches one at a time on that replica.
- ray_vs_inprocess: NFE/s of the Ray path (8 concurrent searches, one replica on all cores) over
  the in-process engine running the same searches one after another on the same cores.
- coordinator_idle_fraction: simulated generators (a fixed cost per step, no model) spread over
  fake nodes, many concurrent searches; the fraction of replica time spent idle, i.e. what the
  coordinator fails to keep busy.

Usage: python -m benchmarks.bench_ray [--json] [--repeats 3] [--sim-replicas 64]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import ray

from actors.coordinator import RayBackend, SearchCoordinator
from actors.launch import ClusterLayout, Resources
from benchmarks.common import hardware, median, time_interleaved, write_result
from benchmarks.sim_replicas import SimGeneratorReplica, SimSampling, SimVerifierReplica
from cluster.local_ray import use_local_ray_env
from cluster.ray_runtime import registered_verifier, shapes_search_cluster
from generators.shapes import evaluate, model, world
from search.budget import Budget
from search.request import LocalBackend, SearchRequest
from search.run import SearchConfig

NUM_SEARCHES = 8


def _requests(n: int, nfe: int = 84, sampling=evaluate.DEFAULT_SAMPLING) -> list[SearchRequest]:
    prompts = [p for _, p in world.eval_prompts(2, seed=123)][:n]
    return [SearchRequest(p, 1000 + i, SearchConfig("beam", Budget(nfe=nfe)), sampling) for i, p in enumerate(prompts)]


def _drain(backend, requests) -> int:
    return sum(result.totals["nfe"] for _, result in backend.run(requests))


def bench_real_cluster(repeats: int) -> dict:
    cpus = os.cpu_count() or 2
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    try:
        layout = ClusterLayout(
            generators=1, generator_resources=Resources(num_cpus=cpus), verifier_resources=Resources(num_cpus=0)
        )
        backend = shapes_search_cluster(layout).backend()
        local = LocalBackend(model.load_engine(), {"shapes-clip": registered_verifier("shapes-clip")})
        requests = _requests(NUM_SEARCHES)
        nfe = {}

        def count(name, fn):
            def run():
                nfe[name] = fn()

            return run

        times = time_interleaved(
            {
                "ray_concurrent": count("ray_concurrent", lambda: _drain(backend, requests)),
                "ray_one_at_a_time": count("ray_one_at_a_time", lambda: sum(_drain(backend, [r]) for r in requests)),
                "in_process": count("in_process", lambda: _drain(local, requests)),
            },
            repeats=repeats,
        )
    finally:
        ray.shutdown()
    med = {k: median(v) for k, v in times.items()}
    return {
        "searches": NUM_SEARCHES,
        "nfe_per_run": nfe,
        "median_s": med,
        "nfe_per_s": {k: nfe[k] / med[k] for k in med},
        "continuous_batching_speedup": med["ray_one_at_a_time"] / med["ray_concurrent"],
        "ray_vs_inprocess": (nfe["ray_concurrent"] / med["ray_concurrent"]) / (nfe["in_process"] / med["in_process"]),
    }


def bench_coordinator(num_replicas: int, step_s: float, searches: int, nodes: int = 4) -> dict:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 4, "include_dashboard": False})
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=num_replicas // nodes + 4)
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        sim = ray.remote(SimGeneratorReplica).options(num_cpus=0.01, scheduling_strategy="SPREAD")
        generators = [sim.remote(step_s) for _ in range(num_replicas)]
        verifiers = [ray.remote(SimVerifierReplica).options(num_cpus=0.01).remote() for _ in range(4)]
        ray.get([h.describe.remote() for h in generators + verifiers])
        coordinator = (
            ray.remote(SearchCoordinator)
            .options(num_cpus=0, max_concurrency=searches + 4)
            .remote(generators, {"sim": verifiers})
        )
        ray.get(coordinator.status.remote())
        config = SearchConfig("beam", Budget(nfe=84))
        requests = [SearchRequest(f"search {i}", i, config, SimSampling(), "sim") for i in range(searches)]
        t0 = time.perf_counter()
        nfe = _drain(RayBackend(coordinator), requests)
        wall = time.perf_counter() - t0
        busy = sum(ray.get([h.busy_seconds.remote() for h in generators]))
    finally:
        ray.shutdown()
        cluster.shutdown()
    return {
        "replicas": num_replicas,
        "nodes": nodes,
        "step_s": step_s,
        "concurrent_searches": searches,
        "wall_s": wall,
        "nfe": nfe,
        "replica_busy_s": busy,
        "coordinator_idle_fraction": 1 - busy / (wall * num_replicas),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sim-replicas", type=int, default=64)
    parser.add_argument("--sim-step-s", type=float, default=0.05)
    args = parser.parse_args()
    use_local_ray_env()
    real = bench_real_cluster(args.repeats)
    sim = bench_coordinator(args.sim_replicas, args.sim_step_s, searches=2 * args.sim_replicas)
    out = {
        "benchmark": "bench_ray",
        "hardware": hardware(),
        "continuous_batching_speedup": real["continuous_batching_speedup"],
        "ray_vs_inprocess": real["ray_vs_inprocess"],
        "coordinator_idle_fraction": sim["coordinator_idle_fraction"],
        "real_cluster": real,
        "simulated": sim,
    }
    path = write_result("bench_ray", out)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(
            f"continuous_batching_speedup {out['continuous_batching_speedup']:.2f}x, "
            f"ray_vs_inprocess {out['ray_vs_inprocess']:.2f}x, "
            f"coordinator_idle_fraction {out['coordinator_idle_fraction']:.2f} -> {path}"
        )


if __name__ == "__main__":
    main()
