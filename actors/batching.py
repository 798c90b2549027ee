"""The replicas' shared scheduler: requests wait in a BatchQueue until one call serves a group of them.

Both replicas batch the same way (iteration-level batching, as in Orca and vLLM): when work is
waiting and the batch is not full, wait `max_wait_s` for company, then take the oldest request
and every other request that may share its call (same scale, same image size), up to `max_batch`
rows. They differ only in what a row is, what may share a call, and what the call does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

Request = TypeVar("Request")


@dataclass(frozen=True)
class BatchingConfig:
    max_batch: int = 64  # candidates per forward (whole requests are never split)
    max_wait_s: float = 0.002  # how long a forward waits for more work when the batch is not full

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if not 0 <= self.max_wait_s <= 1:
            raise ValueError(f"max_wait_s must be in [0, 1] seconds, got {self.max_wait_s}")


class BatchQueue(Generic[Request]):
    """Waiting requests and the task that serves them, one group at a time, in arrival order.

    `rows` counts a request's rows (candidates, images); requests with equal `key`s may share a
    call; `serve` handles one group and must settle (or re-`put`) each request itself, errors
    included: the loop runs for the replica's lifetime. Use only inside the replica's event loop.
    """

    def __init__(
        self,
        config: BatchingConfig,
        rows: Callable[[Request], int],
        key: Callable[[Request], Hashable],
        serve: Callable[[list[Request]], Awaitable[None]],
    ) -> None:
        self.config = config
        self._rows, self._key, self._serve = rows, key, serve
        self._waiting: list[Request] = []
        self._wake: asyncio.Event | None = None  # made in the event loop, by the first put

    def put(self, request: Request) -> None:
        if self._wake is None:
            self._wake = asyncio.Event()
            asyncio.get_running_loop().create_task(self._run())
        self._waiting.append(request)
        self._wake.set()

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            if not self._waiting:
                self._wake.clear()
                await self._wake.wait()
            if sum(map(self._rows, self._waiting)) < self.config.max_batch and self.config.max_wait_s:
                await asyncio.sleep(self.config.max_wait_s)  # let other searches' requests join this call
            await self._serve(self._take_group())

    def _take_group(self) -> list[Request]:
        """The oldest request plus every later one with its key, up to max_batch rows (the first always)."""
        key = self._key(self._waiting[0])
        group, size = [], 0
        for request in list(self._waiting):
            n = self._rows(request)
            if self._key(request) == key and (not group or size + n <= self.config.max_batch):
                group.append(request)
                size += n
                self._waiting.remove(request)
        return group


def node_id() -> str | None:
    """The Ray node this process runs on (None outside Ray)."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except ImportError:
        return None
