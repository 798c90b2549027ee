"""The search coordinator: runs the search/ algorithms, unchanged, against pools of replicas.

One coordinator actor serves many searches at once (a threaded actor: each search runs in its
own thread; the replicas batch their steps together). It admits a search only if the cluster
budget can pay for what the search plans to spend, charges what it did spend, and keeps every
search's events for progress streams. It holds no candidate state a replica needs: candidates
are prefix addresses, so a lost replica costs a rebuild, never a search.
"""

from __future__ import annotations

import functools
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace

import ray

from actors.remote import RemoteGenerator, RemoteVerifier, ReplicaPool
from search.budget import Budget, BudgetError
from search.request import EventCallback, SearchRequest
from search.run import SearchResult, plan_search, run_search

MAX_EVENTS_PER_SEARCH = 10_000  # a progress log with thumbnails (<= 12 KB each), not the trace
MAX_FINISHED_SEARCHES = 1024  # event logs kept after their search ends


class SearchCancelled(RuntimeError):
    """The search was cancelled by its caller; it stops at its next event."""


class ClusterBudget:
    """The cluster's NFE budget: searches reserve what they plan to spend and settle what they spent."""

    def __init__(self, limit_nfe: int | None) -> None:
        if limit_nfe is not None and limit_nfe < 1:
            raise BudgetError(f"cluster NFE budget must be a positive integer, got {limit_nfe!r}")
        self.limit = limit_nfe
        self.reserved = 0
        self.spent = 0
        self._lock = threading.Lock()

    def reserve(self, nfe: int) -> None:
        with self._lock:
            if self.limit is not None and self.spent + self.reserved + nfe > self.limit:
                left = self.limit - self.spent - self.reserved
                raise BudgetError(f"cluster NFE budget exhausted: the search plans {nfe} NFEs, {left} are left")
            self.reserved += nfe

    def settle(self, reserved: int, spent: int) -> None:
        with self._lock:
            self.reserved -= reserved
            self.spent += spent

    def as_dict(self) -> dict[str, int | None]:
        return {"limit_nfe": self.limit, "reserved_nfe": self.reserved, "spent_nfe": self.spent}


def divide_budget(requests: Sequence[SearchRequest], total_nfe: int) -> list[SearchRequest]:
    """Give each request an equal share of `total_nfe` (each method then plans within its share)."""
    if not requests:
        return []
    share = total_nfe // len(requests)
    if share < 1:
        raise BudgetError(f"{total_nfe} NFEs cannot be divided among {len(requests)} searches")
    return [replace(r, config=replace(r.config, budget=Budget(nfe=share))) for r in requests]


class SearchCoordinator:
    def __init__(
        self,
        generators: Sequence,
        verifiers: dict[str, Sequence],
        cluster_nfe_budget: int | None = None,
        failover_deadline_s: float = 120.0,
    ) -> None:
        self.generators = ReplicaPool(generators, deadline_s=failover_deadline_s)
        self.verifiers = {
            name: RemoteVerifier(ReplicaPool(handles, deadline_s=failover_deadline_s))
            for name, handles in verifiers.items()
        }
        self.budget = ClusterBudget(cluster_nfe_budget)
        self._template = RemoteGenerator.connect(self.generators)
        self._events: dict[str, list[dict]] = {}
        self._cancelled: set[str] = set()
        self._finished: list[str] = []
        self._lock = threading.Lock()

    def search(self, request: SearchRequest, search_id: str | None = None) -> SearchResult:
        """Run one search to the end; its events are readable meanwhile under `search_id`."""
        search_id = search_id or uuid.uuid4().hex
        if request.verifier not in self.verifiers:
            raise ValueError(f"verifier {request.verifier!r} is not served; served: {sorted(self.verifiers)}")
        planned = plan_search(request.config, self._template.schedule.num_scales)["nfe"]
        self.budget.reserve(planned)
        events = self._events.setdefault(search_id, [])
        generator = replace(self._template, stats=type(self._template.stats)())
        spent = 0
        try:
            result = run_search(
                generator,
                self.verifiers[request.verifier],
                request.prompt,
                request.seed,
                request.config,
                request.sampling,
                on_event=functools.partial(self._record, search_id, events),
            )
            spent = result.totals["nfe"]
            result.totals = {**result.totals, **generator.stats.as_dict()}
            return result
        finally:
            self.budget.settle(planned, spent)
            generator.flush_releases()
            self._finish(search_id)

    def cancel(self, search_id: str) -> None:
        """Stop a running search at its next event (its spent NFEs stay charged)."""
        with self._lock:
            self._cancelled.add(search_id)

    def events(self, search_id: str, since: int = 0) -> list[dict]:
        return list(self._events.get(search_id, [])[since:])

    def status(self) -> dict:
        return {
            "budget": self.budget.as_dict(),
            "generator_replicas": len(self.generators),
            "generator_failures": self.generators.failures,
            "verifiers": {name: len(v.pool) for name, v in self.verifiers.items()},
            "num_scales": self._template.schedule.num_scales,
        }

    def replica_stats(self) -> dict:
        return {
            "generators": ray.get([h.stats.remote() for h in self.generators.handles]),
            "verifiers": {n: ray.get([h.stats.remote() for h in v.pool.handles]) for n, v in self.verifiers.items()},
        }

    def _record(self, search_id: str, events: list[dict], row: dict) -> None:
        if search_id in self._cancelled:
            raise SearchCancelled(f"search {search_id} was cancelled")
        if len(events) < MAX_EVENTS_PER_SEARCH:
            events.append(row)

    def _finish(self, search_id: str) -> None:
        with self._lock:
            self._cancelled.discard(search_id)
            self._finished.append(search_id)
            while len(self._finished) > MAX_FINISHED_SEARCHES:
                self._events.pop(self._finished.pop(0), None)


class RayBackend:
    """The SearchBackend protocol on a coordinator: submits every request at once, yields results
    as they finish, and relays progress events when asked to."""

    def __init__(self, coordinator, poll_s: float = 0.2) -> None:
        self.coordinator = coordinator
        self.poll_s = poll_s

    def run(
        self, requests: Sequence[SearchRequest], on_event: EventCallback | None = None
    ) -> Iterator[tuple[int, SearchResult]]:
        ids = [uuid.uuid4().hex for _ in requests]
        refs = {self.coordinator.search.remote(r, sid): i for i, (r, sid) in enumerate(zip(requests, ids, strict=True))}
        seen = [0] * len(requests)
        try:
            while refs:
                done, _ = ray.wait(list(refs), num_returns=1, timeout=self.poll_s if on_event else None)
                if on_event is not None:
                    self._relay(ids, refs.values(), seen, on_event)
                for ref in done:
                    i = refs.pop(ref)
                    if on_event is not None:
                        self._relay(ids, [i], seen, on_event)
                    yield i, _get(ref)
        finally:  # the caller stopped early (an error, a cancelled job): stop what still runs
            for ref, i in refs.items():
                self.coordinator.cancel.remote(ids[i])
                ray.cancel(ref)

    def _relay(self, ids: list[str], which, seen: list[int], on_event: EventCallback) -> None:
        which = list(which)
        batches = ray.get([self.coordinator.events.remote(ids[i], seen[i]) for i in which])
        for i, rows in zip(which, batches, strict=True):
            seen[i] += len(rows)
            for row in rows:
                on_event(i, row)


def _get(ref):
    """ray.get that raises the search's own error (BudgetError, ValueError) rather than Ray's wrapper."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        cause = err.as_instanceof_cause()
        raise (cause.cause if getattr(cause, "cause", None) is not None else cause) from None
