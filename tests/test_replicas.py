"""Generator and verifier replicas driven directly (no Ray): cache hits and misses, continuous
batching across requests, cache release, and batched verifier calls."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from actors.batching import BatchingConfig, BatchQueue
from actors.candidates import CandidateAddress, WorkItem, pack_bits, unpack_bits
from actors.generator_replica import GeneratorReplica
from actors.launch import ClusterLayout, Resources, shortfall
from actors.verifier_replica import VerifierReplica
from generators.shapes import evaluate, model
from verifiers.base import Verifier, VerifierInfo

SAMPLING = evaluate.DEFAULT_SAMPLING


class MeanPixelVerifier(Verifier):
    """Deterministic per-image score: mean brightness plus a per-prompt offset."""

    name = "mean-pixel"
    info = VerifierInfo(name="mean-pixel", version="test", score_definition="mean pixel / 255 + len(prompt) / 100")

    def _score(self, prompts, images):
        return images.reshape(len(images), -1).mean(1) / 255 + np.array([len(p) / 100 for p in prompts])


def _served_groups(requests: list[tuple[str, int]], max_batch: int, max_wait_s: float = 0.0) -> list[list[str]]:
    """Groups a BatchQueue serves for (name, rows) requests whose key is the name's first letter."""
    groups: list[list[str]] = []

    async def serve(group: list[tuple[str, int]]) -> None:
        groups.append([name for name, _ in group])

    async def main() -> None:
        queue = BatchQueue(
            BatchingConfig(max_batch, max_wait_s), rows=lambda r: r[1], key=lambda r: r[0][0], serve=serve
        )
        for request in requests:
            queue.put(request)
        while sum(map(len, groups)) < len(requests):
            await asyncio.sleep(0.001)

    asyncio.run(main())
    return groups


def test_batch_queue_groups_by_key_in_arrival_order_up_to_max_batch() -> None:
    # a1 heads the first group; b1 has another key; a3 would overflow 4 rows and waits for the next call.
    assert _served_groups([("a1", 2), ("b1", 1), ("a2", 2), ("a3", 1)], max_batch=4) == [["a1", "a2"], ["b1"], ["a3"]]


def test_batch_queue_serves_an_oversized_request_alone() -> None:
    assert _served_groups([("a1", 9), ("a2", 1)], max_batch=4) == [["a1"], ["a2"]]


@pytest.fixture(scope="module")
def engine():
    return model.load_engine()


def _replica(engine, **batching) -> GeneratorReplica:
    return GeneratorReplica(lambda: engine, BatchingConfig(**batching))


def _fresh(prompt: str, seed: int, path=()) -> WorkItem:
    return WorkItem(None, CandidateAddress(prompt, seed, path, SAMPLING, ()))


def _engine_images(engine, prompts, seeds, paths):
    batch, _ = engine.advance(engine.start(prompts, seeds, SAMPLING, paths))
    return engine.decode(batch)


def test_bits_pack_round_trip():
    bits = np.random.default_rng(0).integers(0, 2, size=(9, 16), dtype=np.uint8)
    assert pack_bits(bits).shape == (9, 2)
    np.testing.assert_array_equal(unpack_bits(pack_bits(bits), 16), bits)


def test_advance_and_decode_match_the_engine(engine):
    replica = _replica(engine, max_wait_s=0)
    prompts, seeds, paths = ["a red circle", "two blue squares"], [3, 4], [(0,), (1,)]

    async def go():
        reply = await replica.advance([_fresh(p, s, path) for p, s, path in zip(prompts, seeds, paths, strict=True)], 6)
        addresses = [
            CandidateAddress(p, s, path, SAMPLING, ()) for p, s, path in zip(prompts, seeds, paths, strict=True)
        ]
        images, cost = await replica.decode([WorkItem(k, a) for k, a in zip(reply.keys, addresses, strict=True)])
        return reply, images, cost

    reply, images, decode_cost = asyncio.run(go())
    assert reply.cost.nfe == 12 and reply.cost.rebuild_nfe == 0 and decode_cost.rebuild_nfe == 0
    assert [len(b) for b in reply.new_bits] == [6, 6]
    np.testing.assert_array_equal(images, _engine_images(engine, prompts, seeds, paths))


def test_a_cache_miss_rebuilds_from_the_prefix_and_gives_the_same_image(engine):
    holder, stranger = _replica(engine, max_wait_s=0), _replica(engine, max_wait_s=0)

    async def go():
        half = await holder.advance([_fresh("a green triangle", 7)], 3)
        address = CandidateAddress("a green triangle", 7, (), SAMPLING, tuple(half.new_bits[0]))
        on_holder = await holder.advance([WorkItem(half.keys[0], address)], 6)
        elsewhere = await stranger.advance([WorkItem(half.keys[0], address)], 6)  # the key means nothing there
        return on_holder, elsewhere

    on_holder, elsewhere = asyncio.run(go())
    assert on_holder.cost.rebuild_nfe == 0 and elsewhere.cost.rebuild_nfe == 3
    assert on_holder.cost.nfe == elsewhere.cost.nfe == 3
    for a, b in zip(on_holder.new_bits[0], elsewhere.new_bits[0], strict=True):
        np.testing.assert_array_equal(a, b)


