"""Infinity's visual tokenizer: a Flux-style conv autoencoder plus the multi-scale BSQ quantizer.

The image latent z (B, d, H, W) is split into a coarse-to-fine sum of binary codes: at each scale
(h, w) the residual is area-downsampled, every position is reduced to d sign bits (a point on the
unit sphere, +-1/sqrt(d) per channel), and the bilinearly upsampled codes are subtracted from the
residual. The transformer predicts those bits scale by scale; the decoder turns their sum back into
pixels.

Module and parameter names follow upstream (``infinity/models/bsq_vae``) so that the released
checkpoints load with strict key checking. Numerics follow upstream op for op (see the parity tests).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from generators.checkpoint import StateDict, load_strict, read_state_dict


@dataclass(frozen=True)
class VAEConfig:
    """Shape of a BSQ-VAE; the presets match the released checkpoints."""

    codebook_dim: int  # d: bits per latent position
    base_ch: int = 128  # upstream hard-codes 128
    ch_mult: tuple[int, ...] = (1, 2, 4, 4, 4)  # per resolution level, shared by encoder and decoder
    num_res_blocks: int = 2  # encoder blocks per level; the decoder uses one more
    in_channels: int = 3
    apply_spatial_patchify: bool = False  # 8B: transformer tokens are 2x2 pixel-unshuffled latents (4d bits)

    @property
    def downsample_factor(self) -> int:
        """Pixels per latent position along each axis (one 2x downsample per level but the last)."""
        return 2 ** (len(self.ch_mult) - 1)

    @classmethod
    def from_name(cls, name: str) -> VAEConfig:
        if name not in VAE_PRESETS:
            raise ValueError(f"unknown VAE preset {name!r}; known: {sorted(VAE_PRESETS)}")
        return VAE_PRESETS[name]


VAE_PRESETS: dict[str, VAEConfig] = {
    "vae-d16": VAEConfig(codebook_dim=16),  # infinity_vae_d16.pth, pairs with Infinity-125M
    "vae-d32": VAEConfig(codebook_dim=32),  # infinity_vae_d32reg.pth, pairs with Infinity-2B
    # infinity_vae_d56_f8_14_patchify.pth, pairs with Infinity-8B: stride 8, 14 bits, 2x2 patchified tokens
    "vae-d56-patchify": VAEConfig(codebook_dim=14, ch_mult=(1, 2, 4, 4), apply_spatial_patchify=True),
    "vae-tiny": VAEConfig(codebook_dim=8, base_ch=32, ch_mult=(1, 1, 1, 1, 1)),  # tests only
}


# ----------------------------------------------------------------------------------------------------
# Codes: bits -> points on the sphere, and the resampling used between scales


def _code_scale(codebook_dim: int) -> float:
    """Magnitude of each code channel, so that a code has unit l2 norm (kept in float64 like upstream)."""
    return 1.0 / math.sqrt(codebook_dim)


def bits_to_codes(bits: Tensor) -> Tensor:
    """Map bits (..., d) in {0, 1}, channel last, to codes with the channel at dim 1, e.g. (B, d, h, w).

    code = +-1/sqrt(d), computed as upstream does (bit * 2s - s, then an l2 norm that is a no-op in
    exact arithmetic) so the float32 values match it bit for bit.
    """
    scale = _code_scale(bits.shape[-1])
    codes = bits.to(torch.float32) * scale * 2 - scale
    return F.normalize(codes, dim=-1).movedim(-1, 1)


def upsample_codes(codes_Bdhw: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize codes bilinearly (align_corners=False, no antialias) to ``size`` = (H, W).

    Upstream calls this "trilinear" on (B, d, 1, h, w) tensors, which is bilinear over (h, w). The AR
    loop also uses it to DOWN-sample the summed codes to the next scale's input, hence no antialias.
    """
    if tuple(codes_Bdhw.shape[-2:]) == tuple(size):
        return codes_Bdhw
    return F.interpolate(codes_Bdhw, size=size, mode="bilinear", align_corners=False)


class BSQ(nn.Module):
    """Single-scale binary spherical quantizer: l2-normalise over channels, keep the signs."""

    def __init__(self, codebook_dim: int):
        super().__init__()
        self.codebook_dim = codebook_dim
        # Bit weights of an integer index (MSB first); unused here, kept so state-dict keys match upstream.
        self.register_buffer("mask", 2 ** torch.arange(codebook_dim - 1, -1, -1))

    def forward(self, z_Bdhw: Tensor) -> tuple[Tensor, Tensor]:
        """Return (quantized (B, d, h, w) float32, bits (B, h, w, d) uint8)."""
        z_Bhwd = F.normalize(z_Bdhw.float().movedim(1, -1), dim=-1)
        scale = _code_scale(self.codebook_dim)
        zhat_Bhwd = torch.where(z_Bhwd > 0, scale, -scale)
        # Straight-through form as upstream; differs from zhat by float rounding only.
        quantized_Bhwd = z_Bhwd + (zhat_Bhwd - z_Bhwd)
        bits_Bhwd = (quantized_Bhwd > 0).to(torch.uint8)
        return quantized_Bhwd.movedim(-1, 1), bits_Bhwd


