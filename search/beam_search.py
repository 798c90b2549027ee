"""Beam search with rollouts (Riise et al.): w beams, c children each, scored on full images.

At every pruning scale k, each beam proposes children that sample the scales from the end of
the beam's prefix up to k; every child is rolled out to the last scale and its image scored; the
w children with the best rollouts become the beams (their prefixes up to scale k, not the
rollouts). The first pruning scale starts from one empty prefix, which proposes all w*c children.

By default every scale prunes (the paper): children branch at k itself, and the cost is
w*c * K(K+1)/2 NFEs (1365 for w*c = 15, K = 13) and w*c * K verifier calls (195). With fewer
pruning scales, children branch just after the previous one (scale p) and sample p..k before
they are judged, so a choice is never made on one coarse scale alone; each pruning scale then
costs w*c * (K - p) NFEs and w*c verifier calls. After the last pruning scale nothing is left to
decide: the best rollout scored is the answer (a kept beam would resample its rollout's bits,
since randomness follows the candidate's path).

When a budget pays every-scale pruning for a single beam only (fewer than 2 beams x 2 children per
scale) and neither pruning scales nor children are given, the mid scales 1..K//2 prune instead:
one beam choosing between two children at every scale is greedy, not search, and trailed random
search at 42 NFEs in the shapes world where the mid scales did not (docs/search_quality.md).
"""

from __future__ import annotations

from collections.abc import Sequence

from search.budget import Budget, BudgetError, checked_scales, most_within
from search.context import SearchRun

ONE_BEAM_BELOW = 4  # candidates per scale: with fewer, the beam is one beam (each needs >= 2 children)


def mid_scales(num_scales: int) -> tuple[int, ...]:
    """Scales 1..K//2: past the single-token first scale, up to where the layout is set ((1, 2, 3) of 6)."""
    return tuple(range(1, num_scales // 2 + 1))


def branch_points(prune_scales: Sequence[int]) -> list[tuple[int, int]]:
    """(p, k) for each pruning scale k: children branch from beams holding p scales and are pruned after k."""
    points, p = [], 0
    for k in prune_scales:
        points.append((p, k))
        p = k + 1
    return points


def nfe_per_candidate(num_scales: int, prune_scales: Sequence[int]) -> int:
    """NFEs one candidate slot costs over the search: K - p for each pruning scale."""
    return sum(num_scales - p for p, _ in branch_points(prune_scales))


def plan(
    budget: Budget,
    num_scales: int,
    beam_width: int,
    prune_scales: Sequence[int] | None = None,
    children: int | None = None,
) -> dict:
    """Width, children and pruning scales the budget pays for (children given: checked, not derived)."""
    scales = checked_scales(prune_scales, num_scales, default=tuple(range(num_scales)))
    unit_nfe = nfe_per_candidate(num_scales, scales)
    if children is None:
        per_scale = most_within(budget, unit_nfe, len(scales), "beam search", "candidates per scale", minimum=2)
        if prune_scales is None and per_scale < ONE_BEAM_BELOW and len(mid_scales(num_scales)) > 1:
            scales = mid_scales(num_scales)
            unit_nfe = nfe_per_candidate(num_scales, scales)
            per_scale = most_within(budget, unit_nfe, len(scales), "beam search", "candidates per scale", minimum=2)
        # the widest beam (up to beam_width, >= 2 children each) among those that use the most candidates
        width = max(range(1, min(beam_width, per_scale // 2) + 1), key=lambda w: (w * (per_scale // w), w))
        children = per_scale // width
    else:
        width = beam_width
        nfe, calls = width * children * unit_nfe, width * children * len(scales)
        if not budget.pays(nfe, calls):
            raise BudgetError(
                f"budget too small for beam search: {width} beams x {children} children at {len(scales)} pruning "
                f"scales need {nfe} NFEs and {calls} verifier calls, got {budget}"
            )
    m = width * children
    return {
        "width": width,
        "children": children,
        "prune_scales": list(scales),
        "candidates_per_scale": m,
        "nfe": m * unit_nfe,
        "verifier_calls": m * len(scales),
    }


def run(ctx: SearchRun, width: int, children: int, prune_scales: Sequence[int]) -> None:
    beams = ctx.start(1, [()])
    for _, k in branch_points(prune_scales):
        per_beam = width * children // len(beams)
        branched = ctx.advance(ctx.generator.fork(beams, per_beam), k + 1)
        scores = ctx.score(ctx.rollout(branched), "rollout", branch_scale=k)
        beams = ctx.generator.select(branched, ctx.prune(branched, scores, keep=width, scale=k))
