"""The shapes world: scenes of flat coloured shapes, their GenEval-like captions, and the splits.

A scene is 1 to 4 upright shapes (circle, square, triangle) in six saturated colours on a light
background, 64x64 pixels, drawn without antialiasing so that every object pixel is exactly its palette
colour. Bounding boxes keep GAP px between objects and BORDER px to the edge, so that a colour
segmentation can take the scene apart again (generators/shapes/evaluator.py).

Captions are lowercase, without a final period, in GenEval's six categories. What each one claims,
as `holds` decides it over a scene's objects or the evaluator's detections:

    single_object  "a circle"                        at least one circle
    two_object     "a circle and a square"           at least one of each (two different shapes)
    counting       "three triangles"                 exactly three triangles; other shapes are ignored
    colors         "a red circle"                    at least one red circle (other circles may exist)
    position       "a circle left of a square"       both present, and every circle stands in the
                                                     relation to every square (see relation_holds)
    color_attr     "a red circle and a blue square"  a red circle and a blue square (different shapes,
                                                     different colours)

Position uses bounding-box centres, as GenEval does: "a left of b" holds when b's centre lies at least
POSITION_MARGIN px to the right of a's and no further off vertically than horizontally (a 45-degree
cone); "right of", "above" (a nearer the top) and "below" alike. Scenes keep their relation with room
to spare: >= 8 px along it and at most half that across.

The grammar is finite (243 prompts), so parse_prompt is an exact lookup, and text outside it is an error.

Training data: each example draws a category uniformly, then a caption uniformly from that category's
training captions, then a scene that makes it true. In single_object, colors, position and color_attr,
NUISANCE_PROB of the scenes gain one object of a shape the caption does not name; counting and
two_object scenes hold only what the caption names.
HELD_OUT_PAIRS are never named by a training caption, nor drawn in the scene of a training caption that
mentions colour; images of the other categories do show them, unnamed.

Evaluation: eval_suite gives EVAL_HELD_OUT_SHARE of the colors and color_attr prompts to held-out pairs.
The other categories' grammars are so small (3 to 24 prompts) that every eval prompt is also a training
caption: they test the images, not the novelty of the text.

Ground truth for validating the evaluator: scene_for_prompt draws the minimal scene (only what the
prompt names), and mismatched_prompt a near miss (one edit away, same category) that such a scene, or a
given one, violates.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cache

import numpy as np

IMAGE_SIZE = 64
BACKGROUND = (240, 240, 240)
# Saturated and far apart: >= 108 apart in RGB, >= 240 from the background.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 20, 20),
    "green": (20, 160, 40),
    "blue": (30, 60, 220),
    "yellow": (230, 230, 0),
    "purple": (140, 30, 170),
    "orange": (255, 120, 0),
}
SHAPES = ("circle", "square", "triangle")
CATEGORIES = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
# Unit direction of (b - a) in image coordinates (y down) when "a {relation} b" holds.
RELATIONS: dict[str, tuple[int, int]] = {"left of": (1, 0), "right of": (-1, 0), "above": (0, 1), "below": (0, -1)}
NUMBERS = ("one", "two", "three", "four")
HELD_OUT_PAIRS = frozenset({("green", "triangle"), ("purple", "circle"), ("orange", "square")})
EVAL_HELD_OUT_SHARE = 1 / 3
NUISANCE_PROB = 0.3
POSITION_MARGIN = 4  # px a centre must move along a relation for it to hold

BORDER = 2  # min px between an object's bounding box and the image edge
GAP = 3  # min px between two objects' bounding boxes
# Bounding-box side range (inclusive) by number of objects: large, yet four of them still fit.
_SIZES = {1: (14, 24), 2: (14, 24), 3: (14, 20), 4: (14, 18)}
_COLOUR_CATEGORIES = ("colors", "color_attr")
# Not counting (an extra object would be another thing to count) nor two_object (the only unnamed shape
# would make every other two_object caption true as well).
_NUISANCE_CATEGORIES = ("single_object", "colors", "position", "color_attr")


@dataclass(frozen=True)
class ShapeObject:
    """One flat object: its bounding box is `size` px square, spanning cx - size//2 .. cx - size//2 + size - 1."""

    shape: str
    colour: str
    size: int
    cx: int
    cy: int


@dataclass(frozen=True)
class Scene:
    objects: tuple[ShapeObject, ...]


