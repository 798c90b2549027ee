"""Diversity of a set of generated images, from their embeddings or from what an evaluator read.

Embedding metrics take float arrays [n, d] (e.g. CLIP image embeddings), one row per image:
  vendi_score: effective number of distinct images (Friedman & Dieng 2023), cosine kernel.
  mean_pairwise_distance: mean of 1 - cosine similarity over pairs.
  recall: share of real images inside the generated set's k-NN manifold (Kynkaanniemi et al. 2019).
  coverage: share of real images whose k-NN ball holds a generated image (Naeem et al. 2020).
Layout metrics count distinct object arrangements from per-image signatures.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Sequence

import numpy as np


def _as_2d(name: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"{name} must be a non-empty [n, d] array, got shape {x.shape}")
    return x


def _unit_rows(x_ND: np.ndarray) -> np.ndarray:
    x = _as_2d("embeddings", x_ND)
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)


def vendi_score(x_ND: np.ndarray) -> float:
    """exp(entropy of the eigenvalues of K / n), K the cosine-similarity matrix: 1 when all images
    are alike, n when their embeddings are orthogonal."""
    x = _unit_rows(x_ND)
    eig = np.linalg.eigvalsh(x @ x.T / len(x)).clip(min=0)  # K/n is PSD with trace 1; clip round-off
    eig = eig[eig > 0]
    return float(np.exp(-(eig * np.log(eig)).sum()))


def mean_pairwise_distance(x_ND: np.ndarray) -> float:
    """Mean cosine distance 1 - cos over the n(n-1)/2 distinct pairs."""
    x = _unit_rows(x_ND)
    n = len(x)
    if n < 2:
        raise ValueError("pairwise distance needs at least two embeddings")
    i, j = np.triu_indices(n, k=1)
    return float((1 - (x[i] * x[j]).sum(1)).mean())


def _distances(a_ND: np.ndarray, b_MD: np.ndarray) -> np.ndarray:
    """Euclidean distances [n, m]."""
    sq = (a_ND**2).sum(1)[:, None] + (b_MD**2).sum(1)[None, :] - 2 * a_ND @ b_MD.T
    return np.sqrt(sq.clip(min=0))


def _knn_radii(x_ND: np.ndarray, k: int) -> np.ndarray:
    """Distance from each point to its k-th nearest neighbour in the same set (itself excluded)."""
    if not 1 <= k < len(x_ND):
        raise ValueError(f"k-NN radii need 1 <= k < number of points, got k={k} for {len(x_ND)} points")
    return np.sort(_distances(x_ND, x_ND), axis=1)[:, k]  # column 0 is the point itself


def recall(real_ND: np.ndarray, fake_MD: np.ndarray, k: int = 5) -> float:
    """Share of real points within the k-NN radius of some generated point (improved recall)."""
    real, fake = _as_2d("real", real_ND), _as_2d("fake", fake_MD)
    inside = _distances(real, fake) <= _knn_radii(fake, k)[None, :]
    return float(inside.any(1).mean())


def coverage(real_ND: np.ndarray, fake_MD: np.ndarray, k: int = 5) -> float:
    """Share of real points whose own k-NN ball (among the real points) holds a generated point."""
    real, fake = _as_2d("real", real_ND), _as_2d("fake", fake_MD)
    inside = _distances(real, fake) <= _knn_radii(real, k)[:, None]
    return float(inside.any(1).mean())


def layout_signature(objects: Iterable[tuple[Hashable, float, float]], cell: float = 16) -> frozenset:
    """An arrangement as a multiset of (label, cx // cell, cy // cell): objects snapped to a grid,
    order-free. E.g. label = (shape, colour) and cx, cy = an evaluator detection's centre."""
    return frozenset(Counter((label, int(cx // cell), int(cy // cell)) for label, cx, cy in objects).items())


def distinct_layouts(signatures: Sequence[Hashable]) -> int:
    """Number of distinct arrangements among a set of images' signatures."""
    return len(set(signatures))
