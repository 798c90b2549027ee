"""Search quality against compute in the shapes world (the paper's Figure 1, on a CPU).

Every method runs on the same held-out prompts over a ladder of NFE budgets, optimising the tiny
CLIP verifier; the held-out evaluator judges the selected image. Results: one Parquet row per
(method, budget, prompt), a PNG with accuracy and verifier score against NFEs, and a summary.
On a GPU one process leaves the device mostly idle (a tiny model, latency-bound), so
`run_shapes_curve` can spread the prompts over worker processes with identical rows.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from cluster.study_store import differences
from generators.engine import InfinityEngine
from generators.sampling import SamplingParams
from search.budget import Budget
from search.context import Verifier
from search.run import SearchConfig, run_search
from verifiers.checkpoint import sha256_file

# Budgets as multiples of one rollout slot (K(K+1)/2 NFEs = 21 for the 6-scale shapes schedule).
SLOTS = (2, 4, 8, 16)


def budget_ladder(num_scales: int, slots: tuple[int, ...] = SLOTS) -> list[int]:
    per_slot = num_scales * (num_scales + 1) // 2
    return [s * per_slot for s in slots]


def run_curve(
    engine: InfinityEngine,
    verifier: Verifier,
    judge,
    prompts: list[tuple[str, str]],
    sampling: SamplingParams,
    methods: tuple[str, ...] = ("base", "random", "gto", "beam", "partial_beam"),
    budgets: list[int] | None = None,
    seed: int = 0,
    prompt_ids: Sequence[int] | None = None,
    progress: bool = True,
    search_options: dict[str, dict] | None = None,
) -> pd.DataFrame:
    """One row per (method, budget, prompt). Prompt i uses request seed `seed + i` for every method;
    `prompt_ids` runs only those prompts (default: all); `search_options` maps a method to more
    SearchConfig fields (e.g. {"beam": {"prune_scales": (1, 2, 3)}})."""
    K = engine.schedule.num_scales
    budgets = budgets or budget_ladder(K)
    ids = range(len(prompts)) if prompt_ids is None else prompt_ids
    jobs = [(m, b) for m in methods for b in ([K] if m == "base" else budgets)]
    rows = []
    for method, nfe in tqdm(jobs, desc="curve", disable=not progress):
        config = SearchConfig(method=method, budget=Budget(nfe=nfe), **(search_options or {}).get(method, {}))
        for i in ids:
            category, prompt = prompts[i]
            result = run_search(engine, verifier, prompt, seed + i, config, sampling)
            rows.append(
                {
                    "method": method,
                    "budget_nfe": nfe,
                    "nfe": result.totals["nfe"],
                    "tokens": result.totals["tokens"],
                    "verifier_calls": result.totals["verifier_calls"],
                    "prompt_id": i,
                    "category": category,
                    "prompt": prompt,
                    "seed": seed + i,
                    "verifier_score": result.score,
                    "correct": bool(judge(result.image, prompt)),
                    "wall_s": result.wall_s,
                }
            )
    return pd.DataFrame(rows)


def load_shapes_world(device: str = "cpu", verifier: str = "shapes-clip") -> tuple[InfinityEngine, Verifier]:
    """The shipped shapes-world generator and one of its tiny-CLIP verifiers on `device`."""
    from cluster.verifiers import register_shapes_verifiers
    from generators.shapes import model
    from verifiers.registry import load_verifier

    register_shapes_verifiers()
    return model.load_engine(device=device), load_verifier(verifier, device=device)


def run_shapes_curve(
    prompts: list[tuple[str, str]],
    sampling: SamplingParams,
    methods: tuple[str, ...],
    budgets: list[int],
    seed: int = 0,
    device: str = "cpu",
    workers: int = 1,
    search_options: dict[str, dict] | None = None,
    parts_dir: Path | None = None,
    verifier: str = "shapes-clip",
) -> pd.DataFrame:
    """`run_curve` on the shipped shapes world, judged by the held-out evaluator.

    With workers > 1, each worker process loads its own engine and verifier on `device` and takes
    one prompt at a time. Rows equal a single process's: a candidate's random numbers depend only
    on (seed, path, scale), never on which process or batch computes it. With `parts_dir`, each
    prompt's rows are saved there as they finish, and a rerun with the same settings computes
    only the prompts not saved yet (a killed run loses only the prompts in flight); the frame's
    attrs["resumed_prompts"] counts those taken from `parts_dir`, which this call's time omits.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    job = (prompts, sampling, methods, budgets, seed, search_options)
    saved = CurveParts(parts_dir, job, verifier) if parts_dir is not None else None
    done = saved.load() if saved is not None else {}
    todo = [i for i in range(len(prompts)) if i not in done]
    for i, rows in tqdm(_compute(job, todo, device, workers, verifier), "curve", len(prompts), initial=len(done)):
        done[i] = rows
        if saved is not None:
            saved.save(i, rows)
    order = {m: k for k, m in enumerate(methods)}
    df = pd.concat([done[i] for i in sorted(done)], ignore_index=True)
    df = df.sort_values(
        ["method", "budget_nfe", "prompt_id"], key=lambda c: c.map(order) if c.name == "method" else c, kind="stable"
    )  # run_curve's order: methods as given, then budgets, then prompts
    df = df.reset_index(drop=True)
    df.attrs["resumed_prompts"] = len(prompts) - len(todo)
    return df


