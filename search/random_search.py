"""Random search (best-of-N): n independent samples, keep the best scored one.

Cost: n * K NFEs and n verifier calls. Sample i has path (i,), so a larger n only adds samples:
the first n of a bigger search are exactly the samples of a smaller one.
"""

from __future__ import annotations

from search.budget import Budget, most_within
from search.context import SearchRun


def plan(budget: Budget, num_scales: int) -> dict[str, int]:
    n = most_within(budget, num_scales, 1, "random search", "sample", minimum=1)
    return {"samples": n, "nfe": n * num_scales, "verifier_calls": n}


def run(ctx: SearchRun, samples: int, chunk_size: int = 64) -> None:
    for start in range(0, samples, chunk_size):
        paths = [(i,) for i in range(start, min(samples, start + chunk_size))]
        batch = ctx.advance(ctx.start(len(paths), paths))
        ctx.score(batch, "sample", branch_scale=0)
