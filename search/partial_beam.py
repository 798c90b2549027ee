"""Partial-scale beam search (TTS-VAR style): prune on previews, no rollouts.

At each pruning scale every beam proposes children that sample that scale; the children are
scored on the decoded preview of their accumulated codes (a blurry full-size image) and the
best w are kept. At other scales the beams just advance. Finished beams are scored as complete
images. Far cheaper in NFEs than rollouts; the preview is a noisier signal.
"""

from __future__ import annotations

from collections.abc import Sequence

from search.budget import Budget, BudgetError
from search.context import SearchRun


def default_prune_scales(num_scales: int) -> tuple[int, ...]:
    """Every scale but the first (a 1x1 preview is a flat colour)."""
    return tuple(range(1, num_scales))


def cost(num_scales: int, prune_scales: Sequence[int], width: int, children: int) -> tuple[int, int]:
    """(NFEs, verifier calls) of one search."""
    nfe, calls, beams = 0, 0, 1
    for k in range(num_scales):
        if k in prune_scales:
            nfe += width * children
            calls += width * children
            beams = width
        else:
            nfe += beams
    if num_scales - 1 not in prune_scales:
        calls += beams
    return nfe, calls


def plan(budget: Budget, num_scales: int, beam_width: int, prune_scales: Sequence[int] | None) -> dict:
    scales = tuple(sorted(set(prune_scales))) if prune_scales is not None else default_prune_scales(num_scales)
    if not scales or any(not 0 <= k < num_scales for k in scales):
        raise BudgetError(f"prune scales must be a non-empty subset of 0..{num_scales - 1}, got {prune_scales}")

    def fits(width: int, children: int) -> bool:
        nfe, calls = cost(num_scales, scales, width, children)
        return (budget.nfe is None or nfe <= budget.nfe) and (
            budget.verifier_calls is None or calls <= budget.verifier_calls
        )

    width = beam_width
    while width > 1 and not fits(width, 2):
        width -= 1
    if not fits(width, 2):
        nfe, calls = cost(num_scales, scales, 1, 2)
        raise BudgetError(
            f"budget too small for partial-scale beam search: 2 children at {len(scales)} pruning scales "
            f"need {nfe} NFEs and {calls} verifier calls, got {budget}"
        )
    children = 2
    while fits(width, children + 1):
        children += 1
    nfe, calls = cost(num_scales, scales, width, children)
    return {"width": width, "children": children, "prune_scales": list(scales), "nfe": nfe, "verifier_calls": calls}


def run(ctx: SearchRun, width: int, children: int, prune_scales: Sequence[int]) -> None:
    beams = ctx.start(1, [()])
    for k in range(ctx.num_scales):
        if k not in prune_scales:
            beams = ctx.advance(beams, k + 1)
            continue
        branched = ctx.advance(ctx.generator.fork(beams, width * children // len(beams)), k + 1)
        kind = "final" if k == ctx.num_scales - 1 else "preview"
        scores = ctx.score(branched, kind, branch_scale=k)
        beams = ctx.generator.select(branched, ctx.prune(branched, scores, keep=width, scale=k))
    if ctx.num_scales - 1 not in prune_scales:
        ctx.score(beams, "final", branch_scale=ctx.num_scales - 1)
