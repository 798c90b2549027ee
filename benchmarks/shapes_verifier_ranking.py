"""How well a tiny-CLIP verifier ranks the shapes generator's own samples, as search would use it.

Search can only be as good as its verifier's ranking of candidates. This draws N default-sampling
images for each of a set of held-out prompts, has the evaluator judge every one, and scores them by
each tiny-CLIP verifier (the shipped ones, or other weights files): best-of-k accuracy (the
evaluator's verdict on the image the verifier ranks first among the first k), the within-prompt AUC
(how often a correct image outscores a wrong one of the same prompt), and the oracle (some image of
the prompt is correct). The prompts are a different draw (prompt seed 7) and the request seeds
(50000 + i) differ from `shapes curve`'s, so choosing weights here does not tune them on the curve's prompts.

Usage: python -m benchmarks.shapes_verifier_ranking [--n-per-category 20] [--samples 16]
           [--verifiers shapes-clip shapes-clip-hard shapes-clip-pair] [--checkpoint PATH ...] [--json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from benchmarks.common import hardware, write_result
from cluster.verifiers import SHAPES_SEARCH_VERIFIERS, register_shapes_verifiers
from generators.engine import InfinityEngine
from generators.shapes import evaluate, evaluator, model, world

PROMPT_SEED, REQUEST_SEED = 7, 50_000


@torch.no_grad()
def sample_pool(
    engine: InfinityEngine, prompts: list[tuple[str, str]], samples: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """`samples` images per prompt (paths 0..n-1, request seed REQUEST_SEED + prompt index) and their verdicts."""
    rows, images = [], []
    for i, (category, prompt) in enumerate(tqdm(prompts, desc="sampling")):
        batch = engine.start([prompt] * samples, [REQUEST_SEED + i] * samples, evaluate.DEFAULT_SAMPLING,
                             paths=[(j,) for j in range(samples)])  # fmt: skip
        batch, _ = engine.advance(batch)
        for j, image in enumerate(engine.decode(batch)):
            rows.append({"prompt_id": i, "sample": j, "category": category, "prompt": prompt,
                         "correct": evaluator.judge(image, prompt)})  # fmt: skip
            images.append(image)
    return pd.DataFrame(rows), np.stack(images)


def ranking_report(pool: pd.DataFrame, scores: np.ndarray, ks: tuple[int, ...]) -> dict:
    """Best-of-k accuracy per k (overall and per category at the largest k), within-prompt AUC, oracle."""
    df = pool.assign(score=scores)
    report: dict = {}
    for k in ks:
        first_k = df[df["sample"] < k]
        best = first_k.loc[first_k.groupby("prompt_id")["score"].idxmax()]
        report[f"best_of_{k}"] = round(float(best["correct"].mean()), 3)
    report["best_of_max_per_category"] = best.groupby("category")["correct"].mean().round(3).to_dict()
    aucs = []
    for _, g in df.groupby("prompt_id"):
        pos, neg = g.loc[g["correct"], "score"].to_numpy(), g.loc[~g["correct"], "score"].to_numpy()
        if len(pos) and len(neg):
            aucs.append(float((pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean()))
    report["auc"] = round(float(np.mean(aucs)), 3)
    report["prompts_with_both"] = len(aucs)
    report["oracle"] = round(float(df.groupby("prompt_id")["correct"].any().mean()), 3)
    report["mean_accuracy"] = round(float(df["correct"].mean()), 3)
    return report


def main() -> None:
    from verifiers.registry import load_verifier

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-per-category", type=int, default=20, help="held-out prompts per category")
    parser.add_argument("--samples", type=int, default=16, help="images per prompt")
    parser.add_argument("--verifiers", nargs="*", default=list(SHAPES_SEARCH_VERIFIERS), help="shipped verifiers")
    parser.add_argument("--checkpoint", type=Path, nargs="*", default=[], help="more shapes-clip weights files")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    if args.n_per_category < 1 or args.samples < 2:
        parser.error("--n-per-category must be >= 1 and --samples >= 2")
    for path in args.checkpoint:
        if not path.is_file():
            parser.error(f"--checkpoint {path}: no such file")
    if unknown := set(args.verifiers) - set(SHAPES_SEARCH_VERIFIERS):
        parser.error(f"--verifiers: unknown {sorted(unknown)}; choose from {list(SHAPES_SEARCH_VERIFIERS)}")
    register_shapes_verifiers()
    pool, images = sample_pool(model.load_engine(), world.eval_prompts(args.n_per_category, PROMPT_SEED), args.samples)
    ks = tuple(k for k in (1, 4, args.samples) if k <= args.samples)
    verifiers = {name: load_verifier(name) for name in args.verifiers}
    verifiers |= {str(path): load_verifier("shapes-clip", checkpoint=path) for path in args.checkpoint}
    results = {
        name: ranking_report(pool, verifier.score(list(pool["prompt"]), images), ks)
        for name, verifier in verifiers.items()
    }
    record = {
        "hardware": hardware(),
        "sampling": repr(evaluate.DEFAULT_SAMPLING),
        "n_prompts": int(pool["prompt_id"].nunique()),
        "samples": args.samples,
        "verifiers": results,
    }
    write_result("shapes_verifier_ranking", record)
    print(json.dumps(record if args.json else results, indent=2))


if __name__ == "__main__":
    main()