def shipped_weights_sha256() -> dict[str, str]:
    """The shapes world's weight files by digest: new weights (a retrained verifier) make a new run."""
    from generators.shapes import model

    files = (model.VAE_FILE, model.INFINITY_FILE, model.TEXT_FILE, model.CLIP_FILE, model.CLIP_HARD_FILE)
    return {name: sha256_file(model.WEIGHTS_DIR / name) for name in files}


class CurveSettingsError(ValueError):
    """A parts folder made with other settings: resuming into it would mix two runs."""


class CurveParts:
    """One Parquet file per finished prompt, beside the settings that made them (a resume must match)."""

    SETTINGS = "settings.json"

    def __init__(self, root: Path, job: tuple, verifier: str) -> None:
        self.root = root
        prompts, sampling, methods, budgets, seed, search_options = job
        self.settings = json.loads(json.dumps({  # as read back from the file: tuples become lists
            "prompts": prompts, "sampling": repr(sampling), "methods": methods, "budgets": budgets, "seed": seed,
            "search_options": search_options or {}, "verifier": verifier, "weights": shipped_weights_sha256(),
        }))  # fmt: skip
        root.mkdir(parents=True, exist_ok=True)
        path = root / self.SETTINGS
        if not path.exists():
            path.write_text(json.dumps(self.settings, indent=1))
        elif differ := differences(json.loads(path.read_text()), self.settings):
            raise CurveSettingsError(
                f"{root} holds a curve run with other settings ({', '.join(differ)} differ); "
                "rerun with the same options to resume, or pass another --out"
            )

    def load(self) -> dict[int, pd.DataFrame]:
        return {int(p.stem.removeprefix("prompt-")): pd.read_parquet(p) for p in self.root.glob("prompt-*.parquet")}

    def save(self, i: int, rows: pd.DataFrame) -> None:
        tmp = self.root / f".tmp-prompt-{i:05d}.parquet"
        rows.to_parquet(tmp)
        os.replace(tmp, self.root / f"prompt-{i:05d}.parquet")  # whole or not at all


def _compute(
    job: tuple, todo: list[int], device: str, workers: int, verifier: str
) -> Iterator[tuple[int, pd.DataFrame]]:
    """(prompt index, its rows) for each prompt in `todo`, in the order they finish."""
    if not todo:
        return
    if workers == 1:
        world = load_shapes_world(device, verifier)
        for i in todo:
            yield i, _prompt_rows(world, job, i)
        return
    context = multiprocessing.get_context("spawn")  # CUDA cannot be used in forked children
    threads = max(1, (os.cpu_count() or 1) // workers)  # each worker its share of the cores, not all of them
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_load_worker, initargs=(device, verifier, threads, os.getpid())
    ) as pool:
        futures = {pool.submit(_run_prompt, (job, i)): i for i in todo}
        for future in as_completed(futures):
            yield futures[future], future.result()


_WORKER: tuple[InfinityEngine, Verifier] | None = None  # one engine and verifier per worker process


def _load_worker(device: str, verifier: str, threads: int, parent_pid: int) -> None:
    global _WORKER
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    torch.set_num_threads(threads)
    _WORKER = load_shapes_world(device, verifier)


