"""Build models and engines from official checkpoints or from random weights.

Official files load from local paths only: the transformer as a plain state dict (.pth) or
sharded safetensors directory (8B), the VAE as {"vae": state_dict}. Loading is strict: a key
that is missing, unexpected or mis-shaped is an error naming it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from generators.bsq_vae import BSQVAE, VAEConfig, load_vae
from generators.checkpoint import CheckpointError, load_strict, read_state_dict
from generators.engine import InfinityEngine
from generators.infinity import Infinity, InfinityConfig
from generators.schedules import ScaleSchedule, custom_schedule
from generators.text_encoder import HashTextEncoder, TextEncoder

# Buffers that some upstream checkpoints carry but no inference path reads.
_UPSTREAM_ONLY_KEYS = ("lvl_1L", "attn_bias_for_masking", "Infinity_visible_kvlen", "Infinity_invisible_qlen")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose one of {sorted(DTYPES)}")
    return DTYPES[name]


def load_infinity(
    path: str | Path,
    config: InfinityConfig | str,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = torch.float32,
) -> Infinity:
    """Load an official Infinity transformer checkpoint.

    Like upstream inference, only the blocks run in `dtype`; text projections, embeddings
    and the head stay in fp32.
    """
    cfg = InfinityConfig.from_name(config) if isinstance(config, str) else config
    state_dict = read_state_dict(path)
    if "trainer" in state_dict:
        raise CheckpointError(f"{path}: a training checkpoint; extract ['trainer']['gpt_fsdp'] first")
    for key in _UPSTREAM_ONLY_KEYS:
        state_dict.pop(key, None)
    with torch.device("meta"):
        model = Infinity(cfg)
    load_strict(model, state_dict, f"Infinity ({path})", assign=True)
    return _place(model, device, parse_dtype(dtype))


def random_infinity(
    config: InfinityConfig | str, seed: int = 0, device: str | torch.device = "cpu", dtype=torch.float32
) -> Infinity:
    cfg = InfinityConfig.from_name(config) if isinstance(config, str) else config
    return _place(Infinity(cfg).init_weights(seed), device, parse_dtype(dtype))


def _place(model: Infinity, device: str | torch.device, dtype: torch.dtype) -> Infinity:
    model = model.to(device=device, dtype=torch.float32).eval()
    for block in model.ordered_blocks:
        block.to(dtype)
    return model.requires_grad_(False)


def random_vae(config: VAEConfig | str, seed: int = 0, device: str | torch.device = "cpu") -> BSQVAE:
    """A randomly initialised VAE (PyTorch default init under a fixed seed)."""
    cfg = VAEConfig.from_name(config) if isinstance(config, str) else config
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = BSQVAE(cfg)
    return vae.to(device).eval().requires_grad_(False)


TINY_SCHEDULE = custom_schedule([(1, 1), (2, 2), (3, 3), (4, 4)])  # 64x64 pixels with the tiny VAE


def tiny_random_engine(seed: int = 0, schedule: ScaleSchedule = TINY_SCHEDULE) -> InfinityEngine:
    """An engine with random weights at test size: real code paths, meaningless images."""
    model = random_infinity("infinity-tiny", seed)
    vae = random_vae(VAEConfig.from_name("vae-tiny"), seed)
    return InfinityEngine(model, vae, HashTextEncoder(model.cfg.text_channels), schedule)


def official_engine(
    transformer: str | Path,
    vae: str | Path,
    text_encoder: TextEncoder,
    model_config: str = "infinity-2b",
    vae_config: str = "vae-d32",
    schedule: ScaleSchedule | None = None,
    device: str = "cpu",
    dtype: str = "bfloat16",
) -> InfinityEngine:
    """Infinity with the official weights, e.g. infinity_2b_reg.pth + infinity_vae_d32reg.pth."""
    from generators.schedules import get_schedule

    model = load_infinity(transformer, model_config, device, dtype)
    tokenizer = load_vae(vae, VAEConfig.from_name(vae_config), device=device)
    return InfinityEngine(model, tokenizer, text_encoder, schedule or get_schedule(1.0, "1M"))
