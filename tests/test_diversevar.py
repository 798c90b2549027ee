"""DiverseVAR hooks and diversity metrics on known matrices, toy point sets and a tiny random model."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from generators import diversity
from generators.diversevar import (
    DiverseVARConfig,
    DiverseVARHook,
    paper_scales,
    reweight_singular_values,
    soft_amplify,
    soft_suppress,
)
from generators.engine import CandidateBatch, InfinityEngine
from generators.infinity import BlockContext, FeatureHook, Infinity, ScaleSpan
from generators.loading import tiny_random_engine
from generators.rope import rope_angles
from generators.sampling import SamplingParams

PROMPTS = ["a red circle", "two blue squares left of a green triangle"]
STRONG = DiverseVARConfig(b=3.0, b2=0.5, scales=(1, 2))  # visible on a tiny random model


@pytest.fixture(scope="module")
def engine() -> InfinityEngine:
    return tiny_random_engine(seed=0)


def decode(engine: InfinityEngine, prompts, seeds, sampling) -> CandidateBatch:
    return engine.advance(engine.start(prompts, seeds, sampling))[0]


def same_bits(a: CandidateBatch, ia: int, b: CandidateBatch, ib: int) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.prefix_bits(ia), b.prefix_bits(ib), strict=True))


# ---- config -------------------------------------------------------------------------------------


def test_paper_scales_by_relative_position() -> None:
    assert paper_scales(13) == (3, 5) == DiverseVARConfig().scales  # the 1-indexed reading (the sweep's)
    assert paper_scales(6) == (1, 2) and paper_scales(4) == (1,)
    assert paper_scales(13, (4, 6)) == (4, 6) and paper_scales(6, (4, 6)) == (2, 3)  # the 0-indexed one
    assert paper_scales(4, (4, 6)) == (1, 2)
    assert DiverseVARConfig.for_schedule(6, b=1.0) == DiverseVARConfig(b=1.0, scales=(1, 2))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"a": 0.0},
        {"a2": -1.0},
        {"b": -0.1},
        {"b2": -0.1},
        {"scales": ()},
        {"scales": (1, 1)},
        {"scales": (-1,)},
        {"blocks": (0.5,)},
        {"placement": "layer"},
        {"placement": "model", "blocks": (0,)},
        {"rows": "all"},
    ],
)
def test_config_rejects_bad_values(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        DiverseVARConfig(**kwargs)


def test_config_is_hashable_part_of_sampling_params() -> None:
    cfg = DiverseVARConfig(scales=[1, 2], blocks=[0])  # lists from a CLI or JSON become tuples
    assert cfg.scales == (1, 2) and cfg.blocks == (0,)
    params = SamplingParams(diversevar=cfg)
    assert hash(params) == hash(SamplingParams(diversevar=DiverseVARConfig(scales=(1, 2), blocks=(0,))))
    with pytest.raises(ValueError, match="DiverseVARConfig"):
        SamplingParams(diversevar={"b": 1.0})


def test_engine_checks_scales_and_blocks(engine: InfinityEngine) -> None:
    with pytest.raises(ValueError, match="scales"):
        engine.start(PROMPTS[:1], [0], SamplingParams(diversevar=DiverseVARConfig(scales=(4,))))
    with pytest.raises(ValueError, match="blocks"):
        engine.start(PROMPTS[:1], [0], SamplingParams(diversevar=DiverseVARConfig(scales=(1,), blocks=(2,))))


# ---- reweighting math ---------------------------------------------------------------------------


def diag_batch(*singular_values: tuple[float, ...]) -> torch.Tensor:
    """Rows of [3, 4] matrices diag(s): the SVD is known exactly."""
    out = torch.zeros(len(singular_values), 3, 4)
    for r, s in enumerate(singular_values):
        out[r, range(3), range(3)] = torch.tensor(s)
    return out


def test_soft_suppress_and_amplify_on_diagonal_matrices() -> None:
    x = diag_batch((3.0, 2.0, 1.0), (10.0, 1.0, 0.5))
    a, b = 0.9, 0.4
    got = soft_suppress(x, a, b)
    want = diag_batch(*[tuple(a * math.exp(-b * s) * s for s in row) for row in ((3, 2, 1), (10, 1, 0.5))])
    torch.testing.assert_close(got, want)
    got = soft_amplify(x, 1.1, 0.2)
    want = diag_batch(*[tuple(1.1 * math.exp(0.2 * s) * s for s in row) for row in ((3, 2, 1), (10, 1, 0.5))])
    torch.testing.assert_close(got, want)


def test_relative_strength_divides_by_the_largest_singular_value() -> None:
    x = diag_batch((4.0, 2.0, 1.0))
    want = diag_batch(tuple(math.exp(-1.0 * s / 4) * s for s in (4, 2, 1)))
    torch.testing.assert_close(soft_suppress(x, 1.0, 1.0, relative=True), want)
    # the same relative setting gives the same relative effect on a matrix 100x larger
    torch.testing.assert_close(soft_suppress(100 * x, 1.0, 1.0, relative=True), 100 * want)
    torch.testing.assert_close(soft_suppress(torch.zeros(1, 3, 4), 1.0, 1.0, relative=True), torch.zeros(1, 3, 4))


def test_reweighting_keeps_the_dtype_and_the_singular_vectors() -> None:
    x = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(0))
    assert soft_amplify(x.bfloat16(), 1.0, 0.1).dtype == torch.bfloat16
    y = soft_suppress(x, 1.0, 0.3)
    U, s, Vh = torch.linalg.svd(x, full_matrices=False)
    # x's singular vectors still diagonalise y, with the reweighted values (their order may change)
    torch.testing.assert_close(U.mT @ y @ Vh.mT, torch.diag_embed(s * torch.exp(-0.3 * s)), atol=1e-5, rtol=1e-5)


def test_stages_compose_like_sequential_reweighting() -> None:
    x = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(1))
    want = soft_suppress(soft_amplify(x, 1.1, 0.3, relative=True), 0.9, 2.0, relative=True)
    torch.testing.assert_close(reweight_singular_values(x, [(1.1, 0.3), (0.9, -2.0)], relative=True), want)


# ---- hooks in a forward -------------------------------------------------------------------------


class Recorder(FeatureHook):
    """Keeps every block's input (after the hooks before it) and the final hidden state."""

    def __init__(self) -> None:
        self.inputs: list[torch.Tensor] = []

    def block_input(self, x_BLC: torch.Tensor, block_idx: int, spans: tuple[ScaleSpan, ...]) -> torch.Tensor:
        self.inputs.append(x_BLC.clone())
        return x_BLC


