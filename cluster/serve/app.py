"""The varsearch HTTP API: a FastAPI ingress in front of the search workers.

    POST   /v1/search                      start searches -> 202 + job (200 with "wait": true)
    GET    /v1/search/{id}                 status, progress, results (images as base64 PNG)
    GET    /v1/search/{id}/events          progress as Server-Sent Events (resumable: Last-Event-ID)
    GET    /v1/search/{id}/images/{i}.png  prompt i's chosen image
    DELETE /v1/search/{id}                 cancel
    GET    /v1/models                      served model, verifiers, defaults and limits
    GET    /v1/studies                     study folders under `studies_dir` (cluster.serve.studies)
    GET    /v1/studies/{name}              a study's score-vs-NFE summary and winners per prompt
    GET    /v1/studies/{name}/images/{f}   a study's chosen image
    GET    /healthz                        liveness (never needs the token)
    GET    /, /studies, /static/...        the explorer pages (cluster/serve/static; never need the token)

Bodies are JSON only (never unpickled), size-limited, and checked strictly (cluster.serve.schema).
Beyond `max_active_jobs` queued + running searches POST answers 429 with Retry-After instead of
queueing without bound. The ingress holds the job store, so it runs one replica; the work and
the autoscaling are in `SearchWorker`. Build with `build_app(ServeArgs(...))` or point
`serve run` / `serve deploy` at `cluster.serve.app:build_app` (cluster/serve_config.yaml).
"""

import asyncio
import hmac
import os
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from cluster.serve.backend import ModelInfo
from cluster.serve.http import read_json, sse_stream
from cluster.serve.jobs import Job, JobStore
from cluster.serve.schema import BodyError, parse_body, to_requests
from cluster.serve.settings import TOKEN_ENV, ServeArgs
from cluster.serve.studies import MAX_WINNER_PROMPTS, StudyNotFound, image_file, list_studies, study_view
from cluster.serve.worker import SearchWorker

STATIC = Path(__file__).resolve().parent / "static"  # the explorer: plain HTML, CSS and JavaScript

# No /docs or /redoc: their pages load scripts from a CDN. The schema stays at /openapi.json.
api = FastAPI(title="varsearch", description="Search over visual autoregressive models.", docs_url=None, redoc_url=None)
api.mount("/static", StaticFiles(directory=STATIC), name="static")


