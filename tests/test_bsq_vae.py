"""BSQ-VAE: state-dict layout of the released VAEs, parity with upstream fixtures, strict safe loading."""

import ast
import json
import os
from pathlib import Path

import pytest
import torch
from conftest import REFERENCE_DIR, parity_fixture_dirs
from safetensors.torch import load_file, save_file

from generators.bsq_vae import (
    BSQVAE,
    VAE_PRESETS,
    VAEConfig,
    bits_to_codes,
    load_vae,
)
from generators.checkpoint import CheckpointError

# ----------------------------------------------------------------------------------------------------
# State-dict keys and shapes of the released VAEs

# Entries whose shape holds the codebook width d, and on which axis.
_CODEBOOK_AXIS = {
    "encoder.conv_out.conv.weight": 0,
    "encoder.conv_out.conv.bias": 0,
    "decoder.conv_in.conv.weight": 1,
    "quantizer.lfq.mask": 0,
    "quantize.lfq.mask": 0,
}


def _reference_shapes(filename: str) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in (REFERENCE_DIR / filename).read_text().splitlines():
        key, shape = line.split("\t")
        shapes[key] = tuple(ast.literal_eval(shape))
    return shapes


@pytest.mark.parametrize(
    ("preset", "filename", "list_codebook_dim"),
    [
        # The vendored d16 list is a byte copy of the d32 list (generated with d=32), so its
        # codebook-width entries are rewritten to the preset's d; everything else is checked as listed.
        ("vae-d16", "vae-keys-d16.txt", 32),
        ("vae-d32", "vae-keys-d32.txt", 32),
        ("vae-d56-patchify", "vae-keys-d56-patchify.txt", 14),
    ],
)
def test_state_dict_matches_reference(preset: str, filename: str, list_codebook_dim: int) -> None:
    config = VAEConfig.from_name(preset)
    expected = _reference_shapes(filename)
    for key, axis in _CODEBOOK_AXIS.items():
        shape = list(expected[key])
        assert shape[axis] == list_codebook_dim
        shape[axis] = config.codebook_dim
        expected[key] = tuple(shape)
    with torch.device("meta"):
        model = BSQVAE(config)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert list(got) == list(expected)
    assert got == expected
    assert model.state_dict()["quantize.lfq.mask"].dtype == torch.int64


def test_presets() -> None:
    assert VAEConfig.from_name("vae-d32").downsample_factor == 16
    assert VAEConfig.from_name("vae-d56-patchify").downsample_factor == 8
    assert set(VAE_PRESETS) >= {"vae-d16", "vae-d32", "vae-d56-patchify", "vae-tiny"}
    with pytest.raises(ValueError, match="vae-d32"):
        VAEConfig.from_name("vae-d99")


# ----------------------------------------------------------------------------------------------------
# Parity with upstream (fixtures produced by the upstream code; see shared/fixtures/*/README.md)


def test_parity_fixtures_exist() -> None:
    assert parity_fixture_dirs(), (
        "no parity fixture folder found (shared/fixtures/infinity-* or VARSEARCH_PARITY_FIXTURES)"
    )


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


def _fixture_config(fixture_config: dict) -> tuple[VAEConfig, list[tuple[int, int]]]:
    """VAEConfig and the VAE-side (h, w) schedule from a fixture's config.json (upstream argument names)."""
    vae = fixture_config["vae"]
    args = vae["vae_model_args"]
    assert args["encoder_ch_mult"] == args["decoder_ch_mult"]
    patchify = bool(fixture_config["infinity"]["apply_spatial_patchify"])
    config = VAEConfig(
        codebook_dim=vae["codebook_dim"],
        base_ch=vae["base_ch"],
        ch_mult=tuple(args["encoder_ch_mult"]),
        num_res_blocks=vae["num_res_blocks"],
        apply_spatial_patchify=patchify,
    )
    assert config.downsample_factor == args["patch_size"]
    # The transformer schedule is (t, h, w); with patchify the VAE grid is twice as fine.
    grid = 2 if patchify else 1
    scales = [(h * grid, w * grid) for _, h, w in fixture_config["schedule"]["scale_schedule"]]
    return config, scales


@pytest.mark.parametrize("fixture", parity_fixture_dirs(), ids=lambda p: p.name)
def test_parity_with_upstream(fixture: Path) -> None:
    config, scales = _fixture_config(json.loads((fixture / "config.json").read_text()))
    inputs = load_file(fixture / "inputs.safetensors")
    expected = load_file(fixture / "expected.safetensors")
    model = load_vae(fixture / "vae.pth", config)
    last = len(scales) - 1

    bsq_inputs = []
    hook = model.quantizer.lfq.register_forward_pre_hook(lambda _m, args: bsq_inputs.append(args[0]))
    with torch.no_grad():
        z = model.encode_latent(inputs["vae_image"])
        bits, z_quantized = model.quantizer.encode(z, scales)
        recon = model.decode(expected["vae_z"])
        summed_from_bits = model.quantizer.summed_codes_from_bits(
            [expected[f"vae_bits_s{si}"].squeeze(1) for si in range(len(scales))], scales[-1]
        )
        image = model.decode(expected[f"summed_codes_s{last}"].squeeze(2))
    hook.remove()

    assert _max_abs(z, expected["vae_enc_h"]) <= 1e-4
    for si in range(len(scales)):
        # upstream bits are (B, 1, h, w, d) int32; BSQ inputs (B, d, 1, h, w), before the l2 norm
        assert torch.equal(bits[si].int(), expected[f"vae_bits_s{si}"].squeeze(1)), f"bits differ at scale {si}"
        assert _max_abs(bsq_inputs[si], expected[f"vae_bsq_in_s{si}"].squeeze(2)) <= 1e-4
        codes = bits_to_codes(inputs[f"tf_bits_s{si}"].squeeze(1))
        assert _max_abs(codes, expected[f"codes_s{si}"].squeeze(2)) <= 1e-7
    assert _max_abs(z_quantized, expected["vae_z"]) <= 1e-4
    assert _max_abs(recon, expected["vae_recon"]) <= 1e-4
    assert _max_abs(summed_from_bits, expected["vae_summed_codes_from_bits"].squeeze(2)) <= 1e-5
    assert _max_abs(image, expected["image_decoded"]) <= 1e-4


