"""CFG mixing and bitwise top-k / top-p sampling against upstream's semantics."""

from __future__ import annotations

import pytest
import torch

from generators.sampling import (
    SamplingParams,
    bit_probabilities,
    candidate_seed,
    guided_logits,
    sample_bits,
)


def upstream_filtered_probs(logits_BlV: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Oracle: upstream's top-k then top-p masking over the last dim, then softmax (V = 2 per bit)."""
    logits = logits_BlV.clone()
    V = logits.shape[-1]
    if 0 < top_k < V:
        kth = logits.topk(top_k, dim=-1).values.amin(dim=-1, keepdim=True)
        logits[logits < kth] = -torch.inf
    if top_p > 0:
        sorted_logits, sorted_idx = logits.sort(dim=-1)
        remove = sorted_logits.softmax(-1).cumsum(-1) <= 1 - top_p
        remove[..., -1] = False
        logits[remove.scatter(-1, sorted_idx, remove)] = -torch.inf
    return logits.softmax(-1)


@pytest.mark.parametrize(("top_k", "top_p"), [(0, 0.0), (900, 0.97), (1, 0.0), (2, 0.5), (0, 0.8), (1, 0.97)])
def test_bit_probabilities_match_upstream_filtering(top_k: int, top_p: float) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 16, generator=g) * 3  # [B, L, 2d]
    upstream_top_k = 0 if top_k >= 2 else top_k  # upstream drops top_k >= V (= 2) to 0
    want = upstream_filtered_probs(logits.view(3, -1, 2), upstream_top_k, top_p)[..., 1].view(3, 5, 8)
    got = bit_probabilities(logits, torch.full((3,), float(top_k)), torch.full((3,), top_p))
    torch.testing.assert_close(got, want)


def test_per_candidate_top_p() -> None:
    logits = torch.tensor([[[0.0, 2.0]], [[0.0, 2.0]]])  # P(bit=1) = 0.881
    got = bit_probabilities(logits, torch.zeros(2), torch.tensor([0.97, 0.8]))
    assert got[0].item() == pytest.approx(0.8808, abs=1e-4)  # minority 0.119 > 0.03: kept
    assert got[1].item() == 1.0  # minority 0.119 <= 0.2: dropped


def test_guided_logits_formula() -> None:
    cond, uncond = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    cfg, inv_tau = torch.tensor([3.0, 1.0]), torch.tensor([2.0, 1.0])
    got = guided_logits(torch.cat([cond, uncond]), cfg, inv_tau, num_candidates=2)
    torch.testing.assert_close(got[0], 3 * 2 * cond[0] - 2 * 2 * uncond[0])
    torch.testing.assert_close(got[1], cond[1])
    torch.testing.assert_close(guided_logits(cond, cfg, inv_tau, 2), cond * inv_tau[:, None, None])


def test_candidate_randomness_depends_only_on_seed_path_scale() -> None:
    assert candidate_seed(1, (0, 2), 3) == candidate_seed(1, (0, 2), 3)
    assert len({candidate_seed(1, (0, 2), 3), candidate_seed(1, (0, 2), 4), candidate_seed(1, (2, 0), 3)}) == 3
    p = torch.full((2, 4, 8), 0.5)
    both = sample_bits(p, [5, 6], [(1,), (1,)], scale=2)
    alone = sample_bits(p[1:], [6], [(1,)], scale=2)
    assert torch.equal(both[1], alone[0])
    assert both.dtype == torch.uint8 and set(both.unique().tolist()) <= {0, 1}


def test_sample_bits_follows_probabilities() -> None:
    p = torch.tensor([0.0, 1.0, 0.25]).repeat(1, 4000, 1)  # [1, 4000, 3]
    bits = sample_bits(p, [0], [()], scale=0).float().mean(dim=1)[0]
    assert bits[0] == 0 and bits[1] == 1 and abs(bits[2] - 0.25) < 0.03


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tau": 0.0}, "tau must be > 0"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"cfg": ()}, "cfg must be"),
        ({"cfg": "high"}, "cfg must be"),
    ],
)
def test_bad_sampling_params(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SamplingParams(**kwargs)


def test_per_scale_values() -> None:
    params = SamplingParams(cfg=(1.0, 2.0, 3.0), tau=0.5)
    assert params.cfg_at(2) == 3.0 and params.tau_at(7) == 0.5 and params.uses_cfg
    assert not SamplingParams(cfg=(1.0, 1.0)).uses_cfg
    with pytest.raises(ValueError, match="schedule has 4"):
        params.check_scales(4)