@serve.deployment(num_replicas=1, max_ongoing_requests=256, ray_actor_options={"num_cpus": 0})
@serve.ingress(api)
class SearchAPI:
    def __init__(self, worker: DeploymentHandle, args: ServeArgs) -> None:
        self.worker = worker
        self.args = args
        self.token = args.token or os.environ.get(TOKEN_ENV) or None
        self.store = JobStore(args.max_jobs_kept, args.finished_job_ttl_s)
        self._running = asyncio.Semaphore(args.max_running_jobs)
        self._info: ModelInfo | None = None

    @api.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        return {"status": "ok", "jobs_active": self.store.num_active(), "jobs_kept": len(self.store)}

    @api.get("/", include_in_schema=False)
    async def explorer(self) -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @api.get("/studies", include_in_schema=False)
    async def study_viewer(self) -> FileResponse:
        return FileResponse(STATIC / "studies.html")

    @api.get("/v1/models")
    async def models(self, request: Request) -> dict[str, Any]:
        self._authorize(request)
        return {**(await self.info()).describe(), "limits": self.args.limits()}

    @api.post("/v1/search", status_code=202)
    async def create(self, request: Request) -> JSONResponse:
        self._authorize(request)
        data = await read_json(request, self.args.max_body_bytes)
        try:
            body = parse_body(data)
            requests, plan = to_requests(body, await self.info(), self.args)
        except BodyError as err:
            raise HTTPException(422, detail=err.errors) from None
        self.store.evict()
        if self.store.num_active() >= self.args.max_active_jobs:
            raise HTTPException(
                429,
                detail=f"{self.args.max_active_jobs} searches are queued or running; retry later",
                headers={"Retry-After": str(self.args.retry_after_s)},
            )
        spec = {
            **body.model_dump(exclude={"wait"}),
            "method": requests[0].config.method,
            "budget": requests[0].config.budget.nfe,
            "verifier": requests[0].verifier,
        }
        job = Job(uuid.uuid4().hex, requests, spec, plan, self.args.max_events_per_job)
        self.store.add(job)
        job.task = asyncio.create_task(self._run(job))
        if body.wait and await job.wait_done(self.args.wait_timeout_s):
            return JSONResponse(job.describe(), status_code=200)
        return JSONResponse(job.describe(), status_code=202, headers={"Location": job.url()})

    @api.get("/v1/search/{job_id}")
    async def get(self, job_id: str, request: Request, images: bool = True) -> dict[str, Any]:
        self._authorize(request)
        return self._job(job_id).describe(with_images=images)

    @api.get("/v1/search/{job_id}/images/{index}.png")
    async def image(self, job_id: str, index: int, request: Request) -> Response:
        self._authorize(request)
        job = self._job(job_id)
        if index not in job.images:
            raise HTTPException(404, detail=f"job {job_id} has no image {index} (yet)")
        return Response(job.images[index], media_type="image/png")

    @api.delete("/v1/search/{job_id}")
    async def cancel(self, job_id: str, request: Request) -> dict[str, Any]:
        self._authorize(request)
        job = self._job(job_id)
        if not job.done and job.task is not None:
            job.task.cancel()
            await asyncio.wait([job.task])
        return job.describe(with_images=False)

    @api.get("/v1/search/{job_id}/events")
    async def events(self, job_id: str, request: Request, after: int | None = None) -> StreamingResponse:
        """Server-Sent Events: `status`, `progress` (one trace row), `result` (a prompt done), `end`."""
        self._authorize(request)
        job = self._job(job_id)
        last_id = request.headers.get("last-event-id")
        if after is None and last_id is not None:
            if not last_id.isdigit():
                raise HTTPException(400, detail=f"Last-Event-ID must be an event number, got {last_id!r}")
            after = int(last_id)
        return StreamingResponse(
            sse_stream(job, after or 0),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @api.get("/v1/studies")
    async def studies(self, request: Request) -> dict[str, Any]:
        self._authorize(request)
        return {"studies": await asyncio.to_thread(list_studies, Path(self.args.studies_dir))}

    @api.get("/v1/studies/{name}")
    async def study(
        self, name: str, request: Request, max_prompts: Annotated[int, Query(ge=1, le=1000)] = MAX_WINNER_PROMPTS
    ) -> dict[str, Any]:
        """max_prompts: rows of the winners grid (the suite's first prompts)."""
        self._authorize(request)
        try:
            return await asyncio.to_thread(study_view, Path(self.args.studies_dir), name, max_prompts)
        except StudyNotFound as err:
            raise HTTPException(404, detail=str(err)) from None

    @api.get("/v1/studies/{name}/images/{file}")
    async def study_image(self, name: str, file: str, request: Request) -> FileResponse:
        self._authorize(request)
        try:
            return FileResponse(image_file(Path(self.args.studies_dir), name, file), media_type="image/png")
        except StudyNotFound as err:
            raise HTTPException(404, detail=str(err)) from None

    async def info(self) -> ModelInfo:
        if self._info is None:
            self._info = await self.worker.info.remote()
        return self._info

    async def _run(self, job: Job) -> None:
        stream = None
        try:
            async with self._running:
                job.set_status("running")
                stream = self.worker.search.options(stream=True).remote(job.requests)
                async for message in stream:
                    if message["type"] == "event":
                        job.progress(message["index"], message["row"])
                    elif message["type"] == "result":
                        job.add_result(message["index"], message["result"], message["png"])
                    else:
                        job.set_status("failed", message["message"])
            job.set_status("succeeded")
        except asyncio.CancelledError:
            if stream is not None:
                stream.cancel()
            job.set_status("cancelled")
        except Exception as err:  # a worker that died, or the cluster going away: the job fails, the API lives
            job.set_status("failed", f"{type(err).__name__}: {err}")

    def _job(self, job_id: str) -> Job:
        job = self.store.get(job_id)
        if job is None:
            raise HTTPException(404, detail=f"no job {job_id!r} (unknown, or evicted after it finished)")
        return job

    def _authorize(self, request: Request) -> None:
        if self.token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), self.token.encode()):
            raise HTTPException(401, detail="missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


def build_app(args: ServeArgs) -> Application:
    """The application: the ingress bound to a worker built from `args.backend`."""
    worker = SearchWorker.bind(args.backend, args.backend_options)
    return SearchAPI.bind(worker, args)
