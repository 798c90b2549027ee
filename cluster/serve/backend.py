"""What the Serve app searches with: a `SearchBackend` plus the facts the API validates against.

The worker deployment builds its backend from an import path ("module:function"). The default,
`shapes_cluster`, starts generator and verifier replicas and a search coordinator on the Ray
cluster Serve runs on: the same orchestration path as jobs and studies. `shapes_world` runs the
shapes world inside the worker instead (one process, no replicas).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from generators.sampling import SamplingParams
from search.request import SearchBackend
from search.run import METHODS

DEFAULT_BACKEND = "cluster.serve.backend:shapes_cluster"


@dataclass(frozen=True)
class ModelInfo:
    """Plain facts about the served model: sent to the ingress and shown at GET /v1/models."""

    model: str
    num_scales: int  # K: a base sample costs K NFEs
    depth: int  # transformer blocks (DiverseVAR `blocks` are checked against it)
    verifiers: dict[str, bool]  # name -> is a judge (held-out evaluator, searched only on request)
    sampling: SamplingParams
    default_method: str = "beam"
    default_budget: int = 84
    default_verifier: str = "shapes-clip"
    methods: tuple[str, ...] = METHODS

    def __post_init__(self) -> None:
        if self.default_verifier not in self.verifiers:
            raise ValueError(f"default verifier {self.default_verifier!r} is not one of {list(self.verifiers)}")
        if self.default_method not in self.methods:
            raise ValueError(f"default method {self.default_method!r} is not one of {list(self.methods)}")

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "num_scales": self.num_scales,
            "methods": list(self.methods),
            "verifiers": [{"name": name, "is_judge": judge} for name, judge in self.verifiers.items()],
            "sampling": repr(self.sampling),
            "defaults": {
                "method": self.default_method,
                "budget": self.default_budget,
                "verifier": self.default_verifier,
            },
        }


@dataclass
class ServedModel:
    backend: SearchBackend
    info: ModelInfo
    max_concurrent: int = 1  # searches one worker runs at once; the in-process engine is not thread-safe


def load_factory(import_path: str) -> Callable[..., ServedModel]:
    """Resolve "package.module:function" (the serve config's `backend` argument)."""
    module_name, sep, attr = import_path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"backend must look like 'package.module:function', got {import_path!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot import backend factory {import_path!r}: {err}") from err
    if not callable(factory):
        raise ValueError(f"backend factory {import_path!r} is not callable")
    return factory


def shapes_world(device: str = "cpu") -> ServedModel:
    """The embedded default: the shipped shapes-world generator and its verifiers, in this process."""
    from cluster.verifiers import register_shapes_verifiers
    from generators.shapes import evaluate, model
    from search.request import LocalBackend
    from verifiers.registry import load_verifier

    register_shapes_verifiers()
    engine = model.load_engine(device=device)
    verifiers = {
        "shapes-clip": load_verifier("shapes-clip", device=device),
        "shapes-judge": load_verifier("shapes-judge"),
    }
    info = ModelInfo(
        model="shapes-world Infinity (generators/shapes/weights)",
        num_scales=engine.schedule.num_scales,
        depth=engine.model.cfg.depth,
        verifiers={"shapes-clip": False, "shapes-judge": True},
        sampling=evaluate.DEFAULT_SAMPLING,
    )
    return ServedModel(LocalBackend(engine, verifiers), info)


def shapes_cluster(
    device: str = "cpu",
    generators: int = 1,
    generator_cpus: float = 1.0,
    generator_gpus: float = 0.0,
    max_concurrent: int = 16,
) -> ServedModel:
    """The shapes world on Ray replicas behind a search coordinator (the default)."""
    import ray

    from actors.launch import ClusterLayout, Resources
    from cluster.ray_runtime import shapes_search_cluster
    from generators.shapes import evaluate

    layout = ClusterLayout(
        generators=generators,
        generator_resources=Resources(num_cpus=generator_cpus, num_gpus=generator_gpus),
        verifier_resources=Resources(num_cpus=0.25),
        max_concurrent_searches=max_concurrent,
    )
    cluster = shapes_search_cluster(layout, verifiers=("shapes-clip", "shapes-judge"), device=device)
    described = ray.get(cluster.generators[0].describe.remote())
    info = ModelInfo(
        model="shapes-world Infinity (generators/shapes/weights) on Ray replicas",
        num_scales=described["num_scales"],
        depth=described["depth"],
        verifiers={"shapes-clip": False, "shapes-judge": True},
        sampling=evaluate.DEFAULT_SAMPLING,
    )
    return ServedModel(cluster.backend(), info, max_concurrent=max_concurrent)
