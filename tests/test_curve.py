"""The search-quality curve: rows, summary, bar check and plot on a tiny random generator; the
shapes command end to end on the shipped weights."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from cluster import curve
from cluster.cli import app
from generators.loading import tiny_random_engine
from generators.sampling import SamplingParams
from generators.shapes.evaluate import DEFAULT_SAMPLING


class MeanRed:
    def score(self, prompts, images: np.ndarray) -> np.ndarray:
        return images[..., 0].mean(axis=(1, 2))


def test_run_curve_rows_and_summary(tmp_path) -> None:
    engine = tiny_random_engine(seed=2)
    prompts = [("colors", "a red circle"), ("counting", "two squares")]
    df = curve.run_curve(
        engine,
        MeanRed(),
        lambda image, prompt: image[..., 0].mean() > 120,
        prompts,
        SamplingParams(cfg=1.0, tau=1.0),
        methods=("base", "random", "beam"),
        budgets=[20, 40],
    )
    assert len(df) == 2 * (1 + 2 + 2)
    assert (df["nfe"] <= df["budget_nfe"]).all()
    summary = curve.summarize(df)
    assert [p["budget_nfe"] for p in summary["random"]] == [20, 40]
    assert summary["base"][0]["nfe"] == engine.schedule.num_scales
    # more samples never lower the best verifier score of random search (sample i is shared)
    assert summary["random"][1]["verifier_score"] >= summary["random"][0]["verifier_score"]
    curve.plot(summary, tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 0


def test_bar_check() -> None:
    points = [("base", 6, 0.3), ("random", 42, 0.4), ("random", 84, 0.5), ("beam", 42, 0.5), ("beam", 84, 0.6)]
    rows = [
        {"method": m, "budget_nfe": b, "nfe": b, "category": cat, "correct": acc, "verifier_score": acc}
        for m, b, acc in points
        for cat in ("colors", "counting")
    ]
    bar = curve.check_bar(curve.summarize(pd.DataFrame(rows)))
    assert bar["beam_matches_random_at_half_nfe"] and bar["beam_ge_random_at_equal_nfe"] and bar["random_ge_base"]
    assert abs(bar["mean_beam_minus_random"] - 0.1) < 1e-9


def test_budget_ladder() -> None:
    assert curve.budget_ladder(6) == [42, 84, 168, 336]
    assert curve.budget_ladder(13, (15,)) == [1365]


def test_search_options_reach_the_method() -> None:
    engine = tiny_random_engine(seed=2)  # 4 scales
    df = curve.run_curve(
        engine,
        MeanRed(),
        lambda image, prompt: True,
        [("colors", "a red circle")],
        SamplingParams(cfg=1.0, tau=1.0),
        methods=("beam",),
        budgets=[40],
        progress=False,
        search_options={"beam": {"prune_scales": (1,)}},
    )
    # one pruning scale after scale 1: each candidate slot is sampled once, 4 NFEs; 10 fit in 40
    assert df["nfe"].tolist() == [40] and df["verifier_calls"].tolist() == [10]


def test_shapes_curve_command_writes_rows_plot_and_a_record_of_its_settings(tmp_path) -> None:
    args = ["shapes", "curve", "--n-per-category", "1", "--methods", "base,random,beam", "--slots", "2"]
    result = CliRunner().invoke(app, [*args, "--beam-rollout-tau-scale", "0.5", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "curve.json").read_text())
    assert sorted(report["methods"]) == ["base", "beam", "random"]
    assert [p["budget_nfe"] for p in report["methods"]["beam"]] == [42]
    assert set(report["bar"]) >= {"beam_ge_random_at_equal_nfe", "random_ge_base"}
    (paired,) = report["beam_minus_random_paired"]
    assert paired["budget_nfe"] == 42 and paired["n_prompts"] == 6
    run = report["run"]
    assert run["verifier"] == "shapes-clip" and run["sampling"] == repr(DEFAULT_SAMPLING)
    assert run["search_options"] == {"beam": {"rollout_tau_scale": 0.5}}
    assert run["resumed_prompts"] == 0
    assert len(pd.read_parquet(tmp_path / "curve.parquet")) == 6 * 3  # 6 prompts x (base, random, beam)
    assert (tmp_path / "curve.png").stat().st_size > 0


def test_paired_differences() -> None:
    # two categories, 2 prompts each; beam wins prompt 0 (colors) and prompt 3 (counting), ties the rest
    correct = {"random": [0, 1, 1, 0], "beam": [1, 1, 1, 1]}
    rows = [
        {"method": m, "budget_nfe": 42, "prompt_id": i, "category": ("colors", "colors", "counting", "counting")[i],
         "correct": bool(c)}
        for m, cs in correct.items()
        for i, c in enumerate(cs)
    ]  # fmt: skip
    rows.append({"method": "beam", "budget_nfe": 84, "prompt_id": 0, "category": "colors", "correct": True})
    (point,) = curve.paired_differences(pd.DataFrame(rows))  # 84 NFEs: beam only, nothing to pair
    # per-category mean differences 0.5 and 0.5; each has variance 0.5 over 2 prompts
    assert point["budget_nfe"] == 42 and point["n_prompts"] == 4
    assert point["difference"] == 0.5
    assert abs(point["standard_error"] - np.sqrt((0.5 / 2 + 0.5 / 2) / 4)) < 1e-12
