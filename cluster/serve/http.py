"""HTTP helpers of the Serve ingress: strict JSON bodies and Server-Sent Events.

They live outside cluster/serve/app.py because Serve serialises the ingress class when it is
decorated, capturing only the module globals defined above it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import HTTPException, Request

from cluster.serve.jobs import Event, Job

KEEPALIVE_S = 15.0  # an SSE comment this often keeps proxies from closing an idle stream


async def read_json(request: Request, max_bytes: int) -> Any:
    """The body parsed as JSON: 415 unless JSON, 413 past `max_bytes`, 400 if not UTF-8 JSON."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise HTTPException(415, detail=f"send JSON with Content-Type: application/json, not {content_type!r}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise HTTPException(413, detail=f"body of {declared} bytes; the limit is {max_bytes}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise HTTPException(413, detail=f"body over {max_bytes} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise HTTPException(400, detail=f"body is not valid UTF-8: {err.reason} at byte {err.start}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise HTTPException(400, detail=f"malformed JSON: {err}") from None


async def sse_stream(job: Job, after: int) -> AsyncIterator[str]:
    """The job's events after `after`, then live ones until the job ends; a comment every KEEPALIVE_S."""
    while True:
        tick = job.tick
        for event in job.events_after(after):
            yield sse_format(event)
            after = event.seq
            if event.kind == "end":
                return
        if job.done:  # the client resumed after the end event
            return
        try:
            await asyncio.wait_for(tick.wait(), KEEPALIVE_S)
        except TimeoutError:
            yield ": keep-alive\n\n"


def sse_format(event: Event) -> str:
    return f"id: {event.seq}\nevent: {event.kind}\ndata: {json.dumps(event.data, allow_nan=False)}\n\n"
