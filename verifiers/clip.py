"""CLIPScore through open_clip, and the CLIP model it shares with the aesthetic predictor.

Score definitions (`score=`):
- "hessel" (default): 2.5 * max(cos(image, prompt), 0) per image (Hessel et al. 2021, CLIPScore;
  jmhessel/clipscore `w=2.5`), no caption prefix. Range [0, 2.5].
- "cosine": the raw cosine in [-1, 1] (what ImageReward's and Infinity's evaluation scripts call
  "CLIP score"). The shapes world uses it: clipping at 0 would tie all bad candidates.

Weights come only from local files (an open_clip state dict: `.safetensors`, `.bin`, `.pt`); the
tokenizer is open_clip's packaged BPE; preprocessing is the model's own `preprocess_cfg`
(size, mean, std, interpolation, resize mode). A custom architecture is a JSON model config
given as `config_path` (registered with open_clip under the file's stem).
"""

from __future__ import annotations

import hashlib
import logging
import weakref
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from verifiers.base import Verifier, VerifierInfo, chunks, resolve_dtype
from verifiers.checkpoint import FileSpec, load_strict, read_state_dict, require_file, sha256_file
from verifiers.images import to_pixels

VIT_L14_FILE = FileSpec(
    "checkpoint",
    "open_clip_model.safetensors",
    "huggingface.co/timm/vit_large_patch14_clip_224.openai (OpenAI CLIP ViT-L/14, open_clip format)",
)
SCORES = {
    "hessel": "2.5 * max(cos(E_image, E_prompt), 0) per image (Hessel et al. 2021), in [0, 2.5]",
    "cosine": "cos(E_image, E_prompt) of L2-normalised CLIP embeddings, in [-1, 1]",
}


class OpenCLIP:
    """An open_clip model with its tokenizer and preprocessing.

    The image embeddings of the last batch are kept, keyed by a digest of the pixels, so CLIPScore
    and the aesthetic predictor scoring the same images pay for one image-tower forward.
    """

    def __init__(
        self,
        model_name: str,
        checkpoint: str | Path | None,
        *,
        config_path: str | Path | None = None,
        quick_gelu: bool = False,
        device: str = "cpu",
        dtype: str | torch.dtype = "float32",
        spec: FileSpec = VIT_L14_FILE,
        verifier: str = "clipscore",
    ) -> None:
        import open_clip

        if config_path is not None:
            config_path = require_file(
                config_path, FileSpec("config_path", f"{model_name}.json", "open_clip model config"), verifier
            )
            if config_path.stem != model_name:
                raise ValueError(f"open_clip registers {config_path} as {config_path.stem!r}, not {model_name!r}")
            open_clip.add_model_config(config_path)
        if model_name not in open_clip.list_models():
            raise ValueError(f"unknown open_clip model {model_name!r} (pass config_path for a custom one)")
        self.checkpoint = require_file(checkpoint, spec, verifier)
        state_dict = read_state_dict(self.checkpoint, spec, verifier)
        root = logging.getLogger()
        level, root.level = root.level, logging.ERROR  # open_clip warns "no pretrained weights": ours load next
        try:
            model = open_clip.create_model(model_name, pretrained=None, force_quick_gelu=quick_gelu)
        finally:
            root.setLevel(level)
        load_strict(model, state_dict, self.checkpoint, spec)
        self.device, self.dtype = torch.device(device), resolve_dtype(dtype)
        self.model = model.to(self.device, self.dtype).eval().requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.preprocess_cfg = dict(open_clip.get_model_preprocess_cfg(model))
        size = self.preprocess_cfg["size"]
        if not isinstance(size, int):
            if len(set(size)) != 1:
                raise ValueError(f"{model_name}: non-square input size {size} is not supported")
            self.preprocess_cfg["size"] = size[0]
        self.version = f"open_clip {open_clip.__version__} {model_name}{' quick-gelu' if quick_gelu else ''}"
        self._last: tuple[bytes, torch.Tensor] | None = None

    @cached_property
    def checkpoint_sha256(self) -> str:
        return sha256_file(self.checkpoint)

    @torch.inference_mode()
    def image_embeddings(self, images_NHW3: np.ndarray, batch_size: int) -> torch.Tensor:
        """L2-normalised image embeddings [N, D] (float32), reused when the same pixels come again."""
        images_NHW3 = np.ascontiguousarray(images_NHW3)
        key = hashlib.blake2b(images_NHW3.data, digest_size=16).digest() + str(images_NHW3.shape).encode()
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        cfg = self.preprocess_cfg
        out = []
        for s in chunks(len(images_NHW3), batch_size):
            pixels = to_pixels(
                images_NHW3[s], cfg["size"], cfg["mean"], cfg["std"], interpolation=cfg["interpolation"],
                resize_mode=cfg["resize_mode"], device=self.device, dtype=self.dtype,
            )  # fmt: skip
            out.append(F.normalize(self.model.encode_image(pixels).float(), dim=-1))
        embeddings = torch.cat(out)
        self._last = (key, embeddings)
        return embeddings

    @torch.inference_mode()
    def text_embeddings(self, prompts: list[str], batch_size: int) -> torch.Tensor:
        """L2-normalised text embeddings [N, D] (float32); each distinct prompt is encoded once."""
        unique = list(dict.fromkeys(prompts))
        out = []
        for s in chunks(len(unique), batch_size):
            tokens = self.tokenizer(unique[s]).to(self.device)
            out.append(F.normalize(self.model.encode_text(tokens).float(), dim=-1))
        by_prompt = dict(zip(unique, torch.cat(out), strict=True))
        return torch.stack([by_prompt[p] for p in prompts])


