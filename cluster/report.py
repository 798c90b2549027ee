"""What a study found: a Markdown table per method and budget, the score-vs-NFE plot, a grid of winners.

`write_report(DIR)` reads the study's committed Parquet parts (any subset of a running or killed
study works) and writes DIR/report/{report.md, score_vs_nfe.png, winners.png}. Accuracy is the
shapes evaluator's verdict averaged over the searches it judged (prompts of the shapes grammar,
shapes world only); scores are the search verifier's, so compare them within one verifier only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cluster.study_store import read_table

GROUP = ["method", "budget_nfe", "verifier", "diversity"]  # one table row and one plotted point each
GRID_TILE = 128  # px; larger images are shrunk for the winners grid


def summarize(searches: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, budget, verifier, diversity): searches, mean NFEs, mean score, accuracy, wall time."""
    grouped = searches.groupby(GROUP, dropna=False, sort=True)
    table = grouped.agg(
        searches=("row_id", "size"),
        nfe=("nfe", "mean"),
        score=("score", "mean"),
        judged=("correct", "count"),
        accuracy=("correct", lambda c: c.dropna().astype(float).mean() if c.notna().any() else np.nan),
        wall_s=("wall_s", "mean"),
    )
    return table.reset_index()


def markdown(table: pd.DataFrame) -> str:
    """The summary as a Markdown table; '-' where nothing was judged."""
    head = ["method", "budget (NFE)", "verifier", "DiverseVAR", "searches", "NFEs", "score", "accuracy", "wall s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table.itertuples():
        accuracy = "-" if np.isnan(r.accuracy) else f"{r.accuracy:.3f} ({r.judged})"
        budget = "-" if pd.isna(r.budget_nfe) else str(int(r.budget_nfe))
        cells = [r.method, budget, r.verifier, "on" if r.diversity else "off", str(r.searches)]
        cells += [f"{r.nfe:.1f}", f"{r.score:.4f}", accuracy, f"{r.wall_s:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_score_vs_nfe(table: pd.DataFrame, path: Path) -> None:
    """Mean verifier score (one panel per verifier) and accuracy against mean NFEs, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    verifiers = sorted(table["verifier"].unique())
    judged = table["judged"].sum() > 0
    panels = [(v, "score") for v in verifiers] + ([(None, "accuracy")] if judged else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (verifier, metric) in zip(axes[0], panels, strict=True):
        rows = table if verifier is None else table[table["verifier"] == verifier]
        for (method, verifier_name, diversity), line in rows.groupby(["method", "verifier", "diversity"]):
            label = method + (" +DiverseVAR" if diversity else "") + (f" ({verifier_name})" if verifier is None else "")
            line = line.sort_values("nfe")
            ax.plot(line["nfe"], line[metric], marker="o", label=label)
        ax.set_xscale("log", base=2)  # budgets usually double
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("NFEs per search (mean)")
        ax.set_ylabel(f"mean {verifier} score" if verifier else "accuracy (shapes evaluator)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def winners_grid(root: Path, searches: pd.DataFrame, path: Path, max_prompts: int = 24) -> list[str]:
    """A PNG: one row per prompt (first seed), one column per (method, budget, verifier, DiverseVAR).

    Returns the column labels, left to right (the grid itself labels only the rows).
    """
    from generators.shapes.grid import save_grid

    first = searches[searches["seed"] == searches["seed"].min()]
    columns = first[GROUP].drop_duplicates().sort_values(GROUP).itertuples(index=False)
    columns = [tuple(c) for c in columns]
    prompts = first.drop_duplicates("prompt_id").sort_values("prompt_id").head(max_prompts)
    by_key = {(r.prompt_id, r.method, r.budget_nfe, r.verifier, r.diversity): r.image for r in first.itertuples()}
    tiles, size = [], None
    for prompt_id in prompts["prompt_id"]:
        row = []
        for column in columns:
            name = by_key.get((prompt_id, *column))
            image = None if name is None else _tile(root / name)
            size = size or (None if image is None else image.shape)
            row.append(image)
        tiles.append(row)
    blank = np.full(size, 255, dtype=np.uint8)  # a search not (yet) done
    images = np.stack([np.stack([blank if t is None else t for t in row]) for row in tiles])
    scale = 2 if size[0] <= 64 else 1
    save_grid(images, [p[:40] for p in prompts["prompt"]], path, scale=scale)
    return [_label(c) for c in columns]


def write_report(root: Path) -> str:
    """Write DIR/report/ (report.md, score_vs_nfe.png, winners.png) and return the Markdown."""
    searches = read_table(root, "searches")
    table = summarize(searches)
    out = root / "report"
    out.mkdir(exist_ok=True)
    plot_score_vs_nfe(table, out / "score_vs_nfe.png")
    columns = winners_grid(root, searches, out / "winners.png")
    text = "\n\n".join(
        [
            f"# Study {root}\n\n{len(searches)} searches, {searches['prompt_id'].nunique()} prompts, "
            f"seeds {sorted(searches['seed'].unique().tolist())}.",
            markdown(table),
            "NFEs and score: means over searches. Accuracy: the shapes evaluator's mean verdict (searches judged).",
            "![score vs NFEs](score_vs_nfe.png)",
            "Winners (first seed), columns left to right: " + "; ".join(columns) + "\n\n![winners](winners.png)",
        ]
    )
    (out / "report.md").write_text(text + "\n")
    return text


def _label(column: tuple) -> str:
    method, budget, verifier, diversity = column
    return f"{method}@{'-' if pd.isna(budget) else int(budget)} {verifier}" + (" +DiverseVAR" if diversity else "")


def _tile(path: Path) -> np.ndarray:
    image = Image.open(path).convert("RGB")
    if max(image.size) > GRID_TILE:
        image.thumbnail((GRID_TILE, GRID_TILE))
    return np.asarray(image)
