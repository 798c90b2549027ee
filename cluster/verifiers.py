"""The shapes world's verifiers in the registry: its tiny CLIP and its held-out evaluator.

cluster/ wires both sides, so verifiers/ stays free of generators/. "shapes-clip" is the
CLIPScore verifier on the shipped weights with the raw cosine as score (clipping at 0 would tie
every bad candidate); "shapes-judge" is the evaluator, a judge: reports use it, searches only
when explicitly asked.
"""

from __future__ import annotations

from pathlib import Path

from verifiers.base import Verifier, VerifierInfo
from verifiers.checkpoint import FileSpec
from verifiers.clip import SCORES
from verifiers.registry import register

SHAPES_CLIP_FILE = FileSpec(
    "checkpoint", "generators/shapes/weights/clip.safetensors", "shipped; `varsearch shapes train --stage clip`"
)


def register_shapes_verifiers() -> None:
    """Add "shapes-clip" and "shapes-judge" to the registry (idempotent)."""
    register(
        "shapes-clip",
        _shapes_clip,
        info=VerifierInfo(
            name="shapes-clip",
            version="open_clip shapes-clip (generators/shapes/shapes-clip.json), shipped weights",
            score_definition=SCORES["cosine"],
            files_needed=[SHAPES_CLIP_FILE.describe()],
        ),
    )
    register(
        "shapes-judge",
        _shapes_judge,
        info=VerifierInfo(
            name="shapes-judge",
            version="shapes-world evaluator (generators/shapes/evaluator.py)",
            score_definition="1.0 if the evaluator finds the prompt's content in the image, else 0.0",
            is_judge=True,
        ),
    )


def _shapes_clip(
    checkpoint: str | Path | None = None, device: str = "cpu", dtype: str = "float32", batch_size: int = 256
) -> Verifier:
    from generators.shapes import model
    from verifiers.clip import CLIPScoreVerifier, shared_open_clip

    clip = shared_open_clip(
        model.CLIP_CONFIG.stem, checkpoint or model.WEIGHTS_DIR / model.CLIP_FILE, config_path=model.CLIP_CONFIG,
        device=device, dtype=dtype, spec=SHAPES_CLIP_FILE, verifier="shapes-clip",
    )  # fmt: skip
    return CLIPScoreVerifier(clip, score="cosine", batch_size=batch_size, name="shapes-clip")


def _shapes_judge() -> Verifier:
    from generators.shapes import evaluator
    from verifiers.judge import JudgeVerifier

    return JudgeVerifier(
        evaluator.judge, name="shapes-judge", version="shapes-world evaluator (generators/shapes/evaluator.py)"
    )
