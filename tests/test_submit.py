"""`varsearch submit`: the job it builds, and real jobs on a local `ray start --head` (slow suite).

The head runs in its own temp dir with its own ports and is stopped by signalling the
`ray start --block` process this test started (which takes its Ray processes down with it):
`ray stop` would stop every Ray instance of this user on the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from cluster.local_ray import LOCAL_RAY_ENV
from cluster.submit import EXCLUDES, entrypoint, runtime_env

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HEAD_PORTS = [
    "port", "dashboard-port", "ray-client-server-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
    "metrics-export-port", "runtime-env-agent-port", "node-manager-port", "object-manager-port",
]  # fmt: skip


def test_entrypoint_runs_only_run_and_study() -> None:
    command = entrypoint(["run", "--prompt", "a red circle"], "python")
    assert command == "python -m cluster.cli run --prompt 'a red circle'"
    for bad in ([], ["serve"], ["shapes", "train"]):
        with pytest.raises(ValueError, match=r"`varsearch run \.\.\.` or `varsearch study \.\.\.`"):
            entrypoint(bad, "python")


def test_runtime_env_uploads_the_project_and_keeps_remote_clusters_default() -> None:
    local = runtime_env(ROOT, "http://127.0.0.1:8265", {"OMP_NUM_THREADS": "1"})
    assert local["working_dir"] == str(ROOT) and local["excludes"] == EXCLUDES
    assert local["env_vars"]["HF_HUB_OFFLINE"] == "1" and local["env_vars"]["OMP_NUM_THREADS"] == "1"
    assert LOCAL_RAY_ENV.items() <= local["env_vars"].items()
    remote = runtime_env(ROOT, "http://10.0.0.5:8265", {})
    assert not set(LOCAL_RAY_ENV) & set(remote["env_vars"])  # loopback settings only for local heads
    with pytest.raises(ValueError, match="not the varsearch project"):
        runtime_env(ROOT / "tests", "http://127.0.0.1:8265", {})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def head() -> Iterator[str]:
    """A Ray head with the dashboard (the Jobs API) on 127.0.0.1; yields the Jobs API address."""
    temp_dir = tempfile.mkdtemp(prefix="vs-ray-", dir="/tmp")  # short: Ray's socket paths must fit
    ports = {name: free_port() for name in HEAD_PORTS}
    env = {**os.environ, **LOCAL_RAY_ENV, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    # 2 CPUs: the default layout's replicas take 1.5 (generator 1, verifier 0.5); with 1 the job waits for ever
    cmd = [
        str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
        "--include-dashboard=true", f"--temp-dir={temp_dir}", "--num-cpus=2", "--disable-usage-stats",
        *(f"--{name}={port}" for name, port in ports.items()),
    ]  # fmt: skip
    log = open(Path(temp_dir) / "ray-start.log", "w")  # noqa: SIM115 (closed in teardown)
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{ports['dashboard-port']}"
    try:
        deadline = time.monotonic() + 90
        while not _answers(address + "/api/version"):
            assert proc.poll() is None, (Path(temp_dir) / "ray-start.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the Ray head did not come up in 90 s"
            time.sleep(0.5)
        yield address
    finally:
        proc.send_signal(signal.SIGTERM)  # `ray start --block` shuts its own processes down
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.ConnectionError:
        return False


@pytest.mark.slow  # about 35 s with the head's start and stop
def test_submitted_run_writes_its_record(head: str, tmp_path: Path) -> None:
    out = tmp_path / "job-out"
    cmd = [
        str(BIN / "varsearch"), "submit", "--address", head, "--wait", "--working-dir", str(ROOT),
        "--env", "OMP_NUM_THREADS=1", "--",
        "run", "--prompt", "a red circle", "--method", "base", "--budget", "6", "--out", str(out),
    ]  # fmt: skip
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, **LOCAL_RAY_ENV})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "SUCCEEDED" in done.stdout and "1 prompt(s), 6 NFEs" in done.stdout  # the job's own log, followed
    record = json.loads((out / "record.json").read_text())
    assert record["totals"]["nfe"] == 6 and len(record["results"]) == 1  # one base sample of 6 scales
    assert (out / record["results"][0]["image"]).is_file()
    print(f"submit --wait of a base/6-NFE run: {time.perf_counter() - t0:.1f} s")


@pytest.mark.slow
def test_failing_job_returns_its_exit_status(head: str) -> None:
    cmd = [
        str(BIN / "varsearch"), "submit", "--address", head, "--wait", "--working-dir", str(ROOT),
        "--", "run", "--prompt", " ",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, **LOCAL_RAY_ENV})
    assert "prompts must not be empty" in done.stdout  # the job's usage error, in its followed log
    assert done.returncode == 2 and "FAILED" in done.stdout  # typer's usage-error status, passed through
