"""Shared test helpers: where the reference data lives; every Ray instance on loopback."""

import os
from pathlib import Path

import pytest

from cluster.local_ray import use_local_ray_env

use_local_ray_env()  # also when pytest runs without the Makefile's environment

REPO_ROOT = Path(__file__).resolve().parent.parent
REFERENCE_DIR = Path(__file__).resolve().parent / "data" / "reference"


def shared_dir() -> Path:
    """The project's shared/ folder (fixtures, reference notes), beside the checkout by default."""
    return Path(os.environ.get("VARSEARCH_SHARED", REPO_ROOT.parent / "shared"))


def parity_fixture_dirs() -> list[Path]:
    """Every `infinity-*` fixture folder in shared/fixtures plus those named in VARSEARCH_PARITY_FIXTURES."""
    found = sorted(p for p in (shared_dir() / "fixtures").glob("infinity-*") if p.is_dir())
    extra = os.environ.get("VARSEARCH_PARITY_FIXTURES", "")
    found += [Path(p) for p in extra.split(os.pathsep) if p]
    return found


@pytest.fixture(autouse=True)
def _no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach a model hub."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
