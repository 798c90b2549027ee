"""A generator replica: one engine, the KV caches of the candidates it computed, and a step
scheduler that batches candidates from many searches into one forward per scale.

Requests arrive as `WorkItem`s (a cache key if the coordinator believes this replica holds the
candidate, and always its address). A hit gathers the cached rows; a miss (a restart, an
eviction, a candidate moved here) rebuilds from the address with one teacher-forced forward,
reported as rebuild cost. Then the request waits in the scheduler, which runs one scale at a
time for every waiting candidate at the same scale (iteration-level batching, as in Orca and
vLLM): a search that asks for a rollout to the last scale shares each of those forwards with
whatever other searches are at the same scale. Only end states are stored; keys come back to
the coordinator, which releases them when its batches die.

The class is plain Python (async methods), so tests drive it without Ray; `actors.pools`
wraps it with `ray.remote`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from actors.batching import BatchingConfig, BatchQueue, node_id
from actors.candidates import CacheKey, WorkItem, pack_bits, unpack_bits
from generators.engine import CandidateBatch, ForwardCost, InfinityEngine


@dataclass(frozen=True)
class AdvanceReply:
    keys: list[CacheKey]  # where each candidate's new state is cached here
    new_bits: list[list[np.ndarray]]  # per candidate, packed bits of each newly sampled scale
    cost: ForwardCost
    images: np.ndarray | None = None  # (N, H, W, 3) uint8 when the request reached the last scale


@dataclass
class _Waiting:
    """A request inside the scheduler: its candidates' current state and where it must get to."""

    batch: CandidateBatch
    to_scale: int
    done: asyncio.Future
    cost: ForwardCost = field(default_factory=ForwardCost)


