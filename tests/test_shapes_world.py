"""The shapes world and its judge: grammar, splits, determinism, and the judge's accuracy on ground truth."""

import numpy as np
import pytest
from scipy import ndimage

from generators.shapes import evaluator, world
from generators.shapes.evaluator import detect, evaluate, judge
from generators.shapes.world import (
    BACKGROUND,
    CATEGORIES,
    EVAL_HELD_OUT_SHARE,
    HELD_OUT_PAIRS,
    IMAGE_SIZE,
    PALETTE,
    Scene,
    ShapeObject,
    eval_prompts,
    eval_suite,
    holds,
    mismatched_prompt,
    parse_prompt,
    render,
    sample_example,
    scene_for_prompt,
    training_batch,
    training_example,
    training_scene,
)

N_PER_CATEGORY = 100  # 600 ground-truth pairs over the six categories


def _degrade(image: np.ndarray, rng: np.random.Generator, sigma: float = 8.0) -> np.ndarray:
    """A mildly blurred (3x3 box) and noisy copy, the kind of imperfection a generator adds."""
    blurred = ndimage.uniform_filter(image.astype(np.float32), size=(3, 3, 1), mode="nearest")
    return np.clip(np.rint(blurred + rng.normal(0.0, sigma, image.shape)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def ground_truth() -> list[tuple[str, np.ndarray, str]]:
    """(prompt, image of a scene that satisfies it, a mismatched prompt that the scene violates)."""
    rng = np.random.default_rng(1234)
    pairs = []
    for _, prompt in eval_prompts(N_PER_CATEGORY, seed=7):
        image = render(scene_for_prompt(prompt, rng))
        pairs.append((prompt, image, mismatched_prompt(prompt, rng)))
    return pairs


def test_render_is_exact_and_flat():
    scene = Scene((ShapeObject("square", "red", 14, 10, 10), ShapeObject("circle", "blue", 21, 40, 40)))
    image = render(scene)
    assert image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and image.dtype == np.uint8
    assert (image == PALETTE["red"]).all(-1).sum() == 14 * 14
    colours = {tuple(c) for c in image.reshape(-1, 3)}
    assert colours == {BACKGROUND, PALETTE["red"], PALETTE["blue"]}


def test_training_scenes_are_valid_and_true():
    rng = np.random.default_rng(0)
    verdicts = []
    for _ in range(600):
        caption, scene = sample_example(rng)
        assert 1 <= len(scene.objects) <= 4
        for i, a in enumerate(scene.objects):
            x0, y0 = a.cx - a.size // 2, a.cy - a.size // 2
            assert x0 >= world.BORDER and y0 >= world.BORDER
            assert x0 + a.size <= IMAGE_SIZE - world.BORDER and y0 + a.size <= IMAGE_SIZE - world.BORDER
            assert all(world._apart(a, b) for b in scene.objects[i + 1 :])
        assert holds(parse_prompt(caption), scene.objects)
        verdicts.append(judge(render(scene), caption))
    assert np.mean(verdicts) >= 0.99


def test_training_split_holds_out_pairs_and_covers_categories():
    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(5000):
        caption, scene = sample_example(rng)
        spec = parse_prompt(caption)
        seen.add(spec.category)
        assert not any(f"{colour} {shape}" in caption for colour, shape in HELD_OUT_PAIRS)
        if spec.colours:  # nor does a caption that names colours show a held-out pair unnamed
            assert not any((o.colour, o.shape) in HELD_OUT_PAIRS for o in scene.objects)
    assert seen == set(CATEGORIES)


def test_training_data_is_deterministic_by_seed_and_index():
    caption, image = training_example(5, 17)
    again_caption, again_image = training_example(5, 17)
    assert caption == again_caption and np.array_equal(image, again_image)
    assert not np.array_equal(image, training_example(5, 18)[1])
    assert not np.array_equal(image, training_example(6, 17)[1])
    captions, images = training_batch(5, 10, 16)
    assert images.shape == (16, IMAGE_SIZE, IMAGE_SIZE, 3) and images.dtype == np.uint8
    for i in range(16):
        one_caption, one_image = training_example(5, 10 + i)
        assert captions[i] == one_caption and np.array_equal(images[i], one_image)


def test_parse_prompt_round_trips_and_rejects_junk():
    for category, prompt in eval_prompts(N_PER_CATEGORY):
        spec = parse_prompt(prompt)
        assert spec.category == category and spec.text() == prompt
    assert parse_prompt("  A Red  circle ").text() == "a red circle"
    junk = [
        "",
        "a circle.",
        "a pink circle",
        "five circles",
        "a hexagon",
        "a circle and a circle",
        "a circle left of a circle",
        "a red circle and a red square",
        "a photo of a dog",
    ]
    for text in junk:
        with pytest.raises(ValueError):
            parse_prompt(text)


def test_eval_suites_sizes_determinism_and_held_out_share():
    for category in CATEGORIES:
        suite = eval_suite(category, n=100, seed=3)
        assert len(suite) == 100 and suite == eval_suite(category, n=100, seed=3)
        assert all(parse_prompt(p).category == category for p in suite)
        held = np.mean([parse_prompt(p).held_out for p in suite])
        if category in ("colors", "color_attr"):
            assert held >= 0.3 and held == pytest.approx(EVAL_HELD_OUT_SHARE, abs=0.01)
        else:
            assert held == 0
    assert eval_suite("colors", seed=0) != eval_suite("colors", seed=1)
    assert len(set(eval_suite("counting", n=24))) == 12  # even spread: every counting prompt, twice
    pairs = eval_prompts(10)
    assert len(pairs) == 60 and [c for c, _ in pairs[::10]] == list(CATEGORIES)


def test_detect_reads_back_every_object():
    rng = np.random.default_rng(11)
    for _ in range(200):
        _, scene = sample_example(rng)
        found = sorted((d.shape, d.colour, d.cx, d.cy) for d in detect(render(scene)))
        truth = sorted(
            (o.shape, o.colour, o.cx - o.size // 2 + (o.size - 1) / 2, o.cy - o.size // 2 + (o.size - 1) / 2)
            for o in scene.objects
        )
        assert found == truth


def test_judge_accepts_ground_truth(ground_truth):
    verdicts = [judge(image, prompt) for prompt, image, _ in ground_truth]
    assert len(verdicts) >= 600 and np.mean(verdicts) >= 0.99


def test_judge_rejects_mismatched_prompts(ground_truth):
    for prompt, _, wrong in ground_truth:
        assert parse_prompt(wrong).category == parse_prompt(prompt).category and wrong != prompt
    verdicts = [judge(image, wrong) for _, image, wrong in ground_truth]
    assert np.mean(verdicts) <= 0.01
    rng = np.random.default_rng(0)
    near_misses = {mismatched_prompt("a red circle and a blue square", rng) for _ in range(100)}
    assert {"a blue circle and a red square", "a red circle and a blue triangle"} < near_misses


def test_near_misses_of_training_scenes_are_false_and_stay_in_the_split():
    rng = np.random.default_rng(8)
    for index in range(600):
        caption, scene = training_scene(4, index)
        wrong = mismatched_prompt(caption, rng, scene)
        spec = parse_prompt(wrong)
        assert spec.category == parse_prompt(caption).category and not spec.held_out
        assert not holds(spec, scene.objects) and not judge(render(scene), wrong)


def test_judge_is_robust_to_blur_and_noise(ground_truth):
    rng = np.random.default_rng(99)
    degraded = [(prompt, _degrade(image, rng), wrong) for prompt, image, wrong in ground_truth]
    assert np.mean([judge(image, prompt) for prompt, image, _ in degraded]) >= 0.97
    assert np.mean([judge(image, wrong) for _, image, wrong in degraded]) <= 0.03


def test_judge_is_strict_about_what_is_not_there():
    blank = render(Scene(()))
    assert not any(judge(blank, prompt) for _, prompt in eval_prompts(5))
    off_palette = blank.copy()
    off_palette[10:30, 10:30] = (128, 128, 128)  # a grey square: no palette colour, so no object
    assert detect(off_palette) == []
    stretched = render(Scene((ShapeObject("square", "red", 14, 20, 20), ShapeObject("square", "red", 14, 37, 20))))
    stretched[13:27, 27:31] = PALETTE["red"]  # bridge two squares into one long bar
    assert [d.shape for d in detect(stretched)] == [evaluator.UNKNOWN]


def test_position_rule():
    left, right = ShapeObject("circle", "red", 15, 15, 30), ShapeObject("square", "blue", 15, 45, 36)
    image = render(Scene((left, right)))
    assert judge(image, "a circle left of a square") and judge(image, "a square right of a circle")
    assert not judge(image, "a circle right of a square") and not judge(image, "a circle above a square")
    # A second circle to the square's right breaks "every circle left of every square".
    extra = render(Scene((left, right, ShapeObject("circle", "green", 9, 58, 12))))
    assert not judge(extra, "a circle left of a square")


def test_evaluate_scores_per_category():
    pairs = eval_prompts(4, seed=2)
    rng = np.random.default_rng(0)
    images = np.stack([render(scene_for_prompt(prompt, rng)) for _, prompt in pairs])
    prompts = [prompt for _, prompt in pairs]
    prompts[0] = mismatched_prompt(prompts[0], rng)  # one wrong single_object image
    result = evaluate(images, prompts)
    assert result["n_images"] == 24 and result["per_image"][0] is False and all(result["per_image"][1:])
    assert list(result["per_category"]) == list(CATEGORIES)
    assert result["per_category"]["single_object"] == 0.75
    assert result["overall"] == pytest.approx((0.75 + 5) / 6)
    with pytest.raises(ValueError):
        evaluate(images[:2], prompts)
