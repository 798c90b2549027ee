"""Transformer checkpoint formats, dtype placement and refusal of unsafe files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from generators.checkpoint import CheckpointError
from generators.engine import InfinityEngine
from generators.loading import load_infinity, random_infinity, tiny_random_engine


@pytest.fixture(scope="module")
def tiny_state() -> dict[str, torch.Tensor]:
    return random_infinity("infinity-tiny", seed=3).state_dict()


def save_sharded(state: dict[str, torch.Tensor], directory: Path, num_shards: int = 2) -> None:
    """The layout of the official 8B release: model-0000i-of-0000n.safetensors + index."""
    directory.mkdir()
    keys = sorted(state)
    weight_map = {}
    for i in range(num_shards):
        name = f"model-{i + 1:05d}-of-{num_shards:05d}.safetensors"
        shard = {k: state[k].clone() for k in keys[i::num_shards]}
        save_file(shard, directory / name)
        weight_map.update(dict.fromkeys(shard, name))
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


def test_sharded_safetensors(tmp_path: Path, tiny_state: dict[str, torch.Tensor]) -> None:
    save_sharded(tiny_state, tmp_path / "shards")
    loaded = load_infinity(tmp_path / "shards", "infinity-tiny").state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in tiny_state.items())


def test_sharded_index_naming_a_missing_key(tmp_path: Path, tiny_state: dict[str, torch.Tensor]) -> None:
    save_sharded(tiny_state, tmp_path / "shards")
    index = json.loads((tmp_path / "shards/model.safetensors.index.json").read_text())
    index["weight_map"]["ghost.weight"] = "model-00001-of-00002.safetensors"
    (tmp_path / "shards/model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=r"ghost\.weight"):
        load_infinity(tmp_path / "shards", "infinity-tiny")


def test_bf16_blocks_fp32_head(tmp_path: Path, tiny_state: dict[str, torch.Tensor]) -> None:
    torch.save(tiny_state, tmp_path / "tiny.pth")
    model = load_infinity(tmp_path / "tiny.pth", "infinity-tiny", dtype="bfloat16")
    assert model.ordered_blocks[0].sa.mat_qkv.weight.dtype == torch.bfloat16
    assert model.head.weight.dtype == model.word_embed.weight.dtype == torch.float32
    reference = tiny_random_engine(seed=3)
    engine = InfinityEngine(model, reference.vae, reference.text_encoder, reference.schedule)
    batch, bf16_logits = engine.step_logits(engine.start(["a red circle"], [0]))
    _, fp32_logits = reference.step_logits(reference.start(["a red circle"], [0]))
    assert batch.num_scales_done == 1
    torch.testing.assert_close(bf16_logits, fp32_logits, atol=0.15, rtol=0.05)


def test_unknown_dtype(tmp_path: Path, tiny_state: dict[str, torch.Tensor]) -> None:
    torch.save(tiny_state, tmp_path / "tiny.pth")
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        load_infinity(tmp_path / "tiny.pth", "infinity-tiny", dtype="float8")


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/varsearch-pwned",))


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    torch.save({"head.weight": _Exploit()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refused"):
        load_infinity(tmp_path / "evil.pth", "infinity-tiny")
    assert not Path("/tmp/varsearch-pwned").exists()


def test_corrupted_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "junk.pth").write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match=r"junk\.pth"):
        load_infinity(tmp_path / "junk.pth", "infinity-tiny")
    with pytest.raises(CheckpointError, match="not found"):
        load_infinity(tmp_path / "absent.pth", "infinity-tiny")
    (tmp_path / "junk.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="safetensors"):
        load_infinity(tmp_path / "junk.safetensors", "infinity-tiny")
