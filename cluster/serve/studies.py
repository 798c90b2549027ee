"""Read-only views of the study folders under one root, for the explorer's study page.

    GET /v1/studies                       the study folders under ServeArgs.studies_dir
    GET /v1/studies/{name}                score-vs-NFE summary rows and the winners per prompt
    GET /v1/studies/{name}/images/{file}  one chosen image (a file of that study's images/ only)

A name is one folder or file name (no separator, no leading dot), and every path is resolved
and checked to lie inside its parent, so no request reads outside the studies listed, symlinks
included. Lives outside cluster/serve/app.py for the reason given in cluster/serve/http.py.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from cluster.report import GROUP, summarize
from cluster.study_store import CONFIG_FILE, IMAGES, NotAStudyError, read_table

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")  # one path component: never "..", never "/"
MAX_WINNER_PROMPTS = 48  # rows of the winners grid sent by default


class StudyNotFound(LookupError):
    """No such study (or image, or no results yet); the message says which, without server paths."""


def list_studies(root: Path) -> list[dict[str, Any]]:
    """Every study folder directly under `root` (most recently changed first) with its committed counts."""
    if not root.is_dir():
        return []
    found = []
    for folder in root.iterdir():
        if not (NAME.fullmatch(folder.name) and _inside(folder, root) and (folder / CONFIG_FILE).is_file()):
            continue
        try:
            keys = read_table(folder, "searches", columns=["row_id", "prompt_id"])
            searches, prompts = len(keys), int(keys["prompt_id"].nunique())
        except NotAStudyError:  # started, nothing committed yet
            searches = prompts = 0
        modified = max(p.stat().st_mtime for p in [folder, *folder.glob("parts/part-*")])
        found.append({"name": folder.name, "searches": searches, "prompts": prompts, "modified": modified})
    return sorted(found, key=lambda s: (-s["modified"], s["name"]))


def study_folder(root: Path, name: str) -> Path:
    """root/name if it is a study folder inside `root`; StudyNotFound otherwise."""
    folder = root / name
    if not (NAME.fullmatch(name) and _inside(folder, root) and (folder / CONFIG_FILE).is_file()):
        raise StudyNotFound(f"no study named {name!r}; GET /v1/studies lists them")
    return folder


def study_view(root: Path, name: str, max_prompts: int = MAX_WINNER_PROMPTS) -> dict[str, Any]:
    """The study's summary (one row per method x budget x verifier x DiverseVAR) and winners per prompt.

    Winners are the chosen images of the first seed, one cell per summary group, as in the report's
    grid (cluster/report.py); `max_prompts` caps the rows sent (the first prompts of the suite).
    """
    if max_prompts < 1:
        raise ValueError(f"max_prompts must be >= 1, got {max_prompts}")
    folder = study_folder(root, name)
    try:
        searches = read_table(folder, "searches")
    except NotAStudyError:
        raise StudyNotFound(f"study {name!r} has no finished searches yet; run or resume `varsearch study`") from None
    first = searches[searches["seed"] == searches["seed"].min()]
    columns = first[GROUP].drop_duplicates().sort_values(GROUP)
    prompts = first.drop_duplicates("prompt_id").sort_values("prompt_id")
    by_cell = {tuple(_plain(v) for v in r[["prompt_id", *GROUP]]): r for _, r in first.iterrows()}
    winners = []
    for p in prompts.head(max_prompts).itertuples():
        prompt_id = _plain(p.prompt_id)
        cells = [by_cell.get((prompt_id, *(_plain(v) for v in c))) for c in columns.itertuples(index=False)]
        winners.append(
            {
                "prompt_id": prompt_id,
                "prompt": p.prompt,
                "category": _plain(p.category),
                "cells": [None if r is None else _cell(name, r) for r in cells],
            }
        )
    return {
        "name": name,
        "searches": len(searches),
        "prompts": int(searches["prompt_id"].nunique()),
        "seeds": sorted(int(s) for s in searches["seed"].unique()),
        "summary": _records(summarize(searches)),
        "columns": _records(columns),
        "winners_seed": int(first["seed"].iloc[0]),
        "winners": winners,
    }


def image_file(root: Path, name: str, file: str) -> Path:
    """The PNG `file` of study `name`'s images/ folder; StudyNotFound for anything else."""
    images = study_folder(root, name) / IMAGES
    path = images / file
    if not (NAME.fullmatch(file) and file.endswith(".png") and _inside(path, images) and path.is_file()):
        raise StudyNotFound(f"study {name!r} has no image {file!r}")
    return path


def _cell(name: str, row: pd.Series) -> dict[str, Any]:
    """One winner: its score, the evaluator's verdict, its cost and where to fetch its image."""
    file = row["image"].removeprefix(f"{IMAGES}/")
    return {
        "row_id": row["row_id"],
        "score": float(row["score"]),
        "correct": _plain(row["correct"]),
        "nfe": int(row["nfe"]),
        "path": row["path"],
        "image_url": f"/v1/studies/{quote(name)}/images/{quote(file)}" if NAME.fullmatch(file) else None,
    }


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row.items()} for row in table.to_dict("records")]


def _plain(value: Any) -> Any:
    """A JSON-ready Python value: numpy scalars unboxed, NaN and missing values as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def _inside(path: Path, parent: Path) -> bool:
    return path.resolve().is_relative_to(parent.resolve())
