"""Wiring the shapes world (or official checkpoints) into a Ray search cluster.

Ray binds to loopback here unless an address is given: local clusters, tests and `make run`
never listen on a public interface. Factories are module-level functions so Ray can pickle them
by reference and every replica builds its own model.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import ray

from actors.launch import ClusterLayout, SearchCluster, start_search_cluster
from cluster.local_ray import use_local_ray_env


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join `address` (a running cluster), or start a private local one on 127.0.0.1."""
    if ray.is_initialized():
        return
    use_local_ray_env()
    if address:
        ray.init(address=address, log_to_driver=False)
    else:  # "local", not None: ray.init(None) would join a cluster that a `ray start` left running
        private = os.environ.get("RAY_ADDRESS") or "local"  # a Ray job's driver joins its cluster
        ray.init(address=private, num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)


def shapes_engine(device: str = "cpu"):
    from generators.shapes import model

    return model.load_engine(device=device)


def registered_verifier(name: str, **options):
    """Any registry verifier, shapes-world ones included (registered in the replica's process)."""
    from cluster.verifiers import register_shapes_verifiers
    from verifiers.registry import load_verifier

    register_shapes_verifiers()
    return load_verifier(name, **options)


def shapes_search_cluster(
    layout: ClusterLayout | None = None, verifiers: tuple[str, ...] = ("shapes-clip",), device: str = "cpu"
) -> SearchCluster:
    """Replicas of the shipped shapes-world generator and the named verifiers, plus a coordinator."""
    make_verifiers: dict[str, Callable] = {name: functools.partial(registered_verifier, name) for name in verifiers}
    return start_search_cluster(functools.partial(shapes_engine, device), make_verifiers, layout)
