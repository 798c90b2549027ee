"""The shapes world's verifiers in the registry: its tiny CLIPs and its held-out evaluator.

cluster/ wires both sides, so verifiers/ stays free of generators/. "shapes-clip" is the
CLIPScore verifier on the shipped weights with the raw cosine as score (clipping at 0 would tie
every bad candidate), "shapes-clip-hard" the same on the CLIP fine-tuned against flawed renders,
"shapes-clip-pair" the sum of the two (they err on different images, so the sum ranks a prompt's
samples better than either: benchmarks/shapes_verifier_ranking.py), "shapes-clip-pair-shift2"
that sum averaged over the image and its 2-pixel shifts (verifiers/shifted.py; ranks better
still). "shapes-judge" is the evaluator, a judge: reports use it, searches only when explicitly
asked.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from verifiers import judge
from verifiers.base import Verifier, VerifierInfo
from verifiers.checkpoint import FileSpec
from verifiers.clip import SCORES
from verifiers.registry import register
from verifiers.shifted import ShiftAveragedVerifier, shift_averaged_info

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
PAIR = "shapes-clip-pair"
PAIR_DEFINITION = f"sum over {' and '.join(SHAPES_CLIPS)} of {SCORES['cosine']}; the sum is in [-2, 2]"
PAIR_SHIFTED, SHIFT_PX = "shapes-clip-pair-shift2", 2
JUDGE_VERSION = "shapes-world evaluator (generators/shapes/evaluator.py)"
# The verifiers a shapes-world search may use: each tiny CLIP, their sum, and the sum shift-averaged.
SHAPES_SEARCH_VERIFIERS = (*SHAPES_CLIPS, PAIR, PAIR_SHIFTED)


def register_shapes_verifiers() -> None:
    """Add "shapes-clip", "shapes-clip-hard", "shapes-clip-pair", "shapes-clip-pair-shift2" and
    "shapes-judge" to the registry (idempotent)."""
    for name, (spec, version) in SHAPES_CLIPS.items():
        register(
            name,
            partial(_tiny_clip, name, spec),
            info=VerifierInfo(
                name=name, version=version, score_definition=SCORES["cosine"], files_needed=[spec.describe()]
            ),
        )
    pair_info = VerifierInfo(
        name=PAIR,
        version=" + ".join(SHAPES_CLIPS),
        score_definition=PAIR_DEFINITION,
        files_needed=[spec.describe() for spec, _ in SHAPES_CLIPS.values()],
    )
    register(PAIR, _clip_pair, info=pair_info)
    register(PAIR_SHIFTED, _clip_pair_shifted, info=shift_averaged_info(pair_info, SHIFT_PX, PAIR_SHIFTED))
    register(
        "shapes-judge",
        _shapes_judge,
        info=VerifierInfo(
            name="shapes-judge",
            version=JUDGE_VERSION,
            score_definition=judge.SCORE_DEFINITION,
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


def _clip_pair(device: str = "cpu", dtype: str = "float32", batch_size: int = 256) -> Verifier:
    """Both tiny CLIPs' raw cosines, summed: an ensemble with fixed unit stats, so scores stay
    absolute (comparable across calls, as search needs) rather than relative to a batch."""
    from verifiers.ensemble import EnsembleVerifier

    members = [
        _tiny_clip(name, spec, device=device, dtype=dtype, batch_size=batch_size)
        for name, (spec, _) in SHAPES_CLIPS.items()
    ]
    unit_stats = [(0.0, 1.0)] * len(members)
    return EnsembleVerifier(members, method="zscore", stats=unit_stats, name=PAIR, score_definition=PAIR_DEFINITION)


def _clip_pair_shifted(device: str = "cpu", dtype: str = "float32", batch_size: int = 256) -> Verifier:
    """The pair's score averaged over 2-pixel translations: test-time augmentation against the
    tiny CLIPs' patch-grid noise (verifiers/shifted.py)."""
    pair = _clip_pair(device=device, dtype=dtype, batch_size=batch_size)
    return ShiftAveragedVerifier(pair, SHIFT_PX, name=PAIR_SHIFTED)


def _shapes_judge() -> Verifier:
    from generators.shapes import evaluator

    return judge.JudgeVerifier(evaluator.judge, name="shapes-judge", version=JUDGE_VERSION)
