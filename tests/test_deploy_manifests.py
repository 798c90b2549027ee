"""The serve config and the cluster manifests parse, pass Ray's own schemas, and point at code
and commands that exist in this project (no cluster needed)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import ray
import typer.main
import yaml

from cluster.cli import app as cli_app
from cluster.serve.app import SearchAPI, build_app
from cluster.serve.backend import load_factory
from cluster.serve.settings import TOKEN_ENV, ServeArgs
from cluster.serve.worker import SearchWorker

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "cluster" / "deploy"
IMAGE = "varsearch:latest"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def check_serve_config(config: dict) -> list[dict]:
    """Ray's schema accepts it; every application builds from its import path and args."""
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(config)
    apps = config["applications"]
    for application in apps:
        module, _, attr = application["import_path"].partition(":")
        assert module == "cluster.serve.app" and attr == "build_app"
        args = ServeArgs(**application["args"])
        assert callable(load_factory(args.backend))
        assert build_app(args) is not None
        names = {d["name"] for d in application["deployments"]}
        assert names == {SearchAPI.name, SearchWorker.name}
        api = next(d for d in application["deployments"] if d["name"] == SearchAPI.name)
        assert api["num_replicas"] == 1  # the job store lives in the one ingress replica
    return apps


def test_serve_config_builds_the_app_on_loopback() -> None:
    config = load(ROOT / "cluster" / "serve_config.yaml")
    (application,) = check_serve_config(config)
    assert config["http_options"]["host"] == "127.0.0.1"
    worker = next(d for d in application["deployments"] if d["name"] == SearchWorker.name)
    assert worker["autoscaling_config"]["max_replicas"] > worker["autoscaling_config"]["min_replicas"]


def test_rayservice_runs_the_same_app_on_gpus_behind_a_token() -> None:
    service = load(DEPLOY / "rayservice.yaml")
    assert service["apiVersion"] == "ray.io/v1" and service["kind"] == "RayService"
    (application,) = check_serve_config(yaml.safe_load(service["spec"]["serveConfigV2"]))
    assert application["args"]["backend_options"]["device"] == "cuda"
    worker = next(d for d in application["deployments"] if d["name"] == SearchWorker.name)
    assert worker["ray_actor_options"]["num_gpus"] >= 1
    cluster = service["spec"]["rayClusterConfig"]
    assert gpu_limits(cluster) >= 1
    for container in containers(cluster):
        assert container["image"] == IMAGE
        secret = {e["name"]: e for e in container.get("env", [])}[TOKEN_ENV]["valueFrom"]["secretKeyRef"]
        assert secret["name"] and secret["key"]


def test_rayjob_entrypoint_is_a_valid_varsearch_command() -> None:
    job = load(DEPLOY / "rayjob.yaml")
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[0] == "varsearch" and "varsearch = " in (ROOT / "pyproject.toml").read_text()
    command = typer.main.get_command(cli_app)
    assert argv[1] in ("run", "study")
    command.commands[argv[1]].make_context(argv[1], argv[2:])  # raises on unknown options or bad values
    cluster = job["spec"]["rayClusterSpec"]
    assert gpu_limits(cluster) >= 1
    assert "cuda" in argv and job["spec"]["entrypointNumGpus"] >= 1  # so the driver lands on a GPU worker
    (workers,) = cluster["workerGroupSpecs"]
    mounts = [m["mountPath"] for c in workers["template"]["spec"]["containers"] for m in c["volumeMounts"]]
    for path in (a for a in argv if a.startswith("/")):
        assert any(path.startswith(m + "/") for m in mounts), f"{path} is on no volume the GPU workers mount"
    assert all(c["image"] == IMAGE for c in containers(cluster))


def test_cluster_launcher_config_passes_ray_schema() -> None:
    from ray.autoscaler._private.util import fillout_defaults, validate_config

    config = load(DEPLOY / "cluster.yaml")
    validate_config(fillout_defaults(config))
    assert config["docker"]["image"] == IMAGE
    workers = [t for name, t in config["available_node_types"].items() if name != config["head_node_type"]]
    assert any(re.match(r"(g|p)\d", t["node_config"]["InstanceType"]) for t in workers)  # AWS GPU families
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start  # the Jobs API only through `ray dashboard`


def test_image_matches_the_ray_version_in_use() -> None:
    base = re.search(r"^FROM rayproject/ray:(\S+)", (DEPLOY / "Dockerfile").read_text(), re.M)
    assert base and base.group(1).startswith(ray.__version__ + "-")
    for manifest in ("rayjob.yaml", "rayservice.yaml"):
        spec = load(DEPLOY / manifest)["spec"]
        assert (spec.get("rayClusterSpec") or spec["rayClusterConfig"])["rayVersion"] == ray.__version__


def containers(cluster: dict) -> list[dict]:
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def gpu_limits(cluster: dict) -> int:
    workers = [c for g in cluster["workerGroupSpecs"] for c in g["template"]["spec"]["containers"]]
    return min(int(c["resources"]["limits"].get("nvidia.com/gpu", 0)) for c in workers)
