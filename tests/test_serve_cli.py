"""`varsearch serve`: refuses to expose the API without a token; serves until Ctrl-C (slow suite)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from typer.testing import CliRunner

from cluster.cli import app
from cluster.local_ray import LOCAL_RAY_ENV, is_loopback
from cluster.serve.settings import TOKEN_ENV


def test_loopback_is_recognised() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.8.0.1", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "10.0.0.5", "example.org", ""]))


def test_serve_refuses_a_public_address_without_a_token() -> None:
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"], env={TOKEN_ENV: "", "COLUMNS": "200"})
    assert result.exit_code == 2 and "give a token" in result.output


@pytest.mark.slow  # about 25 s: a local Ray instance starts and stops
def test_serve_prints_its_url_and_stops_on_ctrl_c() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    varsearch = Path(sys.executable).parent / "varsearch"
    env = {**os.environ, **LOCAL_RAY_ENV, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [str(varsearch), "serve", "--port", str(port), "--token", "cli-test-token"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    try:
        url_line = next(line for line in proc.stdout if "varsearch serve: http" in line)
        assert f"http://127.0.0.1:{port}/" in url_line
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json()["status"] == "ok"
        assert requests.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0 and "stopping" in output
