"""Tiny random verifier files in the official formats, for tests and benchmarks (no downloads).

Each builder writes what a user would download (an open_clip state dict, the aesthetic MLP,
ImageReward.pt with upstream's key names plus vocab.txt, a transformers LLaVA-OneVision
directory with a word-level processor) at toy sizes, so every loader runs its real path.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from verifiers.aesthetic import AestheticMLP
from verifiers.imagereward import KEY_MAP, ImageRewardConfig, ImageRewardModel

CLIP_NAME = "tiny-random-clip"
CLIP_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
BERT_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "blue", "circle", "square", "##s", "and", "two"]
IMAGEREWARD_CONFIG = ImageRewardConfig(
    image_size=32, patch_size=16, vision_width=32, vision_depth=2, vision_heads=2,
    vocab_size=len(BERT_WORDS) + 2, hidden_size=24, num_layers=2, num_heads=2, intermediate_size=48,
    max_position_embeddings=40,
)  # fmt: skip
LLAVA_WORDS = [
    "<pad>", "<unk>", "<|im_start|>", "<|im_end|>", "<image>", "<video>", "user", "assistant", "Yes", "No",
    "Does", "this", "figure", "show", '"', "?", ".", "Please", "answer", "yes", "or", "no",
    "a", "red", "blue", "circle", "square", "two", "and",
]  # fmt: skip
LLAVA_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def clip_files(directory: Path, seed: int = 0) -> dict[str, Path | str]:
    """A tiny open_clip config (registered under CLIP_NAME) and random weights as safetensors and .pt."""
    import open_clip

    config = directory / f"{CLIP_NAME}.json"
    config.write_text(json.dumps(CLIP_CONFIG))
    open_clip.add_model_config(config)
    torch.manual_seed(seed)
    state = open_clip.create_model(CLIP_NAME, pretrained=None).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, directory / "clip.safetensors")
    torch.save(state, directory / "clip.pt")
    return {"model": CLIP_NAME, "config_path": config, "checkpoint": directory / "clip.safetensors"}


def aesthetic_file(directory: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    path = directory / "aesthetic.pth"
    torch.save(AestheticMLP(CLIP_CONFIG["embed_dim"]).state_dict(), path)
    return path


def imagereward_files(directory: Path, seed: int = 0) -> dict[str, Path]:
    """ImageReward.pt with upstream's key names (and its unused projections) plus a BERT vocab.txt."""
    torch.manual_seed(seed)
    cfg = IMAGEREWARD_CONFIG
    ours = ImageRewardModel(cfg).state_dict()
    official = {}
    for key, value in ours.items():
        old, new = next((old, new) for old, new in KEY_MAP if key.startswith(new))
        official[old + key[len(new) :]] = value
    official["blip.text_encoder.embeddings.position_ids"] = torch.arange(cfg.max_position_embeddings)[None]
    for name, width in (("vision_proj", cfg.vision_width), ("text_proj", cfg.hidden_size)):
        official[f"blip.{name}.weight"], official[f"blip.{name}.bias"] = torch.randn(256, width), torch.zeros(256)
    torch.save(official, directory / "ImageReward.pt")
    (directory / "vocab.txt").write_text("\n".join(BERT_WORDS) + "\n")
    return {"checkpoint": directory / "ImageReward.pt", "vocab": directory / "vocab.txt"}


def llava_onevision_dir(directory: Path, seed: int = 0) -> Path:
    """A 2-layer LLaVA-OneVision (SigLIP + Qwen2) with a word-level tokenizer, 28x28 tiles."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
        PreTrainedTokenizerFast,
    )

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(LLAVA_WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>", "<image>", "<video>"],
    )  # fmt: skip
    size = {"height": 28, "width": 28}
    LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size=size, crop_size=size, image_grid_pinpoints=[[28, 28]]),
        video_processor=LlavaOnevisionVideoProcessor(size=size),
        tokenizer=tokenizer,
        num_image_tokens=4,  # (28 / 14) ** 2 patches per tile
        vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_1",
        chat_template=LLAVA_CHAT_TEMPLATE,
    ).save_pretrained(directory)
    config = LlavaOnevisionConfig(
        vision_config=dict(
            model_type="siglip_vision_model", hidden_size=16, intermediate_size=32, num_hidden_layers=1,
            num_attention_heads=2, image_size=28, patch_size=14,
        ),
        text_config=dict(
            model_type="qwen2", hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, vocab_size=len(LLAVA_WORDS),
            initializer_range=0.5,  # large random weights: scores that differ between images and prompts
        ),
        image_token_index=LLAVA_WORDS.index("<image>"), video_token_index=LLAVA_WORDS.index("<video>"),
        image_grid_pinpoints=[[28, 28]], vision_aspect_ratio="anyres_max_1",
        vision_feature_select_strategy="full", vision_feature_layer=-1,
    )  # fmt: skip
    torch.manual_seed(seed)
    LlavaOnevisionForConditionalGeneration(config).save_pretrained(directory)
    return directory
