"""Verifier benchmark: images/s scoring a batch in one call vs one image per call, per verifier.

Every verifier runs on CPU at a tiny random size (verifiers.tiny; the shapes world's on its
shipped weights when present), so the ratio measures what batching saves in per-call overhead
and small-matrix inefficiency, not what a GPU would gain. Each call gets pixels it has not just
seen, so CLIP's last-batch embedding cache never short-cuts a timing.

Usage: python -m benchmarks.bench_verifiers [--json] [--images 16] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import hardware, median, time_interleaved, write_result
from verifiers import Verifier, load_verifier, tiny

PROMPTS = [
    "a red circle and a blue square",
    "two squares",
    "a red circle",
    "a circle left of a square",
]  # shapes grammar


def build_verifiers(directory: Path) -> dict[str, Verifier]:
    clip = tiny.clip_files(directory)
    clip_options = {"model": clip["model"], "quick_gelu": False, "config_path": clip["config_path"]}
    clipscore = {"name": "clipscore", "checkpoint": clip["checkpoint"], **clip_options}
    aesthetic = {
        "name": "aesthetic", "checkpoint": tiny.aesthetic_file(directory), "clip_checkpoint": clip["checkpoint"],
        "clip_model": clip["model"], "quick_gelu": False, "config_path": clip["config_path"],
    }  # fmt: skip
    imagereward = tiny.imagereward_files(directory)
    verifiers = {
        "clipscore": load_verifier(**clipscore),
        "aesthetic": load_verifier(**aesthetic),
        "ensemble_clipscore_aesthetic": load_verifier("ensemble", members=[clipscore, aesthetic]),
        "llava-onevision": load_verifier("llava-onevision", model_dir=tiny.llava_onevision_dir(directory)),
    }
    from verifiers.imagereward import ImageRewardVerifier  # a tiny config is not a registry option

    verifiers["imagereward"] = ImageRewardVerifier(
        imagereward["checkpoint"], imagereward["vocab"], config=tiny.IMAGEREWARD_CONFIG
    )
    from cluster.verifiers import register_shapes_verifiers

    register_shapes_verifiers()
    verifiers["shapes-judge"] = load_verifier("shapes-judge")
    try:
        verifiers["shapes-clip"] = load_verifier("shapes-clip")
    except ValueError as err:  # weights not trained yet
        print(f"skipping shapes-clip: {err}")
    return verifiers


def bench_one(verifier: Verifier, num_images: int, size: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    image_sets = itertools.cycle([rng.integers(0, 256, (num_images, size, size, 3), np.uint8) for _ in range(3)])
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(num_images)]

    def batched() -> None:
        verifier.score(prompts, next(image_sets))

    def one_at_a_time() -> None:
        images = next(image_sets)
        for i, p in enumerate(prompts):
            verifier.score([p], images[i : i + 1])

    variants: dict[str, Callable[[], None]] = {"batched": batched, "one_at_a_time": one_at_a_time}
    times = time_interleaved(variants, repeats)
    t_b, t_1 = median(times["batched"]), median(times["one_at_a_time"])
    return {
        "batched_speedup": t_1 / t_b,
        "batched_images_per_s": num_images / t_b,
        "one_at_a_time_images_per_s": num_images / t_1,
        "times_s": times,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--images", type=int, default=16, help="images per batch")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as d:
        verifiers = build_verifiers(Path(d))
        per_verifier = {name: bench_one(v, args.images, args.size, args.repeats) for name, v in verifiers.items()}
    result = {
        "benchmark": "bench_verifiers",
        "hardware": hardware(),
        "config": {"images": args.images, "size": args.size, "repeats": args.repeats, "device": "cpu"},
        **per_verifier,
    }
    path = write_result("bench_verifiers", result)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name, r in per_verifier.items():
            print(
                f"{name:>30}: batched {r['batched_speedup']:.2f}x faster "
                f"({r['batched_images_per_s']:.0f} vs {r['one_at_a_time_images_per_s']:.0f} images/s)"
            )
        print(f"-> {path}")


if __name__ == "__main__":
    main()
