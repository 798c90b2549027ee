"""The Serve app's arguments: which backend to build and the limits that keep the service up.

`build_app(ServeArgs(...))` in Python, `args:` in cluster/serve_config.yaml, or
`serve run cluster.serve.app:build_app max_prompts=4` all set the same fields; unknown keys are
an error.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cluster.serve.backend import DEFAULT_BACKEND
from search.request import MAX_PROMPT_CHARS

TOKEN_ENV = "VARSEARCH_SERVE_TOKEN"  # read by the ingress replica when `token` is not given


class ServeArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: str = DEFAULT_BACKEND  # "module:function" returning a ServedModel
    backend_options: dict[str, Any] = Field(default_factory=dict)  # keyword arguments of that function
    token: str | None = None  # bearer token for /v1/*; None: $VARSEARCH_SERVE_TOKEN, else no auth
    studies_dir: str = "outputs/studies"  # study folders GET /v1/studies shows, read-only (relative: to the cwd)
    # request limits
    max_prompts: int = Field(16, ge=1)
    max_prompt_chars: int = Field(MAX_PROMPT_CHARS, ge=1, le=MAX_PROMPT_CHARS)
    max_budget_nfe: int = Field(10_000, ge=1)  # per prompt
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    # admission: beyond max_active_jobs queued + running searches, POST answers 429
    max_active_jobs: int = Field(32, ge=1)
    max_running_jobs: int = Field(2, ge=1)  # sent to the workers at once; the rest wait in the queue
    retry_after_s: int = Field(5, ge=1)
    # The in-memory job store holds at most max_jobs_kept x (max_events_per_job rows of ~300 bytes +
    # max_prompts PNGs): ~200 MB of rows at the defaults, plus ~3 GB of PNGs if every job had 16
    # images of 1024x1024 (~1.5 MB each); shapes-world PNGs are ~2 KB. Lower these for big models.
    max_jobs_kept: int = Field(128, ge=1)  # finished jobs beyond this are evicted, oldest first
    finished_job_ttl_s: float = Field(3600.0, gt=0)
    max_events_per_job: int = Field(5_000, ge=1)  # progress rows kept for replay; older ones are dropped
    # "wait": true holds the POST open only for small requests, and never past wait_timeout_s
    wait_max_nfe: int = Field(2_000, ge=1)  # summed over the request's prompts
    wait_timeout_s: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> ServeArgs:
        if self.max_running_jobs > self.max_active_jobs:
            raise ValueError(f"max_running_jobs {self.max_running_jobs} > max_active_jobs {self.max_active_jobs}")
        if self.max_active_jobs > self.max_jobs_kept:
            raise ValueError(f"max_active_jobs {self.max_active_jobs} > max_jobs_kept {self.max_jobs_kept}")
        if self.token is not None and len(self.token) < 8:
            raise ValueError("token must be at least 8 characters")
        return self

    def limits(self) -> dict[str, Any]:
        """The limits a client may need (GET /v1/models); never the token, nor server paths."""
        return self.model_dump(exclude={"backend", "backend_options", "token", "studies_dir"})
