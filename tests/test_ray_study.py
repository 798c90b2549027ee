"""Studies on the Ray path under faults: the driver SIGKILLed mid-study, and the coordinator
killed mid-study. What survives a coordinator crash: every committed Parquet part and the
replicas; what is lost: the searches in flight, which the resumed study runs again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_study import PROMPTS, SMALL, STUDY_ENV, sigkill_after_first_part, small_config, sorted_table

from cluster.build import local_backend, ray_backend
from cluster.config import load_config
from cluster.local_ray import use_local_ray_env
from cluster.study import run_study
from cluster.study_store import read_table

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def prompt_file(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n")
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The small study run in-process, never interrupted."""
    root = tmp_path_factory.mktemp("reference")
    prompt_file = root / "prompts.txt"
    prompt_file.write_text("\n".join(PROMPTS) + "\n")
    run_study(small_config(prompt_file), root / "clean", local_backend(load_config(None)), progress=False)
    return sorted_table(root / "clean", "searches")


def _same_rows(study: Path, reference: pd.DataFrame) -> None:
    rows = sorted_table(study, "searches")
    assert rows["row_id"].is_unique and len(rows) == len(reference)
    columns = ["row_id", "score", "path", "nfe", "verifier_calls"]
    # scores to float32 rounding: on Ray the verifier replica batches images of concurrent searches
    pd.testing.assert_frame_equal(rows[columns], reference[columns], check_exact=False, atol=1e-5)


def test_sigkilled_driver_of_a_ray_study_resumes_without_lost_or_repeated_rows(prompt_file, tmp_path, reference):
    study = tmp_path / "study"
    command = [sys.executable, "-m", "cluster.cli", "study", "shapes-beam", "--out", str(study), "--part-size", "2"]
    command += ["--prompts", str(prompt_file), "--backend", "ray"] + [a for s in SMALL for a in ("--set", s)]
    written = sigkill_after_first_part(command, study, timeout_s=240)
    assert 0 < written < len(reference)
    resumed = subprocess.run(command, cwd=REPO, env=STUDY_ENV, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{written} already done" in resumed.stdout
    _same_rows(study, reference)


def test_a_coordinator_crash_loses_only_searches_in_flight(prompt_file, tmp_path, reference):
    import ray

    use_local_ray_env()
    config = small_config(prompt_file)
    study = tmp_path / "study"
    try:
        backend = ray_backend(config)
        kill_after = 5

        class KillCoordinatorMidway:
            """Relays results and kills the coordinator after `kill_after` of them."""

            def run(self, requests, on_event=None):
                for n, item in enumerate(backend.run(requests, on_event)):
                    yield item
                    if n + 1 == kill_after:
                        ray.kill(backend.coordinator, no_restart=True)

        with pytest.raises(ray.exceptions.RayActorError):
            run_study(config, study, KillCoordinatorMidway(), part_size=1, progress=False)
        assert len(read_table(study, "searches")) >= kill_after  # committed parts survive
        summary = run_study(config, study, ray_backend(config), part_size=4, progress=False)
        assert summary["already_done"] >= kill_after and summary["ran"] == len(reference) - summary["already_done"]
    finally:
        ray.shutdown()
    _same_rows(study, reference)
