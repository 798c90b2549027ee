"""Region prompting: a two-object caption also scored object by object on the image's two sides.

A small CLIP reads "a red circle left of a blue square" much as a bag of words: it barely tells
which colour goes with which shape, or which side each stands on. Scoring each named object on a
side of the image of its own does: the image is cut along a line (vertical or horizontal, at a few
positions), one side painted over with the background colour and then the other, and the first
part is scored on one side, the second on the other. The region score is the best cut's two
scores summed; a relation fixes the axis and the order ("left of": the first part on the left),
otherwise both axes and both orders are tried. The score is base + weight * region score for
prompts the decomposer splits into two parts, the base score alone for every other prompt.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from verifiers.base import Verifier, VerifierInfo

AXES = ("x", "y")  # "x": a vertical cut, sides left | right; "y": a horizontal cut, sides top | bottom


@dataclass(frozen=True)
class RegionQuery:
    """Two captions, one per object, and where they may stand: (axis, whether part 0 is on the left/top side)."""

    parts: tuple[str, str]
    layouts: tuple[tuple[str, bool], ...]

    def __post_init__(self) -> None:
        if len(self.parts) != 2 or not self.layouts or any(axis not in AXES for axis, _ in self.layouts):
            raise ValueError(f"a region query is two parts and at least one layout on axes {AXES}, got {self}")


def sides(image_HW3: np.ndarray, axis: str, cut: int, background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(left or top, right or bottom) of a cut at pixel `cut`: the image with the other side painted `background`."""
    first, second = image_HW3.copy(), image_HW3.copy()
    if axis == "x":
        first[:, cut:], second[:, :cut] = background, background
    else:
        first[cut:], second[:cut] = background, background
    return first, second


class RegionPromptedVerifier(Verifier):
    """`base` plus `weight` times the best cut's `region` scores of the two parts, each on its own side."""

    def __init__(
        self,
        base: Verifier,
        region: Verifier,
        decompose: Callable[[str], RegionQuery | None],
        *,
        cuts: Sequence[int],
        background: Sequence[int],
        weight: float = 1.0,
        name: str,
        score_definition: str,
    ) -> None:
        if not cuts or min(cuts) < 1:
            raise ValueError(f"cuts are pixel positions >= 1, at least one, got {list(cuts)}")
        if weight <= 0:
            raise ValueError(f"weight must be > 0, got {weight}")
        self.base, self.region, self.decompose = base, region, decompose
        self.cuts, self.background, self.weight = tuple(cuts), np.asarray(background, np.uint8), float(weight)
        self.name, self.score_definition = name, score_definition

    @property
    def info(self) -> VerifierInfo:
        base, region = self.base.info, self.region.info
        return dataclasses.replace(
            base,
            name=self.name,
            version=f"{base.version}; regions: {region.version}, cuts at {list(self.cuts)} px, weight {self.weight:g}",
            score_definition=self.score_definition,
            files_needed=sorted(set(base.files_needed) | set(region.files_needed)),
            batch_relative=base.batch_relative or region.batch_relative,
        )

    def _score(self, prompts: list[str], images: np.ndarray) -> np.ndarray:
        if max(self.cuts) >= min(images.shape[1:3]):
            raise ValueError(f"cuts {list(self.cuts)} do not all fall inside images of {images.shape[1:3]} px")
        scores_N = np.asarray(self.base.score(prompts, images), dtype=np.float64)
        queries = [self.decompose(p) for p in prompts]
        # One job per (image, axis); each job is len(cuts) pairs of sides, in that order.
        jobs = [(n, q, axis) for n, q in enumerate(queries) if q for axis in AXES if axis in dict(q.layouts)]
        if not jobs:
            return scores_N
        masked = [
            side for n, _, axis in jobs for cut in self.cuts for side in sides(images[n], axis, cut, self.background)
        ]
        masked_M = np.stack(masked)  # M = jobs * cuts * 2 sides
        per_job = 2 * len(self.cuts)
        # Both parts are scored on the same pixels: a CLIP verifier reuses the image embeddings of its last batch.
        part0_JC2, part1_JC2 = (
            np.asarray(self.region.score([q.parts[p] for _, q, _ in jobs for _ in range(per_job)], masked_M)).reshape(
                len(jobs), len(self.cuts), 2
            )
            for p in (0, 1)
        )
        region_N = np.full(len(prompts), -np.inf)
        for j, (n, q, axis) in enumerate(jobs):
            for layout_axis, part0_first in q.layouts:
                if layout_axis == axis:
                    a, b = (0, 1) if part0_first else (1, 0)
                    region_N[n] = max(region_N[n], float((part0_JC2[j, :, a] + part1_JC2[j, :, b]).max()))
        split = np.isfinite(region_N)
        scores_N[split] += self.weight * region_N[split]
        return scores_N
