"""The stepwise decoding API on a tiny random-weight model: the properties search relies on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generators.checkpoint import CheckpointError
from generators.engine import CandidateBatch, InfinityEngine
from generators.infinity import InfinityConfig
from generators.loading import load_infinity, random_infinity, tiny_random_engine
from generators.sampling import SamplingParams
from generators.schedules import get_schedule

PROMPTS = ["a red circle", "two blue squares left of a green triangle"]


@pytest.fixture(scope="module")
def engine() -> InfinityEngine:
    return tiny_random_engine(seed=0)


def full_decode(engine: InfinityEngine, prompts, seeds, paths) -> CandidateBatch:
    batch = engine.start(prompts, seeds, paths=paths)
    return engine.advance(batch)[0]


def assert_same_bits(a: CandidateBatch, ia: int, b: CandidateBatch, ib: int) -> None:
    assert a.num_scales_done == b.num_scales_done
    for si, (x, y) in enumerate(zip(a.prefix_bits(ia), b.prefix_bits(ib), strict=True)):
        assert torch.equal(x, y), f"bits differ at scale {si}"


def test_batched_equals_one_by_one(engine: InfinityEngine) -> None:
    prompts = [PROMPTS[0], PROMPTS[1], PROMPTS[0], PROMPTS[1]]
    seeds, paths = [1, 1, 2, 3], [(0,), (0,), (5,), (1, 2)]
    together = full_decode(engine, prompts, seeds, paths)
    images = engine.decode(together)
    for i in range(len(prompts)):
        alone = full_decode(engine, [prompts[i]], [seeds[i]], [paths[i]])
        assert_same_bits(together, i, alone, 0)
        np.testing.assert_array_equal(images[i], engine.decode(alone)[0])


def test_candidates_with_different_paths_differ(engine: InfinityEngine) -> None:
    batch = full_decode(engine, [PROMPTS[0]] * 2, [0, 0], [(0,), (1,)])
    assert any(not torch.equal(x, y) for x, y in zip(batch.prefix_bits(0), batch.prefix_bits(1), strict=True))


def test_fork_then_continue_equals_fresh_decode_of_prefix(engine: InfinityEngine) -> None:
    parent = engine.start([PROMPTS[1]], [7], paths=[(3,)])
    parent, _ = engine.advance(parent, to_scale=2)
    children = engine.fork(parent, 3)
    assert children.paths == ((3, 0), (3, 1), (3, 2))
    children, cost = engine.advance(children)
    assert cost.nfe == 3 * (engine.schedule.num_scales - 2)
    for c in range(3):
        fresh = engine.start([PROMPTS[1]], [7], paths=[children.paths[c]])
        forced = {si: parent.bits[si] for si in range(2)}
        fresh, _ = engine.advance(fresh, forced_bits=forced)
        assert_same_bits(children, c, fresh, 0)


def test_a_cooled_rollout_no_longer_depends_on_the_path(engine: InfinityEngine) -> None:
    """with_sampling changes how later scales sample: near-zero temperature makes siblings agree."""
    parent, _ = engine.advance(engine.start([PROMPTS[0]], [4], SamplingParams(), [(0,)]), to_scale=1)
    siblings = engine.fork(parent, 2)
    as_requested, _ = engine.advance(siblings)
    cooled, _ = engine.advance(engine.with_sampling(siblings, SamplingParams().cooled(1e-4)))
    assert cooled.sampling[0].tau == pytest.approx(SamplingParams().tau * 1e-4)
    assert any(
        not torch.equal(x, y) for x, y in zip(as_requested.prefix_bits(0), as_requested.prefix_bits(1), strict=True)
    )
    assert_same_bits(cooled, 0, cooled, 1)
    with pytest.raises(ValueError, match="may not turn classifier-free guidance on or off"):
        engine.with_sampling(siblings, SamplingParams(cfg=1.0))


def test_rebuild_from_prefix_equals_cached_state(engine: InfinityEngine) -> None:
    batch = engine.start(PROMPTS, [4, 5], paths=[(0,), (1,)])
    batch, _ = engine.advance(batch, to_scale=3)
    rebuilt, cost = engine.rebuild(
        batch.prompts, batch.seeds, batch.paths, [batch.prefix_bits(i) for i in range(len(batch))]
    )
    assert cost.nfe == 0 and cost.rebuild_nfe == 2 * 3
    assert cost.rebuild_tokens == 2 * engine.schedule.token_offsets[3]
    assert rebuilt.cache.num_tokens == batch.cache.num_tokens == engine.schedule.token_offsets[3]
    for k_cached, k_rebuilt in zip(batch.cache.keys, rebuilt.cache.keys, strict=True):
        torch.testing.assert_close(k_rebuilt, k_cached, atol=1e-5, rtol=1e-4)
    for v_cached, v_rebuilt in zip(batch.cache.values, rebuilt.cache.values, strict=True):
        torch.testing.assert_close(v_rebuilt, v_cached, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(rebuilt.summed_codes_BdHW, batch.summed_codes_BdHW)
    done_cached, _ = engine.advance(batch)
    done_rebuilt, _ = engine.advance(rebuilt)
    for i in range(2):
        assert_same_bits(done_cached, i, done_rebuilt, i)


def test_truncate_restores_the_snapshot(engine: InfinityEngine) -> None:
    snapshot, _ = engine.advance(engine.start([PROMPTS[0]], [9]), to_scale=2)
    rollout, _ = engine.advance(snapshot)
    back = engine.truncate(rollout, 2)
    assert back.num_scales_done == 2 and back.cache.num_tokens == snapshot.cache.num_tokens
    torch.testing.assert_close(back.summed_codes_BdHW, snapshot.summed_codes_BdHW)
    again, _ = engine.advance(back)
    assert_same_bits(again, 0, rollout, 0)
    assert snapshot.num_scales_done == 2  # advancing never mutates its input


def test_select_and_concat_keep_candidates_intact(engine: InfinityEngine) -> None:
    a, _ = engine.advance(engine.start(PROMPTS, [1, 2], paths=[(0,), (1,)]), to_scale=2)
    b, _ = engine.advance(engine.start([PROMPTS[0]], [3], paths=[(2,)]), to_scale=2)
    merged = engine.concat([a, engine.select(b, [0])])
    finished, _ = engine.advance(merged)
    kept = engine.select(finished, [2, 0])
    assert kept.paths == ((2,), (0,))
    alone_b, _ = engine.advance(b)
    alone_a, _ = engine.advance(a)
    assert_same_bits(kept, 0, alone_b, 0)
    assert_same_bits(kept, 1, alone_a, 0)


def test_previews_at_every_scale(engine: InfinityEngine) -> None:
    batch = engine.start(PROMPTS, [0, 1])
    H, W = 16 * engine.schedule.final_hw[0], 16 * engine.schedule.final_hw[1]
    for _ in range(engine.schedule.num_scales):
        batch, cost = engine.advance(batch, to_scale=batch.num_scales_done + 1)
        assert cost.nfe == 2
        preview = engine.decode(batch)
        assert preview.shape == (2, H, W, 3) and preview.dtype == np.uint8


def test_cost_of_a_full_decode(engine: InfinityEngine) -> None:
    _, cost = engine.advance(engine.start(PROMPTS, [0, 0]))
    assert cost.nfe == 2 * engine.schedule.num_scales
    assert cost.tokens == 2 * engine.schedule.total_tokens


def test_cfg_off_uses_one_row_per_candidate(engine: InfinityEngine) -> None:
    batch = engine.start(PROMPTS, [0, 0], SamplingParams(cfg=1.0))
    assert batch.num_cfg_rows == 1
    batch, _ = engine.advance(batch, to_scale=1)
    assert batch.cache.num_rows == 2


def test_per_scale_cfg_and_tau_lists(engine: InfinityEngine) -> None:
    K = engine.schedule.num_scales
    params = SamplingParams(cfg=tuple([1.0] * (K - 1) + [4.0]), tau=tuple([1.0] * K))
    batch, _ = engine.advance(engine.start(PROMPTS, [0, 0], params))
    assert batch.num_cfg_rows == 2 and batch.num_scales_done == K
    with pytest.raises(ValueError, match="schedule has"):
        engine.start(PROMPTS, [0, 0], SamplingParams(cfg=(3.0, 3.0)))


# ---- bad input ------------------------------------------------------------------------------


def test_unknown_config_name() -> None:
    with pytest.raises(ValueError, match=r"unknown Infinity config 'infinity-3b'.*infinity-2b"):
        InfinityConfig.from_name("infinity-3b")


def test_checkpoint_with_wrong_keys_lists_them(tmp_path) -> None:
    state = random_infinity("infinity-tiny").state_dict()
    state["unexpected.weight"] = state.pop("head.weight")
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): \['head.weight'\]") as err:
        load_infinity(tmp_path / "bad.pth", "infinity-tiny")
    assert "unexpected.weight" in str(err.value)


def test_checkpoint_round_trip(tmp_path, engine: InfinityEngine) -> None:
    torch.save(engine.model.state_dict(), tmp_path / "tiny.pth")
    loaded = load_infinity(tmp_path / "tiny.pth", "infinity-tiny")
    for (name, p), q in zip(engine.model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_unsupported_aspect_ratio() -> None:
    with pytest.raises(ValueError, match="unsupported aspect ratio"):
        get_schedule(7.0, "1M")


def test_batch_of_zero(engine: InfinityEngine) -> None:
    with pytest.raises(ValueError, match="zero candidates"):
        engine.start([], [])


def test_mismatched_inputs(engine: InfinityEngine) -> None:
    with pytest.raises(ValueError, match="2 prompts but 1 seeds"):
        engine.start(PROMPTS, [0])
    batch = engine.start([PROMPTS[0]], [0])
    with pytest.raises(ValueError, match="must have shape"):
        engine.advance(batch, forced_bits={0: torch.zeros(1, 5, 8, dtype=torch.uint8)})
    with pytest.raises(ValueError, match="cannot advance"):
        engine.advance(batch, to_scale=engine.schedule.num_scales + 1)
    with pytest.raises(ValueError, match="nothing sampled"):
        engine.decode(batch)
    with pytest.raises(IndexError):
        engine.select(batch, [3])
