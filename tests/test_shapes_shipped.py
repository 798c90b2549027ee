"""The shipped shapes-world weights load and drive the default job; no training in CI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cluster.cli import app
from generators.shapes import evaluator, model


def test_shipped_weights_decode_a_recognisable_image() -> None:
    engine = model.load_engine()
    manifest = model.read_manifest()
    assert {"vae_training", "infinity_training", "clip_training", "vocab", "evaluation"} <= set(manifest)
    batch, _ = engine.advance(engine.start(["a red circle", "a blue square"], [0, 0], paths=[(0,), (1,)]))
    images = engine.decode(batch)
    assert images.shape == (2, 64, 64, 3)
    assert any(len(evaluator.detect(img)) > 0 for img in images)


def test_default_run_searches_the_shapes_world(tmp_path) -> None:
    result = CliRunner().invoke(
        app, ["run", "-p", "a red circle", "--method", "beam", "--budget", "42", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "record.json").read_text())
    # at 42 NFEs of 6 scales beam prunes the mid scales 1-3 with 3 candidates, 13 NFEs each
    assert record["totals"]["nfe"] == 39 and record["results"][0]["image"] == "0000.png"
    assert (tmp_path / "0000.png").exists()
    trace = pd.read_parquet(tmp_path / "trace.parquet")
    assert {"score", "prune"} <= set(trace["event"])


def test_failure_modes_name_what_the_evaluator_saw() -> None:
    from benchmarks.shapes_failure_modes import failure_mode, prompt_report
    from generators.shapes import world

    circle = world.render(world.scene_for_prompt("a circle", np.random.default_rng(0)))
    blank = world.render(world.Scene(()))
    assert failure_mode(circle, "a circle") == "ok"
    assert failure_mode(circle, "a square") == "wrong"
    assert failure_mode(blank, "a circle") == "empty"
    report = prompt_report(model.load_engine(), "a circle", samples=3)
    rates = [report[f"{m}_rate"] for m in ("ok", "empty", "unknown", "wrong")]
    assert sum(rates) == pytest.approx(1.0)
    assert len(report["bit_entropy_per_scale"]) == model.SCHEDULE.num_scales
    assert all(0 <= h <= 1 for h in report["bit_entropy_per_scale"])
