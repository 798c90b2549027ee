"""2D RoPE: parity with upstream's cached cos/sin table and the rotation's basic properties."""

import json
from pathlib import Path

import pytest
import torch
from conftest import parity_fixture_dirs
from safetensors import safe_open

from generators.rope import apply_rope, rope_angles
from generators.schedules import custom_schedule, get_schedule


def test_parity_fixtures_present():
    assert parity_fixture_dirs(), "no infinity-* fixture: set VARSEARCH_SHARED or VARSEARCH_PARITY_FIXTURES"


@pytest.mark.parametrize("fixture_dir", parity_fixture_dirs(), ids=lambda p: p.name)
def test_rope_matches_upstream_cache(fixture_dir: Path):
    config = json.loads((fixture_dir / "config.json").read_text())
    schedule = custom_schedule(
        [(h, w) for _, h, w in config["schedule"]["scale_schedule"]],
        rope_grid=tuple(config["schedule"]["rope_last_scale_1M"][1:]),
    )
    with safe_open(fixture_dir / "expected.safetensors", framework="pt") as f:
        cos_sin_2Ld2 = f.get_tensor("rope_cache")
    angles_Ld2 = rope_angles(schedule, config["infinity"]["head_dim"])
    assert angles_Ld2.dtype == torch.float32
    assert angles_Ld2.shape == cos_sin_2Ld2.shape[1:]
    torch.testing.assert_close(angles_Ld2.cos(), cos_sin_2Ld2[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(angles_Ld2.sin(), cos_sin_2Ld2[1], rtol=0, atol=1e-6)


def test_angles_split_rows_then_columns():
    schedule = get_schedule(0.5, "0.06M")
    angles_Ld2 = rope_angles(schedule, head_dim=16)
    rows_L, cols_L = schedule.rope_positions()
    inv_freq = 10000.0 ** -(torch.arange(4, dtype=torch.float64) / 4)
    expected = torch.cat([rows_L[:, None] * inv_freq, cols_L[:, None] * inv_freq], dim=-1)
    assert angles_Ld2.shape == (schedule.total_tokens, 8)
    torch.testing.assert_close(angles_Ld2.double(), expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("head_dim", [0, 6, 62])
def test_head_dim_must_be_multiple_of_four(head_dim):
    with pytest.raises(ValueError, match="divisible by 4"):
        rope_angles(get_schedule(), head_dim)


def _random_rope(dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    x_BHLd = torch.randn(2, 3, 5, 8, generator=gen).to(dtype)
    angles_Ld2 = torch.rand(5, 4, generator=gen) * 20 - 10
    return x_BHLd, angles_Ld2


def _pair_norms(x_BHLd):
    return x_BHLd.unflatten(-1, (-1, 2)).norm(dim=-1)


def test_apply_rope_matches_complex_reference():
    x_BHLd, angles_Ld2 = _random_rope()
    out = apply_rope(x_BHLd, angles_Ld2.cos(), angles_Ld2.sin())
    x_complex = torch.view_as_complex(x_BHLd.double().unflatten(-1, (-1, 2)).contiguous())
    rotation = torch.exp(1j * angles_Ld2.double())
    expected = torch.view_as_real(x_complex * rotation).flatten(-2)
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=1e-5)


def test_apply_rope_preserves_pair_norms():
    x_BHLd, angles_Ld2 = _random_rope()
    out = apply_rope(x_BHLd, angles_Ld2.cos(), angles_Ld2.sin())
    torch.testing.assert_close(_pair_norms(out), _pair_norms(x_BHLd))


def test_apply_rope_zero_angle_is_identity():
    x_BHLd, angles_Ld2 = _random_rope()
    zeros = torch.zeros_like(angles_Ld2)
    assert torch.equal(apply_rope(x_BHLd, zeros.cos(), zeros.sin()), x_BHLd)


def test_apply_rope_keeps_dtype():
    x_BHLd, angles_Ld2 = _random_rope(torch.bfloat16)
    out = apply_rope(x_BHLd, angles_Ld2.cos(), angles_Ld2.sin())
    assert out.dtype == torch.bfloat16
    expected = apply_rope(x_BHLd.float(), angles_Ld2.cos(), angles_Ld2.sin()).to(torch.bfloat16)
    assert torch.equal(out, expected)
