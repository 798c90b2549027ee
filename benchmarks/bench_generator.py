"""Generator benchmark: batched stepwise decoding and fork-by-gather.

1. Batched vs sequential: N candidates decoded through every scale as one batch (one forward per
   scale) vs one candidate at a time. Transformer and sampling only (no VAE decode).
2. Fork by gather vs recompute: a parent at scale k becomes n children by gathering its KV
   cache rows, vs rebuilding the same n children from their prefix bits with one
   teacher-forced forward (the cheapest way to recompute a prefix).

Usage: python -m benchmarks.bench_generator [--json] [--candidates 16] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json

import torch

from benchmarks.common import hardware, median, time_interleaved, write_result
from generators.engine import InfinityEngine
from generators.loading import random_infinity, random_vae
from generators.schedules import get_schedule
from generators.text_encoder import HashTextEncoder

PROMPTS = ["a red circle above a blue square", "three green triangles", "a yellow square left of a circle"]


def build_engine(config: str, pixel_budget: str) -> InfinityEngine:
    model = random_infinity(config, seed=0)
    vae = random_vae("vae-d16" if model.cfg.bits_per_token == 16 else "vae-tiny", seed=0)
    return InfinityEngine(model, vae, HashTextEncoder(model.cfg.text_channels), get_schedule(1.0, pixel_budget))


def bench_batching(engine: InfinityEngine, num_candidates: int, repeats: int) -> dict:
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(num_candidates)]
    paths = [(i,) for i in range(num_candidates)]

    def batched() -> None:
        engine.advance(engine.start(prompts, [0] * num_candidates, paths=paths))

    def sequential() -> None:
        for p, path in zip(prompts, paths, strict=True):
            engine.advance(engine.start([p], [0], paths=[path]))

    times = time_interleaved({"batched": batched, "sequential": sequential}, repeats)
    tokens = num_candidates * engine.schedule.total_tokens
    t_b, t_s = median(times["batched"]), median(times["sequential"])
    return {
        "num_candidates": num_candidates,
        "batched_s": t_b,
        "sequential_s": t_s,
        "batched_candidates_per_s": num_candidates / t_b,
        "sequential_candidates_per_s": num_candidates / t_s,
        "batched_tokens_per_s": tokens / t_b,
        "sequential_tokens_per_s": tokens / t_s,
        "batched_speedup": t_s / t_b,
        "times_s": times,
    }


def bench_fork(engine: InfinityEngine, num_children: int, fork_scale: int, repeats: int) -> dict:
    parent, _ = engine.advance(engine.start([PROMPTS[0]], [0], paths=[(0,)]), to_scale=fork_scale)
    prefix = parent.prefix_bits(0)
    child_paths = [(0, j) for j in range(num_children)]

    def fork() -> None:
        engine.fork(parent, num_children)

    def recompute() -> None:
        engine.rebuild([PROMPTS[0]] * num_children, [0] * num_children, child_paths, [prefix] * num_children)

    times = time_interleaved({"fork": fork, "recompute": recompute}, repeats)
    t_f, t_r = median(times["fork"]), median(times["recompute"])
    return {
        "num_children": num_children,
        "fork_scale": fork_scale,
        "prefix_tokens": engine.schedule.token_offsets[fork_scale],
        "fork_s": t_f,
        "recompute_s": t_r,
        "fork_vs_recompute_speedup": t_r / t_f,
        "times_s": times,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--config", default="infinity-small", help="random-weight model config")
    parser.add_argument("--pixel-budget", default="0.06M", help="1:1 schedule (0.06M = 7 scales, 521 tokens)")
    parser.add_argument("--candidates", type=int, default=16)
    parser.add_argument("--fork-scale", type=int, default=6, help="scales sampled before the fork")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    torch.manual_seed(0)
    engine = build_engine(args.config, args.pixel_budget)
    batching = bench_batching(engine, args.candidates, args.repeats)
    fork = bench_fork(engine, args.candidates, args.fork_scale, args.repeats)
    result = {
        "benchmark": "bench_generator",
        "hardware": hardware(),
        "config": {"model": args.config, "schedule": engine.schedule.scales, "repeats": args.repeats},
        "batched_speedup": batching["batched_speedup"],
        "fork_vs_recompute_speedup": fork["fork_vs_recompute_speedup"],
        "batching": batching,
        "fork": fork,
    }
    path = write_result("bench_generator", result)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"batched decoding {batching['batched_speedup']:.2f}x faster than sequential "
            f"({batching['batched_candidates_per_s']:.1f} vs "
            f"{batching['sequential_candidates_per_s']:.1f} candidates/s); "
            f"fork by gather {fork['fork_vs_recompute_speedup']:.1f}x faster than recomputing the prefix. -> {path}"
        )


if __name__ == "__main__":
    main()
