"""The shipped shapes-world weights load and drive the default job; no training in CI."""

from __future__ import annotations

import json

import pandas as pd
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
    assert record["totals"]["nfe"] == 42 and record["results"][0]["image"] == "0000.png"
    assert (tmp_path / "0000.png").exists()
    trace = pd.read_parquet(tmp_path / "trace.parquet")
    assert {"score", "prune"} <= set(trace["event"])
