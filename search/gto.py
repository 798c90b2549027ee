"""Greedy Token Optimization (Riise et al.): commit one scale at a time.

At scale k, c children of the committed prefix each sample scale k and are rolled out to a full
image; the scale-k bits of the best-scored child are committed. Cost: c * K(K+1)/2 NFEs and
c * K verifier calls. The committed prefix's KV cache is shared by its children (fork gathers it).
"""

from __future__ import annotations

from search.budget import Budget, most_within, rollout_nfe_per_slot
from search.context import SearchRun


def plan(budget: Budget, num_scales: int) -> dict[str, int]:
    c = most_within(budget, rollout_nfe_per_slot(num_scales), num_scales, "GTO", "children per scale", minimum=2)
    return {"children": c, "nfe": c * rollout_nfe_per_slot(num_scales), "verifier_calls": c * num_scales}


def run(ctx: SearchRun, children: int) -> None:
    prefix = ctx.start(1, [()])
    for k in range(ctx.num_scales):
        branched = ctx.advance(ctx.generator.fork(prefix, children), k + 1)  # each samples scale k
        rollouts = ctx.rollout(branched)  # to the last scale (no-op at the last scale)
        scores = ctx.score(rollouts, "rollout", branch_scale=k)
        prefix = ctx.generator.select(branched, ctx.prune(branched, scores, keep=1, scale=k))