class MultiScaleBSQ(nn.Module):
    """Residual quantization over a coarse-to-fine schedule of (h, w) scales; no learnable parameters."""

    def __init__(self, codebook_dim: int):
        super().__init__()
        self.lfq = BSQ(codebook_dim)

    def encode(self, z_BdHW: Tensor, scales: Sequence[tuple[int, int]]) -> tuple[list[Tensor], Tensor]:
        """Quantize z scale by scale.

        Returns (bits per scale as (B, h, w, d) uint8, summed quantized latent (B, d, H, W) float32),
        the sum being the decoder input.
        """
        residual_BdHW = z_BdHW.float()
        size = (residual_BdHW.shape[-2], residual_BdHW.shape[-1])
        quantized_sum_BdHW = torch.zeros_like(residual_BdHW)
        bits_per_scale = []
        for h, w in scales:
            residual_Bdhw = residual_BdHW
            if (h, w) != size:
                # 'area' = adaptive average pooling, also for non-integer ratios
                residual_Bdhw = F.interpolate(residual_BdHW, size=(h, w), mode="area")
            quantized_Bdhw, bits_Bhwd = self.lfq(residual_Bdhw)
            bits_per_scale.append(bits_Bhwd)
            quantized_BdHW = upsample_codes(quantized_Bdhw, size)
            residual_BdHW = residual_BdHW - quantized_BdHW
            quantized_sum_BdHW = quantized_sum_BdHW + quantized_BdHW
        return bits_per_scale, quantized_sum_BdHW

    def summed_codes_from_bits(self, bits_per_scale: Sequence[Tensor], size: tuple[int, int]) -> Tensor:
        """Decoder input from per-scale bits (B, h, w, d): the sum of codes upsampled to size=(H, W)."""
        summed_BdHW = upsample_codes(bits_to_codes(bits_per_scale[0]), size)
        for bits_Bhwd in bits_per_scale[1:]:
            summed_BdHW = summed_BdHW + upsample_codes(bits_to_codes(bits_Bhwd), size)
        return summed_BdHW


# ----------------------------------------------------------------------------------------------------
# Autoencoder building blocks. Wrappers hold their torch op as `.conv` / `.norm` only so that parameter
# names match upstream (e.g. `encoder.conv_in.conv.weight`).


