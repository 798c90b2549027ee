"""The Parquet records of searches: one row per search and one per scored candidate.

`search_record` and `candidate_records` turn a `SearchResult` into rows with the columns below, so
every study part has the same schema (DESIGN.md, "Records"). Key columns (row id, prompt id,
method, budget, seed, verifier, diversity) repeat on candidate rows, so either table filters alone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from search.context import flat_trace, path_str
from search.run import SearchResult

KEY_FIELDS = [
    pa.field("row_id", pa.string(), nullable=False),  # derived from every axis below: see cluster.study
    pa.field("prompt_id", pa.int64(), nullable=False),  # index in the study's prompt suite
    pa.field("method", pa.string(), nullable=False),
    pa.field("budget_nfe", pa.int64()),  # the search's NFE budget (null: verifier calls only)
    pa.field("seed", pa.int64(), nullable=False),
    pa.field("verifier", pa.string(), nullable=False),
    pa.field("diversity", pa.bool_(), nullable=False),  # DiverseVAR on
]
TOTALS = ("nfe", "tokens", "rebuild_nfe", "rebuild_tokens", "verifier_calls")

SEARCH_SCHEMA = pa.schema(
    [
        *KEY_FIELDS,
        pa.field("category", pa.string()),  # the shapes grammar's category; null outside it
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),  # the verifier's score of the chosen image
        pa.field("path", pa.string(), nullable=False),  # the chosen candidate's path, "0.3.1"
        *[pa.field(name, pa.int64(), nullable=False) for name in TOTALS],
        pa.field("wall_s", pa.float64(), nullable=False),
        pa.field("image", pa.string(), nullable=False),  # PNG of the chosen image, relative to the study folder
        pa.field("correct", pa.bool_()),  # the shapes evaluator's judgement; null when not judged
        pa.field("params", pa.string(), nullable=False),  # JSON: what the budget bought (search.run.plan_search)
    ]
)

CANDIDATE_SCHEMA = pa.schema(
    [
        *KEY_FIELDS,
        pa.field("kind", pa.string(), nullable=False),  # sample | rollout | preview | final
        pa.field("branch_scale", pa.int64(), nullable=False),
        pa.field("scales_done", pa.int64(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
        pa.field("complete", pa.bool_(), nullable=False),  # a full image (not a preview)
        *[pa.field(f"{name}_so_far", pa.int64(), nullable=False) for name in TOTALS],
        pa.field("selected", pa.bool_(), nullable=False),  # the search's final choice
    ]
)


def search_record(keys: dict[str, Any], result: SearchResult, image: str, correct: bool | None) -> dict[str, Any]:
    """One search row; `keys` holds the key columns plus category and prompt."""
    return {
        **keys,
        "score": result.score,
        "path": path_str(result.path),
        **{name: result.totals[name] for name in TOTALS},
        "wall_s": result.wall_s,
        "image": image,
        "correct": correct,
        "params": json.dumps(result.params, sort_keys=True),
    }


def candidate_records(keys: dict[str, Any], result: SearchResult) -> list[dict[str, Any]]:
    """One row per scored candidate of the trace, the first complete one on the chosen path selected."""
    key_names = {f.name for f in KEY_FIELDS}
    rows = flat_trace([r for r in result.trace if r["event"] == "score"], **{k: keys[k] for k in key_names})
    chosen, found = path_str(result.path), False
    for row in rows:
        row["selected"] = not found and row["complete"] and row["path"] == chosen and row["score"] == result.score
        found = found or row["selected"]
    if not found:
        raise ValueError(f"{keys['row_id']}: the chosen candidate {chosen} is not among the scored complete images")
    return rows


def judge(world: str, image_HW3: np.ndarray, prompt: str) -> bool | None:
    """The shapes evaluator's verdict on an image of the shapes world; None outside its grammar or world."""
    if world != "shapes" or category(prompt) is None:
        return None
    from generators.shapes import evaluator

    return bool(evaluator.judge(image_HW3, prompt))


def category(prompt: str) -> str | None:
    """The prompt's category in the shapes grammar, or None if the grammar cannot parse it."""
    from generators.shapes import world

    try:
        return world.parse_prompt(prompt).category
    except ValueError:
        return None


def save_png(image_HW3: np.ndarray, path: Path) -> None:
    """Write a PNG whole or not at all (temp file, then rename), so a kill never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(image_HW3).save(tmp, format="PNG")
    os.replace(tmp, path)
