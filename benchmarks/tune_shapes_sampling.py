"""Choose the shapes world's default sampling settings on TRAINING captions (never the held-out
evaluation suites): one sample per caption per setting, judged by the evaluator.

Two stages against the winner's curse of a large grid: every setting is scored on one set of
captions, then the best few are scored again on a fresh set and chosen by the pooled accuracy.
The default must stay stochastic, since search draws its candidates from it and greedy bits
(top_k=1) give every candidate of a prompt the same image: greedy settings are scored for
reference only and never chosen.

Usage: python -m benchmarks.tune_shapes_sampling [--grid full|focus] [--captions 600] [--confirm 5]
       [--device cuda] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import numpy as np

from benchmarks.common import hardware, write_result
from generators.engine import InfinityEngine
from generators.sampling import SamplingParams
from generators.shapes import evaluate, evaluator, model, world

TUNING_SEED = 10_000  # request seeds and caption draws apart from the evaluation's
CONFIRM_SEED = 20_000  # the second stage's fresh captions and request seeds

# Per-scale values follow the 6-scale schedule (1, 2, 3, 4, 6, 8): early scales place the objects,
# late scales paint their pixels (where colours bleed).
CFGS = (
    2.0,
    3.0,
    4.0,
    6.0,
    8.0,
    (1.0, 2.0, 3.0, 4.0, 4.0, 4.0),  # weak guidance while the layout is still open
    (2.0, 2.0, 4.0, 4.0, 6.0, 6.0),
    (8.0, 6.0, 4.0, 4.0, 4.0, 4.0),  # strong guidance where objects are placed
    (6.0, 6.0, 6.0, 4.0, 3.0, 2.0),
    (4.0, 4.0, 4.0, 4.0, 2.0, 2.0),
)
TAUS = (1.0, 0.7, 0.5, (1.0, 1.0, 1.0, 1.0, 0.5, 0.5), (1.0, 1.0, 1.0, 0.5, 0.3, 0.3))
TOP_PS = (0.97, 0.9, 0.8)
# Around the leaders of the full grid's first stage on an H100 (141 of its 150 stochastic settings
# in 420 s: docs/tune_shapes_sampling_full_grid_h100.log): weak guidance at the first scales and
# cool temperatures at the last ones; small enough to run on a 2-core CPU.
FOCUS = (
    (4.0, (1.0, 2.0, 3.0, 4.0, 4.0, 4.0), (2.0, 2.0, 4.0, 4.0, 6.0, 6.0), (1.0, 1.0, 2.0, 4.0, 4.0, 4.0)),
    (1.0, (1.0, 1.0, 1.0, 0.5, 0.3, 0.3), (1.0, 1.0, 1.0, 0.3, 0.2, 0.2)),
    (0.97, 0.9),
)
GRIDS = {"full": (CFGS, TAUS, TOP_PS), "focus": FOCUS}


def grid(name: str = "full") -> list[SamplingParams]:
    """Stochastic settings (the candidates for the default), then greedy ones (reference only)."""
    cfgs, taus, top_ps = GRIDS[name]
    stochastic = [SamplingParams(cfg=c, tau=t, top_k=0, top_p=p) for c, t, p in itertools.product(cfgs, taus, top_ps)]
    greedy = [SamplingParams(cfg=c, tau=1.0, top_k=1, top_p=0.97) for c in cfgs]
    return stochastic + greedy


def training_captions(n: int, seed: int) -> list[str]:
    """n // 6 training captions of every category (the held-out suites are never drawn)."""
    rng = np.random.default_rng(seed)
    per_category = n // len(world.CATEGORIES)
    return [world.sample_example(rng, c)[0] for c in world.CATEGORIES for _ in range(per_category)]


def score(engine: InfinityEngine, params: SamplingParams, captions: list[str], seed: int, batch_size: int) -> dict:
    images = evaluate.sample_images(engine, captions, params, seed=seed, batch_size=batch_size, progress=False)
    report = evaluator.evaluate(images, captions)
    return {"overall": report["overall"], "per_category": report["per_category"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", choices=sorted(GRIDS), default="full")
    parser.add_argument("--captions", type=int, default=600, help="training captions per stage (a multiple of 6)")
    parser.add_argument("--confirm", type=int, default=5, help="best settings scored again on fresh captions")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.captions < len(world.CATEGORIES) or args.confirm < 1 or args.batch_size < 1:
        parser.error("need --captions >= 6, --confirm >= 1 and --batch-size >= 1")
    try:
        evaluate.check_device(args.device)
    except ValueError as e:
        parser.error(str(e))
    engine = model.load_engine(device=args.device)
    captions = training_captions(args.captions, TUNING_SEED)
    fresh = training_captions(args.captions, CONFIRM_SEED)
    t0 = time.perf_counter()
    settings = grid(args.grid)
    results = []
    for params in settings:
        results.append({"sampling": repr(params), **score(engine, params, captions, TUNING_SEED, args.batch_size)})
        r = results[-1]
        print(f"{r['sampling']}: overall {r['overall']:.3f}, single {r['per_category']['single_object']:.2f}")
    candidates = sorted(
        (r for r, p in zip(results, settings, strict=True) if p.top_k != 1), key=lambda r: r["overall"], reverse=True
    )[: args.confirm]
    by_repr = {repr(p): p for p in settings}
    for r in candidates:
        r["confirm"] = score(engine, by_repr[r["sampling"]], fresh, CONFIRM_SEED, args.batch_size)
        r["pooled_overall"] = (r["overall"] + r["confirm"]["overall"]) / 2
    best = max(candidates, key=lambda r: r["pooled_overall"])
    out = {"benchmark": "tune_shapes_sampling", "hardware": hardware(), "device": args.device, "grid_name": args.grid,
           "n_captions": len(captions), "wall_s": round(time.perf_counter() - t0, 1), "best": best,
           "confirmed": candidates, "grid": results}  # fmt: skip
    path = write_result("tune_shapes_sampling", out)
    print(json.dumps(out, indent=2) if args.json else f"best {best['sampling']} -> {path}")


if __name__ == "__main__":
    main()