class Conv(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Normalize(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        if channels % 32 == 0:
            groups = 32
        elif channels % 24 == 0:
            groups = 24
        else:
            raise ValueError(f"GroupNorm needs channels divisible by 32 or 24, got {channels}")
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x)


def conv3x3(in_ch: int, out_ch: int) -> Conv:
    return Conv(in_ch, out_ch, kernel_size=3, padding=1)


class ResnetBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.norm1 = Normalize(in_ch)
        self.conv1 = conv3x3(in_ch, out_ch)
        self.norm2 = Normalize(out_ch)
        self.conv2 = conv3x3(out_ch, out_ch)
        self.nin_shortcut = Conv(in_ch, out_ch, kernel_size=1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.nin_shortcut(x) + h


class Downsample(nn.Module):
    """Halve the resolution: pad one pixel right and bottom, then a stride-2 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = Conv(channels, channels, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Double the resolution: nearest-neighbour x2, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = conv3x3(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


def _mid(channels: int) -> nn.Module:
    mid = nn.Module()
    mid.block_1 = ResnetBlock(channels, channels)
    mid.block_2 = ResnetBlock(channels, channels)
    return mid


class Encoder(nn.Module):
    """images (B, 3, H, W) -> z (B, d, H/f, W/f)."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        ch = config.base_ch
        self.conv_in = conv3x3(config.in_channels, ch)
        self.down = nn.ModuleList()
        block_in = ch
        for level, mult in enumerate(config.ch_mult):
            level_module = nn.Module()
            level_module.block = nn.ModuleList()
            for _ in range(config.num_res_blocks):
                level_module.block.append(ResnetBlock(block_in, ch * mult))
                block_in = ch * mult
            if level < len(config.ch_mult) - 1:
                level_module.downsample = Downsample(block_in)
            self.down.append(level_module)
        self.mid = _mid(block_in)
        self.norm_out = Normalize(block_in)
        self.conv_out = conv3x3(block_in, config.codebook_dim)

    def forward(self, x_B3HW: Tensor) -> Tensor:
        h = self.conv_in(x_B3HW)
        for level_module in self.down:
            for block in level_module.block:
                h = block(h)
            if hasattr(level_module, "downsample"):
                h = level_module.downsample(h)
        h = self.mid.block_2(self.mid.block_1(h))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """z (B, d, h, w) -> images (B, 3, h*f, w*f), unclamped. `up[0]` is the highest resolution."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        ch = config.base_ch
        block_in = ch * config.ch_mult[-1]
        self.conv_in = conv3x3(config.codebook_dim, block_in)
        self.mid = _mid(block_in)
        levels = []
        for level in reversed(range(len(config.ch_mult))):
            level_module = nn.Module()
            level_module.block = nn.ModuleList()
            for _ in range(config.num_res_blocks + 1):
                level_module.block.append(ResnetBlock(block_in, ch * config.ch_mult[level]))
                block_in = ch * config.ch_mult[level]
            if level > 0:
                level_module.upsample = Upsample(block_in)
            levels.insert(0, level_module)
        self.up = nn.ModuleList(levels)
        self.norm_out = Normalize(block_in)
        self.conv_out = conv3x3(block_in, 3)

    def forward(self, z_Bdhw: Tensor) -> Tensor:
        h = self.mid.block_2(self.mid.block_1(self.conv_in(z_Bdhw)))
        for level_module in reversed(self.up):
            for block in level_module.block:
                h = block(h)
            if hasattr(level_module, "upsample"):
                h = level_module.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class BSQVAE(nn.Module):
    """Encoder, decoder and multi-scale BSQ quantizer, named like upstream's AutoEncoder."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quantizer = MultiScaleBSQ(config.codebook_dim)
        # Upstream registers the same quantizer twice; both names appear in its checkpoints.
        self.quantize = self.quantizer

    @property
    def dtype(self) -> torch.dtype:
        return self.encoder.conv_in.conv.weight.dtype

    def encode_latent(self, images_B3HW: Tensor) -> Tensor:
        """Images in [-1, 1] -> continuous latent z (B, d, H/f, W/f), float32."""
        return self.encoder(images_B3HW.to(self.dtype)).float()

    def encode_bits(self, images_B3HW: Tensor, scales: Sequence[tuple[int, int]]) -> list[Tensor]:
        """Images -> multi-scale bits, (B, h, w, d) uint8 per scale (the last scale is the full latent)."""
        bits_per_scale, _ = self.quantizer.encode(self.encode_latent(images_B3HW), scales)
        return bits_per_scale

    def decode(self, z_BdHW: Tensor) -> Tensor:
        """Latent (B, d, H, W) -> images (B, 3, H*f, W*f) float32 clamped to [-1, 1]."""
        return self.decoder(z_BdHW.to(self.dtype)).clamp(-1, 1).float()


# ----------------------------------------------------------------------------------------------------
# Loading


def _with_quantizer_masks(state_dict: StateDict, codebook_dim: int) -> StateDict:
    """The quantizer's bit-weight buffers are constants; add them when a file leaves them out."""
    mask = 2 ** torch.arange(codebook_dim - 1, -1, -1, dtype=torch.int64)
    return {"quantizer.lfq.mask": mask, "quantize.lfq.mask": mask, **state_dict}


def _map_plain_names(state_dict: StateDict, expected_keys: Sequence[str]) -> StateDict:
    """Accept upstream load_cnn's alternative naming: `X.weight` for `X.conv.weight` / `X.norm.weight`."""
    mapped = dict(state_dict)
    for key in expected_keys:
        if key in mapped:
            continue
        for wrapper in (".conv.", ".norm."):
            head, found, leaf = key.rpartition(wrapper)
            plain = f"{head}.{leaf}"
            if found and plain in mapped:
                mapped[key] = mapped.pop(plain)
                break
    return mapped


def load_vae(
    path: str | Path,
    config: VAEConfig,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> BSQVAE:
    """Build a BSQ-VAE for ``config`` and load a checkpoint strictly (any missing or extra key is an error).

    Reads ``torch.save({"vae": state_dict})`` files (the official format), plain state dicts and
    ``.safetensors`` files, without unpickling arbitrary objects.
    """
    state_dict = _with_quantizer_masks(read_state_dict(path, wrapper_key="vae"), config.codebook_dim)
    with torch.device("meta"):
        model = BSQVAE(config)
    model = model.to_empty(device=device).to(dtype)  # every tensor, buffers included, comes from the file
    load_strict(model, _map_plain_names(state_dict, list(model.state_dict())), "VAE")
    return model.eval().requires_grad_(False)
