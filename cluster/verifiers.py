"""The shapes world's verifiers in the registry: its tiny CLIP and its held-out evaluator.

cluster/ wires both sides, so verifiers/ stays free of generators/. "shapes-clip" is the
CLIPScore verifier on the shipped weights with the raw cosine as score (clipping at 0 would tie
every bad candidate), "shapes-clip-hard" the same on the CLIP fine-tuned against flawed renders;
"shapes-judge" is the evaluator, a judge: reports use it, searches only
when explicitly asked.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from verifiers.base import Verifier, VerifierInfo
from verifiers.checkpoint import FileSpec
from verifiers.clip import SCORES
from verifiers.registry import register

# The shipped tiny CLIPs, each a CLIPScore verifier: its weights file and the version it reports.
SHAPES_CLIPS: dict[str, tuple[FileSpec, str]] = {
    "shapes-clip": (
        FileSpec(
            "checkpoint", "generators/shapes/weights/clip.safetensors", "shipped; `varsearch shapes train --stage clip`"
        ),
        "open_clip shapes-clip (generators/shapes/shapes-clip.json), shipped weights",
    ),
    "shapes-clip-hard": (
        FileSpec(
            "checkpoint",
            "generators/shapes/weights/clip-hard.safetensors",
            "shipped; `varsearch shapes train --stage clip-hard`",
        ),
        "shapes-clip fine-tuned against flawed renders (generators/shapes/flawed.py), shipped weights",
    ),
}


def register_shapes_verifiers() -> None:
    """Add "shapes-clip", "shapes-clip-hard" and "shapes-judge" to the registry (idempotent)."""
    for name, (spec, version) in SHAPES_CLIPS.items():
        register(
            name,
            partial(_tiny_clip, name, spec),
            info=VerifierInfo(
                name=name, version=version, score_definition=SCORES["cosine"], files_needed=[spec.describe()]
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


def _tiny_clip(
    name: str,
    spec: FileSpec,
    checkpoint: str | Path | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    batch_size: int = 256,
) -> Verifier:
    """CLIPScore (raw cosine) on one of the shipped tiny CLIPs (its file in the shapes weights directory)."""
    from generators.shapes import model
    from verifiers.clip import CLIPScoreVerifier, shared_open_clip

    clip = shared_open_clip(
        model.CLIP_CONFIG.stem, checkpoint or model.WEIGHTS_DIR / Path(spec.filename).name,
        config_path=model.CLIP_CONFIG, device=device, dtype=dtype, spec=spec, verifier=name,
    )  # fmt: skip
    return CLIPScoreVerifier(clip, score="cosine", batch_size=batch_size, name=name)


def _shapes_judge() -> Verifier:
    from generators.shapes import evaluator
    from verifiers.judge import JudgeVerifier

    return JudgeVerifier(
        evaluator.judge, name="shapes-judge", version="shapes-world evaluator (generators/shapes/evaluator.py)"
    )
