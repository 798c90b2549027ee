"""A yes/no judge as a verifier: 1.0 when the judge says the image shows the prompt, else 0.0.

Judges are evaluators (the shapes world's held-out evaluator is one): `info.is_judge` is True,
so reports use them and search recipes only when explicitly asked. The judge function comes
from outside (cluster/ wires the shapes world's), so verifiers/ stays free of generators/.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from verifiers.base import Verifier, VerifierInfo

SCORE_DEFINITION = "1.0 if the judge finds the prompt's content in the image, else 0.0"


class JudgeVerifier(Verifier):
    def __init__(
        self,
        judge_fn: Callable[[np.ndarray, str], bool],
        *,
        name: str = "judge",
        version: str = "",
        files_needed: list[str] | None = None,
    ) -> None:
        self.judge_fn, self.name, self.version, self.files_needed = judge_fn, name, version, files_needed or []

    @property
    def info(self) -> VerifierInfo:
        return VerifierInfo(
            name=self.name,
            version=self.version,
            score_definition=SCORE_DEFINITION,
            files_needed=self.files_needed,
            is_judge=True,
        )

    def _score(self, prompts: list[str], images: np.ndarray) -> np.ndarray:
        return np.array([float(bool(self.judge_fn(img, p))) for img, p in zip(images, prompts, strict=True)])
