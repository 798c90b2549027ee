"""Search jobs as the HTTP API sees them: status, progress events, results, and a bounded store.

A job lives in the ingress replica's memory (the ingress runs one replica for this reason):
polls, event streams and cancellation find it there. Its events are numbered so an event stream
can resume after `Last-Event-ID`; they are kept up to a limit, results always. Finished jobs
are evicted oldest first past a count or an age. Everything here runs on one asyncio loop.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]
ACTIVE: tuple[Status, ...] = ("queued", "running")


@dataclass(frozen=True)
class Event:
    seq: int  # 1, 2, ... within the job: the SSE id
    kind: str  # "status" | "progress" (a trace row) | "result" (one prompt done) | "end"
    data: dict[str, Any]


class Job:
    """One POST /v1/search: a search per prompt, run by a worker, watched by any number of clients."""

    def __init__(
        self, job_id: str, requests: list, spec: dict[str, Any], plan: dict[str, Any], max_events: int
    ) -> None:
        self.id = job_id
        self.requests = requests  # SearchRequest per prompt
        self.spec = spec  # the request with defaults filled in, echoed back to clients
        self.plan = plan  # what the budget buys per prompt (search.run.plan_search)
        self.status: Status = "queued"
        self.error: str | None = None
        self.created = time.time()
        self.started: float | None = None
        self.finished: float | None = None
        self.results: dict[int, dict[str, Any]] = {}  # prompt index -> result, without the image
        self.images: dict[int, bytes] = {}  # prompt index -> PNG
        self.nfe_by_prompt = [0] * len(requests)
        self.events: deque[Event] = deque(maxlen=max_events)
        self.num_events = 0
        self.task: asyncio.Task | None = None
        self._tick = asyncio.Event()  # set and replaced on every change; waiters hold the old one
        self._done = asyncio.Event()

    @property
    def done(self) -> bool:
        return self.status not in ACTIVE

    @property
    def tick(self) -> asyncio.Event:
        """Take this before reading events; it is set at the next change."""
        return self._tick

    def progress(self, index: int, row: dict[str, Any]) -> None:
        self.nfe_by_prompt[index] = max(self.nfe_by_prompt[index], row.get("nfe_so_far", 0))
        self._emit("progress", {"index": index, "budget_nfe": self.spec["budget"], **row})

    def add_result(self, index: int, result: dict[str, Any], png: bytes) -> None:
        self.results[index] = result
        self.images[index] = png
        self.nfe_by_prompt[index] = result["totals"]["nfe"]
        self._emit("result", self._public_result(index, with_image=False))

    def set_status(self, status: Status, error: str | None = None) -> None:
        if self.done:
            return  # a finished job stays finished (a late cancel after success changes nothing)
        now = time.time()
        if status == "running":
            self.started = now
        self.status, self.error = status, error
        if self.done:
            self.finished = now
            self._emit("end", {"status": status, "error": error})
            self._done.set()
        else:
            self._emit("status", {"status": status})

    async def wait_done(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(asyncio.shield(self._done.wait()), timeout_s)
        except TimeoutError:
            return False
        return True

    def events_after(self, seq: int) -> list[Event]:
        return [e for e in self.events if e.seq > seq]

    def describe(self, with_images: bool = True) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "error": self.error,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "request": self.spec,
            "plan": self.plan,
            "progress": {
                "prompts": len(self.requests),
                "prompts_done": len(self.results),
                "nfe": sum(self.nfe_by_prompt),
                "budget_nfe": self.spec["budget"] * len(self.requests),
                "events": self.num_events,
                "events_kept_from": self.events[0].seq if self.events else None,
            },
            "results": [self._public_result(i, with_images) for i in sorted(self.results)],
            "links": {"self": self.url(), "events": self.url("/events")},
        }

    def url(self, suffix: str = "") -> str:
        return f"/v1/search/{self.id}{suffix}"

    def _public_result(self, index: int, with_image: bool) -> dict[str, Any]:
        out = {**self.results[index], "image_url": self.url(f"/images/{index}.png")}
        if with_image:
            out["image_png_base64"] = base64.b64encode(self.images[index]).decode("ascii")
        return out

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        self.num_events += 1
        self.events.append(Event(self.num_events, kind, data))
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()


class JobStore:
    """Jobs by id, oldest first; finished jobs go past `max_jobs` or after `ttl_s` seconds."""

    def __init__(self, max_jobs: int, ttl_s: float) -> None:
        self.max_jobs = max_jobs
        self.ttl_s = ttl_s
        self._jobs: OrderedDict[str, Job] = OrderedDict()

    def __len__(self) -> int:
        return len(self._jobs)

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def num_active(self) -> int:
        return sum(not job.done for job in self._jobs.values())

    def add(self, job: Job) -> None:
        self.evict()
        if len(self._jobs) >= self.max_jobs:
            raise RuntimeError(f"job store full: {len(self._jobs)} jobs are active (limit {self.max_jobs})")
        self._jobs[job.id] = job

    def evict(self, now: float | None = None) -> list[str]:
        """Drop expired finished jobs, then the oldest finished ones until there is room for one more."""
        now = time.time() if now is None else now
        finished = [j for j in self._jobs.values() if j.done]
        expired = [j for j in finished if now - j.finished > self.ttl_s]
        excess = len(self._jobs) - len(expired) - (self.max_jobs - 1)
        rest = [j for j in finished if j not in expired]
        gone = expired + rest[: max(excess, 0)]
        for job in gone:
            del self._jobs[job.id]
        return [job.id for job in gone]
