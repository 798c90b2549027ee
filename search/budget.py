"""NFE budgets and their exact accounting, as in Riise et al. (arXiv 2510.16751).

1 NFE = one transformer forward of one candidate over one scale; the CFG batch rides in the same
forward and is not counted twice; rollout forwards count; verifier calls are counted apart. A
candidate that branches at scale k (1-based) and is rolled out to the end costs K-k+1 NFEs, so a
search with m candidates at every one of K scales costs m * K(K+1)/2 NFEs (1365 for m=15, K=13).
The token-weighted cost (scales differ by 1000x in tokens) is recorded next to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class BudgetError(ValueError):
    """A budget too small for the method, or a charge that would exceed it."""


@dataclass(frozen=True)
class Budget:
    """At most `nfe` transformer NFEs and/or `verifier_calls` scored images (None = unlimited)."""

    nfe: int | None = None
    verifier_calls: int | None = None

    def __post_init__(self) -> None:
        if self.nfe is None and self.verifier_calls is None:
            raise BudgetError("a search needs an NFE budget or a verifier-call budget")
        for name in ("nfe", "verifier_calls"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise BudgetError(f"{name} budget must be a positive integer, got {value!r}")

    def pays(self, nfe: int, verifier_calls: int) -> bool:
        """Whether a search costing this much stays within both limits."""
        return (self.nfe is None or nfe <= self.nfe) and (
            self.verifier_calls is None or verifier_calls <= self.verifier_calls
        )


@dataclass
class Ledger:
    """Running totals of one search; every charge is checked against the budget first."""

    budget: Budget
    nfe: int = 0
    tokens: int = 0
    rebuild_nfe: int = 0
    rebuild_tokens: int = 0
    verifier_calls: int = 0

    def check_nfe(self, nfe: int) -> None:
        if self.budget.nfe is not None and self.nfe + nfe > self.budget.nfe:
            raise BudgetError(f"spending {nfe} more NFEs would exceed the budget: {self.nfe} of {self.budget.nfe} used")

    def check_verifier_calls(self, calls: int) -> None:
        limit = self.budget.verifier_calls
        if limit is not None and self.verifier_calls + calls > limit:
            raise BudgetError(f"scoring {calls} more images would exceed the verifier budget {limit}")

    def charge_forward(self, nfe: int, tokens: int, rebuild_nfe: int = 0, rebuild_tokens: int = 0) -> None:
        self.check_nfe(nfe)
        self.nfe += nfe
        self.tokens += tokens
        self.rebuild_nfe += rebuild_nfe
        self.rebuild_tokens += rebuild_tokens

    def charge_verifier(self, calls: int) -> None:
        self.check_verifier_calls(calls)
        self.verifier_calls += calls

    def totals(self) -> dict[str, int]:
        return {
            "nfe": self.nfe,
            "tokens": self.tokens,
            "rebuild_nfe": self.rebuild_nfe,
            "rebuild_tokens": self.rebuild_tokens,
            "verifier_calls": self.verifier_calls,
        }


def rollout_nfe_per_slot(num_scales: int) -> int:
    """NFEs of one candidate per scale with rollouts, summed over scales: K(K+1)/2 (91 for K=13)."""
    return num_scales * (num_scales + 1) // 2


def most_within(budget: Budget, nfe_per_unit: int, calls_per_unit: int, method: str, unit: str, minimum: int) -> int:
    """The largest number of units (samples, candidates per scale, ...) the budget pays for."""
    limits = []
    if budget.nfe is not None:
        limits.append(budget.nfe // nfe_per_unit)
    if budget.verifier_calls is not None:
        limits.append(budget.verifier_calls // calls_per_unit)
    units = min(limits)
    if units < minimum:
        need = [f"{minimum * nfe_per_unit} NFEs"] if budget.nfe is not None else []
        need += [f"{minimum * calls_per_unit} verifier calls"] if budget.verifier_calls is not None else []
        raise BudgetError(f"budget too small for {method}: {minimum} {unit} need {' and '.join(need)}, got {budget}")
    return units


def checked_scales(prune_scales: Sequence[int] | None, num_scales: int, default: tuple[int, ...]) -> tuple[int, ...]:
    """Pruning scales sorted and deduplicated (`default` when None); BudgetError outside 0..K-1 or empty."""
    if prune_scales is None:
        return default
    scales = tuple(sorted(set(prune_scales)))
    if not scales or any(not 0 <= k < num_scales for k in scales):
        raise BudgetError(f"prune scales must be a non-empty subset of 0..{num_scales - 1}, got {list(prune_scales)}")
    return scales
