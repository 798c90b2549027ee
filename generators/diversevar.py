"""DiverseVAR (arXiv 2511.17074): soft singular-value suppression and amplification at early scales.

The paper's code is not public; this follows ../shared/reference/diversevar.md. Per row and per
scale, the (tokens x channels) feature map X = U diag(s) V^T is rebuilt with reweighted singular
values: SSR, s' = a * exp(-b * s) * s, on the model's input feature map (damps the dominant
"pivotal" component that fixes the composition early); SAR, s' = a2 * exp(b2 * s) * s, on its
output feature map. U and V are kept. Nothing is centred, as in the authors' earlier code.

Where (reconstructed, both readings selectable):
  placement="block": SSR on every selected block's input hidden states, SAR on its output.
  placement="model": SSR on the next-scale input after word_embed (before lvl_embed), SAR on the
                     final hidden state before the head.

Scale indexing: `scales` holds 0-based indices into the schedule, the engine's `si`: the forward
that samples scale si's tokens (its input is the SOS token at si = 0, else the upsampled sum of
scales 0..si-1). The paper's default "scales 4 and 6" has two readings (SCALE_READINGS): 1-indexed,
with k = 1 the SOS step, si = 3 and 5 (grids 6x6 and 12x12 of the 13-scale 1M schedule); 0-indexed,
si = 4 and 6 (grids 8x8 and 16x16). The default is the 1-indexed reading, the paper's own k = 1..K
notation: carried to the shapes world's 6 scales, (1, 2) was the sweep's best admissible reading
when confirmed (Vendi x1.18 at b = 0.45, Recall +0.05; the 0-indexed (2, 3) at b = 0.3 reached
x1.19 but lost Recall, docs/diversevar_sweep.json). `paper_scales` carries a reading to shorter
schedules.

Defaults (the rest of DiverseVARConfig) come from two sweeps on training captions, `varsearch
shapes diversevar-sweep`: the full grid (docs/diversevar_sweep.json, .png) and a finer one on b
around its choice (docs/diversevar_sweep_fine.json, .png; README "DiverseVAR").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from generators.infinity import FeatureHook, ScaleSpan

PAPER_NUM_SCALES = 13  # Infinity's 1M schedules, on which the paper's default was set
SCALE_READINGS = {"1-indexed": (3, 5), "0-indexed": (4, 6)}  # "scales 4 and 6" as si of the paper's 13 scales
PAPER_SCALES = SCALE_READINGS["1-indexed"]  # the sweep's choice of reading, see the module docstring


def paper_scales(num_scales: int, paper: tuple[int, ...] = PAPER_SCALES) -> tuple[int, ...]:
    """The paper's default scales (0-based si of its 13-scale schedules) moved to a `num_scales`
    schedule by relative position.

    si -> round(si * (num_scales - 1) / 12), halves rounded up, duplicates merged; the identity
    for 13 scales. E.g. for 6 scales (the shapes world) the 0-indexed reading (4, 6) -> (2, 3), the
    1-indexed (3, 5) -> (1, 2); for 4 scales (4, 6) -> (1, 2).
    """
    if num_scales < 1:
        raise ValueError(f"a schedule has at least one scale, got {num_scales}")
    pos = (math.floor(si * (num_scales - 1) / (PAPER_NUM_SCALES - 1) + 0.5) for si in paper)
    return tuple(dict.fromkeys(pos))


@dataclass(frozen=True)
class DiverseVARConfig:
    """Where and how strongly one candidate's decoding is reweighted. Hashable: part of SamplingParams.

    With `relative_strength` the exponents use s / s_max of each matrix: the top singular value is
    scaled by a * exp(-b) (SSR) or a2 * exp(b2) (SAR) whatever the model width or feature norm;
    without it, b and b2 multiply raw singular values (then ~1e-3 for 2048-wide hidden states).
    (a, b) = (1, 0) turns SSR off and (a2, b2) = (1, 0) turns SAR off, skipping their SVDs.

    Defaults: the sweeps' choice at the shapes world's default sampling, the setting with the
    highest Vendi whose accuracy stayed within 0.02 of plain sampling's and whose Recall rose
    (the finer sweep's confirm stage, 96 fresh training captions x 16 samples: Vendi x1.26,
    accuracy -0.003, Recall +0.030; docs/diversevar_sweep_fine.json). SAR is off: next to it,
    every b2 > 0 gave less Vendi in the shapes world (x1.11 at b2 = 0.05 when confirmed).
    """

    a: float = 1.0  # SSR multiplier; 0.9 / 1.1 cost accuracy / Vendi in the sweep
    b: float = 0.6  # SSR exponent (>= 0: suppression); top singular value x e^-0.6 = 0.55 per block
    a2: float = 1.0  # SAR multiplier
    b2: float = 0.0  # SAR exponent (>= 0: amplification); 0 = SAR off, see above
    scales: tuple[int, ...] = PAPER_SCALES  # 0-based schedule indices, see the module docstring
    placement: Literal["block", "model"] = "block"  # no "model" setting kept accuracy within 0.02
    blocks: tuple[int, ...] | None = None  # placement "block" only; None = every block
    rows: Literal["cond", "uncond", "both"] = "both"  # CFG rows reweighted; without CFG only cond rows exist
    relative_strength: bool = True

    def __post_init__(self) -> None:
        # accept lists (CLI, JSON) but store tuples so the config stays hashable
        object.__setattr__(self, "scales", _index_tuple("scales", self.scales))
        if self.blocks is not None:
            object.__setattr__(self, "blocks", _index_tuple("blocks", self.blocks))
        if self.a <= 0 or self.a2 <= 0:
            raise ValueError(f"multipliers a and a2 must be > 0, got a={self.a}, a2={self.a2}")
        if self.b < 0 or self.b2 < 0:
            raise ValueError(
                f"exponents b and b2 must be >= 0 (SSR suppresses, SAR amplifies), got b={self.b}, b2={self.b2}"
            )
        if self.placement not in ("block", "model"):
            raise ValueError(f"placement must be 'block' or 'model', got {self.placement!r}")
        if self.placement == "model" and self.blocks is not None:
            raise ValueError("blocks select blocks for placement='block'; placement='model' has none")
        if self.rows not in ("cond", "uncond", "both"):
            raise ValueError(f"rows must be 'cond', 'uncond' or 'both', got {self.rows!r}")

    @classmethod
    def for_schedule(cls, num_scales: int, **overrides: object) -> DiverseVARConfig:
        """The paper's default scales carried to a `num_scales` schedule (see `paper_scales`)."""
        return cls(**{"scales": paper_scales(num_scales), **overrides})

    def check(self, num_scales: int, depth: int) -> None:
        """Scales and blocks must exist in the model that decodes with this config."""
        if max(self.scales) >= num_scales:
            raise ValueError(f"diversevar scales {self.scales} exceed the schedule's {num_scales} scales (0-based)")
        if self.blocks is not None and max(self.blocks) >= depth:
            raise ValueError(f"diversevar blocks {self.blocks} exceed the model's {depth} blocks (0-based)")

    @property
    def ssr_on(self) -> bool:
        return (self.a, self.b) != (1.0, 0.0)

    @property
    def sar_on(self) -> bool:
        return (self.a2, self.b2) != (1.0, 0.0)