@dataclass(frozen=True)
class PromptSpec:
    """What a prompt requires: the named shapes in prompt order, their colours (if named), count, relation."""

    category: str
    shapes: tuple[str, ...]
    colours: tuple[str, ...] = ()
    count: int = 1
    relation: str | None = None

    @property
    def held_out(self) -> bool:
        """Whether the prompt names a colour-shape pair that training captions never name."""
        return any(pair in HELD_OUT_PAIRS for pair in zip(self.colours, self.shapes, strict=False))

    def text(self) -> str:
        """The prompt, in the grammar's words."""
        s, c = self.shapes, self.colours
        match self.category:
            case "single_object":
                return f"a {s[0]}"
            case "two_object":
                return f"a {s[0]} and a {s[1]}"
            case "counting":
                return f"{NUMBERS[self.count - 1]} {s[0]}" + ("s" if self.count > 1 else "")
            case "colors":
                return f"{_a(c[0])} {c[0]} {s[0]}"
            case "position":
                return f"a {s[0]} {self.relation} a {s[1]}"
            case "color_attr":
                return f"{_a(c[0])} {c[0]} {s[0]} and {_a(c[1])} {c[1]} {s[1]}"
        raise ValueError(f"unknown category {self.category!r}")


def _a(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _all_specs() -> list[PromptSpec]:
    shape_pairs = list(itertools.permutations(SHAPES, 2))
    return [
        *(PromptSpec("single_object", (s,)) for s in SHAPES),
        *(PromptSpec("two_object", pair) for pair in shape_pairs),
        *(PromptSpec("counting", (s,), count=n) for s in SHAPES for n in range(1, len(NUMBERS) + 1)),
        *(PromptSpec("colors", (s,), (c,)) for s in SHAPES for c in PALETTE),
        *(PromptSpec("position", pair, relation=r) for pair in shape_pairs for r in RELATIONS),
        *(PromptSpec("color_attr", pair, cs) for pair in shape_pairs for cs in itertools.permutations(PALETTE, 2)),
    ]


_GRAMMAR: dict[str, PromptSpec] = {spec.text(): spec for spec in _all_specs()}
_PROMPTS = {cat: [p for p, spec in _GRAMMAR.items() if spec.category == cat] for cat in CATEGORIES}
_TRAIN_PROMPTS = {cat: [p for p in prompts if not _GRAMMAR[p].held_out] for cat, prompts in _PROMPTS.items()}
# Colours an unnamed object of each shape may take, without and with the held-out pairs excluded.
_FREE_COLOURS = {
    avoid: {s: [c for c in PALETTE if not (avoid and (c, s) in HELD_OUT_PAIRS)] for s in SHAPES}
    for avoid in (False, True)
}


def parse_prompt(prompt: str) -> PromptSpec:
    """The requirement a prompt states; ValueError for text outside the grammar (case and spacing are forgiven)."""
    try:
        return _GRAMMAR[" ".join(prompt.split()).lower()]
    except KeyError:
        raise ValueError(f"not a shapes-world prompt: {prompt!r}") from None


def relation_holds(
    relation: str,
    a: tuple[float, float],
    b: tuple[float, float],
    margin: float = POSITION_MARGIN,
    cone: float = 1.0,
) -> bool:
    """Whether centre a stands `relation` to centre b: >= margin px along it, at most cone times that across."""
    ux, uy = RELATIONS[relation]
    dx, dy = b[0] - a[0], b[1] - a[1]
    along, across = dx * ux + dy * uy, abs(dx * uy - dy * ux)
    return along >= margin and across <= cone * along


def holds(spec: PromptSpec, objects: Sequence) -> bool:
    """Whether objects (a scene's ShapeObjects or an image's Detections) satisfy a prompt: the rules above."""

    def named(shape: str, colour: str | None = None) -> list:
        return [o for o in objects if o.shape == shape and colour in (None, o.colour)]

    match spec.category:
        case "counting":
            return len(named(spec.shapes[0])) == spec.count
        case "colors" | "color_attr":
            return all(named(s, c) for s, c in zip(spec.shapes, spec.colours, strict=True))
        case "position":
            a, b = named(spec.shapes[0]), named(spec.shapes[1])
            return bool(a and b) and all(
                relation_holds(spec.relation, (p.cx, p.cy), (q.cx, q.cy)) for p in a for q in b
            )
    return all(named(s) for s in spec.shapes)  # single_object, two_object


def _pick(rng: np.random.Generator, options: Sequence):
    return options[rng.integers(len(options))]


def _apart(a: ShapeObject, b: ShapeObject) -> bool:
    """Whether the bounding boxes leave at least GAP empty px between them, across or down."""
    ax, ay, bx, by = a.cx - a.size // 2, a.cy - a.size // 2, b.cx - b.size // 2, b.cy - b.size // 2
    gap_x = max(bx - (ax + a.size), ax - (bx + b.size))
    gap_y = max(by - (ay + a.size), ay - (by + b.size))
    return max(gap_x, gap_y) >= GAP


def _place(rng: np.random.Generator, items: list[tuple[str, str]], relation: str | None) -> Scene:
    """Rejection-sample sizes and centres until every pair is apart (and the first two keep the relation)."""
    lo, hi = _SIZES[len(items)]
    while True:
        placed: list[ShapeObject] = []
        for shape, colour in items:
            size = int(rng.integers(lo, hi + 1))
            low, high = BORDER + size // 2, IMAGE_SIZE - BORDER - size + size // 2
            for _ in range(50):
                cx, cy = rng.integers(low, high + 1, size=2)
                obj = ShapeObject(shape, colour, size, int(cx), int(cy))
                related = relation is None or len(placed) != 1 or _roomy(relation, placed[0], obj)
                if related and all(_apart(obj, other) for other in placed):
                    placed.append(obj)
                    break
            else:
                break
        else:
            return Scene(tuple(placed))


def _roomy(relation: str, a: ShapeObject, b: ShapeObject) -> bool:
    return relation_holds(relation, (a.cx, a.cy), (b.cx, b.cy), margin=2 * POSITION_MARGIN, cone=0.5)


def _scene(spec: PromptSpec, rng: np.random.Generator, training: bool) -> Scene:
    """A scene the spec is true of: minimal, or for training with a possible nuisance object."""
    items = list(itertools.zip_longest(spec.shapes * spec.count, spec.colours))  # counting: `count` alike
    if training and spec.category in _NUISANCE_CATEGORIES and rng.random() < NUISANCE_PROB:
        items.append((_pick(rng, [s for s in SHAPES if s not in spec.shapes]), None))
    free = _FREE_COLOURS[training and spec.category in _COLOUR_CATEGORIES]
    coloured = [(shape, colour or _pick(rng, free[shape])) for shape, colour in items]
    return _place(rng, coloured, spec.relation)


@cache
def shape_mask(shape: str, height: int, width: int) -> np.ndarray:
    """The shape filling a height x width box, sampled at pixel centres: exact, symmetric, no antialiasing."""
    i, j = np.mgrid[:height, :width]
    dx, dy = 2 * j + 1 - width, 2 * i + 1 - height  # twice the offset of each pixel centre from the box centre
    if shape == "circle":
        return (dx * height) ** 2 + (dy * width) ** 2 <= (width * height) ** 2
    if shape == "triangle":  # apex at the top centre, base along the bottom row
        return np.abs(dx) * height <= (i + 1) * width
    return np.ones((height, width), bool)


def _paint(canvas: np.ndarray, scene: Scene) -> None:
    for obj in scene.objects:
        x, y = obj.cx - obj.size // 2, obj.cy - obj.size // 2
        canvas[y : y + obj.size, x : x + obj.size][shape_mask(obj.shape, obj.size, obj.size)] = PALETTE[obj.colour]


def render(scene: Scene) -> np.ndarray:
    """The scene as a uint8 (64, 64, 3) image."""
    canvas = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    canvas[:] = BACKGROUND
    _paint(canvas, scene)
    return canvas


def sample_example(rng: np.random.Generator, category: str | None = None) -> tuple[str, Scene]:
    """A training caption (never naming a held-out pair) and a scene it is true of."""
    prompt = _pick(rng, _TRAIN_PROMPTS[category or _pick(rng, CATEGORIES)])
    return prompt, _scene(_GRAMMAR[prompt], rng, training=True)


def training_scene(seed: int, index: int) -> tuple[str, Scene]:
    """The caption and scene of example `index` of training set `seed` (what training_example renders)."""
    return sample_example(np.random.default_rng((seed, index)))


def training_example(seed: int, index: int) -> tuple[str, np.ndarray]:
    """Example `index` of the endless training set `seed`: random access, so any worker can make any slice."""
    caption, scene = training_scene(seed, index)
    return caption, render(scene)


def training_batch(seed: int, start: int, size: int) -> tuple[list[str], np.ndarray]:
    """Examples start .. start + size - 1 of training set `seed`: captions and uint8 (size, 64, 64, 3) images."""
    images = np.empty((size, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    images[:] = BACKGROUND
    captions = []
    for i in range(size):
        caption, scene = training_scene(seed, start + i)
        _paint(images[i], scene)
        captions.append(caption)
    return captions, images


def scene_for_prompt(prompt: str, rng: np.random.Generator) -> Scene:
    """The minimal scene that satisfies a prompt: only the objects it names, in the colours and relation it names."""
    return _scene(parse_prompt(prompt), rng, training=False)


def _edits(spec: PromptSpec) -> list[list[str]]:
    """Texts one edit away from spec, by kind of edit (some are not in the grammar, or equal spec)."""
    s, c = spec.shapes, spec.colours
    kinds = [
        [replace(spec, shapes=(*s[:i], x, *s[i + 1 :])) for i in range(len(s)) for x in SHAPES],
        [replace(spec, colours=(*c[:i], x, *c[i + 1 :])) for i in range(len(c)) for x in PALETTE],
        [replace(spec, colours=c[::-1])],  # the attribute-binding swap
        [replace(spec, count=n) for n in range(1, len(NUMBERS) + 1)],
        [replace(spec, relation=r) for r in RELATIONS if spec.relation],
    ]
    return [[edit.text() for edit in kind] for kind in kinds]


def mismatched_prompt(prompt: str, rng: np.random.Generator, scene: Scene | None = None) -> str:
    """A near miss: a prompt of the same category, one edit away, that the scene violates.

    The scene defaults to the prompt's minimal one, whose truth table every scene_for_prompt(prompt)
    shares. Pass a training scene (training_scene) to get true negatives despite nuisance objects. The
    kind of edit (shape, colour, binding swap, count, relation) is drawn first, so each is common, and
    held-out pairs are named only if the prompt names one, so negatives of training captions stay in the
    training split.
    """
    spec = parse_prompt(prompt)
    objects = (_scene(spec, rng, training=False) if scene is None else scene).objects

    def near_miss(text: str) -> bool:
        other = _GRAMMAR.get(text)
        return (
            other is not None and other != spec and (spec.held_out or not other.held_out) and not holds(other, objects)
        )

    kinds = [misses for kind in _edits(spec) if (misses := [text for text in kind if near_miss(text)])]
    if not kinds:
        raise ValueError(f"no near miss of {prompt!r} is false of the scene")
    return _pick(rng, _pick(rng, kinds))


def _spread(prompts: list[str], n: int, rng: np.random.Generator) -> list[str]:
    """n prompts covering the pool evenly: shuffled passes over it, the last cut short."""
    passes = -(-n // len(prompts))
    return [prompts[i] for _ in range(passes) for i in rng.permutation(len(prompts))][:n]


def eval_suite(category: str, n: int = 100, seed: int = 0) -> list[str]:
    """n evaluation prompts of a category, deterministic in seed, spread evenly over its grammar.

    colors and color_attr give round(n * EVAL_HELD_OUT_SHARE) prompts to held-out colour-shape pairs.
    """
    rng = np.random.default_rng((seed, CATEGORIES.index(category)))
    prompts = _PROMPTS[category]
    if category in _COLOUR_CATEGORIES:
        n_held = round(n * EVAL_HELD_OUT_SHARE)
        held = [p for p in prompts if _GRAMMAR[p].held_out]
        seen = [p for p in prompts if not _GRAMMAR[p].held_out]
        suite = _spread(held, n_held, rng) + _spread(seen, n - n_held, rng)
    else:
        suite = _spread(prompts, n, rng)
    return [suite[i] for i in rng.permutation(n)]


def eval_prompts(n_per_category: int = 100, seed: int = 0) -> list[tuple[str, str]]:
    """(category, prompt) pairs: eval_suite of every category, in CATEGORIES order."""
    return [(cat, prompt) for cat in CATEGORIES for prompt in eval_suite(cat, n_per_category, seed)]
