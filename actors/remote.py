"""The search algorithms' generator and verifier interfaces, served by pools of Ray replicas.

`RemoteGenerator` speaks the same protocol as the in-process `InfinityEngine` (start, advance,
fork, select, decode), so search/ runs unchanged against a cluster. It sends each candidate to
the replica that holds its cache; candidates with no cache (new ones, or ones whose replica is
lost) go to the least busy replica, which rebuilds them from their prefix. A replica that fails
mid-call is marked down for a moment and its share of the call is re-dispatched: the result is
the same (randomness is per candidate) and the recompute is reported as rebuild cost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import ray
from PIL import Image

from actors.candidates import CacheLease, ReleaseBuffer, RemoteBatch, RemoteCandidate, WorkItem
from generators.engine import DEFAULT_SAMPLING, ForwardCost
from generators.sampling import SamplingParams, check_same_guidance

ACTOR_ERRORS = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)


class ReplicasUnavailable(RuntimeError):
    """No replica of a pool answered within the failover deadline."""


class ReplicaPool:
    """Handles to the replicas of one kind, which of them are up, and how busy each is from here."""

    def __init__(self, handles: Sequence, retry_after_s: float = 0.5, deadline_s: float = 120.0) -> None:
        if not handles:
            raise ValueError("a pool needs at least one replica")
        self.handles = list(handles)
        self.retry_after_s, self.deadline_s = retry_after_s, deadline_s
        self._lock = threading.Lock()
        self._down_until = [0.0] * len(self.handles)
        self._in_flight = [0] * len(self.handles)
        self.failures = 0
        self.releases = ReleaseBuffer()

    def __len__(self) -> int:
        return len(self.handles)

    def up(self) -> list[int]:
        now = time.monotonic()
        return [i for i, t in enumerate(self._down_until) if t <= now]

    def load(self, replica: int) -> int:
        """Candidates (or calls) this process has in flight on `replica`."""
        return self._in_flight[replica]

    def least_busy(self, among: Sequence[int] | None = None) -> int:
        among = list(among) if among is not None else self.up()
        with self._lock:
            return min(among, key=lambda i: (self._in_flight[i], i))

    def mark_failed(self, replica: int) -> None:
        """A call failed: route new work elsewhere for a while (Ray restarts the actor meanwhile)."""
        with self._lock:
            self._down_until[replica] = time.monotonic() + self.retry_after_s
            self.failures += 1
        self.releases.forget(replica)

    def wait_for_any(self, since: float) -> list[int]:
        """Replicas that are up, waiting out a moment when all are marked down."""
        while not (up := self.up()):
            if time.monotonic() - since > self.deadline_s:
                raise ReplicasUnavailable(f"no replica of {len(self)} answered for {self.deadline_s:.0f} s")
            time.sleep(min(self._down_until) - time.monotonic() + 0.01)
        return up

    def begin(self, replica: int, n: int = 1) -> None:
        with self._lock:
            self._in_flight[replica] += n

    def end(self, replica: int, n: int = 1) -> None:
        with self._lock:
            self._in_flight[replica] -= n


@dataclass(frozen=True)
class RemoteSchedule:
    """What search needs of the schedule: its length and tokens per scale."""

    num_scales: int
    tokens_per_scale: tuple[int, ...]


@dataclass
class FailoverStats:
    """Work that a lost replica took with it and was redone elsewhere (reported apart)."""

    replica_failures: int = 0
    redispatched_candidates: int = 0
    decode_rebuild_nfe: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass
class RemoteGenerator:
    """The stepwise generator protocol over a pool of GeneratorReplica actors (one per search)."""

    pool: ReplicaPool
    schedule: RemoteSchedule
    bits_per_token: int
    stats: FailoverStats = field(default_factory=FailoverStats)
    eager_final_decode: bool = True  # complete candidates come back with their images

    @classmethod
    def connect(cls, pool: ReplicaPool) -> RemoteGenerator:
        info = ray.get(pool.handles[pool.least_busy()].describe.remote())
        return cls(pool, RemoteSchedule(info["num_scales"], tuple(info["tokens_per_scale"])), info["bits_per_token"])

    def start(
        self,
        prompts: Sequence[str],
        seeds: Sequence[int],
        sampling: SamplingParams | Sequence[SamplingParams] = DEFAULT_SAMPLING,
        paths: Sequence[tuple[int, ...]] | None = None,
    ) -> RemoteBatch:
        if not prompts or len(seeds) != len(prompts):
            raise ValueError(f"need one seed per prompt and at least one prompt, got {len(prompts)} and {len(seeds)}")
        params = list(sampling) if isinstance(sampling, Sequence) else [sampling] * len(prompts)
        paths = list(paths) if paths is not None else [()] * len(prompts)
        candidates = tuple(
            RemoteCandidate(p, int(s), tuple(path), sp, (), None)
            for p, s, path, sp in zip(prompts, seeds, paths, params, strict=True)
        )
        return RemoteBatch(candidates, 0, self.bits_per_token)

    def fork(self, batch: RemoteBatch, num_children: int | Sequence[int]) -> RemoteBatch:
        return batch.fork(num_children)

    def select(self, batch: RemoteBatch, indices: Sequence[int]) -> RemoteBatch:
        return batch.select(indices)

    def with_sampling(self, batch: RemoteBatch, sampling: SamplingParams | Sequence[SamplingParams]) -> RemoteBatch:
        """New settings ride in the candidates' addresses; caches stay valid since guidance cannot change."""
        params = list(sampling) if isinstance(sampling, Sequence) else [sampling] * len(batch)
        check_same_guidance([c.sampling for c in batch.candidates], params)
        candidates = tuple(replace(c, sampling=p) for c, p in zip(batch.candidates, params, strict=True))
        return RemoteBatch(candidates, batch.num_scales_done, self.bits_per_token)

    def advance(self, batch: RemoteBatch, to_scale: int | None = None) -> tuple[RemoteBatch, ForwardCost]:
        to_scale = self.schedule.num_scales if to_scale is None else to_scale
        if not batch.num_scales_done <= to_scale <= self.schedule.num_scales:
            raise ValueError(f"cannot advance from {batch.num_scales_done} to {to_scale} scales")
        if to_scale == batch.num_scales_done:
            return batch, ForwardCost()
        new: list[RemoteCandidate | None] = [None] * len(batch)
        cost = ForwardCost()

        def submit(replica: int, idx: list[int]):
            items = [self._item(batch.candidates[i], replica) for i in idx]
            handle = self.pool.handles[replica]
            releases = self.pool.releases.take(replica)
            return handle.advance.remote(items, to_scale, releases, decode_final=self.eager_final_decode)

        def accept(replica: int, idx: list[int], reply) -> None:
            nonlocal cost
            cost = cost + reply.cost
            for j, i in enumerate(idx):
                c = batch.candidates[i]
                lease = CacheLease(replica, reply.keys[j], self.pool.releases.add)
                image = None if reply.images is None else reply.images[j]
                bits = c.bits + tuple(reply.new_bits[j])
                new[i] = RemoteCandidate(c.prompt, c.seed, c.path, c.sampling, bits, lease, image)

        self._dispatch(self._assign(batch), submit, accept)
        return RemoteBatch(tuple(new), to_scale, self.bits_per_token), cost

    def decode(self, batch: RemoteBatch) -> np.ndarray:
        """Images of the candidates: those sent along with their last step, the rest decoded remotely."""
        images: list[np.ndarray | None] = [c.image for c in batch.candidates]
        todo = [i for i, image in enumerate(images) if image is None]
        if not todo:
            return np.stack(images)
        missing = batch.select(todo)

        def submit(replica: int, idx: list[int]):
            items = [self._item(missing.candidates[i], replica) for i in idx]
            return self.pool.handles[replica].decode.remote(items, self.pool.releases.take(replica))

        def accept(replica: int, idx: list[int], reply) -> None:
            decoded, cost = reply
            self.stats.decode_rebuild_nfe += cost.rebuild_nfe
            for j, i in enumerate(idx):
                images[todo[i]] = decoded[j]

        self._dispatch(self._assign(missing), submit, accept)
        return np.stack(images)

    def flush_releases(self) -> None:
        """Hand freed cache keys back now (they otherwise ride along with the next call)."""
        for replica, handle in enumerate(self.pool.handles):
            keys = self.pool.releases.take(replica)
            if keys:
                handle.release.remote(keys)

    # ---- routing --------------------------------------------------------------------------------

    def _item(self, c: RemoteCandidate, replica: int) -> WorkItem:
        key = c.lease.key if c.lease is not None and c.lease.replica == replica else None
        return WorkItem(key, c.address())

    def _assign(self, batch: RemoteBatch, avoid: Sequence[int] = ()) -> dict[int, list[int]]:
        """Candidates to replicas: each to the one holding its cache if that one is up; the rest
        to the least busy replicas, in contiguous chunks so children of one parent stay together."""
        up = [r for r in self.pool.wait_for_any(time.monotonic()) if r not in avoid] or self.pool.up()
        groups: dict[int, list[int]] = {}
        homeless = []
        for i, c in enumerate(batch.candidates):
            if c.lease is not None and c.lease.replica in up and c.lease.replica not in avoid:
                groups.setdefault(c.lease.replica, []).append(i)
            else:
                homeless.append(i)
        if homeless:  # fresh candidates spread over replicas; rebuilt ones go to the least busy
            k = min(len(up), len(homeless)) if not groups and batch.num_scales_done == 0 else 1
            targets = sorted(up, key=self.pool.load)[:k]
            for replica, chunk in zip(targets, np.array_split(np.array(homeless), k), strict=True):
                groups.setdefault(replica, []).extend(int(i) for i in chunk)
        return groups

    def _dispatch(
        self,
        groups: dict[int, list[int]],
        submit: Callable[[int, list[int]], ray.ObjectRef],
        accept: Callable[[int, list[int], object], None],
    ) -> None:
        """Send every group to its replica at once; re-dispatch the groups of replicas that fail."""
        started = time.monotonic()
        while groups:
            refs = {}
            for replica, idx in groups.items():
                self.pool.begin(replica, len(idx))
                refs[replica] = submit(replica, idx)
            failed: list[int] = []
            for replica, idx in groups.items():
                try:
                    accept(replica, idx, ray.get(refs[replica]))
                except ACTOR_ERRORS:
                    self.pool.mark_failed(replica)
                    self.stats.replica_failures += 1
                    self.stats.redispatched_candidates += len(idx)
                    failed += idx
                finally:
                    self.pool.end(replica, len(idx))
            if not failed:
                return
            if time.monotonic() - started > self.pool.deadline_s:
                raise ReplicasUnavailable(f"gave up re-dispatching {len(failed)} candidates")
            up = self.pool.wait_for_any(started)
            groups = {self.pool.least_busy(up): failed}


class RemoteVerifier:
    """The verifier interface over a pool of VerifierReplica actors, with failover."""

    def __init__(self, pool: ReplicaPool, max_image_side: int | None = None) -> None:
        self.pool = pool
        self.max_image_side = max_image_side  # downscale before sending, for a verifier that needs less
        self.info = ray.get(pool.handles[0].describe.remote())["info"]

    def score(self, prompts: Sequence[str], images: np.ndarray) -> np.ndarray:
        images = self._downscaled(images)
        started = time.monotonic()
        while True:
            replica = self.pool.least_busy(self.pool.wait_for_any(started))
            self.pool.begin(replica)
            try:
                return ray.get(self.pool.handles[replica].score.remote(list(prompts), images))
            except ACTOR_ERRORS:
                self.pool.mark_failed(replica)
            finally:
                self.pool.end(replica)

    def _downscaled(self, images: np.ndarray) -> np.ndarray:
        side = self.max_image_side
        if side is None or max(images.shape[1:3]) <= side:
            return images
        h, w = images.shape[1:3]
        scale = side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        return np.stack([np.asarray(Image.fromarray(im).resize(size, Image.BICUBIC)) for im in images])
