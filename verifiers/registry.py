"""Verifiers by name, so recipes can say `verifier: clipscore` plus options.

`load_verifier(name, **options)` builds one; an unknown name or option is an error that lists
the known ones. `list_verifiers()` describes every registered verifier without loading any
weights. Factories import their heavy dependencies (open_clip, timm, transformers) when called.
Built-ins are registered at the bottom; cluster/ registers the shapes world's.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from verifiers.aesthetic import AESTHETIC_FILE
from verifiers.aesthetic import SCORE_DEFINITION as AESTHETIC_DEFINITION
from verifiers.base import Verifier, VerifierInfo
from verifiers.clip import SCORES as CLIP_SCORES
from verifiers.clip import VIT_L14_FILE
from verifiers.ensemble import METHODS as ENSEMBLE_METHODS
from verifiers.imagereward import CHECKPOINT_FILE, MED_CONFIG_FILE, VOCAB_FILE
from verifiers.imagereward import SCORE_DEFINITION as IMAGEREWARD_DEFINITION
from verifiers.vlm import MODEL_DIR, QUESTION

Factory = Callable[..., Verifier]


@dataclass(frozen=True)
class _Entry:
    factory: Factory
    info: VerifierInfo  # before loading: no checkpoint hash yet


_REGISTRY: dict[str, _Entry] = {}


def register(name: str, factory: Factory | None = None, *, info: VerifierInfo) -> Callable:
    """Register `factory` under `name` (replacing an earlier one); usable as a decorator."""

    def add(f: Factory) -> Factory:
        _REGISTRY[name] = _Entry(f, info)
        return f

    return add if factory is None else add(factory)


def load_verifier(name: str, **options) -> Verifier:
    if name not in _REGISTRY:
        raise ValueError(f"unknown verifier {name!r}; known: {sorted(_REGISTRY)}")
    factory = _REGISTRY[name].factory
    params = inspect.signature(factory).parameters
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for verifier {name!r}; options: {sorted(params)}")
    return factory(**options)


def list_verifiers() -> list[VerifierInfo]:
    return [entry.info for _, entry in sorted(_REGISTRY.items())]


PathLike = str | Path | None


@register(
    "clipscore",
    info=VerifierInfo(
        name="clipscore",
        version="open_clip ViT-L-14 quick-gelu, OpenAI weights (any open_clip model via model=, config_path=)",
        score_definition=f"score='hessel' (default): {CLIP_SCORES['hessel']}; score='cosine': {CLIP_SCORES['cosine']}",
        files_needed=[VIT_L14_FILE.describe()],
    ),
)
def _clipscore(
    checkpoint: PathLike = None,
    model: str = "ViT-L-14",
    quick_gelu: bool = True,  # OpenAI's weights were trained with QuickGELU
    config_path: PathLike = None,
    score: str = "hessel",
    device: str = "cpu",
    dtype: str = "float32",
    batch_size: int = 32,
) -> Verifier:
    from verifiers.clip import CLIPScoreVerifier, shared_open_clip

    clip = shared_open_clip(
        model, checkpoint, config_path=config_path, quick_gelu=quick_gelu, device=device, dtype=dtype
    )
    return CLIPScoreVerifier(clip, score=score, batch_size=batch_size)


@register(
    "aesthetic",
    info=VerifierInfo(
        name="aesthetic",
        version="improved-aesthetic-predictor v2 (sac+logos+ava1-l14-linearMSE) on open_clip ViT-L-14 quick-gelu",
        score_definition=AESTHETIC_DEFINITION,
        files_needed=[AESTHETIC_FILE.describe(), VIT_L14_FILE.describe().replace("checkpoint=", "clip_checkpoint=")],
    ),
)
def _aesthetic(
    checkpoint: PathLike = None,
    clip_checkpoint: PathLike = None,
    clip_model: str = "ViT-L-14",
    quick_gelu: bool = True,
    config_path: PathLike = None,
    device: str = "cpu",
    dtype: str = "float32",
    batch_size: int = 32,
) -> Verifier:
    from verifiers.aesthetic import AestheticVerifier
    from verifiers.checkpoint import FileSpec
    from verifiers.clip import shared_open_clip

    spec = FileSpec("clip_checkpoint", VIT_L14_FILE.filename, VIT_L14_FILE.source)
    clip = shared_open_clip(
        clip_model, clip_checkpoint, config_path=config_path, quick_gelu=quick_gelu,
        device=device, dtype=dtype, spec=spec, verifier="aesthetic",
    )  # fmt: skip
    return AestheticVerifier(clip, checkpoint, batch_size=batch_size)


@register(
    "imagereward",
    info=VerifierInfo(
        name="imagereward",
        version="ImageReward-v1.0 (BLIP ViT-L/16 + MED BERT-base), timm + transformers BlipTextModel",
        score_definition=IMAGEREWARD_DEFINITION,
        files_needed=[CHECKPOINT_FILE.describe(), VOCAB_FILE.describe(), MED_CONFIG_FILE.describe() + ", optional"],
    ),
)
def _imagereward(
    checkpoint: PathLike = None,
    vocab: PathLike = None,
    med_config: PathLike = None,
    device: str = "cpu",
    dtype: str = "float32",
    batch_size: int = 16,
) -> Verifier:
    from verifiers.checkpoint import require_file
    from verifiers.imagereward import ImageRewardConfig, ImageRewardVerifier

    config = ImageRewardConfig()
    if med_config is not None:
        config = ImageRewardConfig.from_med_config(require_file(med_config, MED_CONFIG_FILE, "imagereward"))
    return ImageRewardVerifier(checkpoint, vocab, config=config, device=device, dtype=dtype, batch_size=batch_size)


@register(
    "llava-onevision",
    info=VerifierInfo(
        name="llava-onevision",
        version="LLaVA-OneVision (transformers LlavaOnevisionForConditionalGeneration), VQAScore-style",
        score_definition=f"P(\"Yes\") as the next token after the chat-templated question '{QUESTION}' with the image",
        files_needed=[MODEL_DIR.describe()],
    ),
)
def _llava_onevision(
    model_dir: PathLike = None,
    device: str = "cpu",
    dtype: str = "float32",
    batch_size: int = 4,
    max_image_side: int = 384,
) -> Verifier:
    from verifiers.vlm import VLMVerifier

    return VLMVerifier(
        model_dir, device=device, dtype=dtype, batch_size=batch_size, max_image_side=max_image_side,
        name="llava-onevision",
    )  # fmt: skip


@register(
    "ensemble",
    info=VerifierInfo(
        name="ensemble",
        version="members given as options",
        score_definition="; ".join(f"method='{k}': {v}" for k, v in ENSEMBLE_METHODS.items()),
        files_needed=["those of its members"],
        batch_relative=True,
    ),
)
def _ensemble(
    members: list[str | dict],
    method: str = "zscore",
    weights: list[float] | None = None,
    stats: list[tuple[float, float]] | None = None,
) -> Verifier:
    """members: names or {"name": ..., **options} dicts, each loaded with load_verifier."""
    from verifiers.ensemble import EnsembleVerifier

    loaded = []
    for spec in members:
        options = {"name": spec} if isinstance(spec, str) else dict(spec)
        if "name" not in options:
            raise ValueError(f"ensemble member {spec!r} needs a 'name'")
        loaded.append(load_verifier(options.pop("name"), **options))
    return EnsembleVerifier(loaded, method=method, weights=weights, stats=stats)
