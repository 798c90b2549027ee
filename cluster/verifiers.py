"""The shapes world's verifiers in the registry: its tiny CLIP and its held-out evaluator.

cluster/ wires both sides, so verifiers/ stays free of generators/. "shapes-clip" is the
CLIPScore verifier on the shipped weights with the raw cosine as score (clipping at 0 would tie
every bad candidate), "shapes-clip-hard" the same on the CLIP fine-tuned against flawed renders;
"shapes-judge" is the evaluator, a judge: reports use it, searches only
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
SHAPES_CLIP_HARD_FILE = FileSpec(
    "checkpoint",
    "generators/shapes/weights/clip-hard.safetensors",
    "shipped; `varsearch shapes train --stage clip-hard`",
)


def register_shapes_verifiers() -> None:
    """Add "shapes-clip", "shapes-clip-hard" and "shapes-judge" to the registry (idempotent)."""
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
        "shapes-clip-hard",
        _shapes_clip_hard,
        info=VerifierInfo(
            name="shapes-clip-hard",
            version="shapes-clip fine-tuned against flawed renders (generators/shapes/flawed.py), shipped weights",
            score_definition=SCORES["cosine"],
            files_needed=[SHAPES_CLIP_HARD_FILE.describe()],
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
    return _tiny_clip("shapes-clip", "clip.safetensors", SHAPES_CLIP_FILE, checkpoint, device, dtype, batch_size)


def _shapes_clip_hard(
    checkpoint: str | Path | None = None, device: str = "cpu", dtype: str = "float32", batch_size: int = 256
) -> Verifier:
    hard = "clip-hard.safetensors"
    return _tiny_clip("shapes-clip-hard", hard, SHAPES_CLIP_HARD_FILE, checkpoint, device, dtype, batch_size)


def _tiny_clip(
    name: str, file: str, spec: FileSpec, checkpoint: str | Path | None, device: str, dtype: str, batch_size: int
) -> Verifier:
    """CLIPScore (raw cosine) on one of the shipped tiny CLIPs, `file` in the shapes weights directory."""
    from generators.shapes import model
    from verifiers.clip import CLIPScoreVerifier, shared_open_clip

    clip = shared_open_clip(
        model.CLIP_CONFIG.stem, checkpoint or model.WEIGHTS_DIR / file, config_path=model.CLIP_CONFIG,
        device=device, dtype=dtype, spec=spec, verifier=name,
    )  # fmt: skip
    return CLIPScoreVerifier(clip, score="cosine", batch_size=batch_size, name=name)


def _shapes_judge() -> Verifier:
    from generators.shapes import evaluator
    from verifiers.judge import JudgeVerifier

    return JudgeVerifier(
        evaluator.judge, name="shapes-judge", version="shapes-world evaluator (generators/shapes/evaluator.py)"
    )