_SHARED: weakref.WeakValueDictionary[tuple, OpenCLIP] = weakref.WeakValueDictionary()


def shared_open_clip(
    model_name: str,
    checkpoint: str | Path | None,
    *,
    config_path: str | Path | None = None,
    quick_gelu: bool = False,
    device: str = "cpu",
    dtype: str = "float32",
    spec: FileSpec = VIT_L14_FILE,
    verifier: str = "clipscore",
) -> OpenCLIP:
    """One OpenCLIP per (model, files, device, dtype) while any verifier holds it: one copy of the
    weights and one image forward per batch for CLIPScore and aesthetic loaded on the same CLIP."""
    key = (model_name, str(checkpoint), str(config_path), quick_gelu, str(device), str(dtype))
    clip = _SHARED.get(key)
    if clip is None:
        clip = OpenCLIP(
            model_name, checkpoint, config_path=config_path, quick_gelu=quick_gelu,
            device=device, dtype=dtype, spec=spec, verifier=verifier,
        )  # fmt: skip
        _SHARED[key] = clip
    return clip


class CLIPScoreVerifier(Verifier):
    def __init__(self, clip: OpenCLIP, *, score: str = "hessel", batch_size: int = 32, name: str = "clipscore"):
        if score not in SCORES:
            raise ValueError(f"unknown CLIP score {score!r}; choose one of {sorted(SCORES)}")
        self.clip, self.score_kind, self.batch_size, self.name = clip, score, batch_size, name

    @property
    def info(self) -> VerifierInfo:
        return VerifierInfo(
            name=self.name,
            version=self.clip.version,
            score_definition=SCORES[self.score_kind],
            files_needed=[str(self.clip.checkpoint)],
            checkpoint_sha256=self.clip.checkpoint_sha256,
        )

    def _score(self, prompts: list[str], images: np.ndarray) -> np.ndarray:
        cos = (
            self.clip.image_embeddings(images, self.batch_size) * self.clip.text_embeddings(prompts, self.batch_size)
        ).sum(-1)
        if self.score_kind == "hessel":
            cos = 2.5 * cos.clamp(min=0)
        return cos.double().cpu().numpy()