def multiscale_forward(engine: InfinityEngine, hooks=()) -> torch.Tensor:
    """A teacher-forced forward over all 4 scales (30 tokens) for 3 rows, as `rebuild` runs it."""
    model, schedule = engine.model, engine.schedule
    g = torch.Generator().manual_seed(1)
    R, L, C = 3, schedule.token_offsets[-1], model.cfg.embed_dim
    cond = model.encode_text(torch.randn(R, 5, model.cfg.text_channels, generator=g), torch.ones(R, 5, dtype=bool))
    scale_ids = torch.repeat_interleave(torch.arange(schedule.num_scales), torch.tensor(schedule.tokens_per_scale))
    angles = rope_angles(schedule, model.cfg.head_dim, model.cfg.rope_base)
    mask = scale_ids[None, :] <= scale_ids[:, None]
    with torch.no_grad():
        return model(torch.randn(R, L, C, generator=g), cond, scale_ids, angles.cos(), angles.sin(), None, mask, hooks)


def plain_forward(model: Infinity, x_BLC, cond, scale_ids_L, cos, sin, cache, mask, hooks) -> torch.Tensor:
    """Infinity.forward as it was before hooks existed."""
    assert not hooks
    x_BLC = x_BLC + model.lvl_embed(scale_ids_L)
    ctx = BlockContext(cond.ada_B16C, cond.text_BTC, cond.text_mask_BT, cos, sin, cache, mask)
    for i, block in enumerate(model.ordered_blocks):
        x_BLC = block(x_BLC, ctx, i)
    return x_BLC


def test_empty_hooks_are_bit_identical_to_the_plain_forward(engine: InfinityEngine, monkeypatch) -> None:
    monkeypatch.setattr(Infinity, "forward", plain_forward)
    want = multiscale_forward(engine)
    monkeypatch.undo()
    assert torch.equal(multiscale_forward(engine), want)
    assert torch.equal(multiscale_forward(engine, (FeatureHook(),)), want)  # identity hooks change nothing


def touched(h: torch.Tensor, base: torch.Tensor, engine: InfinityEngine) -> set[tuple[int, int]]:
    """(row, scale) pairs whose hidden states differ from the baseline."""
    offs = engine.schedule.token_offsets
    return {
        (r, si)
        for r in range(h.shape[0])
        for si in range(engine.schedule.num_scales)
        if not torch.equal(h[r, offs[si] : offs[si + 1]], base[r, offs[si] : offs[si + 1]])
    }