# ----------------------------------------------------------------------------------------------------
# Round trip on a small random model


def test_tiny_round_trip() -> None:
    torch.manual_seed(0)
    model = BSQVAE(VAEConfig.from_name("vae-tiny")).eval()
    d = model.config.codebook_dim
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    scales = [(1, 1), (2, 2), (3, 3), (4, 4)]  # (3, 3) from (4, 4): a non-integer area ratio
    with torch.no_grad():
        bits, z_quantized = model.quantizer.encode(model.encode_latent(images), scales)
        assert [tuple(b.shape) for b in bits] == [(2, h, w, d) for h, w in scales]
        assert all(b.dtype == torch.uint8 and b.max() <= 1 for b in bits)
        for a, b in zip(model.encode_bits(images, scales), bits, strict=True):
            assert torch.equal(a, b)
        summed = model.quantizer.summed_codes_from_bits(bits, (4, 4))
        assert _max_abs(summed, z_quantized) <= 1e-6
        decoded = model.decode(summed)
    assert decoded.shape == (2, 3, 64, 64)
    assert decoded.abs().max() <= 1


# ----------------------------------------------------------------------------------------------------
# Loader: formats, strictness, safety


@pytest.fixture(scope="module")
def tiny_state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return BSQVAE(VAEConfig.from_name("vae-tiny")).state_dict()


def _assert_loaded(model: BSQVAE, state_dict: dict[str, torch.Tensor]) -> None:
    for key, value in model.state_dict().items():
        assert torch.equal(value, state_dict[key]), key


def test_load_formats(tmp_path: Path, tiny_state_dict: dict[str, torch.Tensor]) -> None:
    config = VAEConfig.from_name("vae-tiny")
    torch.save({"vae": tiny_state_dict, "ema": {}}, tmp_path / "wrapped.pth")
    torch.save(tiny_state_dict, tmp_path / "plain.pth")
    # safetensors refuses tensors that share memory (quantizer/quantize hold the same mask)
    save_file({k: v.clone() for k, v in tiny_state_dict.items()}, tmp_path / "vae.safetensors")
    for name in ("wrapped.pth", "plain.pth", "vae.safetensors"):
        _assert_loaded(load_vae(tmp_path / name, config), tiny_state_dict)
    bf16 = load_vae(tmp_path / "plain.pth", config, dtype=torch.bfloat16)
    assert bf16.encoder.conv_in.conv.weight.dtype == torch.bfloat16
    assert bf16.quantizer.lfq.mask.dtype == torch.int64


def test_load_maps_plain_names(tmp_path: Path, tiny_state_dict: dict[str, torch.Tensor]) -> None:
    renamed = dict(tiny_state_dict)
    for key in (
        "encoder.conv_in.conv.weight",
        "encoder.down.0.downsample.conv.conv.bias",
        "decoder.norm_out.norm.weight",
    ):
        head, _, leaf = key.rpartition(".conv." if ".conv." in key else ".norm.")
        renamed[f"{head}.{leaf}"] = renamed.pop(key)
    assert "encoder.conv_in.weight" in renamed
    torch.save({"vae": renamed}, tmp_path / "vae.pth")
    _assert_loaded(load_vae(tmp_path / "vae.pth", VAEConfig.from_name("vae-tiny")), tiny_state_dict)


def test_load_fills_in_constant_quantizer_masks(tmp_path: Path, tiny_state_dict: dict[str, torch.Tensor]) -> None:
    without = {k: v for k, v in tiny_state_dict.items() if not k.endswith("lfq.mask")}
    torch.save({"vae": without}, tmp_path / "vae.pth")
    _assert_loaded(load_vae(tmp_path / "vae.pth", VAEConfig.from_name("vae-tiny")), tiny_state_dict)


def test_load_is_strict(tmp_path: Path, tiny_state_dict: dict[str, torch.Tensor]) -> None:
    config = VAEConfig.from_name("vae-tiny")
    broken = dict(tiny_state_dict)
    del broken["decoder.up.1.block.2.conv2.conv.bias"]
    broken["encoder.extra.weight"] = torch.zeros(1)
    torch.save({"vae": broken}, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match=r"decoder\.up\.1\.block\.2\.conv2\.conv\.bias") as err:
        load_vae(tmp_path / "broken.pth", config)
    assert "encoder.extra.weight" in str(err.value)

    wrong_width = VAEConfig(codebook_dim=16, base_ch=32, ch_mult=(1, 1, 1, 1, 1))
    torch.save({"vae": tiny_state_dict}, tmp_path / "vae.pth")
    with pytest.raises(CheckpointError, match=r"encoder\.conv_out\.conv\.weight"):
        load_vae(tmp_path / "vae.pth", wrong_width)


class _RunsShellOnUnpickle:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_load_refuses_pickled_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"vae": {"encoder.conv_in.conv.weight": _RunsShellOnUnpickle(marker)}}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refused"):
        load_vae(tmp_path / "evil.pth", VAEConfig.from_name("vae-tiny"))
    assert not marker.exists()


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_vae(tmp_path / "nope.pth", VAEConfig.from_name("vae-tiny"))
