"""A verifier replica: one verifier model, scoring images from many searches in shared batches.

Score requests queue up; the scheduler takes the oldest and every other request with images of
the same size, up to `max_batch` images, and runs one `score` call for all of them. Verifiers
here are per-image (the coordinator refuses batch-relative ones), so a score does not depend on
its batch-mates. Plain Python with async methods: `actors.pools` wraps it with `ray.remote`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from actors.batching import BatchingConfig, BatchQueue, node_id
from verifiers.base import Verifier, VerifierInfo, check_inputs


@dataclass
class _Request:
    prompts: list[str]
    images: np.ndarray  # (N, H, W, 3) uint8
    done: asyncio.Future


class VerifierReplica:
    def __init__(self, make_verifier: Callable[[], Verifier], batching: BatchingConfig | None = None) -> None:
        self.verifier = make_verifier()
        self.batching = batching or BatchingConfig(max_batch=256)
        self._model_thread = ThreadPoolExecutor(1)
        self._queue: BatchQueue[_Request] = BatchQueue(
            self.batching, rows=lambda r: len(r.images), key=lambda r: r.images.shape[1:], serve=self._score_group
        )
        self._stats = {"calls": 0, "images": 0, "requests": 0}

    def describe(self) -> dict:
        return {"info": self.verifier.info, "node_id": node_id()}

    @property
    def info(self) -> VerifierInfo:
        return self.verifier.info

    async def score(self, prompts: Sequence[str], images: np.ndarray) -> np.ndarray:
        """float64 [N] scores; validated here so one bad request cannot fail its batch-mates."""
        request = _Request(check_inputs(prompts, images), images, asyncio.get_running_loop().create_future())
        self._queue.put(request)
        return await request.done

    def stats(self) -> dict:
        return dict(self._stats)

    async def _score_group(self, group: list[_Request]) -> None:
        """One score call for every request in the group; each gets its own slice back."""
        prompts = [p for r in group for p in r.prompts]
        images = group[0].images if len(group) == 1 else np.concatenate([r.images for r in group])
        try:
            loop = asyncio.get_running_loop()
            scores = await loop.run_in_executor(self._model_thread, self.verifier.score, prompts, images)
        except Exception as exc:  # a failed call fails the requests in it, not the replica
            for r in group:
                r.done.set_exception(exc)
            return
        self._stats["calls"] += 1
        self._stats["images"] += len(images)
        self._stats["requests"] += len(group)
        offset = 0
        for r in group:
            r.done.set_result(scores[offset : offset + len(r.images)])
            offset += len(r.images)
