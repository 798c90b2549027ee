"""Beam search with rollouts (Riise et al.): w beams, c children each, scored on full images.

At every scale k, each beam proposes children that sample scale k; every child is rolled out
to the last scale and its image scored; the w children with the best rollouts become the beams
(their prefixes up to scale k, not the rollouts). The first scale starts from one empty prefix,
which proposes all w*c children. Cost: w*c * K(K+1)/2 NFEs (1365 for w*c = 15, K = 13) and
w*c * K verifier calls (195).
"""

from __future__ import annotations

from search.budget import Budget, most_within, rollout_nfe_per_slot
from search.context import SearchRun


def plan(budget: Budget, num_scales: int, beam_width: int) -> dict[str, int]:
    per_scale = most_within(
        budget, rollout_nfe_per_slot(num_scales), num_scales, "beam search", "candidates per scale", minimum=2
    )
    # the widest beam (up to beam_width, >= 2 children each) among those that use the most candidates
    width = max(range(1, min(beam_width, per_scale // 2) + 1), key=lambda w: (w * (per_scale // w), w))
    children = per_scale // width
    m = width * children
    return {
        "width": width,
        "children": children,
        "candidates_per_scale": m,
        "nfe": m * rollout_nfe_per_slot(num_scales),
        "verifier_calls": m * num_scales,
    }


def run(ctx: SearchRun, width: int, children: int) -> None:
    beams = ctx.start(1, [()])
    for k in range(ctx.num_scales):
        per_beam = width * children // len(beams)
        branched = ctx.advance(ctx.generator.fork(beams, per_beam), k + 1)
        scores = ctx.score(ctx.advance(branched), "rollout", branch_scale=k)
        beams = ctx.generator.select(branched, ctx.prune(branched, scores, keep=width, scale=k))
