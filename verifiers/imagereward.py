"""ImageReward-v1.0 (Xu et al. 2023, THUDM/ImageReward) on maintained modules, from the official files.

The PyPI package (`image-reward` 1.5) does not import on current transformers and pins old
timm, so the model is rebuilt here from parts whose parameter names already match the official
checkpoint: BLIP's ViT-L/16 is timm's `VisionTransformer` (BLIP's vit.py was derived from it)
and BLIP's MED text encoder (BERT-base with cross-attention to the image tokens) is
transformers' `BlipTextModel` (a port of the same med.py). The score is upstream's:

    reward = (MLP(text_encoder(prompt, cross-attending to ViT(image))[CLS]) - mean) / std

with mean 0.16717362830052426 and std 1.0333394966054072, prompts padded/truncated to 35
tokens, images resized (bicubic, shorter side) and centre-cropped to 224 with CLIP's mean/std.

Files: ImageReward.pt (the official state dict), bert-base-uncased's vocab.txt (the
tokenizer; BLIP appends [DEC] and [ENC]) and optionally med_config.json (the text encoder's
sizes; the built-in defaults are its values).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece
from torch import nn

from verifiers.aesthetic import AestheticMLP
from verifiers.base import Verifier, VerifierInfo, chunks, resolve_dtype
from verifiers.checkpoint import (
    CheckpointError,
    FileSpec,
    StateDict,
    load_strict,
    read_state_dict,
    require_file,
    sha256_file,
)
from verifiers.images import OPENAI_MEAN, OPENAI_STD, to_pixels

REWARD_MEAN, REWARD_STD = 0.16717362830052426, 1.0333394966054072  # upstream ImageReward.py
CHECKPOINT_FILE = FileSpec("checkpoint", "ImageReward.pt", "huggingface.co/THUDM/ImageReward")
VOCAB_FILE = FileSpec("vocab", "vocab.txt", "huggingface.co/google-bert/bert-base-uncased")
MED_CONFIG_FILE = FileSpec("med_config", "med_config.json", "huggingface.co/THUDM/ImageReward")
SCORE_DEFINITION = (
    "ImageReward-v1.0: (MLP(BLIP text encoder [CLS] cross-attending to ViT-L/16 image tokens) "
    f"- {REWARD_MEAN}) / {REWARD_STD}; roughly standardised, typically -2..2"
)

# Official ImageReward.pt key prefix -> this model's. The official file is `ImageReward.state_dict()`
# of upstream's module (blip = BLIP_Pretrain, mlp = MLP); after the prefix the names are identical
# (timm ViT: cls_token, pos_embed, patch_embed.proj, blocks.N.{norm1,attn.qkv,attn.proj,norm2,
# mlp.fc1,mlp.fc2}, norm; BLIP med.py: embeddings.{word,position}_embeddings, embeddings.LayerNorm,
# encoder.layer.N.{attention,crossattention}.{self.{query,key,value},output.{dense,LayerNorm}},
# encoder.layer.N.{intermediate.dense,output.dense,output.LayerNorm}; mlp.layers.{0,2,4,6,7}).
KEY_MAP = (
    ("blip.visual_encoder.", "visual."),
    ("blip.text_encoder.", "text."),
    ("mlp.layers.", "mlp.layers."),
)
# In the official file but not used for the reward: BLIP's contrastive projections and a buffer.
UNUSED_KEYS = ("blip.vision_proj.", "blip.text_proj.", "blip.text_encoder.embeddings.position_ids")


@dataclass(frozen=True)
class ImageRewardConfig:
    # BLIP ViT-L/16 (upstream create_vit('large', 224))
    image_size: int = 224
    patch_size: int = 16
    vision_width: int = 1024
    vision_depth: int = 24
    vision_heads: int = 16
    # MED text encoder (med_config.json; its encoder_width is set to vision_width, as upstream does)
    vocab_size: int = 30524  # bert-base-uncased's 30522 + [DEC] + [ENC]
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    layer_norm_eps: float = 1e-12
    max_length: int = 35  # prompt tokens with [CLS] and [SEP]

    @classmethod
    def from_med_config(cls, path: Path, base: ImageRewardConfig | None = None) -> ImageRewardConfig:
        """The text encoder's sizes from an official-format med_config.json; vision sizes from `base`."""
        cfg = json.loads(Path(path).read_text())
        if cfg.get("hidden_act", "gelu") != "gelu" or not cfg.get("add_cross_attention", False):
            raise CheckpointError(f"{path}: not a BLIP MED config (needs hidden_act gelu and add_cross_attention)")
        try:
            return replace(
                base or cls(),
                vocab_size=cfg["vocab_size"],
                hidden_size=cfg["hidden_size"],
                num_layers=cfg["num_hidden_layers"],
                num_heads=cfg["num_attention_heads"],
                intermediate_size=cfg["intermediate_size"],
                max_position_embeddings=cfg["max_position_embeddings"],
                layer_norm_eps=cfg["layer_norm_eps"],
            )
        except KeyError as err:
            raise CheckpointError(f"{path}: med_config.json lacks {err}") from err


