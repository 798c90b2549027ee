"""Verifier interface, registry, safe loading, CLIPScore and aesthetic on a tiny random CLIP,
ensembles, judges and the shapes-world wiring. No downloads: every weight file is made here."""

from __future__ import annotations

import json
import pickle

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from verifiers import Verifier, VerifierInfo, list_verifiers, load_verifier, register, tiny
from verifiers.aesthetic import AestheticMLP
from verifiers.checkpoint import CheckpointError
from verifiers.clip import shared_open_clip
from verifiers.ensemble import EnsembleVerifier
from verifiers.images import fit_within, to_pixels
from verifiers.judge import JudgeVerifier

PROMPTS = ["a red circle", "two blue squares", "a red circle", "a green triangle left of a circle"]


def random_images(n: int, h: int = 40, w: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny_clip_files(tmp_path_factory) -> dict:
    """A tiny open_clip config with random weights (safetensors and .pt) and a random aesthetic MLP."""
    d = tmp_path_factory.mktemp("clip")
    return {**tiny.clip_files(d), "pt": d / "clip.pt", "mlp": tiny.aesthetic_file(d)}


def clipscore(files: dict, **options) -> Verifier:
    options = {"checkpoint": files["checkpoint"], **options}
    return load_verifier(
        "clipscore", model=tiny.CLIP_NAME, quick_gelu=False, config_path=files["config_path"], **options
    )


def aesthetic(files: dict, **options) -> Verifier:
    options = {"checkpoint": files["mlp"], **options}
    return load_verifier(
        "aesthetic", clip_checkpoint=files["checkpoint"], clip_model=tiny.CLIP_NAME, quick_gelu=False,
        config_path=files["config_path"], **options,
    )  # fmt: skip


# --- the interface ---------------------------------------------------------------------------


def constant_judge(image: np.ndarray, prompt: str) -> bool:
    return "red" in prompt and image[..., 0].mean() > image[..., 2].mean()


@pytest.mark.parametrize(
    ("prompts", "images", "message"),
    [
        (["a"], np.zeros((1, 8, 8, 3), np.float32), "uint8"),
        (["a"], np.zeros((1, 8, 8, 4), np.uint8), r"\(N, H, W, 3\)"),
        (["a"], np.zeros((8, 8, 3), np.uint8), r"\(N, H, W, 3\)"),
        (["a", "b"], np.zeros((1, 8, 8, 3), np.uint8), "2 prompts for 1 images"),
        ([], np.zeros((0, 8, 8, 3), np.uint8), "at least one image"),
        ("a", np.zeros((1, 8, 8, 3), np.uint8), "not a single string"),
        ([3], np.zeros((1, 8, 8, 3), np.uint8), "string"),
        (["a"], [[[[0, 0, 0]]]], "numpy array"),
    ],
)
def test_score_validates_inputs(prompts, images, message) -> None:
    with pytest.raises(ValueError, match=message):
        JudgeVerifier(constant_judge).score(prompts, images)


def test_judge_scores_one_or_zero_and_is_a_judge() -> None:
    images = np.zeros((2, 8, 8, 3), np.uint8)
    images[0, ..., 0] = 255
    v = JudgeVerifier(constant_judge, name="redness")
    scores = v.score(["a red circle", "a red circle"], images)
    assert scores.dtype == np.float64 and scores.tolist() == [1.0, 0.0]
    assert v.info.is_judge and v.info.name == "redness"


# --- registry -----------------------------------------------------------------------------------


def test_registry_lists_builtins_with_their_files() -> None:
    infos = {i.name: i for i in list_verifiers()}
    assert {"clipscore", "aesthetic", "imagereward", "llava-onevision", "ensemble"} <= set(infos)
    assert "ImageReward.pt" in " ".join(infos["imagereward"].files_needed)
    assert "vocab.txt" in " ".join(infos["imagereward"].files_needed)
    assert "sac+logos+ava1-l14-linearMSE.pth" in " ".join(infos["aesthetic"].files_needed)
    assert "2.5 * max(cos" in infos["clipscore"].score_definition
    assert all(i.score_definition and i.version for i in infos.values())
    assert infos["ensemble"].batch_relative


def test_unknown_names_and_options_list_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown verifier 'nope'; known: \[.*'clipscore'"):
        load_verifier("nope")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['chekpoint'\].*'checkpoint'"):
        load_verifier("clipscore", chekpoint="x")


def test_register_as_decorator() -> None:
    info = VerifierInfo(name="test-redness", version="1", score_definition="red judge")

    @register("test-redness", info=info)
    def make() -> Verifier:
        return JudgeVerifier(constant_judge, name="test-redness")

    assert load_verifier("test-redness").name == "test-redness"
    assert info in list_verifiers()


@pytest.mark.parametrize(
    ("name", "options", "file", "option"),
    [
        ("clipscore", {}, "open_clip_model.safetensors", "checkpoint="),
        ("aesthetic", {}, "open_clip_model.safetensors", "clip_checkpoint="),
        ("imagereward", {}, "ImageReward.pt", "checkpoint="),
        ("llava-onevision", {}, "llava-onevision-qwen2-0.5b-ov-hf", "model_dir="),
        ("clipscore", {"checkpoint": "/nonexistent/vit.safetensors"}, "open_clip_model.safetensors", "checkpoint"),
        ("imagereward", {"med_config": "/nonexistent/med.json"}, "med_config.json", "med_config"),
    ],
)
def test_missing_files_name_the_file_and_the_option(name, options, file, option) -> None:
    with pytest.raises(CheckpointError) as err:
        load_verifier(name, **options)
    assert file in str(err.value) and option in str(err.value)


def test_aesthetic_without_its_mlp_names_it(tiny_clip_files) -> None:
    with pytest.raises(CheckpointError, match=r"sac\+logos\+ava1-l14-linearMSE.pth.*checkpoint="):
        aesthetic(tiny_clip_files, checkpoint=None)


# --- safe, strict loading -------------------------------------------------------------------------


def test_wrong_checkpoint_lists_keys_and_names_the_option(tiny_clip_files) -> None:
    with pytest.raises(CheckpointError) as err:
        clipscore(tiny_clip_files, checkpoint=tiny_clip_files["mlp"])  # the aesthetic MLP, not a CLIP
    msg = str(err.value)
    assert "missing keys" in msg and "unexpected keys" in msg and "'layers.0.weight'" in msg
    assert "open_clip_model.safetensors" in msg and "checkpoint" in msg


def test_pickled_objects_and_corrupt_files_are_refused(tmp_path, tiny_clip_files) -> None:
    unsafe = tmp_path / "unsafe.pt"
    with open(unsafe, "wb") as f:
        pickle.dump({"x": object()}, f)
    with pytest.raises(CheckpointError, match=r"refused|not a readable"):
        clipscore(tiny_clip_files, checkpoint=unsafe)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        clipscore(tiny_clip_files, checkpoint=corrupt)


def test_torch_and_safetensors_files_give_the_same_scores(tiny_clip_files) -> None:
    images = random_images(2)
    a = clipscore(tiny_clip_files).score(PROMPTS[:2], images)
    b = clipscore(tiny_clip_files, checkpoint=tiny_clip_files["pt"]).score(PROMPTS[:2], images)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


# --- preprocessing --------------------------------------------------------------------------------


@pytest.mark.parametrize(("h", "w"), [(45, 37), (64, 64), (20, 90)])
def test_batched_preprocessing_matches_the_pil_pipeline(h, w) -> None:
    images = random_images(2, h, w)
    ours = to_pixels(images, 32, (0, 0, 0), (1, 1, 1))
    pil = T.Compose([T.Resize(32, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(32), T.ToTensor()])
    ref = torch.stack([pil(Image.fromarray(img)) for img in images])
    assert ours.shape == ref.shape == (2, 3, 32, 32)
    assert (ours - ref).abs().max() <= 2 / 255  # uint8 rounding of two resize implementations


def test_fit_within_keeps_aspect_and_small_images() -> None:
    assert fit_within(random_images(1, 100, 50), 40).shape == (1, 40, 20, 3)
    small = random_images(1, 30, 20)
    assert fit_within(small, 40) is small


# --- CLIPScore and aesthetic ------------------------------------------------------------------------


def test_clipscore_shapes_batching_and_determinism(tiny_clip_files) -> None:
    v = clipscore(tiny_clip_files, batch_size=3)
    images = random_images(4)
    scores = v.score(PROMPTS, images)
    assert scores.shape == (4,) and scores.dtype == np.float64
    assert np.all((scores >= 0) & (scores <= 2.5))
    one_by_one = np.concatenate([v.score([p], images[i : i + 1]) for i, p in enumerate(PROMPTS)])
    np.testing.assert_allclose(scores, one_by_one, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(scores, v.score(PROMPTS, images.copy()))


def test_hessel_is_clipped_scaled_cosine(tiny_clip_files) -> None:
    images = random_images(4, seed=1)
    cosine = clipscore(tiny_clip_files, score="cosine").score(PROMPTS, images)
    hessel = clipscore(tiny_clip_files).score(PROMPTS, images)
    np.testing.assert_allclose(hessel, 2.5 * np.maximum(cosine, 0), atol=1e-6)
    assert np.all(np.abs(cosine) <= 1 + 1e-6)


def test_clipscore_matches_open_clip_directly(tiny_clip_files) -> None:
    v = clipscore(tiny_clip_files, score="cosine")
    images = random_images(2, 32, 32)  # the model's size: no resize, so exactly the reference pipeline
    model = v.clip.model
    tok = open_clip.get_tokenizer(tiny.CLIP_NAME)
    mean, std = torch.tensor(open_clip.OPENAI_DATASET_MEAN), torch.tensor(open_clip.OPENAI_DATASET_STD)
    x = (torch.from_numpy(images).permute(0, 3, 1, 2) / 255 - mean[:, None, None]) / std[:, None, None]
    with torch.no_grad():
        img = torch.nn.functional.normalize(model.encode_image(x), dim=-1)
        txt = torch.nn.functional.normalize(model.encode_text(tok(PROMPTS[:2])), dim=-1)
    np.testing.assert_allclose(v.score(PROMPTS[:2], images), (img * txt).sum(-1).numpy(), atol=1e-5)


def test_aesthetic_mlp_has_the_official_key_names() -> None:
    keys = set(AestheticMLP().state_dict())
    assert keys == {f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias")}


def test_aesthetic_shapes_batching_and_determinism(tiny_clip_files) -> None:
    v = aesthetic(tiny_clip_files, batch_size=2)
    images = random_images(3, seed=2)
    scores = v.score(PROMPTS[:3], images)
    assert scores.shape == (3,) and len(set(scores.tolist())) == 3
    one_by_one = np.concatenate([v.score([PROMPTS[i]], images[i : i + 1]) for i in range(3)])
    np.testing.assert_allclose(scores, one_by_one, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(scores, v.score(["ignored"] * 3, images))  # the prompt plays no part
    assert v.info.checkpoint_sha256 and len(v.info.checkpoint_sha256) == 64


def test_clipscore_and_aesthetic_share_one_image_forward(tiny_clip_files) -> None:
    clip_v, aes_v = clipscore(tiny_clip_files), aesthetic(tiny_clip_files)
    assert clip_v.clip is aes_v.clip  # one model in memory
    calls = []
    encode = clip_v.clip.model.encode_image
    clip_v.clip.model.encode_image = lambda x: calls.append(len(x)) or encode(x)
    try:
        images = random_images(4, seed=3)
        ensemble = EnsembleVerifier([clip_v, aes_v])
        ensemble.score(PROMPTS, images)
        assert calls == [4]
        clip_v.score(PROMPTS, random_images(4, seed=4))  # new pixels: a new forward
        assert calls == [4, 4]
    finally:
        del clip_v.clip.model.encode_image
    assert (
        shared_open_clip(
            tiny.CLIP_NAME, tiny_clip_files["checkpoint"], config_path=tiny_clip_files["config_path"], device="cpu"
        )
        is clip_v.clip
    )


# --- ensembles ------------------------------------------------------------------------------------


class Fixed(Verifier):
    """Scores given per image index; a stand-in member."""

    def __init__(self, values, name="fixed") -> None:
        self.values, self.name = np.asarray(values, np.float64), name

    @property
    def info(self) -> VerifierInfo:
        return VerifierInfo(name=self.name, version="1", score_definition="fixed", files_needed=[f"{self.name}.bin"])

    def _score(self, prompts, images) -> np.ndarray:
        return self.values[images[:, 0, 0, 0]]


def indexed_images(n: int) -> np.ndarray:
    images = np.zeros((n, 2, 2, 3), np.uint8)
    images[:, 0, 0, 0] = np.arange(n)
    return images


def test_zscore_ensemble_is_weighted_sum_of_batch_z() -> None:
    a, b = [1.0, 2.0, 3.0], [10.0, 10.0, 40.0]
    e = EnsembleVerifier([Fixed(a, "a"), Fixed(b, "b")], weights=[1.0, 2.0])
    z = lambda x: (np.array(x) - np.mean(x)) / np.std(x)  # noqa: E731
    np.testing.assert_allclose(e.score(["p"] * 3, indexed_images(3)), z(a) + 2 * z(b))
    assert e.info.batch_relative and e.info.files_needed == ["a.bin", "b.bin"]


def test_zscore_of_one_image_or_constant_member_is_zero() -> None:
    e = EnsembleVerifier([Fixed([0.1, 0.1, 0.1], "flat"), Fixed([5.0, 6.0, 7.0], "b")])
    assert e.score(["p"], indexed_images(1)).tolist() == [0.0]
    np.testing.assert_allclose(e.score(["p"] * 3, indexed_images(3)), [-1.224744871, 0.0, 1.224744871])


def test_zscore_with_fixed_stats_is_absolute() -> None:
    e = EnsembleVerifier([Fixed([1.0, 3.0], "a")], stats=[(2.0, 0.5)])
    together = e.score(["p"] * 2, indexed_images(2))
    np.testing.assert_allclose(together, [-2.0, 2.0])
    assert not e.info.batch_relative


def test_rank_ensemble_averages_ranks_with_ties() -> None:
    e = EnsembleVerifier([Fixed([1.0, 5.0, 5.0, 0.0], "a"), Fixed([4.0, 3.0, 2.0, 1.0], "b")], method="rank")
    # ranks a: 2, 3.5, 3.5, 1; b: 4, 3, 2, 1 -> mean / 4
    np.testing.assert_allclose(e.score(["p"] * 4, indexed_images(4)), [3 / 4, 3.25 / 4, 2.75 / 4, 1 / 4])
    assert e.score(["p"], indexed_images(1)).tolist() == [1.0]


@pytest.mark.parametrize(
    "kwargs",
    [{"method": "mean"}, {"weights": [1.0]}, {"weights": [0.0, 0.0]}, {"method": "rank", "stats": [(0, 1), (0, 1)]}],
)
def test_bad_ensembles_are_refused(kwargs) -> None:
    with pytest.raises(ValueError):
        EnsembleVerifier([Fixed([1.0], "a"), Fixed([1.0], "b")], **kwargs)


def test_ensemble_from_the_registry(tiny_clip_files) -> None:
    member = {
        "name": "clipscore", "model": tiny.CLIP_NAME, "quick_gelu": False,
        "config_path": tiny_clip_files["config_path"], "checkpoint": tiny_clip_files["checkpoint"],
    }  # fmt: skip
    e = load_verifier("ensemble", members=[member, {**member, "score": "cosine"}], method="rank", weights=[1, 3])
    scores = e.score(PROMPTS, random_images(4))
    assert scores.shape == (4,) and e.info.version == "1*clipscore + 3*clipscore"
    with pytest.raises(ValueError, match="needs a 'name'"):
        load_verifier("ensemble", members=[{"model": "x"}])


# --- the shapes world, wired by cluster/ -----------------------------------------------------------


def test_shapes_verifiers_from_cluster() -> None:
    from cluster.verifiers import register_shapes_verifiers
    from generators.shapes import evaluate, world

    register_shapes_verifiers()
    judge = load_verifier("shapes-judge")
    assert judge.info.is_judge and {"shapes-clip", "shapes-judge"} <= {i.name for i in list_verifiers()}
    prompts = [p for _, p in world.eval_prompts(1, 0)][:3]
    images = evaluate.ground_truth_images(prompts, 0)
    assert judge.score(prompts, images).tolist() == [1.0, 1.0, 1.0]
    wrong = [world.mismatched_prompt(p, np.random.default_rng(0)) for p in prompts]
    assert judge.score(wrong, images).tolist() == [0.0, 0.0, 0.0]


def test_shapes_clip_missing_weights_say_how_to_get_them(tmp_path) -> None:
    from cluster.verifiers import register_shapes_verifiers

    register_shapes_verifiers()
    with pytest.raises(CheckpointError, match="varsearch shapes train --stage clip`"):
        load_verifier("shapes-clip", checkpoint=tmp_path / "clip.safetensors")
    with pytest.raises(CheckpointError, match="varsearch shapes train --stage clip-hard`"):
        load_verifier("shapes-clip-hard", checkpoint=tmp_path / "clip-hard.safetensors")


def test_shapes_clip_hard_prefers_a_clean_object_to_its_flawed_render() -> None:
    from cluster.verifiers import register_shapes_verifiers
    from generators.shapes import flawed, world

    register_shapes_verifiers()
    hard, plain = load_verifier("shapes-clip-hard"), load_verifier("shapes-clip")
    assert hard.info.checkpoint_sha256 != plain.info.checkpoint_sha256
    rng = np.random.default_rng(0)
    examples = [world.training_scene(11, i) for i in range(64)]  # a training seed neither CLIP saw
    captions = [c for c, _ in examples]
    clean = np.stack([world.render(s) for _, s in examples])
    bad = np.stack([flawed.flawed_render(c, s, rng) for c, s in examples])
    wins = {
        name: float(np.mean(v.score(captions, clean) > v.score(captions, bad)))
        for name, v in [("hard", hard), ("plain", plain)]
    }
    assert wins["hard"] >= 0.85 and wins["hard"] > wins["plain"], wins


def test_shapes_clip_pair_is_the_absolute_sum_of_both_tiny_clips() -> None:
    from cluster.verifiers import register_shapes_verifiers
    from generators.shapes import evaluate, world

    register_shapes_verifiers()
    pair = load_verifier("shapes-clip-pair")
    assert not pair.info.batch_relative  # search may compare its scores across calls
    prompts = [p for _, p in world.eval_prompts(1, 0)]
    images = evaluate.ground_truth_images(prompts, 0)
    members = load_verifier("shapes-clip").score(prompts, images) + load_verifier("shapes-clip-hard").score(
        prompts, images
    )
    np.testing.assert_allclose(pair.score(prompts, images), members, atol=1e-6)
    np.testing.assert_allclose(pair.score(prompts[:1], images[:1]), members[:1], atol=1e-6)


def test_shapes_verifiers_listed_as_they_load() -> None:
    """The listing resolves no files (paths and hashes come at load), but what a score means must not differ."""
    from cluster.verifiers import SHAPES_SEARCH_VERIFIERS, register_shapes_verifiers

    register_shapes_verifiers()
    listed = {i.name: i for i in list_verifiers()}
    for name in (*SHAPES_SEARCH_VERIFIERS, "shapes-judge"):
        loaded = load_verifier(name).info
        fields = ("name", "score_definition", "is_judge", "higher_is_better", "batch_relative")
        assert [getattr(listed[name], f) for f in fields] == [getattr(loaded, f) for f in fields], name
    assert "[-2, 2]" in listed["shapes-clip-pair"].score_definition


class LeftHalfRed(Verifier):
    """Mean red of the left half: a score that changes when the image moves."""

    name = "left-half-red"
    info = VerifierInfo(name=name, version="test", score_definition="mean red, left half")

    def _score(self, prompts: list[str], images: np.ndarray) -> np.ndarray:
        return images[:, :, : images.shape[2] // 2, 0].mean(axis=(1, 2))


def test_shifted_moves_content_and_repeats_the_edge() -> None:
    from verifiers.shifted import shifted

    image = np.zeros((1, 6, 8, 3), dtype=np.uint8)
    image[0, 2, 3] = 200
    image[0, :, -1] = 50  # the right edge column
    moved = shifted(image, dx=2, dy=-1)[0]
    assert moved.shape == (6, 8, 3) and moved[1, 5, 0] == 200 and moved[2, 3, 0] == 0
    left = shifted(image, dx=-2, dy=0)[0]
    assert (left[:, -3:, 0] == 50).all()  # the uncovered right border repeats the edge column
    np.testing.assert_array_equal(shifted(image, 0, 0), image)


def test_shift_averaged_verifier_is_the_mean_over_five_translations() -> None:
    from verifiers.shifted import ShiftAveragedVerifier, shifted

    images = random_images(3, h=12, w=16)
    base = LeftHalfRed()
    tta = ShiftAveragedVerifier(base, 3)
    expected = np.mean(
        [base.score(PROMPTS[:3], shifted(images, dx, dy)) for dx, dy in [(0, 0), (3, 0), (-3, 0), (0, 3), (0, -3)]],
        axis=0,
    )
    np.testing.assert_allclose(tta.score(PROMPTS[:3], images), expected)
    assert not np.allclose(expected, base.score(PROMPTS[:3], images))  # the shifts do change this score
    assert tta.info.name == "left-half-red-shift3" and "3 px" in tta.info.version
    with pytest.raises(ValueError, match="shift_px must be >= 1"):
        ShiftAveragedVerifier(base, 0)
    with pytest.raises(ValueError, match="too small to shift"):
        ShiftAveragedVerifier(base, 4).score(PROMPTS[:1], random_images(1, h=4, w=4))


def test_shapes_clip_pair_shift2_averages_the_pair_over_2px_shifts() -> None:
    from cluster.verifiers import register_shapes_verifiers
    from generators.shapes import evaluate, world
    from verifiers.shifted import shifted

    register_shapes_verifiers()
    tta, pair = load_verifier("shapes-clip-pair-shift2"), load_verifier("shapes-clip-pair")
    assert not tta.info.batch_relative
    prompts = [p for _, p in world.eval_prompts(1, 0)]
    images = evaluate.ground_truth_images(prompts, 0)
    offsets = [(0, 0), (2, 0), (-2, 0), (0, 2), (0, -2)]
    expected = np.mean([pair.score(prompts, shifted(images, dx, dy)) for dx, dy in offsets], axis=0)
    np.testing.assert_allclose(tta.score(prompts, images), expected, atol=1e-6)


class ChannelSum(Verifier):
    """Caption "red" scores the image's summed red, any other caption its summed blue (in units of 255)."""

    name = "channel-sum"
    info = VerifierInfo(name=name, version="test", score_definition="summed red or blue")

    def _score(self, prompts: list[str], images: np.ndarray) -> np.ndarray:
        channel = np.array([0 if p == "red" else 2 for p in prompts])
        return images[np.arange(len(images)), :, :, channel].sum(axis=(1, 2)) / 255


def test_sides_paint_the_other_side_background() -> None:
    from verifiers.regions import sides

    image = np.full((4, 6, 3), 9, np.uint8)
    left, right = sides(image, "x", 2, np.array([1, 1, 1], np.uint8))
    assert (
        (left[:, :2] == 9).all()
        and (left[:, 2:] == 1).all()
        and (right[:, :2] == 1).all()
        and (right[:, 2:] == 9).all()
    )
    top, bottom = sides(image, "y", 3, np.array([1, 1, 1], np.uint8))
    assert (top[:3] == 9).all() and (top[3:] == 1).all() and (bottom[:3] == 1).all() and (bottom[3:] == 9).all()
    assert (image == 9).all()  # the input is not painted over


def test_region_prompting_scores_each_part_on_its_own_side() -> None:
    from verifiers.regions import RegionPromptedVerifier, RegionQuery

    # 8x8, black; a 2x2 red block in columns 0-1 and a 2x2 blue block in columns 6-7, rows 1-2.
    image = np.zeros((8, 8, 3), np.uint8)
    image[1:3, 0:2, 0] = 255
    image[1:3, 6:8, 2] = 255
    queries = {
        "red left of blue": RegionQuery(("red", "blue"), (("x", True),)),
        "red right of blue": RegionQuery(("red", "blue"), (("x", False),)),
        "red above blue": RegionQuery(("red", "blue"), (("y", True),)),
        "red and blue": RegionQuery(("red", "blue"), (("x", True), ("x", False), ("y", True), ("y", False))),
    }
    base = LeftHalfRed()
    verifier = RegionPromptedVerifier(
        base, ChannelSum(), queries.get, cuts=(4,), background=(0, 0, 0), weight=0.5, name="r", score_definition="t"
    )
    prompts = [*queries, "one thing"]
    images = np.stack([image] * len(prompts))
    region = verifier.score(prompts, images) - base.score(prompts, images)
    # left of: red's 4 px on the left side, blue's 4 on the right; right of: each part's side is empty; above: the
    # cut at row 4 leaves both blocks on top, so red counts and blue does not; no query: the base score alone.
    np.testing.assert_allclose(region, 0.5 * np.array([8, 0, 4, 8, 0]))
    one_by_one = [verifier.score([p], images[:1])[0] for p in prompts]
    np.testing.assert_allclose(verifier.score(prompts, images), one_by_one)
    with pytest.raises(ValueError, match="do not all fall inside"):
        RegionPromptedVerifier(
            base, ChannelSum(), queries.get, cuts=(8,), background=(0, 0, 0), name="r", score_definition="t"
        ).score(prompts[:1], images[:1])
    with pytest.raises(ValueError, match="two parts and at least one layout"):
        RegionQuery(("red", "blue"), (("z", True),))


def test_shapes_region_queries_follow_the_grammar() -> None:
    from cluster.verifiers import shapes_region_query

    every_layout = (("x", True), ("x", False), ("y", True), ("y", False))
    query = shapes_region_query("an orange circle and a blue square")
    assert query.parts == ("an orange circle", "a blue square") and query.layouts == every_layout
    assert shapes_region_query("a triangle and a circle").parts == ("a triangle", "a circle")
    assert shapes_region_query("a circle left of a square").layouts == (("x", True),)
    assert shapes_region_query("a triangle below a circle").layouts == (("y", False),)
    assert [shapes_region_query(p) for p in ("three triangles", "a red circle", "a square", "a cat")] == [None] * 4


def test_shapes_clip_regions_adds_the_region_term_to_two_object_prompts_only() -> None:
    from cluster.verifiers import register_shapes_verifiers
    from generators.shapes import evaluate, world

    register_shapes_verifiers()
    regions, shifted_pair = load_verifier("shapes-clip-regions"), load_verifier("shapes-clip-pair-shift2")
    assert not regions.info.batch_relative
    by_category = dict(world.eval_prompts(1, 0))
    prompts = list(by_category.values())
    images = evaluate.ground_truth_images(prompts, 0)
    added = regions.score(prompts, images) - shifted_pair.score(prompts, images)
    two_objects = np.array([c in ("two_object", "position", "color_attr") for c in by_category])
    np.testing.assert_allclose(added[~two_objects], 0, atol=1e-9)
    assert (np.abs(added[two_objects]) > 0.1).all()  # two cosines of a CLIP that knows these captions


def test_cli_lists_verifiers_as_json() -> None:
    from typer.testing import CliRunner

    from cluster.cli import app

    result = CliRunner().invoke(app, ["verifiers", "--json"])
    assert result.exit_code == 0, result.output
    infos = {i["name"]: i for i in json.loads(result.output)}
    assert {
        "imagereward",
        "clipscore",
        "aesthetic",
        "llava-onevision",
        "ensemble",
        "shapes-clip",
        "shapes-clip-hard",
        "shapes-clip-pair",
        "shapes-clip-pair-shift2",
    } <= set(infos)
    assert infos["shapes-judge"]["is_judge"] and infos["imagereward"]["files_needed"]
