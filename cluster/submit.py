"""`varsearch submit`: send a `varsearch run` or `varsearch study` command to a Ray cluster as a Ray Job.

The job runs `python -m cluster.cli <command>` inside the uploaded project (runtime_env
working_dir), so the cluster runs this checkout's code, not whatever version it has installed;
the cluster's Python still needs the project's dependencies (`pip install -e .` or the image in
cluster/deploy/). Equivalent plain Ray command:

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m cluster.cli run ...
"""

from __future__ import annotations

import asyncio
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from cluster.local_ray import LOCAL_RAY_ENV, is_loopback

SUBMITTABLE = ("run", "study")
DEFAULT_ADDRESS = "http://127.0.0.1:8265"
# not uploaded with the working dir (.gitignore'd files are skipped by Ray as well)
EXCLUDES = [".git", ".venv", "outputs", "results", "logs", "checkpoints", "*.egg-info", "__pycache__", ".*_cache"]
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # nothing is downloaded at run time


def entrypoint(command: Sequence[str], python: str) -> str:
    """The shell command the job runs; only `run` and `study` are jobs."""
    if not command or command[0] not in SUBMITTABLE:
        got = command[0] if command else "nothing"
        raise ValueError(f"submit runs `varsearch run ...` or `varsearch study ...`, got {got!r}")
    return shlex.join([python, "-m", "cluster.cli", *command])


def runtime_env(working_dir: Path, address: str, env: dict[str, str]) -> dict[str, Any]:
    if not (working_dir / "cluster" / "cli.py").is_file():
        raise ValueError(f"{working_dir} is not the varsearch project (no cluster/cli.py)")
    loopback = is_loopback(urlparse(address).hostname or "")
    env_vars = {**OFFLINE_ENV, **(LOCAL_RAY_ENV if loopback else {}), **env}
    return {"working_dir": str(working_dir), "excludes": EXCLUDES, "env_vars": env_vars}


def submit(
    command: Sequence[str],
    address: str = DEFAULT_ADDRESS,
    working_dir: Path = Path("."),
    env: dict[str, str] | None = None,
    wait: bool = False,
    num_gpus: float = 0,
    python: str | None = None,
    echo: Callable[[str], Any] = print,
) -> int:
    """Submit and return 0, or with `wait` follow the logs and return the job's exit status.

    `python` defaults to this interpreter for a loopback head (same machine, same venv) and to
    `python` on the cluster's PATH otherwise.
    """
    from ray.job_submission import JobStatus, JobSubmissionClient

    loopback = is_loopback(urlparse(address).hostname or "")
    python = python or (sys.executable if loopback else "python")
    job_entrypoint = entrypoint(command, python)
    client = JobSubmissionClient(address)
    job_id = client.submit_job(
        entrypoint=job_entrypoint,
        runtime_env=runtime_env(working_dir.resolve(), address, env or {}),
        entrypoint_num_gpus=num_gpus or None,
        metadata={"submitted_by": "varsearch submit"},
    )
    echo(f"submitted {job_id} to {address}: {job_entrypoint}")
    if not wait:
        echo(f"follow it with: ray job logs --address {address} --follow {job_id}")
        return 0
    asyncio.run(_follow(client, job_id, echo))
    info = client.get_job_info(job_id)
    echo(f"job {job_id}: {info.status.value}")
    if info.status == JobStatus.SUCCEEDED:
        return 0
    return info.driver_exit_code or 1


async def _follow(client, job_id: str, echo: Callable[[str], Any]) -> None:
    async for lines in client.tail_job_logs(job_id):
        echo(lines.rstrip("\n"))
