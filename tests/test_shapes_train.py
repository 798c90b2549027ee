"""Shapes-world training runs end to end with a few steps, resumes, and produces loadable weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from generators.shapes import model as shapes_model
from generators.shapes import train
from generators.shapes.train import Checkpoint, StageConfig

TINY = StageConfig(steps=2, batch_size=4, lr=1e-3, warmup=1, checkpoint_every=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    weights, ckpts = tmp_path_factory.mktemp("weights"), tmp_path_factory.mktemp("ckpt")
    assert train.train_vae(TINY, weights, ckpts)
    assert train.train_infinity(TINY, weights, ckpts)
    assert train.train_clip(TINY, weights, ckpts)
    assert train.train_clip_hard(TINY, weights, ckpts)
    return weights, ckpts


def test_every_stage_writes_weights_and_manifest(trained: tuple[Path, Path]) -> None:
    weights, _ = trained
    files = (shapes_model.VAE_FILE, shapes_model.INFINITY_FILE, shapes_model.TEXT_FILE, shapes_model.CLIP_FILE)
    for name in (*files, shapes_model.CLIP_HARD_FILE):
        assert (weights / name).stat().st_size > 0
    manifest = shapes_model.read_manifest(weights)
    assert {"vae_training", "infinity_training", "clip_training", "clip_hard_training", "vocab"} <= set(manifest)
    assert "circle" in manifest["vocab"] and manifest["vae_training"]["command"].startswith("varsearch shapes train")


def test_trained_weights_load_and_decode(trained: tuple[Path, Path]) -> None:
    engine = shapes_model.load_engine(trained[0])
    batch, cost = engine.advance(engine.start(["a red circle"], [0]))
    assert engine.decode(batch).shape == (1, 64, 64, 3) and cost.nfe == shapes_model.SCHEDULE.num_scales
    clip, tokenizer = shapes_model.load_clip(trained[0])
    assert clip.encode_text(tokenizer(["a red circle"])).shape[-1] == 128


def test_resume_continues_from_the_checkpoint(trained: tuple[Path, Path]) -> None:
    weights, ckpts = trained
    assert torch.load(ckpts / "vae.pt", weights_only=True)["step"] == 2
    assert train.train_vae(StageConfig(steps=3, batch_size=4, lr=1e-3, warmup=1), weights, ckpts)
    assert torch.load(ckpts / "vae.pt", weights_only=True)["step"] == 3


def test_clip_hard_fine_tunes_the_contrastive_clip_into_a_second_file(trained: tuple[Path, Path]) -> None:
    weights, ckpts = trained
    contrastive = shapes_model.load_clip(weights)[0].state_dict()
    final = torch.load(ckpts / "clip.pt", weights_only=True)["clip"]  # the clip stage's file is left as it was
    assert all(torch.equal(final[k].half().float(), v) for k, v in contrastive.items() if v.is_floating_point())
    fine_tuned = shapes_model.load_clip(weights, shapes_model.CLIP_HARD_FILE)[0].state_dict()
    assert torch.load(ckpts / "clip-hard.pt", weights_only=True)["step"] == TINY.steps
    assert any(not torch.allclose(contrastive[k], v, atol=1e-3) for k, v in fine_tuned.items())


def test_time_limit_stops_resumably(tmp_path: Path) -> None:
    cfg = StageConfig(steps=50, batch_size=2, lr=1e-3, warmup=1, checkpoint_every=100, max_minutes=1e-6)
    assert not train.train_vae(cfg, tmp_path / "w", tmp_path / "c")
    assert torch.load(tmp_path / "c" / "vae.pt", weights_only=True)["step"] == 1
    assert not (tmp_path / "w" / shapes_model.VAE_FILE).exists()


def test_checkpoint_roundtrip(tmp_path: Path) -> None:
    module = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(module.parameters())
    module(torch.ones(1, 3)).sum().backward()
    opt.step()
    Checkpoint(tmp_path / "x.pt").save({"m": module}, opt, 7)
    other = torch.nn.Linear(3, 2)
    assert Checkpoint(tmp_path / "x.pt").load({"m": other}, torch.optim.AdamW(other.parameters())) == 7
    assert torch.equal(other.weight, module.weight)


def test_lr_schedule_warms_up_and_decays() -> None:
    cfg = StageConfig(steps=100, batch_size=1, lr=1.0, warmup=10)
    lrs = [train.lr_at(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(0.1, abs=0.01) and np.all(np.diff(lrs[10:]) <= 1e-12)


def test_self_correction_flips_history_not_labels() -> None:
    vae = shapes_model.BSQVAE(shapes_model.VAE_CONFIG)
    codec = train.ScaleCodec(shapes_model.SCHEDULE)
    z = torch.randn(2, 16, 8, 8)
    clean, clean_inputs = train.quantize_with_flips(vae, codec, z, 0.0, torch.Generator().manual_seed(0))
    bits, _ = vae.quantizer.encode(z, shapes_model.SCHEDULE.scales)
    assert all(torch.equal(c, b.flatten(1, 2)) for c, b in zip(clean, bits, strict=True))
    noisy, _ = train.quantize_with_flips(vae, codec, z, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(noisy[0], clean[0])  # scale 0 has no history to correct
    assert len(clean_inputs) == shapes_model.SCHEDULE.num_scales - 1


def test_export_from_checkpoint(trained: tuple[Path, Path], tmp_path: Path) -> None:
    weights, ckpts = trained
    for name in (shapes_model.VAE_FILE, shapes_model.CLIP_FILE, shapes_model.MANIFEST):
        (tmp_path / name).write_bytes((weights / name).read_bytes())
    assert train.export_infinity(tmp_path, ckpts) == 2
    assert shapes_model.read_manifest(tmp_path)["infinity_training"]["steps_done"] == 2
    shapes_model.load_engine(tmp_path)
