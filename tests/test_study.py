"""Studies: expansion into row ids, resumable Parquet parts (SIGKILL of the driver), the report, the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from cluster import report, study_store
from cluster.build import local_backend
from cluster.cli import app
from cluster.config import ConfigError, RunConfig, load_config, parse_set
from cluster.study import expand, load_suite, run_study
from cluster.study_store import NotAStudyError, read_table
from generators.shapes import world
from search.request import LocalBackend, SearchRequest

REPO = Path(__file__).resolve().parent.parent
PROMPTS = ["a red circle", "two squares"]
# 2 prompts x (base, random@12, random@24) x 4 seeds = 24 fast searches (~0.1 s each on a CPU)
WIDE = {"COLUMNS": "400"}  # error boxes on one line, so messages can be matched
SMALL = ["study.methods=[base, random]", "study.budgets=[12, 24]", "seeds=[0, 1, 2, 3]"]


def small_config(prompt_file: Path, *extra: str) -> RunConfig:
    """The small study over `prompt_file`; `extra` --set items replace SMALL's."""
    return load_config("shapes-beam", {**parse_set(SMALL), "study.prompts": str(prompt_file), **parse_set(extra)})


@pytest.fixture
def prompt_file(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n\n")
    return path


@pytest.fixture(scope="module")
def backend() -> LocalBackend:
    """The shapes world in-process, loaded once for the module."""
    return local_backend(load_config(None))


class FailingBackend:
    """Passes results through from `inner` and fails after `fail_after` of them, like a crashed cluster."""

    def __init__(self, inner: LocalBackend, fail_after: int) -> None:
        self.inner, self.fail_after = inner, fail_after

    def run(self, requests: list[SearchRequest], on_event=None) -> Iterator:
        for n, item in enumerate(self.inner.run(requests)):
            if n == self.fail_after:
                raise RuntimeError("replica lost")
            yield item


def sorted_table(root: Path, table: str) -> pd.DataFrame:
    df = read_table(root, table)
    df = df.drop(columns=["wall_s"]) if table == "searches" else df
    return df.sort_values("row_id", kind="stable").reset_index(drop=True)  # stable: candidates keep trace order


def images(root: Path, searches: pd.DataFrame) -> dict[str, np.ndarray]:
    return {r.row_id: np.asarray(Image.open(root / r.image)) for r in searches.itertuples()}


def test_suites(prompt_file: Path, tmp_path: Path) -> None:
    suite = load_suite("shapes:heldout:2")
    assert suite == world.eval_prompts(2, seed=0) and len(suite) == 2 * len(world.CATEGORIES)
    prompt_file.write_text("a red circle\na photo of a corgi\n")
    assert load_suite(str(prompt_file)) == [("colors", "a red circle"), (None, "a photo of a corgi")]
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(ConfigError, match="holds no prompts"):
        load_suite(str(tmp_path / "empty.txt"))


def test_expand_gives_one_stable_row_per_search(prompt_file: Path) -> None:
    config = small_config(prompt_file, "study.diversity=[false, true]", "study.verifiers=[shapes-clip, shapes-judge]")
    rows = expand(config)
    # base runs once at its cost (K = 6 NFEs), whatever the budgets axis
    assert len(rows) == len(PROMPTS) * (1 + 2) * 4 * 2 * 2
    assert len({r.row_id for r in rows}) == len(rows)
    assert [r.row_id for r in expand(config)] == [r.row_id for r in rows]
    assert rows[0].row_id == "p00000_base_n6_s0_shapes-clip_dv0"
    by_id = {r.row_id: r for r in rows}
    r = by_id["p00001_random_n24_s3_shapes-judge_dv1"]
    assert (r.request.prompt, r.request.seed, r.request.verifier) == ("two squares", 3, "shapes-judge")
    assert r.category == "counting"
    assert (r.request.config.method, r.request.config.budget.nfe) == ("random", 24)
    assert r.request.sampling.diversevar is not None
    assert by_id["p00001_random_n24_s3_shapes-judge_dv0"].request.sampling.diversevar is None
    with pytest.raises(ConfigError, match=r"a study needs study\.prompts"):
        expand(load_config("shapes-beam"))


def test_study_writes_parts_and_skips_done_rows(prompt_file: Path, tmp_path: Path, backend: LocalBackend) -> None:
    config = small_config(prompt_file)
    out = tmp_path / "study"
    summary = run_study(config, out, backend, part_size=5, progress=False)
    assert summary == {"searches": 24, "already_done": 0, "ran": 24, "parts": 5}  # 5+5+5+5+4
    searches, candidates = read_table(out, "searches"), read_table(out, "candidates")
    assert sorted(searches["row_id"]) == sorted(r.row_id for r in expand(config))
    assert yaml.safe_load((out / "study.yaml").read_text()) == config.resolved().model_dump(mode="json")
    # one candidate row per scored image; the chosen one is selected, with the search's score
    assert candidates.groupby("row_id").size().to_dict() == searches.set_index("row_id")["verifier_calls"].to_dict()
    chosen = candidates[candidates["selected"]].set_index("row_id")
    assert chosen["score"].to_dict() == searches.set_index("row_id")["score"].to_dict()
    assert (searches["nfe"] == searches["budget_nfe"]).all()  # these budgets are spent exactly
    assert searches["correct"].notna().all()  # both prompts are in the shapes grammar
    assert all(Image.open(out / name).size == (64, 64) for name in searches["image"])
    again = run_study(config, out, backend, part_size=5, progress=False)
    assert again == {"searches": 24, "already_done": 24, "ran": 0, "parts": 0}
    assert len(read_table(out, "searches")) == 24


def test_a_failing_backend_keeps_finished_searches(prompt_file: Path, tmp_path: Path, backend: LocalBackend) -> None:
    config, out = small_config(prompt_file, "seeds=[0, 1]"), tmp_path / "study"  # 12 searches
    with pytest.raises(RuntimeError, match="replica lost"):
        run_study(config, out, FailingBackend(backend, fail_after=7), part_size=5, progress=False)
    assert len(read_table(out, "searches")) == 7  # one full part and the 2 finished before the failure
    summary = run_study(config, out, backend, part_size=5, progress=False)
    assert (summary["already_done"], summary["ran"]) == (7, 5)
    assert read_table(out, "searches")["row_id"].is_unique


def test_resume_refuses_another_config_or_suite(prompt_file: Path, tmp_path: Path, backend: LocalBackend) -> None:
    out = tmp_path / "study"
    run_study(small_config(prompt_file, "seeds=[0]"), out, backend, progress=False)
    with pytest.raises(ConfigError, match=r"different config \(sampling\.tau differ"):
        run_study(small_config(prompt_file, "seeds=[0]", "sampling.tau=0.5"), out, backend, progress=False)
    prompt_file.write_text("two squares\na red circle\n")
    with pytest.raises(ConfigError, match="the prompt suite changed"):
        run_study(small_config(prompt_file, "seeds=[0]"), out, backend, progress=False)


def test_one_driver_at_a_time(prompt_file: Path, tmp_path: Path) -> None:
    config, out = small_config(prompt_file), tmp_path / "study"
    held = study_store.open_store(out, config)
    with held, pytest.raises(ValueError, match="another study driver is writing"), study_store.open_store(out, config):
        pass


STUDY_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def sigkill_after_first_part(command: list[str], study: Path, timeout_s: float) -> int:
    """Start a `varsearch study` driver, SIGKILL it once a part is committed; returns rows written."""
    driver = subprocess.Popen(command, cwd=REPO, env=STUDY_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout_s
    while not list((study / "parts").glob("part-*")):
        assert driver.poll() is None, f"the study exited before writing a part: {driver.stderr.read().decode()}"
        assert time.monotonic() < deadline, f"no part written within {timeout_s:.0f} s"
        time.sleep(0.01)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    driver.stderr.close()
    return len(read_table(study, "searches"))


def test_sigkilled_study_resumes_without_lost_or_repeated_rows(
    prompt_file: Path, tmp_path: Path, backend: LocalBackend
) -> None:
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    command = [sys.executable, "-m", "cluster.cli", "study", "shapes-beam", "--out", str(killed), "--part-size", "2"]
    command += ["--backend", "local"]  # the Ray path of a study: tests/test_ray_study.py
    command += ["--prompts", str(prompt_file)] + [a for s in SMALL for a in ("--set", s)]
    written = sigkill_after_first_part(command, killed, timeout_s=120)
    assert 0 < written < 24, f"the kill should land mid-study, {written} of 24 rows were committed"

    config = small_config(prompt_file)
    summary = run_study(config, killed, backend, part_size=2, progress=False)
    assert (summary["already_done"], summary["ran"]) == (written, 24 - written)
    run_study(config, clean, backend, part_size=2, progress=False)

    resumed = sorted_table(killed, "searches")
    assert resumed["row_id"].is_unique and len(resumed) == 24
    pd.testing.assert_frame_equal(resumed, sorted_table(clean, "searches"))
    pd.testing.assert_frame_equal(sorted_table(killed, "candidates"), sorted_table(clean, "candidates"))
    a, b = images(killed, resumed), images(clean, resumed)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_report(prompt_file: Path, tmp_path: Path, backend: LocalBackend) -> None:
    out = tmp_path / "study"
    run_study(small_config(prompt_file), out, backend, part_size=8, progress=False)
    text = report.write_report(out)
    searches = read_table(out, "searches")
    table = report.summarize(searches)
    assert list(zip(table["method"], table["budget_nfe"], strict=True)) == [("base", 6), ("random", 12), ("random", 24)]
    expected = searches.groupby(["method", "budget_nfe"])[["score", "nfe"]].mean()
    assert np.allclose(table[["score", "nfe"]].to_numpy(), expected.to_numpy())
    assert np.allclose(table["accuracy"], searches.groupby(["method", "budget_nfe"])["correct"].mean())
    for row in table.itertuples():  # every summary row is in the Markdown
        assert f"| {row.method} | {row.budget_nfe} | shapes-clip | off | 8 | {row.nfe:.1f} | {row.score:.4f} |" in text
    assert (out / "report" / "report.md").read_text().strip() == text.strip()
    assert Image.open(out / "report" / "score_vs_nfe.png").size[0] > 0
    grid = Image.open(out / "report" / "winners.png")
    assert grid.size[1] == len(PROMPTS) * (64 * 2 + 4)  # one row per prompt, 64 px tiles at scale 2


def test_report_refuses_what_is_not_a_study(tmp_path: Path, prompt_file: Path) -> None:
    with pytest.raises(NotAStudyError, match="is not a study folder"):
        report.write_report(tmp_path)
    with study_store.open_store(tmp_path / "empty", small_config(prompt_file)):
        pass
    with pytest.raises(NotAStudyError, match="no finished searches yet"):
        report.write_report(tmp_path / "empty")
    result = CliRunner().invoke(app, ["report", str(tmp_path)], env=WIDE)
    assert result.exit_code == 2 and "is not a study folder" in result.output


def test_cli_run_with_a_recipe_saves_the_resolved_config(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["run", "--recipe", "shapes-beam", "--method", "random", "--budget", "12", "--seed", "7"]
    args += ["--set", "sampling.tau=0.9", "-p", "two squares", "--out", str(out)]
    result = CliRunner().invoke(app, args, env=WIDE)
    assert result.exit_code == 0, result.output
    saved = load_config(out / "config.yaml")
    assert (saved.search.method, saved.search.budget_nfe, saved.seeds) == ("random", 12, [7])
    assert (saved.sampling.tau, saved.prompts) == (0.9, ["two squares"])
    record = yaml.safe_load((out / "record.json").read_text())
    assert record["totals"]["nfe"] == 12 and (out / record["results"][0]["image"]).is_file()
    bad = CliRunner().invoke(app, ["run", "--recipe", "shapes-beam", "--set", "search.budget_nfe=-1"], env=WIDE)
    assert bad.exit_code == 2 and "search.budget_nfe" in bad.output
    study_spec = CliRunner().invoke(app, ["run", "--recipe", "shapes-study", "--out", str(out)], env=WIDE)
    assert study_spec.exit_code == 2 and "varsearch study" in study_spec.output
