"""Shapes-world diversity measurement, the DiverseVAR sweep and bar, and their commands, at tiny sizes."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from cluster import diversevar_sweep as sweep
from cluster import diversity_report
from cluster.cli import app
from generators.diversevar import DiverseVARConfig
from generators.engine import InfinityEngine
from generators.shapes import diversity_eval, evaluate, evaluator, model

PROMPTS = ["a red circle", "two squares"]
N = diversity_eval.MIN_SAMPLES
HOOKED = replace(evaluate.DEFAULT_SAMPLING, diversevar=DiverseVARConfig(b=2.0, b2=0.3, scales=(1, 2)))


@pytest.fixture(scope="module")
def engine() -> InfinityEngine:
    return model.load_engine()


@pytest.fixture(scope="module")
def clip():
    return model.load_clip()[0]


@pytest.fixture
def loaded(engine: InfinityEngine, clip, monkeypatch) -> None:
    """The commands get this module's models instead of loading the weights again."""
    monkeypatch.setattr(model, "load_engine", lambda *args, **kwargs: engine)
    monkeypatch.setattr(model, "load_clip", lambda *args, **kwargs: (clip, None))


def test_sample_sets_share_random_numbers_across_settings(engine: InfinityEngine) -> None:
    plain = diversity_eval.sample_sets(engine, PROMPTS, N, evaluate.DEFAULT_SAMPLING, seed=3)
    assert plain.shape == (2, N, 64, 64, 3) and plain.dtype == np.uint8
    assert np.array_equal(diversity_eval.sample_sets(engine, PROMPTS, N, evaluate.DEFAULT_SAMPLING, seed=3), plain)
    off = replace(evaluate.DEFAULT_SAMPLING, diversevar=DiverseVARConfig(b=0.0, b2=0.0, scales=(2, 3)))
    assert np.array_equal(diversity_eval.sample_sets(engine, PROMPTS, N, off, seed=3), plain)  # identity hooks
    assert not np.array_equal(diversity_eval.sample_sets(engine, PROMPTS, N, HOOKED, seed=3), plain)


def test_real_sets_are_true_and_deterministic() -> None:
    real = diversity_eval.real_sets(PROMPTS, 3, seed=1)
    assert real.shape == (2, 3, 64, 64, 3)
    assert all(evaluator.judge(img, p) for p, imgs in zip(PROMPTS, real, strict=True) for img in imgs)
    assert np.array_equal(diversity_eval.real_sets(PROMPTS, 3, seed=1), real)
    assert not np.array_equal(diversity_eval.real_sets(PROMPTS, 3, seed=2), real)


def test_real_images_scored_against_themselves(clip) -> None:
    real = diversity_eval.real_sets(PROMPTS, N, seed=0)
    emb = diversity_eval.image_embeddings(clip, real.reshape(-1, 64, 64, 3))
    assert emb.shape[0] == 2 * N and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    report = diversity_eval.score_sets(clip, PROMPTS, real, emb.reshape(2, N, -1))
    assert report["accuracy"] == 1.0 and report["recall"] == 1.0 and report["coverage"] == 1.0
    assert report["layouts"] == report["layouts_correct"] > 1  # renders vary, and every one is correct
    same = np.repeat(real[:, :1], N, axis=1)  # every sample identical
    collapsed = diversity_eval.score_sets(clip, PROMPTS, same, emb.reshape(2, N, -1))
    assert collapsed["vendi"] == pytest.approx(1.0) and collapsed["pairwise"] == pytest.approx(0.0, abs=1e-6)
    assert collapsed["layouts"] == 1.0 and collapsed["recall"] == pytest.approx(1 / N)  # only the copied one


def test_score_sets_rejects_bad_shapes(clip) -> None:
    real = diversity_eval.real_sets(PROMPTS, N, seed=0)
    emb = np.zeros((2, N, 8))
    with pytest.raises(ValueError, match="must agree"):
        diversity_eval.score_sets(clip, PROMPTS[:1], real, emb)
    with pytest.raises(ValueError, match="at least 6 samples"):
        diversity_eval.score_sets(clip, PROMPTS, real[:, :3], emb)


