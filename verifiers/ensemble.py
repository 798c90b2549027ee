"""Ensembles of verifiers, as in Ma et al. 2025 (inference-time scaling for diffusion models).

- "zscore": sum_k w_k * (s_k - mean_k) / std_k. By default mean_k and std_k are those of the
  batch being compared (the images of one score() call), so the score only ranks candidates
  within that call: one image, or a member that scores every image the same, contributes 0.
  With fixed `stats` (one (mean, std) per member, e.g. measured on a reference set) the score
  is absolute and comparable across calls.
- "rank": sum_k w_k * rank_k / (N * sum_k w_k), where rank_k is the image's rank under member k
  within the batch (1 = lowest score, N = highest, ties share the average rank); in (0, 1].

Members share what they can: CLIPScore and aesthetic loaded on the same CLIP run one image
forward per batch (see verifiers.clip.shared_open_clip).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

from verifiers.base import Verifier, VerifierInfo

METHODS = {
    "zscore": "weighted sum of z-normalised member scores",
    "rank": "weighted mean rank within the batch / N (Ma et al. 2025), in (0, 1]",
}


class EnsembleVerifier(Verifier):
    def __init__(
        self,
        members: Sequence[Verifier],
        *,
        method: str = "zscore",
        weights: Sequence[float] | None = None,
        stats: Sequence[tuple[float, float]] | None = None,
        name: str = "ensemble",
        score_definition: str | None = None,  # what the score means, where the method's wording says less
    ) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if method not in METHODS:
            raise ValueError(f"unknown ensemble method {method!r}; choose one of {sorted(METHODS)}")
        weights = [1.0] * len(members) if weights is None else [float(w) for w in weights]
        if len(weights) != len(members) or min(weights) < 0 or sum(weights) == 0:
            raise ValueError(f"need one non-negative weight per member, not all 0: {weights} for {len(members)}")
        if stats is not None and (method != "zscore" or len(stats) != len(members) or min(s for _, s in stats) <= 0):
            raise ValueError("stats are one (mean, std > 0) per member, for method 'zscore' only")
        self.members, self.method, self.weights, self.stats, self.name = list(members), method, weights, stats, name
        self.score_definition = score_definition

    @property
    def info(self) -> VerifierInfo:
        infos = [m.info for m in self.members]
        norm = "fixed (mean, std) per member" if self.stats else "the batch's own mean and std"
        generic = METHODS[self.method] + (f", z over {norm}" if self.method == "zscore" else "")
        return VerifierInfo(
            name=self.name,
            version=" + ".join(f"{w:g}*{i.name}" for w, i in zip(self.weights, infos, strict=True)),
            score_definition=self.score_definition or generic,
            files_needed=sorted({f for i in infos for f in i.files_needed}),
            is_judge=any(i.is_judge for i in infos),
            batch_relative=self.method == "rank" or self.stats is None,
        )

    def _score(self, prompts: list[str], images: np.ndarray) -> np.ndarray:
        scores_KN = np.stack([m.score(prompts, images) for m in self.members])
        w_K1 = np.asarray(self.weights)[:, None]
        if self.method == "rank":
            ranks_KN = rankdata(scores_KN, method="average", axis=1)
            return (w_K1 * ranks_KN).sum(0) / (w_K1.sum() * scores_KN.shape[1])
        if self.stats is not None:
            mean_K1, std_K1 = (np.asarray(x)[:, None] for x in zip(*self.stats, strict=True))
            spread_K1 = np.ones_like(mean_K1, dtype=bool)
        else:
            mean_K1, std_K1 = scores_KN.mean(1, keepdims=True), scores_KN.std(1, keepdims=True)
            spread_K1 = np.ptp(scores_KN, axis=1, keepdims=True) > 0  # all equal: z is 0, not rounding noise
        z_KN = np.divide(scores_KN - mean_K1, std_K1, out=np.zeros_like(scores_KN), where=spread_K1)
        return (w_K1 * z_KN).sum(0)
