"""Flawed renders: a training scene with one named object drawn wrong, as the verifier's hard negatives.

The world's objects are flat, single-coloured, upright circles, squares and triangles. The shapes
generator's typical misses are not: objects painted in two colours, and hybrids such as a teardrop
(a triangle's top over a circle's bottom). A tiny CLIP trained only on clean renders never saw
either, so it ranks them by what they half resemble. Here the renderer draws such flaws itself, from
the world's definition alone (no evaluator involved): one object of a shape the caption names becomes
two-tone, or a teardrop if it is a circle or a square, and the result is kept only if the caption no
longer holds once that object is taken out of the scene (world.holds), so every flawed render is a
negative of its caption in the world's terms. (The evaluator, which names a piece by the ideal shape
it overlaps best, still accepts about a quarter of them: a two-tone triangle's larger piece often
passes for a triangle.)
"""

from __future__ import annotations

import numpy as np

from generators.shapes import world


def _two_tone(canvas: np.ndarray, obj: world.ShapeObject, rng: np.random.Generator) -> None:
    """Repaint the object's part on one side of a line near its centre in another colour."""
    x, y = obj.cx - obj.size // 2, obj.cy - obj.size // 2
    mask = world.shape_mask(obj.shape, obj.size, obj.size)
    i, j = np.mgrid[: obj.size, : obj.size] - (obj.size - 1) / 2
    angle = rng.uniform(-np.pi / 6, np.pi / 6)  # near-vertical cuts: a triangle's top is a triangle again
    side = (j * np.cos(angle) + i * np.sin(angle)) > rng.uniform(-0.1, 0.1) * obj.size
    other = rng.choice([c for c in world.PALETTE if c != obj.colour])
    box = canvas[y : y + obj.size, x : x + obj.size]
    box[mask] = world.PALETTE[obj.colour]
    box[mask & side] = world.PALETTE[other]


def _teardrop(canvas: np.ndarray, obj: world.ShapeObject, rng: np.random.Generator) -> None:
    """Redraw the object as a triangle's top over a circle's bottom, cut near the middle (for a
    triangle that is too close to the real thing, so only circles and squares get it)."""
    x, y = obj.cx - obj.size // 2, obj.cy - obj.size // 2
    top, bottom = (world.shape_mask(s, obj.size, obj.size) for s in ("triangle", "circle"))
    cut = obj.size // 2 + int(rng.integers(-(obj.size // 8), obj.size // 8 + 1))
    canvas[y : y + obj.size, x : x + obj.size][np.concatenate([top[:cut], bottom[cut:]])] = world.PALETTE[obj.colour]


def flawed_render(caption: str, scene: world.Scene, rng: np.random.Generator) -> np.ndarray | None:
    """uint8 (64, 64, 3): the scene with one object of a named shape two-tone or a teardrop, such that the
    caption is false of the scene without that object; None when no object qualifies."""
    spec = world.parse_prompt(caption)
    candidates = [k for k, obj in enumerate(scene.objects) if obj.shape in spec.shapes]
    for k in rng.permutation(candidates):
        rest = scene.objects[:k] + scene.objects[k + 1 :]
        if world.holds(spec, rest):
            continue
        canvas = world.render(world.Scene(rest))
        obj = scene.objects[k]
        flaw = _two_tone if obj.shape == "triangle" or rng.random() < 0.5 else _teardrop
        flaw(canvas, obj, rng)
        return canvas
    return None