def _index_tuple(name: str, values: object) -> tuple[int, ...]:
    try:
        out = tuple(values)  # type: ignore[call-overload]
    except TypeError:
        raise ValueError(f"{name} must be a sequence of indices, got {values!r}") from None
    if not out or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in out):
        raise ValueError(f"{name} must be a non-empty sequence of non-negative ints, got {values!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"{name} has duplicates: {values!r}")
    return out


def reweight_singular_values(x_BLC: Tensor, stages: Sequence[tuple[float, float]], relative: bool) -> Tensor:
    """Each row's [L, C] matrix X = U diag(s) V^T becomes U diag(s') V^T, where every (a, b) of
    `stages` in turn maps s -> a * exp(b * t) * s, t = s or s / max(s).

    Computed as U diag(s' / s) U^T X from the eigendecomposition of the smaller Gram matrix
    (X X^T, or X^T X = V diag(s^2) V^T when L > C): the same map, but ~100x faster than
    torch.linalg.svd's default CUDA driver on these skinny matrices. fp64 inside (the Gram
    squares the condition number), autocast off; the result has x's dtype.
    """
    with torch.autocast(x_BLC.device.type, enabled=False):
        x = x_BLC.double()
        few_tokens = x.shape[-2] <= x.shape[-1]
        eigvals_BK, Q_BKK = torch.linalg.eigh(x @ x.mT if few_tokens else x.mT @ x)  # Q = U or V
        s_BK = eigvals_BK.clamp_min(0).sqrt()
        gain_BK = torch.ones_like(s_BK)  # s' / s, kept apart so zero singular values need no division
        for a, b in stages:
            t_BK = s_BK / s_BK.amax(-1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny) if relative else s_BK
            factor_BK = a * torch.exp(b * t_BK)
            s_BK, gain_BK = factor_BK * s_BK, factor_BK * gain_BK
        P_BKK = (Q_BKK * gain_BK.unsqueeze(-2)) @ Q_BKK.mT
        return (P_BKK @ x if few_tokens else x @ P_BKK).to(x_BLC.dtype)


def soft_suppress(x_BLC: Tensor, a: float, b: float, relative: bool = False) -> Tensor:
    """SSR: s' = a * exp(-b * s) * s per row; the largest singular values shrink the most."""
    return reweight_singular_values(x_BLC, [(a, -b)], relative)


def soft_amplify(x_BLC: Tensor, a2: float, b2: float, relative: bool = False) -> Tensor:
    """SAR: s' = a2 * exp(b2 * s) * s per row; the largest singular values grow the most."""
    return reweight_singular_values(x_BLC, [(a2, b2)], relative)


class DiverseVARHook(FeatureHook):
    """Applies one config to the given batch rows, each selected scale's tokens on their own.

    With placement "block", block i's SAR and block i+1's SSR act on the same tensor, so when
    both apply they are done together at block i's output, from one decomposition (another
    hook looking at block i's output then sees both).
    """

    def __init__(self, config: DiverseVARConfig, rows_R: Tensor | None, depth: int) -> None:
        self.config, self.rows_R, self.depth = config, rows_R, depth  # rows_R: rows to reweight; None = all
        self.ssr, self.sar = (config.a, -config.b), (config.a2, config.b2)

    def model_input(self, x_BLC: Tensor, spans: tuple[ScaleSpan, ...]) -> Tensor:
        on = self.config.placement == "model" and self.config.ssr_on
        return self._apply(x_BLC, spans, [self.ssr]) if on else x_BLC

    def final_hidden(self, h_BLC: Tensor, spans: tuple[ScaleSpan, ...]) -> Tensor:
        on = self.config.placement == "model" and self.config.sar_on
        return self._apply(h_BLC, spans, [self.sar]) if on else h_BLC

    def block_input(self, x_BLC: Tensor, block_idx: int, spans: tuple[ScaleSpan, ...]) -> Tensor:
        on = self._at_block(block_idx) and self.config.ssr_on and not self._fused(block_idx - 1)
        return self._apply(x_BLC, spans, [self.ssr]) if on else x_BLC

    def block_output(self, x_BLC: Tensor, block_idx: int, spans: tuple[ScaleSpan, ...]) -> Tensor:
        stages = [self.sar] if self._at_block(block_idx) and self.config.sar_on else []
        stages += [self.ssr] if self._fused(block_idx) else []
        return self._apply(x_BLC, spans, stages) if stages else x_BLC

    def _at_block(self, block_idx: int) -> bool:
        cfg = self.config
        return cfg.placement == "block" and (cfg.blocks is None or block_idx in cfg.blocks)

    def _fused(self, block_idx: int) -> bool:
        """Whether block_idx's output also gets block_idx + 1's SSR."""
        both_on = self.config.sar_on and self.config.ssr_on
        return (
            both_on and 0 <= block_idx < self.depth - 1 and self._at_block(block_idx) and self._at_block(block_idx + 1)
        )

    def _apply(self, x_BLC: Tensor, spans: tuple[ScaleSpan, ...], stages: list[tuple[float, float]]) -> Tensor:
        rows = slice(None) if self.rows_R is None else self.rows_R
        out = x_BLC
        for si, lo, hi in spans:
            if si not in self.config.scales:
                continue
            # [R, S_k, C]: one scale's feature map per selected row
            seg = reweight_singular_values(x_BLC[rows, lo:hi], stages, self.config.relative_strength)
            if seg.shape == x_BLC.shape:  # every row, one-scale forward: nothing to splice
                return seg
            if out is x_BLC:
                out = x_BLC.clone()
            out[rows, lo:hi] = seg
        return out
