"""Infinity's multi-scale token schedules: the (h, w) token grid of every autoregressive step.

A schedule lists latent token grids coarse to fine; the image is the last grid times the VAE stride.
Infinity knows 15 aspect-ratio templates, each with one 13-scale '1M' schedule; the smaller pixel
budgets are prefixes of it. Every scale's RoPE positions are spread over one grid shared by the whole
template (the last '1M' scale), so a prefix schedule keeps the positions of the full one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

MAX_SCALES = 15  # rows of Infinity's lvl_embed: one learned level embedding per scale
ASPECT_SLACK = 1.1  # a ratio may lie at most this factor beyond the extreme templates

# (h, w) token grids of each template's '1M' schedule, keyed by the h/w template.
# Facts from upstream infinity/utils/dynamic_resolution.py, checked against schedules.txt.
_SCALES_1M: dict[float, tuple[tuple[int, int], ...]] = {
    0.333: (
        (1, 1),
        (2, 2),
        (2, 6),
        (3, 9),
        (5, 15),
        (7, 21),
        (9, 27),
        (12, 36),
        (15, 45),
        (18, 54),
        (24, 72),
        (30, 90),
        (37, 111),
    ),
    0.4: (
        (1, 1),
        (2, 2),
        (2, 5),
        (4, 10),
        (6, 15),
        (8, 20),
        (10, 25),
        (12, 30),
        (16, 40),
        (20, 50),
        (26, 65),
        (32, 80),
        (40, 100),
    ),
    0.5: (
        (1, 1),
        (2, 2),
        (2, 4),
        (3, 6),
        (5, 10),
        (8, 16),
        (11, 22),
        (15, 30),
        (19, 38),
        (23, 46),
        (30, 60),
        (37, 74),
        (45, 90),
    ),
    0.571: (
        (1, 1),
        (2, 2),
        (3, 3),
        (4, 7),
        (6, 11),
        (8, 14),
        (12, 21),
        (16, 28),
        (20, 35),
        (24, 42),
        (32, 56),
        (40, 70),
        (48, 84),
    ),
    0.666: (
        (1, 1),
        (2, 2),
        (2, 3),
        (4, 6),
        (6, 9),
        (10, 15),
        (14, 21),
        (18, 27),
        (22, 33),
        (26, 39),
        (32, 48),
        (42, 63),
        (52, 78),
    ),
    0.75: (
        (1, 1),
        (2, 2),
        (3, 4),
        (6, 8),
        (9, 12),
        (12, 16),
        (15, 20),
        (18, 24),
        (21, 28),
        (27, 36),
        (36, 48),
        (45, 60),
        (54, 72),
    ),
    0.8: (
        (1, 1),
        (2, 2),
        (3, 3),
        (4, 5),
        (8, 10),
        (12, 15),
        (16, 20),
        (20, 25),
        (24, 30),
        (28, 35),
        (36, 45),
        (44, 55),
        (56, 70),
    ),
    1.0: (
        (1, 1),
        (2, 2),
        (4, 4),
        (6, 6),
        (8, 8),
        (12, 12),
        (16, 16),
        (20, 20),
        (24, 24),
        (32, 32),
        (40, 40),
        (48, 48),
        (64, 64),
    ),
    1.25: (
        (1, 1),
        (2, 2),
        (3, 3),
        (5, 4),
        (10, 8),
        (15, 12),
        (20, 16),
        (25, 20),
        (30, 24),
        (35, 28),
        (45, 36),
        (55, 44),
        (70, 56),
    ),
    1.333: (
        (1, 1),
        (2, 2),
        (4, 3),
        (8, 6),
        (12, 9),
        (16, 12),
        (20, 15),
        (24, 18),
        (28, 21),
        (36, 27),
        (48, 36),
        (60, 45),
        (72, 54),
    ),
    1.5: (
        (1, 1),
        (2, 2),
        (3, 2),
        (6, 4),
        (9, 6),
        (15, 10),
        (21, 14),
        (27, 18),
        (33, 22),
        (39, 26),
        (48, 32),
        (63, 42),
        (78, 52),
    ),
    1.75: (
        (1, 1),
        (2, 2),
        (3, 3),
        (7, 4),
        (11, 6),
        (14, 8),
        (21, 12),
        (28, 16),
        (35, 20),
        (42, 24),
        (56, 32),
        (70, 40),
        (84, 48),
    ),
    2.0: (
        (1, 1),
        (2, 2),
        (4, 2),
        (6, 3),
        (10, 5),
        (16, 8),
        (22, 11),
        (30, 15),
        (38, 19),
        (46, 23),
        (60, 30),
        (74, 37),
        (90, 45),
    ),
    2.5: (
        (1, 1),
        (2, 2),
        (5, 2),
        (10, 4),
        (15, 6),
        (20, 8),
        (25, 10),
        (30, 12),
        (40, 16),
        (50, 20),
        (65, 26),
        (80, 32),
        (100, 40),
    ),
    3.0: (
        (1, 1),
        (2, 2),
        (6, 2),
        (9, 3),
        (15, 5),
        (21, 7),
        (27, 9),
        (36, 12),
        (45, 15),
        (54, 18),
        (72, 24),
        (90, 30),
        (111, 37),
    ),
}

H_DIV_W_TEMPLATES: tuple[float, ...] = tuple(sorted(_SCALES_1M))
PIXEL_BUDGETS: dict[str, int] = {"0.06M": 7, "0.25M": 10, "0.60M": 12, "1M": 13}  # budget -> number of scales


@dataclass(frozen=True)
class ScaleSchedule:
    """Token grids per scale plus the grid their RoPE positions are placed on."""

    scales: tuple[tuple[int, int], ...]  # (h, w) in latent tokens per scale, coarse to fine
    rope_grid: tuple[int, int]  # (H, W) grid on which every scale's RoPE positions are spread

    def __post_init__(self) -> None:
        scales = tuple((int(h), int(w)) for h, w in self.scales)
        rope_grid = (int(self.rope_grid[0]), int(self.rope_grid[1]))
        if not scales:
            raise ValueError("a scale schedule needs at least one scale")
        if len(scales) > MAX_SCALES:
            raise ValueError(f"{len(scales)} scales given; at most {MAX_SCALES} are supported (lvl_embed)")
        if any(h <= 0 or w <= 0 for h, w in scales):
            raise ValueError(f"scale sizes must be positive, got {scales}")
        for (h0, w0), (h1, w1) in itertools.pairwise(scales):
            if h1 < h0 or w1 < w0:
                raise ValueError(f"scales must not shrink from coarse to fine: {(h0, w0)} -> {(h1, w1)}")
        last_h, last_w = scales[-1]
        if rope_grid[0] < last_h or rope_grid[1] < last_w:
            raise ValueError(f"rope_grid {rope_grid} is smaller than the last scale {scales[-1]}")
        # store plain int tuples so equal schedules compare and hash equal whatever was passed in
        object.__setattr__(self, "scales", scales)
        object.__setattr__(self, "rope_grid", rope_grid)

    @property
    def num_scales(self) -> int:
        return len(self.scales)

    @property
    def tokens_per_scale(self) -> tuple[int, ...]:
        return tuple(h * w for h, w in self.scales)

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens_per_scale)

    @property
    def token_offsets(self) -> tuple[int, ...]:
        """Start of each scale in the concatenated token sequence, then the total (num_scales + 1 values)."""
        offsets = [0]
        for n in self.tokens_per_scale:
            offsets.append(offsets[-1] + n)
        return tuple(offsets)

    @property
    def final_hw(self) -> tuple[int, int]:
        return self.scales[-1]

    def truncated(self, num_scales: int) -> ScaleSchedule:
        """The first `num_scales` scales; RoPE positions stay those of the full schedule."""
        if not 1 <= num_scales <= self.num_scales:
            raise ValueError(f"num_scales must be in [1, {self.num_scales}], got {num_scales}")
        return ScaleSchedule(self.scales[:num_scales], self.rope_grid)

    def rope_positions(self) -> tuple[Tensor, Tensor]:
        """(rows, cols) int64 of length total_tokens: each token's place on rope_grid, row-major per scale.

        Row i of a scale with h rows sits at round(i * H / h), computed in float32 and rounded
        half-to-even as upstream does (non-square templates hit exact .5 ties); columns alike.
        """
        grid_h, grid_w = self.rope_grid
        rows_L, cols_L = [], []
        for h, w in self.scales:
            rows_L.append(_spread(h, grid_h)[:, None].expand(h, w).reshape(-1))
            cols_L.append(_spread(w, grid_w)[None, :].expand(h, w).reshape(-1))
        return torch.cat(rows_L), torch.cat(cols_L)


def _spread(n: int, extent: int) -> Tensor:
    """n positions spread evenly over [0, extent): round(arange(n) * (extent / n)) in float32, as int64."""
    return (torch.arange(n, dtype=torch.float32) * (extent / n)).round().long()


def snap_h_div_w(h_div_w: float) -> float:
    """The template nearest to an h/w ratio; an exact tie goes to the one nearer square, as upstream."""
    lo, hi = H_DIV_W_TEMPLATES[0] / ASPECT_SLACK, H_DIV_W_TEMPLATES[-1] * ASPECT_SLACK
    if not (math.isfinite(h_div_w) and lo <= h_div_w <= hi):
        raise ValueError(
            f"unsupported aspect ratio h/w = {h_div_w}: it must lie in [{lo:.3f}, {hi:.3f}]; "
            f"supported templates are {list(H_DIV_W_TEMPLATES)}"
        )
    return min(H_DIV_W_TEMPLATES, key=lambda t: (abs(h_div_w - t), abs(math.log(t))))


def get_schedule(h_div_w: float = 1.0, pixel_budget: str = "1M") -> ScaleSchedule:
    """Infinity's schedule for an aspect ratio (snapped to a template) and a pixel budget."""
    if pixel_budget not in PIXEL_BUDGETS:
        raise ValueError(f"unknown pixel budget {pixel_budget!r}; known budgets are {list(PIXEL_BUDGETS)}")
    full = _SCALES_1M[snap_h_div_w(h_div_w)]
    return ScaleSchedule(full[: PIXEL_BUDGETS[pixel_budget]], rope_grid=full[-1])


def custom_schedule(scales: Sequence[tuple[int, int]], rope_grid: tuple[int, int] | None = None) -> ScaleSchedule:
    """A schedule outside the templates (small test models); the RoPE grid defaults to the last scale."""
    scales = tuple(scales)
    if not scales:
        raise ValueError("a scale schedule needs at least one scale")
    return ScaleSchedule(scales, rope_grid if rope_grid is not None else scales[-1])


def image_size(schedule: ScaleSchedule, downsample_factor: int = 16) -> tuple[int, int]:
    """Pixel size (H, W) of the image decoded from the schedule's last scale."""
    h, w = schedule.final_hw
    return h * downsample_factor, w * downsample_factor
