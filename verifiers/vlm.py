"""LLaVA-OneVision as a VQAScore-style verifier (Lin et al. 2024; linzhiqiu/t2v_metrics).

Score: P("Yes") for the next token after the model's own chat template applied to one user turn
[image, 'Does this figure show "{prompt}"? Please answer yes or no.'] with the generation prompt
added; one forward pass, softmax over the whole vocabulary at the last position (no yes/no
renormalisation). Batched with left padding (position ids follow the mask, as in generation).
Images are downscaled to at most `max_image_side` pixels on the longer side before the
processor sees them: a 1024x1024 image would cost ~7400 visual tokens, a 384x384 one ~1500.

Files: a local transformers-format directory such as llava-hf/llava-onevision-qwen2-0.5b-ov-hf
(config.json, model.safetensors, the processor, tokenizer and chat-template files).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from verifiers.base import Verifier, VerifierInfo, chunks, resolve_dtype
from verifiers.checkpoint import CheckpointError, FileSpec, require_file, sha256_file
from verifiers.images import fit_within

QUESTION = 'Does this figure show "{prompt}"? Please answer yes or no.'
MODEL_DIR = FileSpec(
    "model_dir",
    "llava-onevision-qwen2-0.5b-ov-hf/ (config.json, model.safetensors, processor and tokenizer files)",
    "huggingface.co/llava-hf/llava-onevision-qwen2-0.5b-ov-hf",
)


class VLMVerifier(Verifier):
    def __init__(
        self,
        model_dir: str | Path | None,
        *,
        device: str = "cpu",
        dtype: str | torch.dtype = "float32",
        batch_size: int = 4,
        max_image_side: int = 384,
        question: str = QUESTION,
        answer: str = "Yes",
        name: str = "vlm",
    ) -> None:
        from transformers import AutoProcessor, LlavaOnevisionForConditionalGeneration

        self.name, self.batch_size, self.max_image_side, self.question = name, batch_size, max_image_side, question
        self.model_dir = require_file(model_dir, MODEL_DIR, name, directory=True)
        if not (self.model_dir / "config.json").exists():
            raise CheckpointError(f"{name}: {self.model_dir} has no config.json; pass {MODEL_DIR.describe()}")
        self.device, self.dtype = torch.device(device), resolve_dtype(dtype)
        try:
            self.processor = AutoProcessor.from_pretrained(self.model_dir, local_files_only=True)
            model, loading = LlavaOnevisionForConditionalGeneration.from_pretrained(
                self.model_dir, local_files_only=True, use_safetensors=True, dtype=self.dtype, output_loading_info=True
            )
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{name}: cannot load {self.model_dir} (option {MODEL_DIR.option}): {err}") from err
        bad = {k: v for k, v in loading.items() if k != "error_msgs" and v}
        if bad or loading.get("error_msgs"):
            raise CheckpointError(
                f"{name}: {self.model_dir} does not match its config.json: {bad or loading['error_msgs']}"
            )
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.processor.tokenizer.padding_side = "left"  # the last position is every prompt's next token
        answer_ids = self.processor.tokenizer.encode(answer, add_special_tokens=False)
        if len(answer_ids) != 1:
            raise ValueError(f"answer {answer!r} is {len(answer_ids)} tokens for this tokenizer; it must be one")
        self.answer_id = answer_ids[0]
        self.answer = answer

    @cached_property
    def info(self) -> VerifierInfo:
        import transformers

        weights = self.model_dir / "model.safetensors"
        return VerifierInfo(
            name=self.name,
            version=f"LLaVA-OneVision from {self.model_dir.name}, transformers {transformers.__version__}",
            score_definition=(
                f'P("{self.answer}") as the next token after the chat-templated question '
                f"'{self.question}' with the image, softmax over the full vocabulary"
            ),
            files_needed=[str(self.model_dir)],
            checkpoint_sha256=sha256_file(weights) if weights.exists() else None,
        )

    def chat_texts(self, prompts: list[str]) -> list[str]:
        """The model's chat template around [image, question] for each prompt, ready for generation."""
        return [
            self.processor.apply_chat_template(
                [
                    {
                        "role": "user",
                        "content": [{"type": "image"}, {"type": "text", "text": self.question.format(prompt=p)}],
                    }
                ],
                add_generation_prompt=True,
            )
            for p in prompts
        ]

    def answer_probability(self, logits_BV: torch.Tensor) -> torch.Tensor:
        """P(answer) [B] from next-token logits [B, V]."""
        return logits_BV.float().log_softmax(-1)[:, self.answer_id].exp()

    @torch.inference_mode()
    def _score(self, prompts: list[str], images: np.ndarray) -> np.ndarray:
        images = fit_within(images, self.max_image_side)
        texts = self.chat_texts(prompts)
        out = []
        for s in chunks(len(prompts), self.batch_size):
            inputs = self.processor(images=list(images[s]), text=texts[s], padding=True, return_tensors="pt")
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
            inputs["position_ids"] = (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)
            logits = self.model(**inputs, logits_to_keep=1).logits  # [B, 1, V]
            out.append(self.answer_probability(logits[:, -1]))
        return torch.cat(out).double().cpu().numpy()
