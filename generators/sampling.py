"""Classifier-free guidance on logits and bitwise top-k / top-p sampling.

Each candidate draws its random numbers from its own CPU generator seeded by
(request seed, candidate path, scale index), so its samples never depend on which other
candidates share its batch, on the device, or on the order of requests. Upstream Infinity
uses one generator for the whole batch; this is deliberately different.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from generators.diversevar import DiverseVARConfig

ScaleValue = float | tuple[float, ...]


@dataclass(frozen=True)
class SamplingParams:
    """How one candidate turns logits into bits. Defaults: Infinity-2B's notebook settings."""

    cfg: ScaleValue = 3.0  # guidance scale, or one value per scale
    tau: ScaleValue = 0.5  # temperature, or one value per scale
    top_k: int = 900  # upstream semantics over V=2: 1 = greedy bits, 0 or >= 2 = no-op
    top_p: float = 0.97  # a bit whose minority probability <= 1 - top_p becomes deterministic
    diversevar: DiverseVARConfig | None = None  # SVD reweighting of this candidate's forwards; None = off

    def __post_init__(self) -> None:
        for name in ("cfg", "tau"):
            values = getattr(self, name)
            values = values if isinstance(values, tuple) else (values,)
            if not values or not all(isinstance(v, int | float) for v in values):
                raise ValueError(f"{name} must be a number or a non-empty tuple of numbers, got {values!r}")
        taus = self.tau if isinstance(self.tau, tuple) else (self.tau,)
        if any(t <= 0 for t in taus):
            raise ValueError(f"tau must be > 0, got {self.tau!r}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 <= self.top_p <= 1.0:
            raise ValueError(f"top_p must be in [0, 1], got {self.top_p}")
        if self.diversevar is not None and not isinstance(self.diversevar, DiverseVARConfig):
            raise ValueError(f"diversevar must be a DiverseVARConfig or None, got {self.diversevar!r}")

    def cfg_at(self, scale: int) -> float:
        return _at(self.cfg, scale, "cfg")

    def tau_at(self, scale: int) -> float:
        return _at(self.tau, scale, "tau")

    def check_scales(self, num_scales: int) -> None:
        """Per-scale lists must cover the schedule."""
        for name in ("cfg", "tau"):
            values = getattr(self, name)
            if isinstance(values, tuple) and len(values) < num_scales:
                raise ValueError(f"{name} lists {len(values)} values but the schedule has {num_scales} scales")

    def cooled(self, factor: float) -> SamplingParams:
        """The same settings with every temperature times `factor` (< 1: cooler, as for rollouts)."""
        if not factor > 0:
            raise ValueError(f"a temperature factor must be > 0, got {factor!r}")
        tau = tuple(t * factor for t in self.tau) if isinstance(self.tau, tuple) else self.tau * factor
        return replace(self, tau=tau)

    @property
    def uses_cfg(self) -> bool:
        values = self.cfg if isinstance(self.cfg, tuple) else (self.cfg,)
        return any(v != 1 for v in values)


def check_same_guidance(old: Sequence[SamplingParams], new: Sequence[SamplingParams]) -> None:
    """New settings for existing candidates (one each) must keep each one's CFG on or off."""
    if len(new) != len(old):
        raise ValueError(f"got {len(new)} sampling params for {len(old)} candidates")
    if any(a.uses_cfg != b.uses_cfg for a, b in zip(old, new, strict=True)):
        raise ValueError("new sampling settings may not turn classifier-free guidance on or off mid-candidate")


def _at(value: ScaleValue, scale: int, name: str) -> float:
    if not isinstance(value, tuple):
        return float(value)
    if scale >= len(value):
        raise ValueError(f"{name} has {len(value)} per-scale values, scale {scale} has none")
    return float(value[scale])


def guided_logits(logits_RBLV: Tensor, cfg_B: Tensor, inv_tau_B: Tensor, num_candidates: int) -> Tensor:
    """Mix cond rows [0, B) and uncond rows [B, 2B) as cfg*l_c + (1-cfg)*l_u after 1/tau.

    With one row per candidate (no CFG) only the temperature is applied. Returns [B, L, V].
    """
    logits = logits_RBLV * inv_tau_B.repeat(logits_RBLV.shape[0] // num_candidates)[:, None, None]
    if logits.shape[0] == num_candidates:
        return logits
    cfg = cfg_B[:, None, None]
    return cfg * logits[:num_candidates] + (1 - cfg) * logits[num_candidates:]


def bit_probabilities(logits_BLV: Tensor, top_k_B: Tensor, top_p_B: Tensor) -> Tensor:
    """P(bit = 1) after upstream's top-k / top-p filtering over each bit's two logits, [B, L, d].

    top-k keeps logits >= the k-th largest (k = 1: greedy; k = 0 or >= 2: everything).
    top-p drops, in ascending order, entries whose cumulative probability <= 1 - top_p,
    never the largest; with two outcomes that drops the minority bit when its probability
    is <= 1 - top_p.
    """
    B, L, V = logits_BLV.shape
    pair = logits_BLV.float().view(B, L, V // 2, 2)  # [..., (bit=0, bit=1)]
    p1 = pair.softmax(-1)[..., 1]
    minority = torch.minimum(p1, 1 - p1)
    greedy = (top_k_B == 1)[:, None, None]
    top_p = top_p_B[:, None, None]
    drop_minority = greedy | ((top_p > 0) & (minority <= 1 - top_p) & (p1 != 0.5))
    tie = pair[..., 0] == pair[..., 1]
    deterministic = (pair[..., 1] > pair[..., 0]).float()
    return torch.where(drop_minority & ~tie, deterministic, p1)


def candidate_seed(seed: int, path: Sequence[int], scale: int) -> int:
    """A 63-bit seed that depends only on (request seed, candidate path, scale index)."""
    key = f"{seed}/{'.'.join(map(str, path))}/{scale}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") & (2**63 - 1)


def sample_bits(p1_BLd: Tensor, seeds: Sequence[int], paths: Sequence[Sequence[int]], scale: int) -> Tensor:
    """Draw bits with each candidate's own generator; returns uint8 [B, L, d] on p1's device."""
    B = p1_BLd.shape[0]
    if len(seeds) != B or len(paths) != B:
        raise ValueError(
            f"need one seed and path per candidate: {B} candidates, {len(seeds)} seeds, {len(paths)} paths"
        )
    n = p1_BLd[0].numel()
    uniform = torch.stack(
        [
            torch.rand(n, generator=torch.Generator().manual_seed(candidate_seed(s, p, scale)))
            for s, p in zip(seeds, paths, strict=True)
        ]
    ).view_as(p1_BLd)
    return (uniform.to(p1_BLd.device) < p1_BLd).to(torch.uint8)
