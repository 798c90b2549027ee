"""The LLaVA-OneVision verifier on a tiny random model and a tiny word-level processor, both saved
to a local directory in transformers' format (verifiers.tiny) and loaded through the real path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from verifiers import tiny
from verifiers.checkpoint import CheckpointError
from verifiers.vlm import VLMVerifier

WORDS = tiny.LLAVA_WORDS
PROMPTS = ["a red circle", "two blue squares and a red circle", "a circle", "zebra"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny.llava_onevision_dir(tmp_path_factory.mktemp("llava-ov-tiny"))


@pytest.fixture(scope="module")
def verifier(model_dir) -> VLMVerifier:
    return VLMVerifier(model_dir, batch_size=3, max_image_side=32)


def images(n: int, h: int = 48, w: int = 40, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_chat_prompt_asks_the_vqascore_question(verifier) -> None:
    (text,) = verifier.chat_texts(["a red circle"])
    assert text == (
        '<|im_start|>user\n<image>\nDoes this figure show "a red circle"? Please answer yes or no.<|im_end|>\n'
        "<|im_start|>assistant\n"
    )


def test_answer_probability_is_the_softmax_of_yes(verifier) -> None:
    logits = torch.zeros(2, len(WORDS))
    logits[0, WORDS.index("Yes")] = np.log(len(WORDS) - 1)  # P(Yes) = (V-1) / (2V-2) = 1/2
    np.testing.assert_allclose(verifier.answer_probability(logits).numpy(), [0.5, 1 / len(WORDS)], rtol=1e-6)


def test_scores_shapes_batching_and_determinism(verifier) -> None:
    x = images(4)
    scores = verifier.score(PROMPTS, x)  # prompts of different lengths: left padding at work
    assert scores.shape == (4,) and scores.dtype == np.float64
    assert np.all((scores > 0) & (scores < 1)) and len(set(scores.round(9).tolist())) == 4
    one_by_one = np.concatenate([verifier.score([p], x[i : i + 1]) for i, p in enumerate(PROMPTS)])
    np.testing.assert_allclose(scores, one_by_one, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(scores, verifier.score(PROMPTS, x.copy()))


def test_missing_and_wrong_model_dirs(model_dir, tmp_path) -> None:
    with pytest.raises(CheckpointError, match=r"llava-onevision-qwen2-0.5b-ov-hf.*model_dir="):
        VLMVerifier(None)
    with pytest.raises(CheckpointError, match=r"has no config\.json"):
        VLMVerifier(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in model_dir.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    state = load_file(broken / "model.safetensors")
    del state[next(k for k in state if "lm_head" in k or "embed_tokens" in k)]
    save_file(state, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"does not match its config\.json"):
        VLMVerifier(broken)
