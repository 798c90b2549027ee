"""benchmarks/tune_shapes_search.py: which budgets and beam options each search gets."""

from __future__ import annotations

import sys

import pandas as pd
import pytest

from benchmarks import tune_shapes_search as tune


def fake_curve(calls: list[dict]):
    """Stand-in for run_shapes_curve: records its call, every prompt correct at every budget."""

    def run(prompts, sampling, methods, budgets, *, seed, workers, search_options, verifier) -> pd.DataFrame:
        calls.append({"methods": methods, "budgets": list(budgets), "options": search_options})
        rows = [
            {"category": c, "budget_nfe": b, "correct": True, "verifier_score": 1.0}
            for c, _ in prompts
            for b in budgets
        ]
        return pd.DataFrame(rows)

    return run


def test_random_runs_at_its_own_budgets_and_beam_at_the_others(monkeypatch) -> None:
    calls: list[dict] = []
    written: dict = {}
    monkeypatch.setattr(tune, "run_shapes_curve", fake_curve(calls))
    monkeypatch.setattr(tune, "write_result", lambda name, result: written.update(result))
    argv = ["tune", "--captions", "6", "--budgets", "168", "--random-budgets", "336",
            "--variants", "every scale, rollouts x0.25"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    tune.main()
    assert calls[0]["methods"] == ("random",) and calls[0]["budgets"] == [336]
    assert calls[1]["methods"] == ("beam",) and calls[1]["budgets"] == [168]
    assert calls[1]["options"] == {"beam": {"rollout_tau_scale": 0.25}}
    assert written["random_budgets"] == [336] and written["budgets"] == [168]
    assert [(r["variant"], r["budget_nfe"]) for r in written["rows"]] == [
        ("random", 336),
        ("every scale, rollouts x0.25", 168),
    ]


def test_random_budgets_default_to_beams(monkeypatch) -> None:
    calls: list[dict] = []
    monkeypatch.setattr(tune, "run_shapes_curve", fake_curve(calls))
    monkeypatch.setattr(tune, "write_result", lambda name, result: None)
    monkeypatch.setattr(
        sys, "argv", ["tune", "--captions", "6", "--budgets", "84", "168", "--variants", "scale 2 only"]
    )
    tune.main()
    assert [c["budgets"] for c in calls] == [[84, 168], [84, 168]]


def test_unknown_variant_is_refused_by_name(monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["tune", "--variants", "no such variant"])
    with pytest.raises(SystemExit):
        tune.main()
    assert "unknown variant(s) ['no such variant']" in capsys.readouterr().err
