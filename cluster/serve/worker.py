"""The deployment that runs searches: a `SearchBackend` behind a streaming Serve method.

`search(requests)` yields messages as they happen: {"type": "event", ...} for every trace row,
{"type": "result", ...} when a prompt's search ends (the image already PNG-encoded here, so
arrays never cross to the ingress), and {"type": "error", ...} if the search fails. The backend
is blocking code; it runs in a thread, and a cancelled stream stops it at its next event.
"""

from __future__ import annotations

import asyncio
import base64
import io
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from ray import serve

from cluster.serve.backend import ModelInfo, load_factory
from search.request import SearchRequest
from search.run import SearchResult


class SearchCancelled(Exception):
    """Raised inside the backend (from its event callback) when the client cancelled the job."""


def encode_png(image_HW3: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image_HW3).save(buf, format="PNG")
    return buf.getvalue()


def trace_summary(trace: list[dict]) -> dict[str, Any]:
    """What the search did, in a few numbers: images scored, and each pruning round."""
    scores = [row for row in trace if row["event"] == "score"]
    return {
        "scored": len(scores),
        "complete_scored": sum(row["complete"] for row in scores),
        "prune_rounds": [
            {
                "scale": row["branch_scale"],
                "kept": len(row["kept"]),
                "dropped": len(row["dropped"]),
                "threshold": row["threshold"],
            }
            for row in trace
            if row["event"] == "prune"
        ],
    }


def result_message(index: int, result: SearchResult) -> dict[str, Any]:
    return {
        "type": "result",
        "index": index,
        "png": encode_png(result.image),
        "result": {
            "index": index,
            "prompt": result.prompt,
            "seed": result.seed,
            "method": result.method,
            "score": result.score,
            "path": ".".join(map(str, result.path)),
            "params": result.params,
            "totals": result.totals,
            "wall_s": round(result.wall_s, 4),
            "image_shape": list(result.image.shape),
            "trace_summary": trace_summary(result.trace),
        },
    }


@serve.deployment(max_ongoing_requests=2, ray_actor_options={"num_cpus": 0.25})  # relays; replicas compute
class SearchWorker:
    def __init__(self, backend: str, backend_options: dict[str, Any]) -> None:
        self.served = load_factory(backend)(**backend_options)
        self._executor = ThreadPoolExecutor(self.served.max_concurrent, thread_name_prefix="search")

    def info(self) -> ModelInfo:
        return self.served.info

    async def search(self, requests: list[SearchRequest]) -> AsyncIterator[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        cancelled = threading.Event()

        def put(message: dict[str, Any] | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, message)

        def on_event(index: int, row: dict) -> None:
            if cancelled.is_set():
                raise SearchCancelled
            if "thumbnail" in row:  # uint8 array -> PNG data the page can show as is
                row = {**row, "thumbnail": base64.b64encode(encode_png(row["thumbnail"])).decode("ascii")}
            put({"type": "event", "index": index, "row": row})

        def work() -> None:
            try:
                if cancelled.is_set():
                    return
                for index, result in self.served.backend.run(requests, on_event):
                    put(result_message(index, result))
            except SearchCancelled:
                pass
            except Exception as err:  # reported to the client as the job's error
                put({"type": "error", "message": f"{type(err).__name__}: {err}"})
            finally:
                put(None)

        loop.run_in_executor(self._executor, work)
        try:
            while (message := await queue.get()) is not None:
                yield message
        finally:
            cancelled.set()  # on normal end a no-op; on cancellation the thread stops at its next event
