"""The study viewer's read-only views (cluster.serve.studies) over a real small study, without Ray."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from small_study import PROMPTS, make_study
from typer.testing import CliRunner

from cluster import report
from cluster.cli import app
from cluster.config import load_config
from cluster.serve.settings import ServeArgs
from cluster.serve.studies import StudyNotFound, image_file, list_studies, study_view
from cluster.study_store import StudyStore, open_store, read_table


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A studies folder: one study with results, one started without any, and things that are not studies."""
    root = tmp_path_factory.mktemp("studies")
    make_study(root / "small")
    with open_store(root / "started", load_config("shapes-beam")):
        pass  # a driver that was stopped before its first part
    (root / "not-a-study").mkdir()
    (root / "secret.png").write_bytes(b"outside every study")
    outside = tmp_path_factory.mktemp("elsewhere")
    (outside / "study.yaml").write_text("a study outside the root\n")
    (root / "linked").symlink_to(outside)
    (root / "small" / "images" / "link.png").symlink_to(root / "secret.png")
    return root


def test_lists_only_study_folders_inside_the_root(root: Path) -> None:
    studies = {s["name"]: s for s in list_studies(root)}
    assert set(studies) == {"small", "started"}
    searches = read_table(root / "small", "searches")
    assert (studies["small"]["searches"], studies["small"]["prompts"]) == (len(searches), len(PROMPTS))
    assert (studies["started"]["searches"], studies["started"]["prompts"]) == (0, 0)
    assert list_studies(root / "missing") == []


def test_view_summarises_like_the_report(root: Path) -> None:
    view = study_view(root, "small")
    json.dumps(view, allow_nan=False)  # JSON-ready: no NaN, no numpy scalars
    searches = read_table(root / "small", "searches")
    table = report.summarize(searches)
    assert [(r["method"], r["budget_nfe"]) for r in view["summary"]] == list(
        zip(table["method"], table["budget_nfe"], strict=True)
    )
    assert np.allclose([r["score"] for r in view["summary"]], table["score"])
    assert np.allclose([r["accuracy"] for r in view["summary"]], table["accuracy"])
    assert (view["searches"], view["prompts"], view["seeds"]) == (len(searches), len(PROMPTS), [0, 1])


def test_winners_are_the_first_seeds_chosen_images(root: Path) -> None:
    view = study_view(root, "small")
    searches = read_table(root / "small", "searches")
    first = searches[searches["seed"] == 0].set_index("row_id")
    assert view["winners_seed"] == 0
    assert [w["prompt"] for w in view["winners"]] == list(PROMPTS)
    columns = [(c["method"], c["budget_nfe"]) for c in view["columns"]]
    assert columns == sorted(set(zip(first["method"], first["budget_nfe"], strict=True)))
    for winner in view["winners"]:
        for (method, budget), cell in zip(columns, winner["cells"], strict=True):
            row = first.loc[cell["row_id"]]
            assert (row["prompt"], row["method"], row["budget_nfe"]) == (winner["prompt"], method, budget)
            assert cell["score"] == row["score"] and cell["correct"] == row["correct"]
            file = cell["image_url"].rsplit("/", 1)[1]
            assert image_file(root, "small", file).read_bytes() == (root / "small" / row["image"]).read_bytes()
    assert [w["prompt"] for w in study_view(root, "small", max_prompts=1)["winners"]] == [PROMPTS[0]]


def test_a_search_not_committed_yet_is_an_empty_cell(root: Path, tmp_path: Path) -> None:
    """A study still running: one prompt's search for one column is not in a part yet."""
    partial = tmp_path / "partial"
    shutil.copytree(root / "small", partial, ignore=shutil.ignore_patterns("parts"))
    searches, candidates = read_table(root / "small", "searches"), read_table(root / "small", "candidates")
    missing = searches[searches["seed"] == 0].iloc[-1]
    StudyStore(partial).write_part(
        searches[searches["row_id"] != missing["row_id"]].to_dict("records"),
        candidates[candidates["row_id"] != missing["row_id"]].to_dict("records"),
    )
    view = study_view(tmp_path, "partial")
    empty = [(w["prompt_id"], i) for w in view["winners"] for i, cell in enumerate(w["cells"]) if cell is None]
    columns = [(c["method"], c["budget_nfe"]) for c in view["columns"]]
    assert empty == [(missing["prompt_id"], columns.index((missing["method"], missing["budget_nfe"])))]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("started", "no finished searches yet"),
        ("nope", "no study named 'nope'"),
        ("not-a-study", "no study named"),
        ("linked", "no study named"),  # a symlink out of the root
        ("..", "no study named"),
        (".", "no study named"),
    ],
)
def test_unknown_studies_are_not_found(root: Path, name: str, message: str) -> None:
    with pytest.raises(StudyNotFound, match=message):
        study_view(root, name)


@pytest.mark.parametrize("file", ["../study.yaml", "..", "../../secret.png", "link.png", ".hidden.png", "x.txt", ""])
def test_images_never_leave_the_study(root: Path, file: str) -> None:
    with pytest.raises(StudyNotFound):
        image_file(root, "small", file)
    with pytest.raises(StudyNotFound):
        image_file(root, "../small", "x.png")


def test_serve_gets_an_absolute_studies_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`varsearch serve --studies-dir` resolves against the shell's folder, not the Ray workers'."""
    started = []
    monkeypatch.setattr("cluster.serve.local.serve_forever", lambda args, host, port, echo: started.append(args))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["serve", "--studies-dir", "runs"])
    assert result.exit_code == 0, result.output
    assert [args.studies_dir for args in started] == [str((tmp_path / "runs").resolve())]
    assert "studies_dir" not in ServeArgs().limits()  # GET /v1/models never shows server paths
