"""The shapes world's models: configs, and the shipped weights as one loadable bundle.

Same code as the real models: a BSQ-VAE (`generators.bsq_vae`) with an 8x8 latent of 16 bits
for 64x64 images, an Infinity transformer (`generators.infinity`) over a 6-scale schedule, and
a small word-level text encoder in place of Flan-T5. Weights are safetensors files next to a
manifest.json that records the configs, the vocabulary, the training commands and the scores.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from generators.bsq_vae import BSQVAE, VAEConfig
from generators.checkpoint import CheckpointError, load_strict, read_state_dict
from generators.engine import InfinityEngine
from generators.infinity import Infinity, InfinityConfig
from generators.schedules import ScaleSchedule, custom_schedule
from generators.shapes.text import ShapesTextEncoder

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST = "manifest.json"

VAE_CONFIG = VAEConfig(codebook_dim=16, base_ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1)  # 64x64 -> 8x8
SCHEDULE: ScaleSchedule = custom_schedule([(1, 1), (2, 2), (3, 3), (4, 4), (6, 6), (8, 8)])  # 130 tokens
INFINITY_CONFIG = InfinityConfig(
    depth=6,
    embed_dim=160,
    num_heads=5,
    text_channels=128,
    text_maxlen=16,
    bits_per_token=16,
    block_chunks=1,
    cross_attn_bf16=False,  # upstream's bf16 rounding only matters for parity with official weights
)
TEXT_CONFIG = {"channels": 128, "depth": 2, "heads": 4, "max_tokens": 16}

VAE_FILE, INFINITY_FILE, TEXT_FILE, CLIP_FILE, CLIP_HARD_FILE = (
    "vae.safetensors",
    "infinity.safetensors",
    "text.safetensors",
    "clip.safetensors",  # contrastive: the verifier "shapes-clip" and the diversity metrics' embedding
    "clip-hard.safetensors",  # the same, fine-tuned against flawed renders: the verifier "shapes-clip-hard"
)


CLIP_CONFIG = Path(__file__).resolve().parent / "shapes-clip.json"  # registered with open_clip by file name


def build_clip() -> tuple[nn.Module, object]:
    """The tiny open_clip model (a custom config) and open_clip's packaged BPE tokenizer; no hub."""
    import open_clip

    open_clip.add_model_config(CLIP_CONFIG)
    root = logging.getLogger()
    level, root.level = root.level, logging.ERROR  # "no pretrained weights loaded": ours are loaded next
    try:
        model = open_clip.create_model(CLIP_CONFIG.stem, pretrained=None)
    finally:
        root.setLevel(level)
    return model, open_clip.get_tokenizer(CLIP_CONFIG.stem)


def load_clip(weights_dir: Path = WEIGHTS_DIR, file: str = CLIP_FILE) -> tuple[nn.Module, object]:
    model, tokenizer = build_clip()
    return load_module(model, weights_dir / file), tokenizer


def build_text_encoder(vocab: list[str]) -> ShapesTextEncoder:
    return ShapesTextEncoder(vocab, **TEXT_CONFIG)


def save_module(module: nn.Module, path: Path, dtype: torch.dtype = torch.float32) -> None:
    """Weights as safetensors (cloned: safetensors refuses tensors that share memory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.to(dtype) if v.is_floating_point() else v).contiguous().clone() for k, v in module.state_dict().items()
    }
    save_file(state, path)


def load_module(module: nn.Module, path: Path) -> nn.Module:
    if not path.exists():
        raise CheckpointError(f"shapes-world weights not found: {path} (train them with `varsearch shapes train`)")
    state = {k: v.float() if v.is_floating_point() else v for k, v in read_state_dict(path).items()}
    load_strict(module, state, str(path))
    return module.eval().requires_grad_(False)


def read_manifest(weights_dir: Path = WEIGHTS_DIR) -> dict:
    path = weights_dir / MANIFEST
    if not path.exists():
        raise CheckpointError(f"shapes-world manifest not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: not a readable shapes-world manifest ({err})") from None


def write_manifest(update: dict, weights_dir: Path = WEIGHTS_DIR) -> None:
    """Merge `update` into the manifest (each training stage records its own part)."""
    path = weights_dir / MANIFEST
    manifest = json.loads(path.read_text()) if path.exists() else {}
    manifest.update(update)
    manifest["configs"] = {
        "vae": asdict(VAE_CONFIG),
        "infinity": asdict(INFINITY_CONFIG),
        "text": TEXT_CONFIG,
        "schedule": [list(s) for s in SCHEDULE.scales],
    }
    weights_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2) + "\n")


def load_vae(weights_dir: Path = WEIGHTS_DIR) -> BSQVAE:
    return load_module(BSQVAE(VAE_CONFIG), weights_dir / VAE_FILE)


def load_engine(weights_dir: Path = WEIGHTS_DIR, device: str = "cpu") -> InfinityEngine:
    """The trained shapes-world generator, ready to decode."""
    vocab = read_manifest(weights_dir)["vocab"]
    text = load_module(build_text_encoder(vocab), weights_dir / TEXT_FILE).to(device)
    model = load_module(Infinity(INFINITY_CONFIG), weights_dir / INFINITY_FILE).to(device)
    vae = load_vae(weights_dir).to(device)
    return InfinityEngine(model, vae, text, SCHEDULE)