def _exit_with_parent(parent_pid: int, poll_s: float = 2.0) -> None:
    """A killed `shapes curve` must not leave its workers computing for minutes: exit once orphaned."""
    while os.getppid() == parent_pid:
        time.sleep(poll_s)
    os._exit(1)


def _run_prompt(task: tuple[tuple, int]) -> pd.DataFrame:
    job, i = task
    return _prompt_rows(_WORKER, job, i)


def _prompt_rows(world: tuple[InfinityEngine, Verifier], job: tuple, i: int) -> pd.DataFrame:
    from generators.shapes import evaluator

    (prompts, sampling, methods, budgets, seed, search_options), (engine, verifier) = job, world
    return run_curve(
        engine, verifier, evaluator.judge, prompts, sampling, methods, budgets, seed, [i], False, search_options
    )


def summarize(df: pd.DataFrame) -> dict[str, list[dict]]:
    """Per method: [{nfe, accuracy, verifier_score}] with accuracy GenEval-style (mean over categories)."""
    out: dict[str, list[dict]] = {}
    for (method, budget), g in df.groupby(["method", "budget_nfe"], sort=True):
        per_category = g.groupby("category")["correct"].mean()
        out.setdefault(method, []).append(
            {
                "budget_nfe": int(budget),
                "nfe": float(g["nfe"].mean()),
                "accuracy": float(per_category.mean()),
                "verifier_score": float(g["verifier_score"].mean()),
                "n_prompts": len(g),
            }
        )
    return out


def paired_differences(df: pd.DataFrame, method: str = "beam", against: str = "random") -> list[dict]:
    """`method` minus `against` in accuracy at each budget both ran, paired by prompt, with its standard error.

    Both methods search the same prompts with the same request seeds, so the per-prompt difference
    (-1, 0 or 1) carries far less noise than two independent accuracies. Accuracy is the mean over
    categories, so the difference is too, and its variance is the sum of the categories' variances
    of the mean over the number of categories squared.
    """
    keys = ["budget_nfe", "prompt_id"]
    a = df[df["method"] == method].set_index(keys)[["category", "correct"]]
    b = df[df["method"] == against].set_index(keys)["correct"]
    joined = a.join(b.rename("other"), how="inner")
    joined["diff"] = joined["correct"].astype(float) - joined["other"].astype(float)
    out = []
    for budget, g in joined.groupby(level="budget_nfe", sort=True):
        per_category = g.groupby("category")["diff"].agg(["mean", "var", "count"])
        n_categories = len(per_category)
        variance = (per_category["var"].fillna(0.0) / per_category["count"]).sum() / n_categories**2
        out.append(
            {
                "budget_nfe": int(budget),
                "difference": float(per_category["mean"].mean()),
                "standard_error": float(np.sqrt(variance)),
                "n_prompts": len(g),
            }
        )
    return out


def plot(summary: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for method, points in summary.items():
        nfe = [p["nfe"] for p in points]
        style = {"marker": "o"} if len(points) > 1 else {"marker": "*", "markersize": 12, "linestyle": ""}
        axes[0].plot(nfe, [p["accuracy"] for p in points], label=method, **style)
        axes[1].plot(nfe, [p["verifier_score"] for p in points], label=method, **style)
    for ax, label in zip(axes, ("evaluator accuracy (held-out judge)", "tiny-CLIP verifier score"), strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("NFEs per prompt (log)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("Shapes world: search quality vs compute")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def check_bar(summary: dict[str, list[dict]]) -> dict[str, bool]:
    """The issue's bar: beam at <= half random's largest budget matches random there; at equal
    NFEs beam >= random >= base."""
    by = {m: {p["budget_nfe"]: p["accuracy"] for p in pts} for m, pts in summary.items()}
    top = max(by["random"])
    half = [b for b in by["beam"] if b <= top // 2]
    base = next(iter(by["base"].values()))
    shared = sorted(set(by["beam"]) & set(by["random"]))
    return {
        "beam_matches_random_at_half_nfe": bool(half) and max(by["beam"][b] for b in half) >= by["random"][top],
        "beam_ge_random_at_equal_nfe": all(by["beam"][b] >= by["random"][b] for b in shared),
        "random_ge_base": all(by["random"][b] >= base for b in shared),
        "mean_beam_minus_random": float(np.mean([by["beam"][b] - by["random"][b] for b in shared])),
    }
