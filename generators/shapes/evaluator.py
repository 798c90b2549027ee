"""The shapes-world judge: reads the objects back from pixels and checks a caption, like GenEval's detector.

detect segments by colour: each pixel takes the nearest reference colour (a palette colour or the
background) when it lies within COLOUR_TOLERANCE of it, and is otherwise unknown and ignored, so blurred
edges and off-palette smudges never form objects. The 4-connected components of each palette colour
with at least MIN_AREA pixels (holes filled) are the objects. A component is named after the ideal
upright shape filling its bounding box (world.shape_mask) that it overlaps best, if that IoU reaches
MIN_IOU and the box is roughly square; anything else (bars, merged blobs, rotated or inverted shapes)
is UNKNOWN and satisfies no prompt.

judge applies the caption semantics of generators/shapes/world.py (world.holds) to the detections;
evaluate averages it GenEval-style: accuracy per category, and overall as the mean of the categories'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from generators.shapes.world import (
    BACKGROUND,
    CATEGORIES,
    PALETTE,
    SHAPES,
    holds,
    parse_prompt,
    shape_mask,
)

# RGB distance. Palette colours lie >= 108 apart, and every blend of one with the background stays
# >= 90 from the others, so half that spacing never assigns an edge pixel to a wrong colour.
COLOUR_TOLERANCE = 50.0
MIN_AREA = 20  # px: smaller components are noise
UNKNOWN = "unknown"
MIN_IOU = 0.75  # a component must overlap its best ideal shape this well to be named

_REFERENCE = np.array([BACKGROUND, *PALETTE.values()], np.float32)  # index 0 is the background


@dataclass(frozen=True)
class Detection:
    """One object read from the image: cx, cy is its bounding-box centre, area its pixel count."""

    shape: str
    colour: str
    cx: float
    cy: float
    area: int


def _shape(mask: np.ndarray) -> str:
    """Name a component (its bounding-box crop) by the ideal shape filling the same box that it overlaps best."""
    h, w = mask.shape
    if not 0.7 <= w / h <= 1 / 0.7:
        return UNKNOWN
    iou = {s: (mask & (t := shape_mask(s, h, w))).sum() / (mask | t).sum() for s in SHAPES}
    best = max(iou, key=iou.__getitem__)
    return best if iou[best] >= MIN_IOU else UNKNOWN


def detect(image: np.ndarray) -> list[Detection]:
    """The objects in a uint8 (H, W, 3) image, by colour segmentation and component geometry."""
    pixels = np.asarray(image, np.float32)
    dist2 = ((pixels[:, :, None, :] - _REFERENCE) ** 2).sum(-1)
    nearest = dist2.argmin(-1)
    nearest[dist2.min(-1) > COLOUR_TOLERANCE**2] = -1
    found = []
    for k, colour in enumerate(PALETTE, start=1):
        labels, _ = ndimage.label(nearest == k)
        for i, (ys, xs) in enumerate(ndimage.find_objects(labels), start=1):
            mask = ndimage.binary_fill_holes(labels[ys, xs] == i)
            area = int(mask.sum())
            if area >= MIN_AREA:
                cx, cy = (xs.start + xs.stop - 1) / 2, (ys.start + ys.stop - 1) / 2
                found.append(Detection(_shape(mask), colour, cx, cy, area))
    return found


def judge(image: np.ndarray, prompt: str) -> bool:
    """Whether the image shows what the prompt says (ValueError for a prompt outside the grammar)."""
    return holds(parse_prompt(prompt), detect(image))


def evaluate(images: Sequence[np.ndarray] | np.ndarray, prompts: Sequence[str]) -> dict:
    """GenEval-style scores: per-category accuracy, their mean as overall, and every image's verdict."""
    if len(images) != len(prompts) or not prompts:
        raise ValueError(f"need as many images as prompts, at least one: {len(images)} vs {len(prompts)}")
    per_image = [judge(image, prompt) for image, prompt in zip(images, prompts, strict=True)]
    verdicts: dict[str, list[bool]] = {}
    for prompt, ok in zip(prompts, per_image, strict=True):
        verdicts.setdefault(parse_prompt(prompt).category, []).append(ok)
    per_category = {cat: float(np.mean(verdicts[cat])) for cat in CATEGORIES if cat in verdicts}
    return {
        "per_category": per_category,
        "overall": float(np.mean(list(per_category.values()))),
        "n_images": len(per_image),
        "per_image": per_image,
    }
