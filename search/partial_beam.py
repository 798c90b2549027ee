"""Partial-scale beam search (TTS-VAR style): prune on previews, no rollouts.

At each pruning scale every beam proposes children that sample that scale; the children are
scored on the decoded preview of their accumulated codes (a blurry full-size image) and the
best w are kept. At other scales the beams just advance. Finished beams are scored as complete
images. Far cheaper in NFEs than rollouts; the preview is a noisier signal.
"""

from __future__ import annotations

from collections.abc import Sequence

from search.budget import Budget, BudgetError, checked_scales
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


def plan(
    budget: Budget,
    num_scales: int,
    beam_width: int,
    prune_scales: Sequence[int] | None,
    children: int | None = None,
) -> dict:
    """Width, children and pruning scales the budget pays for (children given: checked, not derived)."""
    scales = checked_scales(prune_scales, num_scales, default=default_prune_scales(num_scales))

    def fits(width: int, children: int) -> bool:
        return budget.pays(*cost(num_scales, scales, width, children))

    width = beam_width
    if children is None:
        while width > 1 and not fits(width, 2):
            width -= 1
    wanted = 2 if children is None else children
    if not fits(width, wanted):
        nfe, calls = cost(num_scales, scales, width, wanted)
        raise BudgetError(
            f"budget too small for partial-scale beam search: {width} beams x {wanted} children at {len(scales)} "
            f"pruning scales need {nfe} NFEs and {calls} verifier calls, got {budget}"
        )
    if children is None:
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
