"""Why shapes-world samples fail: per prompt, how often the evaluator finds nothing, only
unnamed blobs, or the wrong shape, and how uncertain the model's bits are at each scale.

Comparing a prompt with its coloured variants at the same seeds ("a circle" vs "a red circle")
separates what an open choice costs from what the shape costs. On the shipped model the
colour-less prompts give far more empty and unnamed-blob images while the mean per-bit entropy
per scale is about the same, so the loss lies in where the model's per-bit marginals lead (codes
of no single colour, objects whose colour drifts), not in how uncertain they are on average.

Usage: python -m benchmarks.shapes_failure_modes [--samples 200] [--prompts "a circle" ...] [--json]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

import numpy as np
import torch

from benchmarks.common import hardware, write_result
from generators.engine import InfinityEngine
from generators.shapes import evaluate, evaluator, model, world

DEFAULT_PROMPTS = ["a circle", "a red circle", "a square", "a blue square", "a triangle", "a yellow triangle"]


def failure_mode(image: np.ndarray, prompt: str) -> str:
    """One word for what the evaluator saw: ok, empty, unknown (only unnamed blobs), or wrong."""
    if evaluator.judge(image, prompt):
        return "ok"
    found = evaluator.detect(image)
    if not found:
        return "empty"
    return "unknown" if all(d.shape == evaluator.UNKNOWN for d in found) else "wrong"


@torch.no_grad()
def prompt_report(engine: InfinityEngine, prompt: str, samples: int, seed: int = 0) -> dict:
    """`samples` default-sampling images of one prompt (paths 0..n-1): failure modes and mean bit entropy per scale."""
    batch = engine.start(
        [prompt] * samples, [seed] * samples, evaluate.DEFAULT_SAMPLING, [(i,) for i in range(samples)]
    )
    entropy_bits = []
    for _ in range(engine.schedule.num_scales):
        batch, logits_BLV = engine.step_logits(batch)
        p1 = logits_BLV.float().view(*logits_BLV.shape[:2], -1, 2).softmax(-1)[..., 1].clamp(1e-7, 1 - 1e-7)
        entropy_bits.append(float((-(p1 * p1.log2()) - (1 - p1) * (1 - p1).log2()).mean()))
    modes = Counter(failure_mode(image, prompt) for image in engine.decode(batch))
    return {
        "prompt": prompt,
        "samples": samples,
        **{f"{mode}_rate": modes[mode] / samples for mode in ("ok", "empty", "unknown", "wrong")},
        "bit_entropy_per_scale": entropy_bits,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=200, help="images per prompt")
    parser.add_argument("--prompts", nargs="+", default=DEFAULT_PROMPTS, help="shapes-world prompts")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    if args.samples < 1:
        parser.error("--samples must be >= 1")
    for prompt in args.prompts:  # refuse text outside the grammar before any sampling
        try:
            world.parse_prompt(prompt)
        except ValueError as e:
            parser.error(str(e))
    engine = model.load_engine()
    rows = [prompt_report(engine, prompt, args.samples) for prompt in args.prompts]
    write_result(
        "shapes_failure_modes", {"hardware": hardware(), "sampling": repr(evaluate.DEFAULT_SAMPLING), "rows": rows}
    )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        entropy = " ".join(f"{h:.2f}" for h in r["bit_entropy_per_scale"])
        print(
            f"{r['prompt']:<20} ok {r['ok_rate']:.2f}  empty {r['empty_rate']:.2f}  unknown {r['unknown_rate']:.2f}"
            f"  wrong {r['wrong_rate']:.2f}  bit entropy per scale: {entropy}"
        )


if __name__ == "__main__":
    main()
