"""Test-time augmentation by translation: a verifier's score averaged over small shifts of the image.

A small CLIP reads an image through a fixed patch grid, so moving the content by a couple of
pixels changes which patch each edge falls in and, with it, the score. Averaging over the image
and its shifts by `shift_px` left, right, up and down cancels part of that grid noise while every
statement a caption makes (what, how many, which colour, which side) stays true. The border a
shift uncovers repeats the edge pixels. The wrapped verifier scores each shifted copy in its own
call, so a batch-relative verifier stays relative to the same batch.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from verifiers.base import Verifier, VerifierInfo


def shifted(images_NHW3: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """images moved dx pixels right and dy down (negative: left, up); the uncovered border repeats the edge."""
    _, H, W, _ = images_NHW3.shape
    p = max(abs(dx), abs(dy))
    padded = np.pad(images_NHW3, ((0, 0), (p, p), (p, p), (0, 0)), mode="edge")
    return np.ascontiguousarray(padded[:, p - dy : p - dy + H, p - dx : p - dx + W])


def shift_averaged_info(base: VerifierInfo, shift_px: int, name: str) -> VerifierInfo:
    """What the shift-averaged `base` is; the registry lists it before anything is loaded."""
    return dataclasses.replace(
        base,
        name=name,
        version=f"{base.version}, averaged over the image and its 4 shifts by {shift_px} px",
        score_definition=f"mean over 5 translations (0 and +-{shift_px} px in x, y) of: {base.score_definition}",
    )


class ShiftAveragedVerifier(Verifier):
    def __init__(self, base: Verifier, shift_px: int = 2, *, name: str | None = None) -> None:
        if shift_px < 1:
            raise ValueError(f"shift_px must be >= 1, got {shift_px}")
        self.base, self.shift_px = base, shift_px
        self.name = name or f"{base.name}-shift{shift_px}"
        s = shift_px
        self.offsets = [(0, 0), (s, 0), (-s, 0), (0, s), (0, -s)]  # (dx, dy)

    @property
    def info(self) -> VerifierInfo:
        return shift_averaged_info(self.base.info, self.shift_px, self.name)

    def _score(self, prompts: list[str], images: np.ndarray) -> np.ndarray:
        if min(images.shape[1:3]) <= self.shift_px:
            raise ValueError(f"images of {images.shape[1:3]} px are too small to shift by {self.shift_px} px")
        return np.mean([self.base.score(prompts, shifted(images, dx, dy)) for dx, dy in self.offsets], axis=0)
