"""Build what a config describes: the generator engine, the verifiers, and a backend to run on.

`ray_backend` (the default of `varsearch run` and `varsearch study`) starts generator and
verifier replicas and a search coordinator on a Ray cluster, each replica building its model
with the factories here; `local_backend` builds them in this process instead.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Literal

from cluster.config import ModelSection, RunConfig
from cluster.verifiers import register_shapes_verifiers
from generators.engine import InfinityEngine
from search.context import Verifier
from search.request import LocalBackend, SearchBackend
from verifiers.registry import load_verifier


def build_engine(model: ModelSection) -> InfinityEngine:
    """The shipped shapes world, or Infinity from the local checkpoint files the config names."""
    if model.world == "shapes":
        from generators.shapes.model import load_engine

        return load_engine(device=model.device)
    from generators.loading import official_engine
    from generators.schedules import get_schedule
    from generators.text_encoder import T5TextEncoder

    files = model.model_files()  # ${ENV_VAR}s expanded; a missing file is an error naming its key
    text_encoder = T5TextEncoder.from_pretrained(files["t5"], device=model.device)
    schedule = get_schedule(model.aspect_ratio, model.pixel_budget)
    return official_engine(
        files["transformer"], files["vae"], text_encoder, model.preset, model.vae_preset, schedule,
        model.device, model.dtype,
    )  # fmt: skip


def load_verifiers(config: RunConfig, names: Iterable[str]) -> dict[str, Verifier]:
    """Each named verifier, loaded with its options from `config.verifier_options`."""
    register_shapes_verifiers()
    return {name: load_verifier(name, **config.options_for(name)) for name in names}


def local_backend(config: RunConfig) -> LocalBackend:
    """An in-process backend with the config's engine and every verifier it can ask for."""
    return LocalBackend(build_engine(config.model), load_verifiers(config, config.axes()["verifiers"]))


def ray_backend(config: RunConfig, address: str | None = None, generators: int = 1) -> SearchBackend:
    """A search coordinator over `generators` generator replicas and one replica per verifier, on the
    Ray cluster at `address` (default: a private one on 127.0.0.1)."""
    from actors.launch import ClusterLayout, Resources, start_search_cluster
    from cluster.ray_runtime import init_ray, registered_verifier

    init_ray(address)
    gpu = config.model.device.startswith("cuda")
    layout = ClusterLayout(
        generators=generators,
        generator_resources=Resources(num_cpus=1, num_gpus=1 if gpu else 0),
        verifier_resources=Resources(num_cpus=0.5),
    )
    verifiers = {
        name: functools.partial(registered_verifier, name, **config.options_for(name))
        for name in config.axes()["verifiers"]
    }
    return start_search_cluster(functools.partial(build_engine, config.model), verifiers, layout).backend()


BackendKind = Literal["ray", "local"]


def make_backend(config: RunConfig, kind: BackendKind = "ray", address: str | None = None) -> SearchBackend:
    if kind == "ray":
        return ray_backend(config, address)
    if kind == "local":
        if address:
            raise ValueError("--address needs the ray backend")
        return local_backend(config)
    raise ValueError(f"unknown backend {kind!r}; choose ray or local")
