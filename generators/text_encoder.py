"""Text encoders: prompts -> per-token features, the K/V source of Infinity's cross-attention.

Infinity conditions on the last hidden state of the Flan-T5-XL encoder, one row per real token
(the closing ``</s>`` included, padding dropped). :class:`T5TextEncoder` builds exactly that from a
local copy of the model; :class:`HashTextEncoder` is a deterministic stand-in for random-weight
models, where a 1.2B-parameter language model would only cost time.

Shape convention: T tokens of one prompt, Ct feature width (``channels``); B prompts in a batch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor

if TYPE_CHECKING:  # transformers takes seconds to import; only T5 users pay for it
    from transformers import PreTrainedTokenizerBase, T5EncoderModel

CONFIG_FILE = "config.json"
TOKENIZER_FILES = ("tokenizer.json", "spiece.model")  # fast tokenizer, or the sentencepiece model
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


class TextEncoder(Protocol):
    """Turns prompts into per-token features; one tensor per prompt, unpadded.

    Each tensor is float32 [T_i, channels] with T_i >= 1, on the encoder's device (callers move it
    to theirs; ``.to`` is free when it already is there).
    """

    channels: int  # Ct, feature width (Flan-T5-XL: 2048)

    def encode(self, prompts: list[str]) -> list[Tensor]: ...


class T5TextEncoder:
    """Flan-T5-XL encoder from a local directory, features as upstream Infinity builds them.

    Upstream pads every prompt to 512 tokens; this pads only to the longest prompt of the batch.
    T5 masks padded keys and its relative position bias depends on query-key offsets only, so the
    real tokens' features are the same (tests/test_text_encoder.py checks it) at a fraction of the cost.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, model: T5EncoderModel, max_length: int = 512) -> None:
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "right"  # real tokens first: features are cut as [:T_i]
        self.model = model
        self.max_length = max_length
        self.channels: int = model.config.d_model
        self.device = next(model.parameters()).device

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        max_length: int = 512,
    ) -> T5TextEncoder:
        """Load tokenizer and encoder from `path` only; nothing is ever downloaded.

        Args:
            path: a local copy of google/flan-t5-xl (config.json, tokenizer files, weights).
            device: where the encoder runs and its features are returned.
            dtype: encoder weights; default float16 on CUDA (as upstream), float32 elsewhere.
                float16 is refused on the CPU, where its matmuls are slow or unsupported.
            max_length: prompts are truncated to this many tokens, ``</s>`` included (upstream: 512).
        """
        path = Path(path)
        _check_t5_dir(path)
        device = torch.device(device)
        if dtype is None:
            dtype = torch.float16 if device.type == "cuda" else torch.float32
        if dtype == torch.float16 and device.type == "cpu":
            raise ValueError("float16 T5 on the CPU is slow or unsupported; use dtype=torch.bfloat16 or torch.float32")
        # legacy=True as upstream (it only matters to the sentencepiece "slow" tokenizer).
        from transformers import AutoTokenizer, T5EncoderModel

        tokenizer = AutoTokenizer.from_pretrained(path, legacy=True, local_files_only=True)
        model = T5EncoderModel.from_pretrained(path, dtype=dtype, local_files_only=True)
        model.to(device).eval().requires_grad_(False)
        return cls(tokenizer, model, max_length)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> list[Tensor]:
        """Features of each prompt's real tokens, [T_i, channels] float32 on ``self.device``."""
        _check_prompts(prompts)
        batch = self.tokenizer(
            prompts, max_length=self.max_length, padding="longest", truncation=True, return_tensors="pt"
        )
        mask_BT = batch.attention_mask.to(self.device)
        out = self.model(input_ids=batch.input_ids.to(self.device), attention_mask=mask_BT)
        feats_BTC = out.last_hidden_state.float()
        lengths = mask_BT.sum(dim=1).tolist()
        if min(lengths) < 1:
            raise ValueError("the tokenizer produced a prompt with no tokens; it should append </s>")
        return [f_TC[:n] for f_TC, n in zip(feats_BTC, lengths, strict=True)]


class HashTextEncoder:
    """Deterministic stand-in features for random-weight models (tests, benchmarks, the tiny demo).

    Not a language model: a prompt is split on whitespace, an end token is appended (like T5's
    ``</s>``, so an empty prompt still has one token), and each token's feature is N(0, 1) noise
    from a generator seeded by a stable hash of the token. Same prompt -> bitwise the same features
    in any process; RMS ~ 1, the scale Infinity's text_norm produces anyway.
    """

    END_TOKEN = "</s>"

    def __init__(self, channels: int, max_tokens: int = 64) -> None:
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        self.channels = channels
        self.max_tokens = max_tokens

    def encode(self, prompts: list[str]) -> list[Tensor]:
        """Features of each prompt's tokens, [T_i, channels] float32 on the CPU, T_i <= max_tokens."""
        _check_prompts(prompts)
        return [torch.stack([self._token_feature(t) for t in self._tokens(p)]) for p in prompts]

    def _tokens(self, prompt: str) -> list[str]:
        # Truncate like T5: keep the end token, drop words past the limit.
        return [*prompt.split()[: self.max_tokens - 1], self.END_TOKEN]

    def _token_feature(self, token: str) -> Tensor:
        # Python's hash() is salted per process; blake2b is not.
        seed = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(self.channels, generator=generator)


def _check_prompts(prompts: list[str]) -> None:
    if isinstance(prompts, str) or not isinstance(prompts, list | tuple):
        raise TypeError(f"prompts must be a list of str, got {type(prompts).__name__}")
    if not prompts:
        raise ValueError("prompts is empty")
    bad = [type(p).__name__ for p in prompts if not isinstance(p, str)]
    if bad:
        raise TypeError(f"every prompt must be a str, got {bad}")


def _check_t5_dir(path: Path) -> None:
    """Fail early and say what a usable directory holds, instead of a hub lookup error."""
    expected = (
        f"expected a local copy of google/flan-t5-xl: {CONFIG_FILE}, "
        f"a tokenizer ({' or '.join(TOKENIZER_FILES)}) and weights ({', '.join(WEIGHT_FILES)}); "
        "nothing is downloaded"
    )
    if not path.is_dir():
        raise FileNotFoundError(f"T5 directory not found: {path}; {expected}")
    missing = [
        name
        for name, options in (
            ("config", (CONFIG_FILE,)),
            ("tokenizer", TOKENIZER_FILES),
            ("weights", WEIGHT_FILES),
        )
        if not any((path / f).is_file() for f in options)
    ]
    if missing:
        raise FileNotFoundError(f"{path}: no {', no '.join(missing)} files; {expected}")
    model_type = json.loads((path / CONFIG_FILE).read_text()).get("model_type")
    if model_type != "t5":
        raise ValueError(f"{path / CONFIG_FILE}: model_type is {model_type!r}, expected 't5'; {expected}")