@pytest.mark.parametrize("placement", ["block", "model"])
def test_hooks_act_only_on_chosen_rows_and_scales(engine: InfinityEngine, placement: str) -> None:
    base = multiscale_forward(engine)
    hook = DiverseVARHook(DiverseVARConfig(b=2.0, scales=(2,), placement=placement), torch.tensor([1]), 2)
    h = multiscale_forward(engine, (hook,))
    # row 1 changes from scale 2 on (scale 3 attends to it); scales 0-1 and rows 0, 2 are untouched
    assert touched(h, base, engine) == {(1, 2), (1, 3)}


def test_multi_scale_forward_reweights_each_scale_on_its_own(engine: InfinityEngine) -> None:
    cfg = DiverseVARConfig(b=2.0, b2=0.0, scales=(1,), placement="model")
    rows = torch.tensor([0, 1, 2])
    rec = Recorder()
    multiscale_forward(engine, (DiverseVARHook(cfg, rows, 2), rec))
    base = Recorder()
    multiscale_forward(engine, (base,))
    lo, hi = engine.schedule.token_offsets[1:3]
    lvl = engine.model.lvl_embed.weight[1]  # added after model_input; block 0 sees x + lvl
    want = soft_suppress(base.inputs[0][:, lo:hi] - lvl, 1.0, 2.0, relative=True)
    # only scale 1's 4 tokens were rebuilt, from their own SVD
    torch.testing.assert_close(rec.inputs[0][:, lo:hi] - lvl, want)
    assert torch.equal(rec.inputs[0][:, :lo], base.inputs[0][:, :lo])
    assert torch.equal(rec.inputs[0][:, hi:], base.inputs[0][:, hi:])


class NaiveBlockHook(FeatureHook):
    """The block placement spelled out: SSR before and SAR after every selected block, one at a time."""

    def __init__(self, cfg: DiverseVARConfig, rows: list[int]) -> None:
        self.cfg, self.rows = cfg, rows

    def _each(self, x: torch.Tensor, block_idx: int, spans, fn, a: float, b: float) -> torch.Tensor:
        if self.cfg.blocks is not None and block_idx not in self.cfg.blocks:
            return x
        x = x.clone()
        for si, lo, hi in spans:
            if si in self.cfg.scales:
                x[self.rows, lo:hi] = fn(x[self.rows, lo:hi], a, b, self.cfg.relative_strength)
        return x

    def block_input(self, x, block_idx, spans):
        return self._each(x, block_idx, spans, soft_suppress, self.cfg.a, self.cfg.b)

    def block_output(self, x, block_idx, spans):
        return self._each(x, block_idx, spans, soft_amplify, self.cfg.a2, self.cfg.b2)


@pytest.mark.parametrize("blocks", [None, (0,), (1,)])
def test_fused_block_hook_equals_the_naive_one(engine: InfinityEngine, blocks) -> None:
    cfg = DiverseVARConfig(a=0.9, b=2.0, a2=1.1, b2=0.5, scales=(1, 2), blocks=blocks)
    want = multiscale_forward(engine, (NaiveBlockHook(cfg, [0, 2]),))
    got = multiscale_forward(engine, (DiverseVARHook(cfg, torch.tensor([0, 2]), 2),))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, multiscale_forward(engine))


def test_block_selection(engine: InfinityEngine) -> None:
    cfg = DiverseVARConfig(b=2.0, b2=0.0, scales=(2,), blocks=(1,))
    rec, base = Recorder(), Recorder()
    multiscale_forward(engine, (DiverseVARHook(cfg, None, 2), rec))
    multiscale_forward(engine, (base,))
    assert torch.equal(rec.inputs[0], base.inputs[0])  # block 0: not selected
    assert touched(rec.inputs[1], base.inputs[1], engine) == {(0, 2), (1, 2), (2, 2)}  # block 1's input


def test_engine_rows_per_candidate_and_cfg_half(engine: InfinityEngine) -> None:
    plain = SamplingParams()
    on = {rows: SamplingParams(diversevar=DiverseVARConfig(scales=(1,), rows=rows)) for rows in ("cond", "uncond")}
    batch = engine.start(PROMPTS * 2, [0] * 4, [plain, on["cond"], on["uncond"], on["cond"]])
    hooks = {h.config.rows: h.rows_R.tolist() for h in engine._hooks(batch)}
    assert hooks == {"cond": [1, 3], "uncond": [6]}  # B = 4: uncond rows are 4..7
    no_cfg = replace(on["uncond"], cfg=1.0)
    assert engine._hooks(engine.start(PROMPTS[:1], [0], no_cfg)) == ()  # no uncond rows without CFG


