"""The verifier interface: prompts and uint8 RGB images in, one float score per image out.

Images cross every boundary as numpy uint8 arrays of shape (N, H, W, 3), RGB, and prompts as
strings; each verifier converts them to its own tensors. Scores come back as float64 [N],
higher is better. `score` validates its inputs once here, so no verifier can forget to.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch


@dataclass(frozen=True)
class VerifierInfo:
    """What a verifier is, what its number means and which files it needs (`varsearch verifiers`)."""

    name: str
    version: str
    score_definition: str
    files_needed: list[str] = field(default_factory=list)  # "option=file (where to get it)"
    checkpoint_sha256: str | None = None  # of the main weights file, once loaded
    is_judge: bool = False  # an evaluator: reports use it, searches only when explicitly asked
    higher_is_better: bool = True
    batch_relative: bool = False  # scores compare only within one score() call (batch z-scores, ranks)

    def to_dict(self) -> dict:
        return asdict(self)


class Verifier(ABC):
    """Scores (prompt, image) pairs. Subclasses implement `_score` on already validated inputs."""

    name: str

    @property
    @abstractmethod
    def info(self) -> VerifierInfo: ...

    @abstractmethod
    def _score(self, prompts: list[str], images: np.ndarray) -> np.ndarray: ...

    def score(self, prompts: Sequence[str], images: np.ndarray) -> np.ndarray:
        """Scores of images (N, H, W, 3) uint8 RGB against their prompts (N strings): float64 [N]."""
        prompts = check_inputs(prompts, images)
        scores = np.asarray(self._score(prompts, images), dtype=np.float64)
        assert scores.shape == (len(prompts),), f"{self.name} returned {scores.shape} for {len(prompts)} images"
        return scores


def check_inputs(prompts: Sequence[str], images: np.ndarray) -> list[str]:
    if isinstance(prompts, str):
        raise ValueError("prompts must be a sequence of strings, one per image, not a single string")
    prompts = list(prompts)
    if not isinstance(images, np.ndarray):
        raise ValueError(f"images must be a numpy array (N, H, W, 3) uint8, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must have shape (N, H, W, 3) (RGB), got {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 in [0, 255], got {images.dtype}")
    if len(images) == 0:
        raise ValueError("need at least one image to score")
    if len(prompts) != len(images):
        raise ValueError(f"need one prompt per image: {len(prompts)} prompts for {len(images)} images")
    if not all(isinstance(p, str) for p in prompts):
        raise ValueError("every prompt must be a string")
    return prompts


def chunks(n: int, batch_size: int) -> Iterator[slice]:
    """Slices covering range(n) in pieces of at most batch_size."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {sorted(_DTYPES)}")
    return _DTYPES[dtype]
