"""Start the replicas and the coordinator on a running Ray cluster.

Models are built by factories (picklable callables) that cluster/ hands in, so actors/ knows
nothing of which world or checkpoint it serves. Replicas restart when they die (their caches
are rebuilt from prefixes on demand); placement spreads them over the cluster's nodes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import ray

from actors.batching import BatchingConfig
from actors.coordinator import RayBackend, SearchCoordinator
from actors.generator_replica import GeneratorReplica
from actors.verifier_replica import VerifierReplica


@dataclass(frozen=True)
class Resources:
    """Per-replica Ray resources; fractions share a GPU or a core between replicas."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0

    def __post_init__(self) -> None:
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise ValueError(f"resources must be >= 0, got num_cpus={self.num_cpus}, num_gpus={self.num_gpus}")


@dataclass(frozen=True)
class ClusterLayout:
    generators: int = 1
    verifiers_per_kind: int = 1
    generator_resources: Resources = field(default_factory=Resources)
    verifier_resources: Resources = field(default_factory=lambda: Resources(num_cpus=0.5))
    generator_batching: BatchingConfig = field(default_factory=BatchingConfig)
    verifier_batching: BatchingConfig = field(default_factory=lambda: BatchingConfig(max_batch=256))
    max_concurrent_searches: int = 32
    cluster_nfe_budget: int | None = None
    max_cached_candidates: int = 4096  # per generator replica; evicted ones are rebuilt on demand
    placement: str = "SPREAD"  # Ray scheduling strategy for replicas ("SPREAD" or "DEFAULT")

    def __post_init__(self) -> None:
        if self.generators < 1 or self.verifiers_per_kind < 1:
            raise ValueError("need at least one generator replica and one replica per verifier")
        if self.max_concurrent_searches < 1:
            raise ValueError(f"max_concurrent_searches must be >= 1, got {self.max_concurrent_searches}")
        if self.placement not in ("SPREAD", "DEFAULT"):
            raise ValueError(f"placement must be SPREAD or DEFAULT, got {self.placement!r}")


def shortfall(layout: ClusterLayout, verifier_kinds: int, capacity: Mapping[str, float]) -> str | None:
    """What the layout's replicas ask for beyond the cluster's total CPUs and GPUs, or None if it fits."""
    want = {
        "CPU": layout.generators * layout.generator_resources.num_cpus
        + verifier_kinds * layout.verifiers_per_kind * layout.verifier_resources.num_cpus,
        "GPU": layout.generators * layout.generator_resources.num_gpus
        + verifier_kinds * layout.verifiers_per_kind * layout.verifier_resources.num_gpus,
    }
    short = [f"{want[r]:g} {r}s (the cluster has {capacity.get(r, 0):g})" for r in want if want[r] > capacity.get(r, 0)]
    return " and ".join(short) or None


@dataclass
class SearchCluster:
    """Handles to everything `start_search_cluster` started."""

    coordinator: ray.actor.ActorHandle
    generators: list
    verifiers: dict[str, list]

    def backend(self) -> RayBackend:
        return RayBackend(self.coordinator)

    def shutdown(self) -> None:
        for handle in [self.coordinator, *self.generators, *(h for hs in self.verifiers.values() for h in hs)]:
            ray.kill(handle, no_restart=True)


def start_search_cluster(
    make_engine: Callable,
    make_verifiers: dict[str, Callable],
    layout: ClusterLayout | None = None,
) -> SearchCluster:
    """Start generator and verifier replicas and a coordinator over them (Ray must be initialised)."""
    layout = layout or ClusterLayout()
    if not make_verifiers:
        raise ValueError("a search cluster needs at least one verifier")
    missing = shortfall(layout, len(make_verifiers), ray.cluster_resources())
    if missing:  # not an error: an autoscaling cluster may still add the nodes
        warnings.warn(f"the replicas ask for {missing}; they wait until nodes with room join", stacklevel=2)

    def replica(cls, resources: Resources):
        return ray.remote(cls).options(
            num_cpus=resources.num_cpus,
            num_gpus=resources.num_gpus,
            max_restarts=-1,  # come back empty; the coordinator rebuilds what it needs
            max_task_retries=0,  # the coordinator re-dispatches, and accounts for it
            scheduling_strategy=layout.placement,
        )

    generators = [
        replica(GeneratorReplica, layout.generator_resources).remote(
            make_engine, layout.generator_batching, layout.max_cached_candidates
        )
        for _ in range(layout.generators)
    ]
    verifiers = {
        name: [
            replica(VerifierReplica, layout.verifier_resources).remote(factory, layout.verifier_batching)
            for _ in range(layout.verifiers_per_kind)
        ]
        for name, factory in make_verifiers.items()
    }
    coordinator = (
        ray.remote(SearchCoordinator)
        .options(num_cpus=0, max_concurrency=layout.max_concurrent_searches + 4)
        .remote(generators, verifiers, layout.cluster_nfe_budget)
    )
    replicas = [*generators, *(h for hs in verifiers.values() for h in hs)]
    ray.get([h.describe.remote() for h in replicas])  # fail here, not on the first search, if a model cannot load
    ray.get(coordinator.status.remote())
    return SearchCluster(coordinator, generators, verifiers)
