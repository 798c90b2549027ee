"""Flawed renders, the tiny CLIP's hard negative images: one named object drawn wrong, the caption false."""

import numpy as np

from generators.shapes import evaluator, flawed, world


def _flawed_examples(n: int) -> list[tuple[str, world.Scene, np.ndarray]]:
    rng = np.random.default_rng(0)
    examples = [world.training_scene(5, i) for i in range(n)]
    return [(c, s, f) for c, s in examples if (f := flawed.flawed_render(c, s, rng)) is not None]


def _palette_objects(image: np.ndarray) -> set[tuple[int, int, int]]:
    return {tuple(p) for p in image.reshape(-1, 3)} - {world.BACKGROUND}


def test_flawed_renders_redraw_one_named_object_and_the_judge_mostly_rejects_them():
    examples = _flawed_examples(300)
    assert len(examples) == 300  # every training caption names an object whose flaw falsifies it
    rejected = 0
    for caption, scene, image in examples:
        clean = world.render(scene)
        assert evaluator.judge(clean, caption)
        rows, cols = np.nonzero(np.any(image != clean, axis=-1))
        named = [o for o in scene.objects if o.shape in world.parse_prompt(caption).shapes]
        in_box = [  # every changed pixel lies in the bounding box of one object of a named shape
            np.all((np.abs(rows - o.cy) <= o.size // 2) & (np.abs(cols - o.cx) <= o.size // 2)) for o in named
        ]
        assert any(in_box), caption
        rejected += not evaluator.judge(image, caption)
    assert rejected / len(examples) >= 0.7  # the rest: a two-tone triangle's larger piece passes for a triangle


def test_flaws_are_flat_palette_colours_and_two_tone_or_teardrop():
    palette = {tuple(c) for c in world.PALETTE.values()}
    two_tone = 0
    for _, scene, image in _flawed_examples(60):
        assert _palette_objects(image) <= palette  # flat colours, no blur: a drawing flaw, not noise
        two_tone += len(_palette_objects(image)) > len(_palette_objects(world.render(scene)))
    assert 15 <= two_tone <= 50  # both kinds are common


def test_no_flaw_when_no_named_object_can_make_the_caption_false():
    circles = (world.ShapeObject("circle", "red", 16, 20, 20), world.ShapeObject("circle", "blue", 16, 44, 44))
    scene = world.Scene(circles)
    assert flawed.flawed_render("a circle", scene, np.random.default_rng(0)) is None  # the other circle remains
    assert flawed.flawed_render("a square", scene, np.random.default_rng(0)) is None  # nothing named to flaw
