"""Simulated replicas for coordinator benchmarks: the replica API with a fixed cost per step.

A simulated generator holds no model: each request occupies the replica for `step_s` per scale
(one request at a time, like one accelerator) and returns well-formed keys and bits. They import
neither torch nor a model, so a 2-core machine can host a hundred of them and the benchmark
measures what the coordinator costs, not what the models cost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from actors.candidates import CacheKey, WorkItem


@dataclass(frozen=True)
class SimCost:
    """Duck-types generators.engine.ForwardCost (which needs torch) for the coordinator's sums."""

    nfe: int = 0
    tokens: int = 0
    rebuild_nfe: int = 0
    rebuild_tokens: int = 0
    wall_s: float = 0.0

    def astuple(self) -> tuple:
        return (self.nfe, self.tokens, self.rebuild_nfe, self.rebuild_tokens, self.wall_s)


@dataclass(frozen=True)
class SimSampling:
    """Stands in for SamplingParams in simulated requests, which would pull torch into every replica."""


@dataclass(frozen=True)
class SimReply:
    keys: list[CacheKey]
    new_bits: list[list[np.ndarray]]
    cost: SimCost
    images: np.ndarray | None = None


class SimGeneratorReplica:
    def __init__(self, step_s: float, tokens_per_scale: Sequence[int] = (1, 4, 9, 16, 36, 64), bits: int = 16) -> None:
        self.step_s, self.tokens_per_scale, self.bits = step_s, tuple(tokens_per_scale), bits
        self._busy = asyncio.Lock()
        self._busy_s = 0.0
        self._next = 0

    def describe(self) -> dict:
        return {"num_scales": len(self.tokens_per_scale), "tokens_per_scale": list(self.tokens_per_scale),
                "bits_per_token": self.bits, "device": "simulated", "node_id": None}  # fmt: skip

    async def advance(
        self, items: Sequence[WorkItem], to_scale: int, release: Sequence[CacheKey] = (), decode_final: bool = False
    ) -> SimReply:
        start = len(items[0].address.bits)
        async with self._busy:
            t0 = time.perf_counter()
            await asyncio.sleep(self.step_s * (to_scale - start))
            self._busy_s += time.perf_counter() - t0
        packed = [np.zeros((self.tokens_per_scale[s], (self.bits + 7) // 8), np.uint8) for s in range(start, to_scale)]
        self._next += 1
        n = len(items) * (to_scale - start)
        images = (
            np.zeros((len(items), 8, 8, 3), np.uint8)
            if decode_final and to_scale == len(self.tokens_per_scale)
            else None
        )
        return SimReply([(0, self._next, i) for i in range(len(items))], [packed] * len(items), SimCost(n, n), images)

    async def decode(self, items: Sequence[WorkItem], release: Sequence[CacheKey] = ()) -> tuple[np.ndarray, SimCost]:
        return np.zeros((len(items), 8, 8, 3), np.uint8), SimCost()

    def release(self, keys: Sequence[CacheKey]) -> None:
        pass

    def busy_seconds(self) -> float:
        return self._busy_s


class SimVerifierReplica:
    """Scores by a hash of the prompt and the request order: deterministic, no model."""

    def __init__(self) -> None:
        from verifiers.base import VerifierInfo

        self.info = VerifierInfo(name="sim", version="simulated", score_definition="pseudo-random")
        self._calls = 0

    def describe(self) -> dict:
        return {"info": self.info, "node_id": None}

    async def score(self, prompts: Sequence[str], images: np.ndarray) -> np.ndarray:
        self._calls += 1
        return np.random.default_rng(self._calls).random(len(prompts))
