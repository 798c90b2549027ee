"""DiverseVAR's bar in the shapes world, on HELD-OUT prompts (`varsearch shapes diversity`).

Plain sampling and sampling with DiverseVAR at its defaults see the same prompts, request seeds
and candidate paths, so they differ only by the hooks. Reported: each one's diversity and
accuracy (generators/shapes/diversity_eval.py), the decode-time overhead of the hooks measured in
the same run, and the bar. Then search: random and beam search at one NFE budget, proposing plain
or DiverseVAR candidates, scored by the tiny-CLIP verifier and judged by the evaluator, to see
whether more diverse proposals make search better per NFE.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from torch import nn
from tqdm import tqdm

from generators.diversevar import DiverseVARConfig
from generators.engine import InfinityEngine
from generators.sampling import SamplingParams
from generators.shapes import diversity_eval, evaluator, grid, world
from search.budget import Budget
from search.context import Verifier
from search.run import SearchConfig, run_search

VENDI_RATIO_MIN, ACCURACY_TOLERANCE, OVERHEAD_RATIO_MAX = 1.2, 0.02, 1.10  # the bar
OVERHEAD_PROMPTS = 4  # prompts x samples per prompt = the batch whose decode is timed


def compare(
    engine: InfinityEngine,
    clip: nn.Module,
    prompts: Sequence[str],
    n_samples: int,
    plain: SamplingParams,
    hooked: SamplingParams,
    seed: int = 0,
    repeats: int = 7,
) -> tuple[dict, np.ndarray, np.ndarray]:
    """Metrics of both settings, the overhead and the bar; plus both sets of images [P, N, H, W, 3]."""
    real_PMD = diversity_eval.real_embeddings(clip, prompts, n_samples, seed)
    plain_images = diversity_eval.sample_sets(engine, prompts, n_samples, plain, seed)
    hooked_images = diversity_eval.sample_sets(engine, prompts, n_samples, hooked, seed)
    report = {
        "baseline": diversity_eval.score_sets(clip, prompts, plain_images, real_PMD),
        "diversevar": diversity_eval.score_sets(clip, prompts, hooked_images, real_PMD),
    }
    timed = [p for p in prompts[:OVERHEAD_PROMPTS] for _ in range(n_samples)]
    report |= diversity_eval.overhead_ratio(engine, timed, plain, hooked, repeats)
    report["bar"] = check_bar(report)
    return report, plain_images, hooked_images


def check_bar(report: dict) -> dict:
    base, dv = report["baseline"], report["diversevar"]
    checks = {
        "vendi_ratio": dv["vendi"] / base["vendi"],
        f"vendi_ge_{VENDI_RATIO_MIN}x": dv["vendi"] >= VENDI_RATIO_MIN * base["vendi"],
        "recall_higher": dv["recall"] > base["recall"],
        f"accuracy_within_{ACCURACY_TOLERANCE}": dv["accuracy"] >= base["accuracy"] - ACCURACY_TOLERANCE,
        f"overhead_le_{OVERHEAD_RATIO_MAX}": report["overhead_ratio"] <= OVERHEAD_RATIO_MAX,
    }
    checks["met"] = all(v for k, v in checks.items() if k != "vendi_ratio")
    return checks


def search_accuracy(
    engine: InfinityEngine,
    verifier: Verifier,
    prompts: Sequence[str],
    sampling: SamplingParams,
    methods: Sequence[str],
    budget_nfe: int,
    seed: int = 0,
) -> dict[str, float]:
    """{method: evaluator accuracy of the selected images}, GenEval-style; prompt i uses seed + i."""
    out = {}
    for method in methods:
        config = SearchConfig(method=method, budget=Budget(nfe=budget_nfe))
        correct: dict[str, list[bool]] = {}
        for i, prompt in enumerate(tqdm(prompts, desc=f"{method} search", leave=False)):
            image = run_search(engine, verifier, prompt, seed + i, config, sampling).image
            correct.setdefault(world.parse_prompt(prompt).category, []).append(evaluator.judge(image, prompt))
        out[method] = float(np.mean([np.mean(v) for v in correct.values()]))
    return out


def save_side_by_side(
    prompts: Sequence[str], plain_PNHW3: np.ndarray, hooked_PNHW3: np.ndarray, path: Path, n_cols: int = 8
) -> None:
    """One baseline row and one DiverseVAR row per prompt: same prompt, seed and paths in each column."""
    rows = np.stack([s[:n_cols] for pair in zip(plain_PNHW3, hooked_PNHW3, strict=True) for s in pair])
    labels = [f"{tag}: {p}" for p in prompts for tag in ("baseline", "DiverseVAR")]
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save_grid(rows, labels, path)


def run(
    engine: InfinityEngine,
    clip: nn.Module,
    verifier: Verifier,
    sampling: SamplingParams,
    n_per_category: int,
    n_samples: int,
    search_per_category: int,
    budget_nfe: int,
    out: Path,
    seed: int = 0,
    repeats: int = 7,
    methods: Sequence[str] = ("random", "beam"),
) -> dict:
    """The whole report at DiverseVAR's defaults; writes diversity.json and grid.png to `out`."""
    t0 = time.perf_counter()
    config = DiverseVARConfig.for_schedule(engine.schedule.num_scales)
    hooked = replace(sampling, diversevar=config)
    pairs = world.eval_prompts(n_per_category, seed)  # (category, prompt), categories in order
    prompts = [p for _, p in pairs]
    report, plain_images, hooked_images = compare(engine, clip, prompts, n_samples, sampling, hooked, seed, repeats)
    if search_per_category > 0:
        search_prompts = [p for _, p in world.eval_prompts(search_per_category, seed)]
        for key, s in (("search_plain", sampling), ("search_diversevar", hooked)):
            report[key] = search_accuracy(engine, verifier, search_prompts, s, methods, budget_nfe, seed)
        name = getattr(verifier, "name", type(verifier).__name__)
        report["search"] = {"budget_nfe": budget_nfe, "n_prompts": len(search_prompts), "verifier": name}
    report |= {
        "diversevar_config": asdict(config),
        "sampling": repr(sampling),
        "prompts": "held-out: world.eval_prompts",
        "seed": seed,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "diversity.json").write_text(json.dumps(report, indent=2) + "\n")
    first = [[c for c, _ in pairs].index(c) for c in world.CATEGORIES]  # one prompt per category
    save_side_by_side([prompts[i] for i in first], plain_images[first], hooked_images[first], out / "grid.png")
    return report