class ImageRewardModel(nn.Module):
    def __init__(self, cfg: ImageRewardConfig) -> None:
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer
        from transformers import BlipTextConfig, BlipTextModel

        self.visual = VisionTransformer(
            img_size=cfg.image_size,
            patch_size=cfg.patch_size,
            embed_dim=cfg.vision_width,
            depth=cfg.vision_depth,
            num_heads=cfg.vision_heads,
            num_classes=0,
            global_pool="",  # keep every token: the text encoder attends to all of them
        )
        text_cfg = BlipTextConfig(
            vocab_size=cfg.vocab_size,
            hidden_size=cfg.hidden_size,
            encoder_hidden_size=cfg.vision_width,
            intermediate_size=cfg.intermediate_size,
            num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads,
            max_position_embeddings=cfg.max_position_embeddings,
            layer_norm_eps=cfg.layer_norm_eps,
            is_decoder=True,  # builds the cross-attention layers; forward() still attends bidirectionally
            pad_token_id=0,
            bos_token_id=None,
            eos_token_id=None,
            sep_token_id=None,
        )
        self.text = BlipTextModel(text_cfg, add_pooling_layer=False)
        self.mlp = AestheticMLP(cfg.hidden_size)  # the same linear MLP head as the LAION predictor

    def forward(self, pixels_N3HW: torch.Tensor, ids_NL: torch.Tensor, mask_NL: torch.Tensor) -> torch.Tensor:
        image_NPC = self.visual.forward_features(pixels_N3HW)  # [N, 1 + patches, vision_width]
        text = self.text(input_ids=ids_NL, attention_mask=mask_NL, encoder_hidden_states=image_NPC)
        cls_NC = text.last_hidden_state[:, 0]  # [N, hidden_size]
        return (self.mlp(cls_NC.float()) - REWARD_MEAN) / REWARD_STD  # [N]


def map_official_keys(state_dict: StateDict) -> StateDict:
    """Official ImageReward.pt names -> ImageRewardModel names; unknown keys pass through (and fail the strict load)."""
    out = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")  # files saved by upstream's DDP training script
        if key.startswith(UNUSED_KEYS):
            continue
        for old, new in KEY_MAP:
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        out[key] = value
    return out


def blip_tokenizer(vocab_path: Path, max_length: int) -> Tokenizer:
    """bert-base-uncased WordPiece plus BLIP's [DEC] and [ENC], padded and truncated to max_length.

    Built with `tokenizers` directly (as transformers' BertTokenizer does) so nothing depends on
    transformers' tokenizer constructors, which changed between major versions.
    """
    with open(vocab_path, encoding="utf-8") as f:
        vocab = {line.rstrip("\n"): i for i, line in enumerate(f.readlines())}
    missing = [t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]") if t not in vocab]
    if missing:
        raise CheckpointError(f"{vocab_path}: not a BERT vocab.txt (no {missing}); pass bert-base-uncased's as vocab=")
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    tok.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]"])
    tok.enable_truncation(max_length)
    tok.enable_padding(length=max_length, pad_id=vocab["[PAD]"], pad_token="[PAD]")
    return tok


class ImageRewardVerifier(Verifier):
    def __init__(
        self,
        checkpoint: str | Path | None,
        vocab: str | Path | None,
        *,
        config: ImageRewardConfig = ImageRewardConfig(),  # frozen: a safe default
        device: str = "cpu",
        dtype: str | torch.dtype = "float32",
        batch_size: int = 16,
        name: str = "imagereward",
    ) -> None:
        self.name, self.config, self.batch_size = name, config, batch_size
        self.checkpoint = require_file(checkpoint, CHECKPOINT_FILE, name)
        self.vocab = require_file(vocab, VOCAB_FILE, name)
        self.tokenizer = blip_tokenizer(self.vocab, config.max_length)
        if self.tokenizer.get_vocab_size() != config.vocab_size:
            raise CheckpointError(
                f"{self.vocab} gives {self.tokenizer.get_vocab_size()} tokens with BLIP's [DEC] and [ENC], the model "
                f"has {config.vocab_size}: pass bert-base-uncased's vocab.txt as vocab="
            )
        model = ImageRewardModel(config)
        load_strict(
            model,
            map_official_keys(read_state_dict(self.checkpoint, CHECKPOINT_FILE, name)),
            self.checkpoint,
            CHECKPOINT_FILE,
        )
        self.device, self.dtype = torch.device(device), resolve_dtype(dtype)
        self.model = model.to(self.device, self.dtype).eval().requires_grad_(False)
        self.model.mlp.float()  # the head runs in float32, as upstream's `.float()` before it

    @cached_property
    def info(self) -> VerifierInfo:
        return VerifierInfo(
            name=self.name,
            version="ImageReward-v1.0 (BLIP ViT-L/16 + MED BERT-base), timm + transformers BlipTextModel",
            score_definition=SCORE_DEFINITION,
            files_needed=[str(self.checkpoint), str(self.vocab)],
            checkpoint_sha256=sha256_file(self.checkpoint),
        )

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """input ids and attention mask [N, max_length]."""
        enc = self.tokenizer.encode_batch(prompts)
        ids = torch.tensor([e.ids for e in enc], device=self.device)
        mask = torch.tensor([e.attention_mask for e in enc], device=self.device)
        return ids, mask

    @torch.inference_mode()
    def _score(self, prompts: list[str], images: np.ndarray) -> np.ndarray:
        ids, mask = self.tokenize(prompts)
        size = self.config.image_size
        out = []
        for s in chunks(len(prompts), self.batch_size):
            pixels = to_pixels(images[s], size, OPENAI_MEAN, OPENAI_STD, device=self.device, dtype=self.dtype)
            out.append(self.model(pixels, ids[s], mask[s]))
        return torch.cat(out).double().cpu().numpy()