class GeneratorReplica:
    def __init__(
        self,
        make_engine: Callable[[], InfinityEngine],
        batching: BatchingConfig | None = None,
        max_cached_candidates: int = 4096,
    ) -> None:
        self.engine = make_engine()
        self.batching = batching or BatchingConfig()
        self.max_cached = max_cached_candidates
        self.incarnation = random.getrandbits(62)  # keys from an earlier life of this actor never hit
        self._groups: OrderedDict[int, tuple[CandidateBatch, set[int]]] = OrderedDict()  # LRU: batch, live rows
        self._next_group = 0
        self._engine_thread = ThreadPoolExecutor(1)  # one model: its work runs in order, off the event loop
        self._queue: BatchQueue[_Waiting] = BatchQueue(
            self.batching,
            rows=lambda w: len(w.batch),
            key=lambda w: (w.batch.num_scales_done, w.batch.num_cfg_rows),
            serve=self._step_group,
        )
        self._stats = {"forwards": 0, "forward_candidates": 0, "hits": 0, "misses": 0, "evicted": 0}

    # ---- the replica API -------------------------------------------------------------------

    def describe(self) -> dict:
        s = self.engine.schedule
        return {
            "num_scales": s.num_scales,
            "tokens_per_scale": list(s.tokens_per_scale),
            "bits_per_token": self.engine.model.cfg.bits_per_token,
            "depth": self.engine.model.cfg.depth,
            "device": str(self.engine.device),
            "node_id": node_id(),
        }

    async def advance(
        self, items: Sequence[WorkItem], to_scale: int, release: Sequence[CacheKey] = (), decode_final: bool = False
    ) -> AdvanceReply:
        """Advance the candidates to `to_scale` sampled scales; they must all be at the same scale.

        decode_final: if that is the last scale, send the images along (search scores every
        complete candidate, so this saves the round trip of a decode call).
        """
        self.release(release)
        batch, cost = await self._run(self._resolve, items, self._lookup_all(items))
        start = batch.num_scales_done
        if not start <= to_scale <= self.engine.schedule.num_scales:
            raise ValueError(f"cannot advance from {start} to {to_scale} scales")
        if start < to_scale:
            waiting = _Waiting(batch, to_scale, asyncio.get_running_loop().create_future(), cost)
            self._queue.put(waiting)
            batch, cost = await waiting.done
        keys = self._store(batch)
        new_bits = [[pack_bits(b[i].cpu().numpy()) for b in batch.bits[start:]] for i in range(len(batch))]
        final = decode_final and to_scale == self.engine.schedule.num_scales
        images = await self._run(self.engine.decode, batch) if final else None
        return AdvanceReply(keys, new_bits, cost, images)

    async def decode(
        self, items: Sequence[WorkItem], release: Sequence[CacheKey] = ()
    ) -> tuple[np.ndarray, ForwardCost]:
        """uint8 images (N, H, W, 3) of the candidates' accumulated codes, and any rebuild cost."""
        self.release(release)
        batch, cost = await self._run(self._resolve, items, self._lookup_all(items))
        return await self._run(self.engine.decode, batch), cost

    def release(self, keys: Sequence[CacheKey]) -> None:
        for incarnation, group, row in keys:
            if incarnation != self.incarnation or group not in self._groups:
                continue
            live = self._groups[group][1]
            live.discard(row)
            if not live:
                del self._groups[group]

    def stats(self) -> dict:
        return {**self._stats, "cached_candidates": sum(len(live) for _, live in self._groups.values())}

    # ---- cache --------------------------------------------------------------------------------

    def _store(self, batch: CandidateBatch) -> list[CacheKey]:
        gid = self._next_group
        self._next_group += 1
        self._groups[gid] = (batch, set(range(len(batch))))
        while sum(len(live) for _, live in self._groups.values()) > self.max_cached and len(self._groups) > 1:
            self._groups.popitem(last=False)  # a later request for these rebuilds them from the prefix
            self._stats["evicted"] += 1
        return [(self.incarnation, gid, row) for row in range(len(batch))]

    def _lookup_all(self, items: Sequence[WorkItem]) -> list[tuple[CandidateBatch, int] | None]:
        """Each item's cached (batch, row), or None for a miss. Runs on the event loop, which alone
        touches the store; the engine thread then works only on the batches handed to it."""
        if not items:
            raise ValueError("a request needs at least one candidate")
        found = []
        for item in items:
            key = item.key
            hit = key is not None and key[0] == self.incarnation and key[2] in self._groups.get(key[1], (None, ()))[1]
            if hit:
                self._groups.move_to_end(key[1])
            found.append((self._groups[key[1]][0], key[2]) if hit else None)
        self._stats["misses"] += sum(f is None for f in found)
        self._stats["hits"] += sum(f is not None for f in found)
        return found

    @torch.no_grad()
    def _resolve(
        self, items: Sequence[WorkItem], found: list[tuple[CandidateBatch, int] | None]
    ) -> tuple[CandidateBatch, ForwardCost]:
        """The candidates as one batch in request order: cached rows gathered, the rest rebuilt."""
        misses = [i for i, f in enumerate(found) if f is None]
        cost = ForwardCost()
        if misses:
            addrs = [items[i].address for i in misses]
            bits = self.engine.model.cfg.bits_per_token
            rebuilt, cost = self.engine.rebuild(
                [a.prompt for a in addrs],
                [a.seed for a in addrs],
                [a.path for a in addrs],
                [[torch.from_numpy(unpack_bits(b, bits)) for b in a.bits] for a in addrs],
                [a.sampling for a in addrs],
            )
            for row, i in enumerate(misses):
                found[i] = (rebuilt, row)
        pieces, run = [], []  # consecutive rows from the same source become one gather
        for source, row in found:
            if run and run[0][0] is not source:
                pieces.append(self._gather(run))
                run = []
            run.append((source, row))
        pieces.append(self._gather(run))
        batch = pieces[0] if len(pieces) == 1 else self.engine.concat(pieces)
        # A fork's children point at their parent's row: their own paths come from the request.
        paths = tuple(item.address.path for item in items)
        sampling = tuple(item.address.sampling for item in items)
        return replace(batch, paths=paths, sampling=sampling), cost

    def _gather(self, run: list[tuple[CandidateBatch, int]]) -> CandidateBatch:
        source, rows = run[0][0], [row for _, row in run]
        return source if rows == list(range(len(source))) else self.engine.select(source, rows)

    # ---- the step scheduler -------------------------------------------------------------------

    async def _step_group(self, group: list[_Waiting]) -> None:
        try:
            await self._step(group)
        except Exception as exc:  # a failed forward fails the requests in it, not the replica
            for w in group:
                if not w.done.done():
                    w.done.set_exception(exc)

    async def _step(self, group: list[_Waiting]) -> None:
        """One forward over one scale for every request in `group`; each is charged its own rows."""
        merged = group[0].batch if len(group) == 1 else self.engine.concat([w.batch for w in group])
        si = merged.num_scales_done
        t0 = time.perf_counter()
        stepped, _ = await self._run(self.engine.advance, merged, si + 1)
        wall = time.perf_counter() - t0
        self._stats["forwards"] += 1
        self._stats["forward_candidates"] += len(merged)
        tokens = self.engine.schedule.tokens_per_scale[si]
        offset = 0
        for w in group:
            n = len(w.batch)
            rows = list(range(offset, offset + n))
            w.batch = stepped if len(group) == 1 else await self._run(self.engine.select, stepped, rows)
            w.cost = w.cost + ForwardCost(nfe=n, tokens=n * tokens, wall_s=wall * n / len(merged))
            offset += n
            if w.batch.num_scales_done == w.to_scale:
                w.done.set_result((w.batch, w.cost))
            else:
                self._queue.put(w)

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._engine_thread, fn, *args)
