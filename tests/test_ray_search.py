"""The search cluster on a local three-node Ray cluster (loopback only): results equal to the
in-process engine, replicas killed mid-search, budgets across concurrent searches, placement."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import ray
from ray.cluster_utils import Cluster

from actors.coordinator import SearchCoordinator, divide_budget
from actors.launch import ClusterLayout, Resources
from cluster.ray_runtime import registered_verifier, shapes_search_cluster
from generators.shapes import evaluate, model
from search.budget import Budget, BudgetError
from search.request import LocalBackend, SearchRequest
from search.run import SearchConfig

PROMPTS = ["a red circle", "two blue squares", "a green triangle left of a yellow circle", "three purple squares"]


def request(prompt: str, seed: int, method: str = "beam", nfe: int = 84, **options) -> SearchRequest:
    config = SearchConfig(method=method, budget=Budget(nfe=nfe), **options)
    return SearchRequest(prompt, seed, config, evaluate.DEFAULT_SAMPLING)


@pytest.fixture(scope="module")
def search_cluster():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}, connect=False)
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    layout = ClusterLayout(
        generators=3,
        generator_resources=Resources(num_cpus=0.5),
        verifier_resources=Resources(num_cpus=0.25),
    )
    started = shapes_search_cluster(layout)
    yield started
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="module")
def local_backend():
    return LocalBackend(model.load_engine(), {"shapes-clip": registered_verifier("shapes-clip")})


def _same(a, b) -> None:
    # Identical images; scores to float32 rounding, since the verifier replica batches images from
    # several searches together and a batched matmul may round differently.
    assert a.path == b.path and a.score == pytest.approx(b.score, abs=1e-5)
    for bits_a, bits_b in zip(a.bits, b.bits, strict=True):  # the same candidate, bit for bit
        np.testing.assert_array_equal(np.asarray(bits_a), np.asarray(bits_b))
    # Pixels to one level: codes summed in a batch of another size round differently before uint8.
    np.testing.assert_allclose(a.image.astype(int), b.image.astype(int), atol=1)
    assert a.totals["nfe"] == b.totals["nfe"] and a.totals["verifier_calls"] == b.totals["verifier_calls"]


def test_concurrent_searches_equal_the_in_process_engine(search_cluster, local_backend):
    methods = ["beam", "random", "gto", "partial_beam"]
    requests = [request(p, i, m) for i, (p, m) in enumerate(zip(PROMPTS, methods, strict=True))]
    requests.append(request(PROMPTS[0], 9, "beam", rollout_tau_scale=0.5, prune_scales=(1, 3)))  # settings ride along
    events = []
    remote = dict(search_cluster.backend().run(requests, on_event=lambda i, row: events.append((i, row))))
    local = dict(local_backend.run(requests))
    for i in range(len(requests)):
        _same(remote[i], local[i])
        assert remote[i].totals["rebuild_nfe"] == 0 and remote[i].totals["replica_failures"] == 0
    assert {i for i, _ in events} == set(range(len(requests)))  # progress relayed for every search
    assert len(events) == sum(len(local[i].trace) for i in range(len(requests)))
    stats = ray.get(search_cluster.coordinator.replica_stats.remote())
    assert all(s["cached_candidates"] == 0 for s in stats["generators"])  # pruned candidates were freed
    assert sum(s["forward_candidates"] for s in stats["generators"]) > sum(s["forwards"] for s in stats["generators"])


def test_replicas_spread_over_nodes(search_cluster):
    nodes = {ray.get(h.describe.remote())["node_id"] for h in search_cluster.generators}
    assert len(nodes) >= 2


def _kill_when_running(search_cluster, kill, method="beam", nfe=126):
    """Start a search, kill replicas once it has scored something, return its result."""
    req = request("two red circles", 11, method, nfe)
    ref = search_cluster.coordinator.search.remote(req, "victim")
    deadline = time.monotonic() + 60
    while not ray.get(search_cluster.coordinator.events.remote("victim")):
        assert time.monotonic() < deadline, "the search never started"
        time.sleep(0.02)
    kill()
    return ray.get(ref), req


def test_a_generator_replica_killed_mid_search_does_not_change_the_result(search_cluster, local_backend):
    def kill_all_generators():
        for handle in search_cluster.generators:
            ray.kill(handle, no_restart=False)  # Ray restarts them empty

    result, req = _kill_when_running(search_cluster, kill_all_generators)
    _, expected = next(local_backend.run([req]))
    _same(result, expected)
    assert result.totals["replica_failures"] >= 1
    assert result.totals["rebuild_nfe"] > 0  # the lost caches were recomputed from prefixes, reported apart


def test_a_verifier_replica_killed_mid_search_does_not_change_the_result(search_cluster, local_backend):
    def kill_verifiers():
        for handle in search_cluster.verifiers["shapes-clip"]:
            ray.kill(handle, no_restart=False)

    result, req = _kill_when_running(search_cluster, kill_verifiers, method="random")
    _, expected = next(local_backend.run([req]))
    _same(result, expected)


def test_cluster_budget_is_never_exceeded_across_concurrent_searches(search_cluster):
    coordinator = ray.remote(SearchCoordinator).options(num_cpus=0, max_concurrency=8)
    capped = coordinator.remote(search_cluster.generators, search_cluster.verifiers, cluster_nfe_budget=200)
    refs = [capped.search.remote(request(p, i, "random", 84)) for i, p in enumerate(PROMPTS)]
    finished, refused = [], []
    for ref in refs:
        try:
            finished.append(ray.get(ref))
        except ray.exceptions.RayTaskError as err:
            assert isinstance(err.as_instanceof_cause(), BudgetError), err
            refused.append(err)
    status = ray.get(capped.status.remote())["budget"]
    assert len(finished) >= 1 and len(finished) + len(refused) == len(PROMPTS)
    assert status["spent_nfe"] == sum(r.totals["nfe"] for r in finished) <= 200
    assert status["reserved_nfe"] == 0
    assert all(r.totals["nfe"] <= 84 for r in finished)


def test_divide_budget_gives_equal_shares_and_refuses_crumbs():
    shares = divide_budget([request(p, 0) for p in PROMPTS], 400)
    assert [r.config.budget.nfe for r in shares] == [100] * 4
    with pytest.raises(BudgetError, match="cannot be divided"):
        divide_budget([request(p, 0) for p in PROMPTS], 3)


def test_search_errors_reach_the_caller_as_themselves(search_cluster):
    with pytest.raises(BudgetError, match="too small"):
        next(search_cluster.backend().run([request("a red circle", 0, "beam", 5)]))
    with pytest.raises(ValueError, match="not served"):
        next(search_cluster.backend().run([SearchRequest("a red circle", verifier="imagereward")]))
