"""The shapes world's verifiers in the registry: its tiny CLIPs and its held-out evaluator.

cluster/ wires both sides, so verifiers/ stays free of generators/. "shapes-clip" is the
CLIPScore verifier on the shipped weights with the raw cosine as score (clipping at 0 would tie
every bad candidate), "shapes-clip-hard" the same on the CLIP fine-tuned against flawed renders,
"shapes-clip-pair" the sum of the two (they err on different images, so the sum ranks a prompt's
samples better than either: benchmarks/shapes_verifier_ranking.py), "shapes-clip-pair-shift2"
that sum averaged over the image and its 2-pixel shifts (verifiers/shifted.py; ranks better
still), "shapes-clip-regions" that plus, for prompts naming two objects, each object's caption
scored by the hard CLIP on a side of the image of its own (verifiers/regions.py; ranks better
again). "shapes-judge" is the evaluator, a judge: reports use it, searches only when explicitly
asked.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path

from verifiers import judge
from verifiers.base import Verifier, VerifierInfo
from verifiers.checkpoint import FileSpec
from verifiers.clip import SCORES
from verifiers.regions import AXES, RegionPromptedVerifier, RegionQuery
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
# Chosen on the ranking benchmark's prompts (docs/search_quality.md): three cuts scored by the hard CLIP alone
# rank as well as 11 cuts or both CLIPs, at a fraction of the forwards.
REGIONS, REGION_CLIP, REGION_CUTS, REGION_WEIGHT = "shapes-clip-regions", "shapes-clip-hard", (24, 32, 40), 1.0
REGIONS_DEFINITION = (
    f"{PAIR_SHIFTED}'s score; for a prompt naming two objects plus {REGION_WEIGHT:g} * the best, over cuts at "
    f"{list(REGION_CUTS)} px along the axes its relation allows, of {REGION_CLIP}'s cosines of each object's "
    "caption with its own side of the image (the other side painted background), summed"
)
JUDGE_VERSION = "shapes-world evaluator (generators/shapes/evaluator.py)"
# The verifiers a shapes-world search may use: each tiny CLIP, their sum, and the sum shift-averaged.
SHAPES_SEARCH_VERIFIERS = (*SHAPES_CLIPS, PAIR, PAIR_SHIFTED, REGIONS)


def register_shapes_verifiers() -> None:
    """Add "shapes-clip", "shapes-clip-hard", "shapes-clip-pair", "shapes-clip-pair-shift2",
    "shapes-clip-regions" and "shapes-judge" to the registry (idempotent)."""
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
    shifted_info = shift_averaged_info(pair_info, SHIFT_PX, PAIR_SHIFTED)
    register(PAIR_SHIFTED, _clip_pair_shifted, info=shifted_info)
    register(
        REGIONS,
        _clip_regions,
        info=dataclasses.replace(
            shifted_info,
            name=REGIONS,
            version=f"{PAIR_SHIFTED}; regions: {REGION_CLIP}, cuts at {list(REGION_CUTS)} px, weight {REGION_WEIGHT:g}",
            score_definition=REGIONS_DEFINITION,
        ),
    )
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


def shapes_region_query(prompt: str) -> RegionQuery | None:
    """The two objects a shapes-world prompt names, as captions, and where each may stand; None for
    prompts naming one kind of object (and for text outside the world's grammar, which the CLIPs still score)."""
    from generators.shapes import world

    try:
        spec = world.parse_prompt(prompt)
    except ValueError:
        return None
    if spec.category not in ("two_object", "position", "color_attr"):
        return None
    if spec.category == "color_attr":
        parts = tuple(
            world.PromptSpec("colors", (s,), (c,)).text() for s, c in zip(spec.shapes, spec.colours, strict=True)
        )
    else:
        parts = tuple(world.PromptSpec("single_object", (s,)).text() for s in spec.shapes)
    if spec.relation is None:
        layouts = tuple((axis, first) for axis in AXES for first in (True, False))
    else:  # "a left of b": a on the left of a vertical cut, etc.
        layouts = (RELATION_LAYOUTS[spec.relation],)
    return RegionQuery(parts, layouts)


RELATION_LAYOUTS = {"left of": ("x", True), "right of": ("x", False), "above": ("y", True), "below": ("y", False)}


def _clip_regions(device: str = "cpu", dtype: str = "float32", batch_size: int = 256) -> Verifier:
    """The shift-averaged pair plus region prompting of two-object captions by the hard CLIP (verifiers/regions.py)."""
    from generators.shapes import world

    spec, _ = SHAPES_CLIPS[REGION_CLIP]
    return RegionPromptedVerifier(
        _clip_pair_shifted(device=device, dtype=dtype, batch_size=batch_size),
        _tiny_clip(REGION_CLIP, spec, device=device, dtype=dtype, batch_size=batch_size),
        shapes_region_query,
        cuts=REGION_CUTS,
        background=world.BACKGROUND,
        weight=REGION_WEIGHT,
        name=REGIONS,
        score_definition=REGIONS_DEFINITION,
    )


def _shapes_judge() -> Verifier:
    from generators.shapes import evaluator

    return judge.JudgeVerifier(evaluator.judge, name="shapes-judge", version=JUDGE_VERSION)
