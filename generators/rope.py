"""2D rotary position embedding as Infinity applies it ("star style", rope2d_normalized_by_hw=2).

Each head's channels form head_dim/2 adjacent pairs; the first half of the pairs is rotated by the
token's row position, the second half by its column position, each axis using head_dim/4 frequencies.
Positions come from ScaleSchedule.rope_positions, so coarse scales are spread over the final grid.
The arithmetic mirrors upstream in float32 so the angle table matches its cache to float rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor

from generators.schedules import ScaleSchedule


def rope_angles(schedule: ScaleSchedule, head_dim: int, base: float = 10000.0) -> Tensor:
    """(total_tokens, head_dim // 2) float32 rotation angles: [rows * inv_freq, cols * inv_freq]."""
    if head_dim <= 0 or head_dim % 4:
        raise ValueError(f"2D RoPE needs a positive head_dim divisible by 4, got {head_dim}")
    half = head_dim // 2
    inv_freq = 1.0 / base ** (torch.arange(0, half, 2).float() / half)  # (head_dim // 4,)
    rows_L, cols_L = schedule.rope_positions()
    return torch.cat([rows_L.float()[:, None] * inv_freq, cols_L.float()[:, None] * inv_freq], dim=-1)


def apply_rope(x_BHLd: Tensor, cos_Ld2: Tensor, sin_Ld2: Tensor) -> Tensor:
    """Rotate each channel pair (x[2i], x[2i+1]) by angle i: (x0 + i x1)(cos + i sin).

    Computed in fp32 like upstream whatever x's dtype, and returned in x's dtype; cos/sin are the
    (L, head_dim // 2) tables from rope_angles, sliced to the tokens in x.
    """
    x0_BHLd2, x1_BHLd2 = x_BHLd.float().unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = cos_Ld2.float(), sin_Ld2.float()
    out_BHLd22 = torch.stack([cos * x0_BHLd2 - sin * x1_BHLd2, sin * x0_BHLd2 + cos * x1_BHLd2], dim=-1)
    return out_BHLd22.flatten(-2).to(x_BHLd.dtype)