def test_concurrent_requests_at_the_same_scale_share_forwards(engine):
    replica = _replica(engine, max_wait_s=0.05, max_batch=64)

    async def go():
        requests = [replica.advance([_fresh(p, s, (s,))], 6) for p, s in [("a red circle", 1), ("a blue square", 2)]]
        return await asyncio.gather(*requests)

    replies = asyncio.run(go())
    stats = replica.stats()
    assert stats["forwards"] == 6 and stats["forward_candidates"] == 12  # one forward per scale for both
    assert all(r.cost.nfe == 6 for r in replies)  # each search is charged its own rows only
    alone = _replica(engine, max_wait_s=0)
    solo = asyncio.run(alone.advance([_fresh("a blue square", 2, (2,))], 6))
    for a, b in zip(replies[1].new_bits[0], solo.new_bits[0], strict=True):
        np.testing.assert_array_equal(a, b)


def test_forked_children_gather_the_parent_row_and_sample_their_own_paths(engine):
    replica = _replica(engine, max_wait_s=0)

    async def go():
        parent = await replica.advance([_fresh("a red circle", 5)], 2)
        bits = tuple(parent.new_bits[0])
        children = [
            WorkItem(parent.keys[0], CandidateAddress("a red circle", 5, (j,), SAMPLING, bits)) for j in range(3)
        ]
        return await replica.advance(children, 3)

    children = asyncio.run(go())
    assert children.cost.nfe == 3 and children.cost.rebuild_nfe == 0
    third_scale = [b[0] for b in children.new_bits]
    assert not all(np.array_equal(third_scale[0], t) for t in third_scale[1:])  # own randomness per path
    batch, _ = engine.advance(engine.fork(engine.advance(engine.start(["a red circle"], [5], SAMPLING), 2)[0], 3), 3)
    for j in range(3):
        np.testing.assert_array_equal(third_scale[j], pack_bits(batch.bits[2][j].numpy()))


def test_released_keys_free_the_cache_and_stale_keys_are_ignored(engine):
    replica = _replica(engine, max_wait_s=0)
    reply = asyncio.run(replica.advance([_fresh("a red circle", 1), _fresh("a red circle", 2)], 1))
    assert replica.stats()["cached_candidates"] == 2
    replica.release([reply.keys[0], (reply.keys[0][0] + 1, 0, 0)])
    assert replica.stats()["cached_candidates"] == 1
    replica.release([reply.keys[1]])
    assert replica.stats()["cached_candidates"] == 0


def test_the_cache_is_bounded(engine):
    replica = GeneratorReplica(lambda: engine, BatchingConfig(max_wait_s=0), max_cached_candidates=2)

    async def go():
        for seed in range(3):
            await replica.advance([_fresh("a red circle", seed)], 1)

    asyncio.run(go())
    assert replica.stats()["cached_candidates"] == 2 and replica.stats()["evicted"] == 1


def test_bad_requests_fail_alone(engine):
    replica = _replica(engine, max_wait_s=0)
    with pytest.raises(ValueError, match="at least one candidate"):
        asyncio.run(replica.advance([], 1))
    with pytest.raises(ValueError, match="cannot advance"):
        asyncio.run(replica.advance([_fresh("a red circle", 1)], 9))
    assert asyncio.run(replica.advance([_fresh("a red circle", 1)], 1)).cost.nfe == 1


def test_verifier_replica_batches_requests_and_returns_each_its_scores():
    verifier = MeanPixelVerifier()
    replica = VerifierReplica(lambda: verifier, BatchingConfig(max_batch=64, max_wait_s=0.05))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(n, 16, 16, 3), dtype=np.uint8) for n in (2, 3)]

    async def go():
        return await asyncio.gather(*(replica.score([f"p{i}"] * len(im), im) for i, im in enumerate(images)))

    scores = asyncio.run(go())
    assert replica.stats() == {"calls": 1, "images": 5, "requests": 2}
    for i, im in enumerate(images):
        np.testing.assert_allclose(scores[i], verifier.score([f"p{i}"] * len(im), im))
    with pytest.raises(ValueError, match="one prompt per image"):
        asyncio.run(replica.score(["p"], images[1]))


def test_shortfall_names_what_a_layout_needs_beyond_the_cluster() -> None:
    layout = ClusterLayout(generators=2, generator_resources=Resources(num_cpus=1, num_gpus=0.5))
    assert shortfall(layout, 1, {"CPU": 4.0, "GPU": 1.0}) is None  # 2.5 CPUs and 1 GPU fit
    assert shortfall(layout, 1, {"CPU": 2.0}) == "2.5 CPUs (the cluster has 2) and 1 GPUs (the cluster has 0)"