def test_overhead_ratio_pairs_in_alternating_order(engine: InfinityEngine, monkeypatch) -> None:
    calls = []

    def fake_seconds(engine, prompts, sampling) -> float:
        calls.append(sampling.diversevar is not None)
        return 3.0 if sampling.diversevar is not None else 2.0

    monkeypatch.setattr(diversity_eval, "_decode_seconds", fake_seconds)
    out = diversity_eval.overhead_ratio(engine, PROMPTS, evaluate.DEFAULT_SAMPLING, HOOKED, repeats=3)
    assert out["overhead_ratio"] == pytest.approx(1.5) and out["decode_s_plain"] == 2.0
    assert calls == [False, True, False, True, True, False, False, True]  # warm-up, then ABBAAB
    with pytest.raises(ValueError, match="repeats"):
        diversity_eval.overhead_ratio(engine, PROMPTS, evaluate.DEFAULT_SAMPLING, HOOKED, repeats=0)


def test_bar_checks() -> None:
    base = {"vendi": 2.0, "recall": 0.5, "accuracy": 0.40}
    good = {"overhead_ratio": 1.05, "baseline": base, "diversevar": {"vendi": 2.5, "recall": 0.6, "accuracy": 0.39}}
    assert diversity_report.check_bar(good)["met"] and diversity_report.check_bar(good)["vendi_ratio"] == 1.25
    for key, value in (("vendi", 2.3), ("recall", 0.5), ("accuracy", 0.37)):
        bad = {**good, "diversevar": {**good["diversevar"], key: value}}
        assert not diversity_report.check_bar(bad)["met"]
    assert not diversity_report.check_bar({**good, "overhead_ratio": 1.2})["met"]


@pytest.mark.parametrize("sampling", [evaluate.DEFAULT_SAMPLING, HOOKED])
def test_search_accuracy_judges_the_selected_images(engine: InfinityEngine, sampling) -> None:
    from cluster.verifiers import register_shapes_verifiers
    from verifiers.registry import load_verifier

    register_shapes_verifiers()
    got = diversity_report.search_accuracy(engine, load_verifier("shapes-clip"), PROMPTS, sampling, ["random"], 6, 5)
    # 6 NFEs = one sample: prompt i keeps path (0,) of request seed 5 + i, as sample_sets draws it;
    # the two prompts are of two categories, so the GenEval-style mean is their plain mean
    images = diversity_eval.sample_sets(engine, PROMPTS, 1, sampling, seed=5)[:, 0]
    assert got == {"random": np.mean([evaluator.judge(img, p) for img, p in zip(images, PROMPTS, strict=True)])}


def test_sweep_grids_and_ranking() -> None:
    settings = sweep.SweepSettings(placements=("block",), b=(0.0, 1.0), b2=(0.0, 0.2))
    grid = sweep.coarse_grid(settings, num_scales=6)
    assert [(c.b, c.b2, c.scales) for c in grid] == [
        (0.0, 0.2, (1, 2)), (1.0, 0.0, (1, 2)), (1.0, 0.2, (1, 2)),
        (0.0, 0.2, (2, 3)), (1.0, 0.0, (2, 3)), (1.0, 0.2, (2, 3)),
    ]  # fmt: skip
    origin = DiverseVARConfig(a=1.0, b=0.3, a2=1.0, b2=0.1, scales=(1, 2), placement="block", rows="both")
    near = sweep.refine_grid(origin)
    knobs = ("a", "b", "a2", "b2", "rows", "scales")
    assert all(sum(getattr(n, k) != getattr(origin, k) for k in knobs) == 1 for n in near)  # one knob at a time
    assert len(near) == 12 and {n.b for n in near} == {0.15, 0.3, 0.45} and {n.b2 for n in near} == {0.05, 0.1, 0.15}
    assert {n.a for n in near} == {0.9, 1.0, 1.1} and {n.scales for n in near} == {(1, 2), (1,), (2,)}
    ssr_only = sweep.refine_grid(replace(origin, b2=0.0, scales=(2,)))
    assert {n.b2 for n in ssr_only} == {0.0, 0.05} and len(ssr_only) == 9  # from 0 one first step; one scale stays
    rows = [{"admissible": False, "vendi": 9.0}, {"admissible": True, "vendi": 2.0}, {"admissible": True, "vendi": 3.0}]
    assert [r["vendi"] for r in sweep._rank(rows)] == [3.0, 2.0, 9.0]


def test_sweep_block_subsets_apply_to_block_placement_only() -> None:
    settings = sweep.SweepSettings(placements=("block", "model"), b=(1.0,), b2=(0.0,), blocks=((0, 1), (4, 5)))
    grid = sweep.coarse_grid(settings, num_scales=6)
    got = {(c.placement, c.blocks, c.scales) for c in grid}
    placed = [("block", (0, 1)), ("block", (4, 5)), ("model", None)]
    assert got == {(pl, bl, sc) for pl, bl in placed for sc in [(1, 2), (2, 3)]}
    assert len(grid) == 6 and sweep.label(grid[0]) == "block blocks=0,1 s1,2 a=1 b=1 a2=1 b2=0 rows=both"


