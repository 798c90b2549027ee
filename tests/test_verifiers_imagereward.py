"""ImageReward on a tiny random config, loaded from a synthetic state dict in the official format.

The official key names below are written out from upstream's modules (THUDM/ImageReward
ImageReward.py, models/BLIP/{blip_pretrain,vit,med}.py: `ImageReward.state_dict()` of
blip = BLIP_Pretrain(visual_encoder, text_encoder, vision_proj, text_proj) and mlp = MLP),
independently of verifiers.imagereward, so a wrong mapping fails here.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from verifiers import tiny
from verifiers.checkpoint import CheckpointError
from verifiers.imagereward import REWARD_MEAN, REWARD_STD, ImageRewardConfig, ImageRewardVerifier, blip_tokenizer

WORDS, TINY = tiny.BERT_WORDS, tiny.IMAGEREWARD_CONFIG
PROMPTS = ["a red circle", "two blue squares", "a red circle and a blue square", "circle"]


def official_shapes(cfg: ImageRewardConfig) -> dict[str, tuple[int, ...]]:
    """Key -> shape of upstream's ImageReward.state_dict() for this config (embed_dim 256 projections)."""
    W, H, I = cfg.vision_width, cfg.hidden_size, cfg.intermediate_size  # noqa: E741
    tokens = (cfg.image_size // cfg.patch_size) ** 2 + 1
    shapes = {
        "blip.visual_encoder.cls_token": (1, 1, W),
        "blip.visual_encoder.pos_embed": (1, tokens, W),
        "blip.visual_encoder.patch_embed.proj.weight": (W, 3, cfg.patch_size, cfg.patch_size),
        "blip.visual_encoder.patch_embed.proj.bias": (W,),
        "blip.visual_encoder.norm.weight": (W,),
        "blip.visual_encoder.norm.bias": (W,),
        "blip.text_encoder.embeddings.word_embeddings.weight": (cfg.vocab_size, H),
        "blip.text_encoder.embeddings.position_embeddings.weight": (cfg.max_position_embeddings, H),
        "blip.text_encoder.embeddings.LayerNorm.weight": (H,),
        "blip.text_encoder.embeddings.LayerNorm.bias": (H,),
        "blip.text_encoder.embeddings.position_ids": (1, cfg.max_position_embeddings),
        "blip.vision_proj.weight": (256, W),
        "blip.vision_proj.bias": (256,),
        "blip.text_proj.weight": (256, H),
        "blip.text_proj.bias": (256,),
    }
    for i in range(cfg.vision_depth):
        b = f"blip.visual_encoder.blocks.{i}."
        shapes |= {b + "norm1.weight": (W,), b + "norm1.bias": (W,), b + "norm2.weight": (W,), b + "norm2.bias": (W,)}
        shapes |= {b + "attn.qkv.weight": (3 * W, W), b + "attn.qkv.bias": (3 * W,)}
        shapes |= {b + "attn.proj.weight": (W, W), b + "attn.proj.bias": (W,)}
        shapes |= {b + "mlp.fc1.weight": (4 * W, W), b + "mlp.fc1.bias": (4 * W,)}
        shapes |= {b + "mlp.fc2.weight": (W, 4 * W), b + "mlp.fc2.bias": (W,)}
    for j in range(cfg.num_layers):
        b = f"blip.text_encoder.encoder.layer.{j}."
        for att, kv_in in (("attention", H), ("crossattention", W)):  # cross-attention keys/values read the image
            shapes |= {b + f"{att}.self.query.weight": (H, H), b + f"{att}.self.query.bias": (H,)}
            for kv in ("key", "value"):
                shapes |= {b + f"{att}.self.{kv}.weight": (H, kv_in), b + f"{att}.self.{kv}.bias": (H,)}
            shapes |= {b + f"{att}.output.dense.weight": (H, H), b + f"{att}.output.dense.bias": (H,)}
            shapes |= {b + f"{att}.output.LayerNorm.weight": (H,), b + f"{att}.output.LayerNorm.bias": (H,)}
        shapes |= {b + "intermediate.dense.weight": (I, H), b + "intermediate.dense.bias": (I,)}
        shapes |= {b + "output.dense.weight": (H, I), b + "output.dense.bias": (H,)}
        shapes |= {b + "output.LayerNorm.weight": (H,), b + "output.LayerNorm.bias": (H,)}
    for k, (n_out, n_in) in zip((0, 2, 4, 6, 7), ((1024, H), (128, 1024), (64, 128), (16, 64), (1, 16)), strict=True):
        shapes |= {f"mlp.layers.{k}.weight": (n_out, n_in), f"mlp.layers.{k}.bias": (n_out,)}
    return shapes


def official_state_dict(cfg: ImageRewardConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {k: torch.randn(shape, generator=g) * 0.2 for k, shape in official_shapes(cfg).items()}
    sd["blip.text_encoder.embeddings.position_ids"] = torch.arange(cfg.max_position_embeddings)[None]
    for k in sd:
        if "LayerNorm.weight" in k or "norm1.weight" in k or "norm2.weight" in k or k.endswith("norm.weight"):
            sd[k] = 1 + sd[k]
    return sd


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("imagereward")
    (d / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    sd = official_state_dict(TINY)
    torch.save(sd, d / "ImageReward.pt")
    return {"dir": d, "checkpoint": d / "ImageReward.pt", "vocab": d / "vocab.txt", "state_dict": sd}


@pytest.fixture(scope="module")
def verifier(files) -> ImageRewardVerifier:
    return ImageRewardVerifier(files["checkpoint"], files["vocab"], config=TINY, batch_size=3)


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 40, 36, 3), dtype=np.uint8)


def test_official_keys_load_into_the_right_modules(verifier, files) -> None:
    sd, model = files["state_dict"], verifier.model
    text = "blip.text_encoder.encoder"
    pairs = [
        (model.visual.blocks[1].attn.qkv.weight, "blip.visual_encoder.blocks.1.attn.qkv.weight"),
        (model.visual.pos_embed, "blip.visual_encoder.pos_embed"),
        (model.text.encoder.layer[0].crossattention.self.key.weight, f"{text}.layer.0.crossattention.self.key.weight"),
        (model.text.embeddings.word_embeddings.weight, "blip.text_encoder.embeddings.word_embeddings.weight"),
        (model.mlp.layers[7].bias, "mlp.layers.7.bias"),
    ]  # fmt: skip
    for param, key in pairs:
        assert torch.equal(param, sd[key]), key


def test_ddp_prefixed_files_load_too(files, tmp_path) -> None:
    torch.save({f"module.{k}": v for k, v in files["state_dict"].items()}, tmp_path / "ImageReward.pt")
    v = ImageRewardVerifier(tmp_path / "ImageReward.pt", files["vocab"], config=TINY)
    assert torch.equal(v.model.visual.cls_token, files["state_dict"]["blip.visual_encoder.cls_token"])


def test_scores_shapes_batching_and_determinism(verifier) -> None:
    x = images(4)
    scores = verifier.score(PROMPTS, x)
    assert scores.shape == (4,) and scores.dtype == np.float64 and len(set(scores.tolist())) == 4
    one_by_one = np.concatenate([verifier.score([p], x[i : i + 1]) for i, p in enumerate(PROMPTS)])
    np.testing.assert_allclose(scores, one_by_one, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(scores, verifier.score(PROMPTS, x.copy()))
    assert verifier.score(["two red circles"], x[:1])[0] != scores[0]  # the prompt matters


def test_upstream_normalisation(files) -> None:
    sd = dict(files["state_dict"])
    for k in list(sd):
        if k.startswith("mlp.layers."):
            sd[k] = torch.zeros_like(sd[k])
    sd["mlp.layers.7.bias"] = torch.tensor([0.5])
    path = files["dir"] / "constant.pt"
    torch.save(sd, path)
    v = ImageRewardVerifier(path, files["vocab"], config=TINY)
    np.testing.assert_allclose(v.score(PROMPTS[:2], images(2)), (0.5 - REWARD_MEAN) / REWARD_STD, rtol=1e-6)


def test_tokenizer_matches_transformers_bert_with_blip_tokens(files) -> None:
    from transformers import BertTokenizer

    ref = BertTokenizer.from_pretrained(files["dir"], local_files_only=True)
    ref.add_special_tokens({"bos_token": "[DEC]"})  # upstream blip.init_tokenizer
    ref.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    ours = blip_tokenizer(files["vocab"], 35)
    for prompt in [*PROMPTS, "Two RED Squares, [ENC] zebra!", "a " * 60, "Ärger [DEC]"]:
        expected = ref(prompt, padding="max_length", truncation=True, max_length=35)
        got = ours.encode(prompt)
        assert got.ids == expected["input_ids"] and got.attention_mask == expected["attention_mask"], prompt


def test_missing_wrong_and_mismatched_files(files, tmp_path) -> None:
    with pytest.raises(CheckpointError, match=r"ImageReward.pt.*checkpoint="):
        ImageRewardVerifier(None, files["vocab"], config=TINY)
    with pytest.raises(CheckpointError, match=r"vocab.txt.*vocab="):
        ImageRewardVerifier(files["checkpoint"], None, config=TINY)
    sd = dict(files["state_dict"])
    del sd["blip.text_encoder.encoder.layer.1.crossattention.self.value.bias"]
    sd["blip.itm_head.weight"] = torch.zeros(2, TINY.hidden_size)
    torch.save(sd, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError) as err:
        ImageRewardVerifier(tmp_path / "broken.pt", files["vocab"], config=TINY)
    msg = str(err.value)
    assert "text.encoder.layer.1.crossattention.self.value.bias" in msg and "blip.itm_head.weight" in msg
    assert "ImageReward.pt" in msg and "checkpoint" in msg
    with pytest.raises(CheckpointError, match="wrong shape"):  # a config that does not fit the file
        ImageRewardVerifier(files["checkpoint"], files["vocab"], config=replace(TINY, intermediate_size=64))
    (tmp_path / "vocab.txt").write_text("\n".join(WORDS[:8]) + "\n")
    with pytest.raises(CheckpointError, match=r"bert-base-uncased's vocab\.txt"):
        ImageRewardVerifier(files["checkpoint"], tmp_path / "vocab.txt", config=TINY)


def test_med_config_sets_the_text_encoder(tmp_path) -> None:
    med = {
        "architectures": ["BertModel"], "hidden_act": "gelu", "hidden_size": 24, "intermediate_size": 48,
        "layer_norm_eps": 1e-12, "max_position_embeddings": 40, "model_type": "bert", "num_attention_heads": 2,
        "num_hidden_layers": 2, "vocab_size": 15, "encoder_width": 768, "add_cross_attention": True,
    }  # fmt: skip
    (tmp_path / "med_config.json").write_text(json.dumps(med))
    cfg = ImageRewardConfig.from_med_config(tmp_path / "med_config.json", base=TINY)
    assert cfg == TINY
    assert ImageRewardConfig.from_med_config(tmp_path / "med_config.json").vision_width == 1024  # encoder_width ignored
    (tmp_path / "bert.json").write_text(json.dumps({**med, "add_cross_attention": False}))
    with pytest.raises(CheckpointError, match="not a BLIP MED config"):
        ImageRewardConfig.from_med_config(tmp_path / "bert.json")


def test_tiny_files_follow_the_official_names(tmp_path) -> None:
    files = tiny.imagereward_files(tmp_path)
    assert set(torch.load(files["checkpoint"], weights_only=True)) == set(official_shapes(TINY))
    assert ImageRewardVerifier(files["checkpoint"], files["vocab"], config=TINY).score(["a"], images(1)).shape == (1,)
