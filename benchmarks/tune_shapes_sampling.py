"""Choose the shapes world's default sampling settings on TRAINING captions (never the held-out
evaluation suites): one sample per caption per setting, judged by the evaluator.

Usage: python -m benchmarks.tune_shapes_sampling [--captions 120] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json

import numpy as np

from benchmarks.common import hardware, write_result
from generators.sampling import SamplingParams
from generators.shapes import evaluate, evaluator, model, world

TUNING_SEED = 10_000  # request seeds and caption draws apart from the evaluation's


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--captions", type=int, default=120)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    engine = model.load_engine()
    rng = np.random.default_rng(TUNING_SEED)
    per_category = args.captions // len(world.CATEGORIES)
    captions = [world.sample_example(rng, c)[0] for c in world.CATEGORIES for _ in range(per_category)]
    results = []
    for cfg, tau in itertools.product((1.0, 2.0, 3.0, 4.0, 6.0), (0.3, 0.5, 1.0)):
        params = SamplingParams(cfg=cfg, tau=tau, top_k=0, top_p=0.97)
        images = evaluate.sample_images(engine, captions, params, seed=TUNING_SEED, progress=False)
        report = evaluator.evaluate(images, captions)
        results.append({"cfg": cfg, "tau": tau, "overall": report["overall"], "per_category": report["per_category"]})
        print(f"cfg={cfg} tau={tau}: overall {report['overall']:.3f}", flush=True)
    best = max(results, key=lambda r: r["overall"])
    out = {"benchmark": "tune_shapes_sampling", "hardware": hardware(), "n_captions": len(captions), "best": best,
           "grid": results}  # fmt: skip
    path = write_result("tune_shapes_sampling", out)
    print(json.dumps(out, indent=2) if args.json else f"best cfg={best['cfg']} tau={best['tau']} -> {path}")


if __name__ == "__main__":
    main()