def test_sweep_settings_from_options() -> None:
    s = sweep.SweepSettings.from_options(b="0,0.5", scales="1;2,3", placements="model", n_samples=None)
    assert s.b == (0.0, 0.5) and s.scales == ((1,), (2, 3)) and s.placements == ("model",) and s.n_samples == 16
    assert s.blocks == (None,) and sweep.SweepSettings.from_options(blocks="0,1;5").blocks == ((0, 1), (5,))
    bad_options = ({"b": "x"}, {"scales": "1,a"}, {"placements": "layer"}, {"b2": "-1"}, {"n_samples": 3})
    for bad in (*bad_options, {"n_confirm": 0}):
        with pytest.raises(ValueError):
            sweep.SweepSettings.from_options(**bad)


def test_training_captions_never_name_held_out_pairs() -> None:
    from generators.shapes import world

    captions = sweep.training_captions(60, seed=sweep.TUNING_SEED)
    assert not any(world.parse_prompt(c).held_out for c in captions)
    assert [world.parse_prompt(c).category for c in captions[:6]] == list(world.CATEGORIES)


def test_sweep_command_writes_parquet_plot_and_summary(tmp_path, loaded) -> None:
    args = ["shapes", "diversevar-sweep", "--n-captions", "2", "--n-confirm", "2", "--samples", "6"]
    args += ["--placements", "block", "--scales", "1,2", "--b", "2", "--b2", "0.3", "--no-refine", "--finalists", "1"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    df = pd.read_parquet(tmp_path / "sweep.parquet")
    assert list(df["stage"]) == ["coarse", "coarse", "confirm", "confirm"]
    assert list(df["setting"]) == ["baseline", "block s1,2 a=1 b=2 a2=1 b2=0.3 rows=both"] * 2
    summary = json.loads((tmp_path / "sweep.json").read_text())
    confirm = df[df["stage"] == "confirm"].iloc[1]
    assert (summary["chosen"] is not None) == bool(confirm["admissible"])
    assert summary["readings"] == {"1-indexed": [1, 2], "0-indexed": [2, 3]}
    assert summary["sampling"] == repr(evaluate.DEFAULT_SAMPLING)  # the record says what it was measured with
    assert [r["setting"] for r in summary["rows"]] == list(df["setting"])  # every row backs the choice
    assert (tmp_path / "sweep.png").stat().st_size > 0


def test_sweep_command_rejects_bad_grid(tmp_path) -> None:
    result = CliRunner().invoke(app, ["shapes", "diversevar-sweep", "--b", "1,x", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "comma-separated numbers" in result.output
    result = CliRunner().invoke(app, ["shapes", "diversevar-sweep", "--blocks", "0;9", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "exceed the model's 6 blocks" in result.output
    assert not any(tmp_path.iterdir())  # refused before anything was measured or written


def test_diversity_command_json(tmp_path, loaded, monkeypatch) -> None:
    monkeypatch.setattr(diversity_report, "OVERHEAD_PROMPTS", 1)  # time a batch of 6 candidates
    args = ["shapes", "diversity", "--json", "--n-per-category", "1", "--samples", "6", "--search-per-category", "0"]
    result = CliRunner().invoke(app, [*args, "--repeats", "1", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report == json.loads((tmp_path / "diversity.json").read_text())
    for arm in ("baseline", "diversevar"):
        assert {"vendi", "recall", "coverage", "accuracy", "layouts"} <= set(report[arm])
        assert report[arm]["n_prompts"] == 6 and report[arm]["n_samples"] == 6
    assert report["overhead_ratio"] > 0 and report["batch"] == 6 and report["bar"]["vendi_ratio"] > 0
    defaults = asdict(DiverseVARConfig.for_schedule(6))  # the command measures DiverseVAR's defaults
    assert report["diversevar_config"] == {**defaults, "scales": list(defaults["scales"])}
    assert "search_plain" not in report
    assert (tmp_path / "grid.png").stat().st_size > 0


def test_run_diversevar_flag(tmp_path) -> None:
    args = ["run", "-p", "a red circle", "--method", "random", "--budget", "12", "--backend", "local"]
    for flag, on in (("--diversevar", True), ("--no-diversevar", False)):
        out = tmp_path / flag
        result = CliRunner().invoke(app, [*args, flag, "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert yaml.safe_load((out / "config.yaml").read_text())["diversity"]["enabled"] is on
