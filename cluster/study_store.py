"""A study's folder on disk: its config, the chosen images and the Parquet parts, safe to kill at any time.

    DIR/study.yaml                    the resolved config (a resumed study must match it)
    DIR/images/<row id>.png           the chosen image of each search
    DIR/parts/part-00000/             one committed batch of searches:
        searches.parquet              one row per search (cluster.records.SEARCH_SCHEMA)
        candidates.parquet            one row per scored candidate (CANDIDATE_SCHEMA)

A part is written into a hidden temp folder and renamed into place, so it appears whole or not at
all: a SIGKILL of the driver loses only the searches not yet in a part. Only committed parts count,
a row id already committed is never written again, and one driver at a time holds DIR/.lock.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from cluster.config import ConfigError, RunConfig, dump_config
from cluster.records import CANDIDATE_SCHEMA, SEARCH_SCHEMA

CONFIG_FILE = "study.yaml"
PARTS = "parts"
IMAGES = "images"


class NotAStudyError(ValueError):
    """A folder that holds no study (or none with results yet)."""


class StudyStore:
    """Appends parts to a study folder; `open_store` creates one (or reopens it to resume)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        done = read_table(root, "searches", columns=["row_id"])["row_id"] if _parts(root) else []
        self.done_ids: set[str] = set(done)
        self.next_part = 1 + max((int(p.name.removeprefix("part-")) for p in _parts(root)), default=-1)

    def done_prompts(self) -> dict[str, str]:
        """row id -> prompt of every committed search (to check that a resumed suite is the same)."""
        if not self.done_ids:
            return {}
        table = read_table(self.root, "searches", columns=["row_id", "prompt"])
        return dict(zip(table["row_id"], table["prompt"], strict=True))

    def image_path(self, row_id: str) -> tuple[Path, str]:
        """(where to write the PNG, the reference stored in the row: relative to the study folder)."""
        name = f"{IMAGES}/{row_id}.png"
        return self.root / name, name

    def write_part(self, searches: list[dict[str, Any]], candidates: list[dict[str, Any]]) -> None:
        """Commit searches (and their candidates) as one part, atomically."""
        ids = [r["row_id"] for r in searches]
        repeated = sorted(set(ids) & self.done_ids) + sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"row ids already written: {repeated[:5]}; a study never writes a row twice")
        name = f"part-{self.next_part:05d}"
        tmp = self.root / PARTS / f".tmp-{name}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(searches, schema=SEARCH_SCHEMA), tmp / "searches.parquet")
        pq.write_table(pa.Table.from_pylist(candidates, schema=CANDIDATE_SCHEMA), tmp / "candidates.parquet")
        os.rename(tmp, self.root / PARTS / name)  # the commit point
        self.done_ids.update(ids)
        self.next_part += 1


@contextmanager
def open_store(root: Path, config: RunConfig) -> Iterator[StudyStore]:
    """Create or reopen the study folder `root` for `config`, holding its lock until the block ends."""
    (root / PARTS).mkdir(parents=True, exist_ok=True)
    (root / IMAGES).mkdir(exist_ok=True)
    with open(root / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by the OS even on SIGKILL
        except BlockingIOError:
            raise ValueError(f"another study driver is writing {root}; wait for it or use another --out") from None
        _check_or_save_config(root, config)
        for stale in (root / PARTS).glob(".tmp-*"):  # parts a killed driver never committed
            shutil.rmtree(stale)
        yield StudyStore(root)


def read_table(root: Path, table: str, columns: list[str] | None = None) -> pd.DataFrame:
    """All committed rows of "searches" or "candidates"; an error if `root` is not a study with results."""
    if not (root / CONFIG_FILE).is_file():
        raise NotAStudyError(f"{root} is not a study folder (no {CONFIG_FILE}); run `varsearch study SPEC --out DIR`")
    parts = _parts(root)
    if not parts:
        raise NotAStudyError(f"{root} is a study with no finished searches yet; run or resume `varsearch study`")
    schema = SEARCH_SCHEMA if table == "searches" else CANDIDATE_SCHEMA
    frames = [pq.read_table(p / f"{table}.parquet", columns=columns, schema=schema).to_pandas() for p in parts]
    df = pd.concat(frames, ignore_index=True)
    if table == "searches" and df["row_id"].duplicated().any():
        raise ValueError(f"{root}: row ids {sorted(df['row_id'][df['row_id'].duplicated()])[:5]} appear twice")
    return df


def _parts(root: Path) -> list[Path]:
    return sorted(p for p in (root / PARTS).glob("part-*") if p.is_dir())


def _check_or_save_config(root: Path, config: RunConfig) -> None:
    """The first driver saves the resolved config; a later one must bring the same."""
    path = root / CONFIG_FILE
    tmp = root / f".{CONFIG_FILE}.tmp"
    dump_config(config, tmp)
    if not path.exists():
        os.replace(tmp, path)
        return
    saved, new = yaml.safe_load(path.read_text()), yaml.safe_load(tmp.read_text())
    tmp.unlink()
    differ = differences(saved, new)
    if differ:
        raise ConfigError(
            f"{root} holds a study with a different config ({', '.join(differ)} differ from {path}); "
            "resume with the same recipe and flags, or pass another --out"
        )


def differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys where two parsed configs differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [d for k in keys for d in differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [prefix.rstrip(".")] if a != b else []
