"""Choose beam search's pruning scales for the shapes world on TRAINING captions (never the
held-out suites), against random search at the same NFE budgets, with the tiny-CLIP verifier
and the evaluator as judge.

Every variant searches the same captions with the same request seeds; accuracy is GenEval-style
(mean over categories) with its standard error over captions. Run it before quoting a beam
setting in `varsearch shapes curve`: pick by this table, then measure on held-out prompts.

Usage: python -m benchmarks.tune_shapes_search [--captions 96] [--budgets 84 168] [--variants NAME ...]
       [--verifier shapes-clip] [--workers 1] [--random-budgets N ...] [--skip-random] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd

from benchmarks.common import hardware, write_result
from benchmarks.tune_shapes_sampling import TUNING_SEED, training_captions
from cluster.curve import run_shapes_curve
from generators.shapes import evaluate, world

# Beam settings: pruning scales (0-based) of the 6-scale schedule (1, 2, 3, 4, 6, 8) and the
# rollout temperature factor. One pruning scale is random search in disguise (m candidates, each
# sampled to the end once), kept as a check.
VARIANTS: dict[str, dict] = {
    "every scale (paper)": {},
    "skip 1x1": {"prune_scales": (1, 2, 3, 4, 5)},
    "mid scales 1-3": {"prune_scales": (1, 2, 3)},
    "scales 2, 3": {"prune_scales": (2, 3)},
    "scale 2 only": {"prune_scales": (2,)},
    "every scale, rollouts x0.5": {"rollout_tau_scale": 0.5},
    "every scale, rollouts x0.25": {"rollout_tau_scale": 0.25},
    "mid scales 1-3, rollouts x0.5": {"prune_scales": (1, 2, 3), "rollout_tau_scale": 0.5},
    "scales 1, 3, rollouts x0.5": {"prune_scales": (1, 3), "rollout_tau_scale": 0.5},
    "scales 3, 5, rollouts x0.5": {"prune_scales": (3, 5), "rollout_tau_scale": 0.5},
    "scales 0-3, rollouts x0.5": {"prune_scales": (0, 1, 2, 3), "rollout_tau_scale": 0.5},
}


def accuracy(df: pd.DataFrame) -> tuple[float, float]:
    """GenEval-style accuracy (mean over categories) and its standard error over captions."""
    per_category = df.groupby("category")["correct"].agg(["mean", "var", "count"])
    acc = float(per_category["mean"].mean())
    se = float(np.sqrt((per_category["var"] / per_category["count"]).sum()) / len(per_category))
    return acc, se


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--captions", type=int, default=96, help="training captions (split evenly over categories)")
    parser.add_argument("--budgets", type=int, nargs="+", default=[84, 168], help="NFE budgets per search")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), help="beam variants (names above)")
    parser.add_argument("--verifier", default="shapes-clip", help="shapes verifier the searches use")
    parser.add_argument("--workers", type=int, default=1, help="processes, each with its own engine and verifier")
    parser.add_argument(
        "--random-budgets", type=int, nargs="+", help="random search's budgets, when not --budgets (e.g. twice beam's)"
    )
    parser.add_argument("--skip-random", action="store_true", help="compare beam variants only (no random rows)")
    parser.add_argument("--json", action="store_true", help="print the table as JSON")
    args = parser.parse_args()
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    if args.captions < len(world.CATEGORIES):
        parser.error(f"--captions must be >= {len(world.CATEGORIES)} (one per category)")
    captions = training_captions(args.captions, TUNING_SEED)
    prompts = [(world.parse_prompt(c).category, c) for c in captions]
    random_budgets = None if args.skip_random else (args.random_budgets or args.budgets)
    t0 = time.perf_counter()

    def measure(name: str, method: str, options: dict, budgets: list[int]) -> list[dict]:
        df = run_shapes_curve(
            prompts, evaluate.DEFAULT_SAMPLING, (method,), budgets, seed=TUNING_SEED,
            workers=args.workers, search_options={method: options}, verifier=args.verifier,
        )  # fmt: skip
        rows = []
        for nfe, part in df.groupby("budget_nfe"):
            acc, se = accuracy(part)
            rows.append({"variant": name, "budget_nfe": int(nfe), "accuracy": acc, "se": se,
                         "verifier_score": float(part["verifier_score"].mean())})  # fmt: skip
            print(f"{name:<22} {int(nfe):>4} NFEs  accuracy {acc:.3f} +- {se:.3f}", flush=True)
        return rows

    rows = [] if random_budgets is None else measure("random", "random", {}, random_budgets)
    for name in args.variants:
        rows += measure(name, "beam", VARIANTS[name], args.budgets)
    result = {
        "benchmark": "tune_shapes_search",
        "hardware": hardware(),
        "captions": args.captions,
        "seed": TUNING_SEED,
        "verifier": args.verifier,
        "budgets": args.budgets,
        "random_budgets": random_budgets,
        "variants": {name: VARIANTS[name] for name in args.variants},
        "wall_s": time.perf_counter() - t0,
        "rows": rows,
    }
    default = args.verifier == parser.get_default("verifier")
    write_result("tune_shapes_search" if default else f"tune_shapes_search_{args.verifier}", result)
    if args.json:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
