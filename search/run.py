"""Run one search: choose the algorithm by name, derive its parameters from the budget, execute.

`plan_search` tells what a budget buys (or refuses it) without running anything; `run_search`
executes and returns the best image, the totals and the trace.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from search import beam_search, gto, partial_beam, random_search
from search.budget import Budget
from search.context import Generator, SearchRun, Verifier

Method = Literal["base", "random", "gto", "beam", "partial_beam"]
METHODS: tuple[str, ...] = ("base", "random", "gto", "beam", "partial_beam")


@dataclass(frozen=True)
class SearchConfig:
    method: Method = "beam"
    budget: Budget = field(default_factory=lambda: Budget(nfe=1365))
    beam_width: int = 3  # w; the paper's 15 candidates per scale split as w=3, c=5 (the split is not published)
    # beam, partial_beam: the scales (0-based) after which children are scored and pruned;
    # default: every scale for beam (the paper), every scale but the first for partial_beam
    prune_scales: tuple[int, ...] | None = None
    children: int | None = None  # beam, partial_beam: children per beam; default: as many as the budget pays for
    rollout_tau_scale: float = 1.0  # beam, gto: rollouts sample at the request's temperatures times this
    selection: Literal["best_ever", "final"] = "best_ever"  # best complete image ever scored, or of the last round
    chunk_size: int = 64  # random search: candidates per batch

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown search method {self.method!r}; choose one of {list(METHODS)}")
        if self.selection not in ("best_ever", "final"):
            raise ValueError(f"unknown selection rule {self.selection!r}; choose best_ever or final")
        if self.beam_width < 1:
            raise ValueError(f"beam_width must be >= 1, got {self.beam_width}")
        if not 0 < self.rollout_tau_scale <= 4:
            raise ValueError(f"rollout_tau_scale must be in (0, 4], got {self.rollout_tau_scale}")
        if self.children is not None and self.children < 2:
            raise ValueError(f"children must be >= 2 (one child per beam never prunes), got {self.children}")


@dataclass
class SearchResult:
    prompt: str
    seed: int
    method: str
    params: dict[str, Any]
    image: np.ndarray  # the selected image, uint8 (H, W, 3)
    score: float
    path: tuple[int, ...]
    bits: list  # the selected image's address: bits per scale
    totals: dict[str, int]
    trace: list[dict]
    wall_s: float


def plan_search(config: SearchConfig, num_scales: int) -> dict[str, Any]:
    """The parameters a budget buys for the method, with their exact cost; raises BudgetError if too small."""
    budget = config.budget
    if config.method == "base":
        random_search.plan(budget, num_scales)  # the same minimum: one sample
        return {"samples": 1, "nfe": num_scales, "verifier_calls": 1}
    if config.method == "random":
        return random_search.plan(budget, num_scales)
    if config.method == "gto":
        return gto.plan(budget, num_scales)
    if config.method == "beam":
        return beam_search.plan(budget, num_scales, config.beam_width, config.prune_scales, config.children)
    return partial_beam.plan(budget, num_scales, config.beam_width, config.prune_scales, config.children)


def _runner(config: SearchConfig, params: dict[str, Any]) -> Callable[[SearchRun], None]:
    if config.method in ("base", "random"):
        return lambda ctx: random_search.run(ctx, params["samples"], config.chunk_size)
    if config.method == "gto":
        return lambda ctx: gto.run(ctx, params["children"])
    if config.method == "beam":
        return lambda ctx: beam_search.run(ctx, params["width"], params["children"], params["prune_scales"])
    return lambda ctx: partial_beam.run(ctx, params["width"], params["children"], params["prune_scales"])


def run_search(
    generator: Generator,
    verifier: Verifier,
    prompt: str,
    seed: int,
    config: SearchConfig,
    sampling: Any,
    on_event: Callable[[dict], None] | None = None,
) -> SearchResult:
    """Search one prompt; `on_event` sees every score and prune record as it happens."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("prompt must be a non-empty string")
    info = getattr(verifier, "info", None)
    if getattr(info, "batch_relative", False):
        raise ValueError(
            f"verifier {info.name!r} scores images only relative to their batch, but search compares scores "
            "across batches; give the ensemble fixed per-member stats"
        )
    params = plan_search(config, generator.schedule.num_scales)
    ctx = SearchRun(
        generator,
        verifier,
        prompt,
        seed,
        config.budget,
        sampling,
        config.method,
        on_event=on_event,
        rollout_tau_scale=config.rollout_tau_scale,
    )
    t0 = time.perf_counter()
    _runner(config, params)(ctx)
    chosen = ctx.best if config.selection == "best_ever" else ctx.last_complete
    return SearchResult(
        prompt=prompt,
        seed=seed,
        method=config.method,
        params=params,
        image=chosen.image,
        score=chosen.score,
        path=chosen.path,
        bits=chosen.bits,
        totals=ctx.ledger.totals(),
        trace=ctx.trace,
        wall_s=time.perf_counter() - t0,
    )
