"""Device choice for the shapes commands, curve workers, and the sampling-tuning grid."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from benchmarks import tune_shapes_sampling as tune
from cluster import curve
from cluster.cli import app
from generators.loading import tiny_random_engine
from generators.sampling import SamplingParams
from generators.shapes import evaluate, model, world


def test_check_device_accepts_cpu_and_refuses_the_rest() -> None:
    assert evaluate.check_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        evaluate.check_device("gpu")
    with pytest.raises(ValueError, match="'meta' is not supported"):
        evaluate.check_device("meta")
    # torch.cuda.is_available() can change within a process (Ray sets CUDA_VISIBLE_DEVICES for its
    # workers), so accept either refusal for a device past the last one.
    with pytest.raises(ValueError, match=r"GPU\(s\)|CUDA is not available"):
        evaluate.check_device(f"cuda:{torch.cuda.device_count()}")


@pytest.mark.parametrize("command", ["evaluate", "curve"])
def test_shapes_commands_refuse_a_bad_device_before_any_work(command, tmp_path) -> None:
    result = CliRunner().invoke(app, ["shapes", command, "--device", "gpu", "--n-per-category", "1"])
    assert result.exit_code == 2
    assert "--device" in result.output and "unknown device 'gpu'" in result.output


def test_reconstruct_follows_the_tokenizer_device() -> None:
    vae = model.load_vae()
    images = evaluate.ground_truth_images(["a red circle", "two squares"], seed=0)
    recon = evaluate.reconstruct(vae, images)
    assert recon.dtype == images.dtype and recon.shape == images.shape
    if torch.cuda.is_available():
        on_gpu = evaluate.reconstruct(vae.to("cuda"), images)
        assert abs(on_gpu.astype(int) - recon.astype(int)).max() <= 1


def test_run_curve_on_a_subset_of_prompts_gives_the_same_rows() -> None:
    engine = tiny_random_engine(seed=2)
    prompts = [("colors", "a red circle"), ("counting", "two squares"), ("position", "a circle left of a square")]

    def judge(image, prompt):
        return image[..., 0].mean() > 120

    class MeanRed:
        def score(self, prompts, images):
            return images[..., 0].mean(axis=(1, 2))

    args = (engine, MeanRed(), judge, prompts, SamplingParams(cfg=1.0, tau=1.0), ("base", "random"), [20])
    full = curve.run_curve(*args, progress=False).drop(columns="wall_s")
    subset = curve.run_curve(*args, prompt_ids=[2, 0], progress=False).drop(columns="wall_s")
    expected = full[full["prompt_id"].isin([0, 2])].sort_values(["method", "prompt_id"], kind="stable")
    got = subset.sort_values(["method", "prompt_id"], kind="stable")
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True))


def test_curve_workers_give_the_rows_of_one_process() -> None:
    prompts = world.eval_prompts(1, seed=0)[:3]
    args = (prompts, evaluate.DEFAULT_SAMPLING, ("random", "base"), [12])
    one = curve.run_shapes_curve(*args, workers=1).drop(columns="wall_s")
    two = curve.run_shapes_curve(*args, workers=2).drop(columns="wall_s")
    pd.testing.assert_frame_equal(one, two)
    assert one["method"].tolist() == ["random"] * 3 + ["base"] * 3  # methods in the order asked
    with pytest.raises(ValueError, match="workers must be >= 1"):
        curve.run_shapes_curve(*args, workers=0)


def test_a_curve_resumes_from_its_saved_prompts(tmp_path, monkeypatch) -> None:
    prompts = world.eval_prompts(1, seed=0)[:3]
    args = (prompts, evaluate.DEFAULT_SAMPLING, ("base", "random"), [12])
    parts = tmp_path / "parts"
    full = curve.run_shapes_curve(*args, parts_dir=parts)
    assert sorted(p.name for p in parts.glob("prompt-*")) == [f"prompt-0000{i}.parquet" for i in range(3)]
    (parts / "prompt-00001.parquet").unlink()  # as if killed before prompt 1 was saved
    computed = []
    real = curve._prompt_rows
    monkeypatch.setattr(curve, "_prompt_rows", lambda world, job, i: computed.append(i) or real(world, job, i))
    resumed = curve.run_shapes_curve(*args, parts_dir=parts)
    assert computed == [1]  # only the missing prompt
    assert full.attrs["resumed_prompts"] == 0 and resumed.attrs["resumed_prompts"] == 2
    pd.testing.assert_frame_equal(resumed.drop(columns="wall_s"), full.drop(columns="wall_s"))
    with pytest.raises(curve.CurveSettingsError, match="budgets differ"):
        curve.run_shapes_curve(*args[:3], [24], parts_dir=parts)
    retrained = {**curve.shipped_weights_sha256(), "clip.safetensors": "0" * 64}
    monkeypatch.setattr(curve, "shipped_weights_sha256", lambda: retrained)
    with pytest.raises(curve.CurveSettingsError, match=r"weights\.clip\.safetensors differ"):  # new verifier, new run
        curve.run_shapes_curve(*args, parts_dir=parts)


def test_curve_workers_exit_when_the_command_is_killed(tmp_path) -> None:
    """SIGKILL leaves no cleanup to the parent; its workers notice they are orphaned and exit."""
    script = (
        "from cluster import curve; from generators.shapes import evaluate, world; "
        "curve.run_shapes_curve(world.eval_prompts(20, seed=0), evaluate.DEFAULT_SAMPLING, ('random',), [336], "
        "workers=2)"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[1])
    try:
        deadline = time.monotonic() + 120
        while len(workers := _spawned_children(parent.pid)) < 2:
            assert time.monotonic() < deadline and parent.poll() is None, "the workers never started"
            time.sleep(0.5)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 30
    while alive := [pid for pid in workers if Path(f"/proc/{pid}").exists() and not _is_zombie(pid)]:
        assert time.monotonic() < deadline, f"workers {alive} still running 30 s after the command was killed"
        time.sleep(0.5)


def _spawned_children(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def _is_zombie(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.parametrize("name", sorted(tune.GRIDS))
def test_tuning_grid_fits_the_schedule_and_keeps_greedy_apart(name) -> None:
    settings = tune.grid(name)
    cfgs, taus, top_ps = tune.GRIDS[name]
    assert len(settings) == len(cfgs) * len(taus) * len(top_ps) + len(cfgs)
    assert [p.top_k for p in settings[-len(cfgs) :]] == [1] * len(cfgs)
    assert all(p.top_k == 0 for p in settings[: -len(cfgs)])
    for p in settings:
        p.check_scales(model.SCHEDULE.num_scales)


def test_tuning_captions_are_training_captions_of_every_category() -> None:
    captions = tune.training_captions(12, tune.TUNING_SEED)
    assert captions == tune.training_captions(12, tune.TUNING_SEED)
    specs = [world.parse_prompt(c) for c in captions]
    assert [s.category for s in specs] == [c for c in world.CATEGORIES for _ in range(2)]
    assert not any(s.held_out for s in specs)


def test_tuning_script_refuses_a_bad_device(monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["tune_shapes_sampling", "--device", "gpu"])
    with pytest.raises(SystemExit) as exit_info:
        tune.main()
    assert exit_info.value.code == 2
    assert "unknown device 'gpu'" in capsys.readouterr().err