# ---- hooks through the engine -------------------------------------------------------------------


def test_hooks_off_decode_bit_identical(engine: InfinityEngine) -> None:
    plain = decode(engine, PROMPTS, [3, 4], SamplingParams())
    engine.model.feature_hooks.append(FeatureHook())
    try:
        hooked = decode(engine, PROMPTS, [3, 4], SamplingParams())
    finally:
        engine.model.feature_hooks.clear()
    for i in range(2):
        assert same_bits(plain, i, hooked, i)
    np.testing.assert_array_equal(engine.decode(plain), engine.decode(hooked))


def test_candidate_without_diversevar_is_unaffected_by_batch_mates(engine: InfinityEngine) -> None:
    on, off = SamplingParams(diversevar=STRONG), SamplingParams()
    mixed = decode(engine, PROMPTS, [5, 6], [on, off])
    alone_off = decode(engine, PROMPTS[1:], [6], [off])
    alone_on = decode(engine, PROMPTS[:1], [5], [on])
    plain_0 = decode(engine, PROMPTS[:1], [5], [off])
    assert same_bits(mixed, 1, alone_off, 0)  # the plain candidate: as if decoded alone, no hooks
    assert same_bits(mixed, 0, alone_on, 0)  # the DiverseVAR candidate: independent of its batch-mate
    assert not same_bits(alone_on, 0, plain_0, 0)  # and DiverseVAR did change it
    np.testing.assert_array_equal(engine.decode(mixed)[1], engine.decode(alone_off)[0])


def test_rebuild_with_diversevar_equals_stepwise_cache(engine: InfinityEngine) -> None:
    params = SamplingParams(diversevar=STRONG)
    batch = engine.advance(engine.start(PROMPTS, [1, 2], params, [(0,), (1,)]), to_scale=3)[0]
    rebuilt, _ = engine.rebuild(
        batch.prompts, batch.seeds, batch.paths, [batch.prefix_bits(i) for i in range(2)], params
    )
    pairs = zip(batch.cache.keys + batch.cache.values, rebuilt.cache.keys + rebuilt.cache.values, strict=True)
    for cached, again in pairs:
        torch.testing.assert_close(again, cached, atol=1e-4, rtol=1e-4)


# ---- diversity metrics --------------------------------------------------------------------------


def test_vendi_score() -> None:
    assert diversity.vendi_score(np.ones((5, 3))) == pytest.approx(1.0)
    assert diversity.vendi_score(np.eye(4)) == pytest.approx(4.0)
    two_groups = np.array([[1, 0], [2, 0], [0, 1], [0, 3]], float)  # cosine ignores the norm
    assert diversity.vendi_score(two_groups) == pytest.approx(2.0)


def test_mean_pairwise_distance() -> None:
    assert diversity.mean_pairwise_distance(np.ones((3, 2))) == pytest.approx(0.0)
    assert diversity.mean_pairwise_distance(np.eye(3)) == pytest.approx(1.0)
    assert diversity.mean_pairwise_distance(np.array([[1.0, 0], [-1.0, 0]])) == pytest.approx(2.0)


def test_recall_and_coverage_on_toy_points() -> None:
    real = np.arange(6, dtype=float)[:, None]  # 0, 1, ..., 5 on a line
    fake = np.array([[0.0], [0.1]])
    # fake 1-NN radii are 0.1: only real 0 lies inside; real 1-NN radii are 1: reals 0 and 1 see a fake
    assert diversity.recall(real, fake, k=1) == pytest.approx(1 / 6)
    assert diversity.coverage(real, fake, k=1) == pytest.approx(2 / 6)
    assert diversity.recall(real, real + 0.01, k=1) == 1.0
    assert diversity.coverage(real, real + 0.01, k=1) == 1.0
    assert diversity.coverage(real, fake + 100, k=1) == 0.0
    with pytest.raises(ValueError, match="k"):
        diversity.recall(real, fake, k=5)  # needs more than k generated points


def test_layout_diversity() -> None:
    sig = diversity.layout_signature
    a = sig([(("circle", "red"), 3, 40), (("square", "blue"), 50, 10)])
    assert a == sig([(("square", "blue"), 60, 12), (("circle", "red"), 10, 33)])  # same cells, any order
    assert a != sig([(("circle", "red"), 3, 40)])
    assert sig([("c", 1, 1)] * 2) != sig([("c", 1, 1)])  # a multiset: counts matter
    assert diversity.distinct_layouts([a, a, sig([]), sig([("c", 1, 1)])]) == 3
