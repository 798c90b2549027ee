"""Text encoders: a tiny random T5 built offline stands in for Flan-T5-XL; the hash stand-in."""

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import AutoTokenizer, PreTrainedTokenizerFast, T5Config, T5EncoderModel

from generators.text_encoder import HashTextEncoder, T5TextEncoder

WORDS = ["a", "red", "cat", "sits", "on", "the", "blue", "mat", "under", "an", "old", "tree"]
D_MODEL = 32


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer T5 encoder and a word-level tokenizer laid out like a Flan-T5 download."""
    path = tmp_path_factory.mktemp("tiny-t5")
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2} | {w: i + 3 for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    ).save_pretrained(path)
    config = T5Config(
        vocab_size=len(vocab), d_model=D_MODEL, d_kv=8, num_heads=4, num_layers=2, d_ff=64,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    T5EncoderModel(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def encoder(t5_dir: Path) -> T5TextEncoder:
    return T5TextEncoder.from_pretrained(t5_dir)


def test_tokenizer_loads_with_legacy_flag(t5_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(t5_dir, legacy=True, local_files_only=True)
    assert tokenizer("red cat").input_ids == [4, 5, 1]


def test_t5_shapes(encoder: T5TextEncoder) -> None:
    prompts = ["a red cat", "the old tree under a blue mat", "", "zebra"]
    feats = encoder.encode(prompts)
    assert encoder.channels == D_MODEL
    # every word is one token, plus </s>; unknown words are <unk>, an empty prompt is just </s>
    assert [f.shape for f in feats] == [(len(p.split()) + 1, D_MODEL) for p in prompts]
    assert all(f.dtype == torch.float32 and f.device == encoder.device for f in feats)


def test_t5_padding_does_not_change_features(encoder: T5TextEncoder) -> None:
    """Padding to the longest prompt gives upstream's features (it pads every prompt to 512)."""
    short, long = "red cat", "a red cat sits on the blue mat under an old tree"
    alone = encoder.encode([short])[0]
    batched = encoder.encode([long, short])[1]
    torch.testing.assert_close(batched, alone, rtol=0, atol=1e-5)

    batch = encoder.tokenizer([short], max_length=512, padding="max_length", truncation=True, return_tensors="pt")
    hidden = encoder.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
    upstream = hidden[0, : int(batch.attention_mask.sum())].float()
    torch.testing.assert_close(alone, upstream, rtol=0, atol=1e-5)


def test_t5_truncation_keeps_end_token(t5_dir: Path) -> None:
    encoder = T5TextEncoder.from_pretrained(t5_dir, max_length=4)
    full = T5TextEncoder.from_pretrained(t5_dir).encode(["a red cat"])[0]  # a red cat </s>
    torch.testing.assert_close(encoder.encode([" ".join(WORDS)])[0], full, rtol=0, atol=1e-5)


def test_t5_bfloat16_on_cpu_returns_float32(t5_dir: Path) -> None:
    encoder = T5TextEncoder.from_pretrained(t5_dir, dtype=torch.bfloat16)
    assert encoder.model.dtype == torch.bfloat16
    assert encoder.encode(["red cat"])[0].dtype == torch.float32


def test_t5_refuses_float16_on_cpu(t5_dir: Path) -> None:
    with pytest.raises(ValueError, match="bfloat16"):
        T5TextEncoder.from_pretrained(t5_dir, dtype=torch.float16)


def test_t5_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"not found.*config\.json.*nothing is downloaded"):
        T5TextEncoder.from_pretrained(tmp_path / "flan-t5-xl")


def test_t5_directory_without_weights(tmp_path: Path, t5_dir: Path) -> None:
    for name in ("config.json", "tokenizer.json"):
        (tmp_path / name).write_bytes((t5_dir / name).read_bytes())
    with pytest.raises(FileNotFoundError, match=r"no weights files.*model\.safetensors"):
        T5TextEncoder.from_pretrained(tmp_path)


def test_t5_rejects_other_model_types(tmp_path: Path, t5_dir: Path) -> None:
    for f in t5_dir.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    config = json.loads((t5_dir / "config.json").read_text()) | {"model_type": "bert"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="model_type"):
        T5TextEncoder.from_pretrained(tmp_path)


@pytest.mark.parametrize("enc", [HashTextEncoder(8), "t5"])
def test_prompt_validation(enc: HashTextEncoder | str, encoder: T5TextEncoder) -> None:
    enc = encoder if enc == "t5" else enc
    with pytest.raises(ValueError, match="empty"):
        enc.encode([])
    with pytest.raises(TypeError):
        enc.encode("a red cat")
    with pytest.raises(TypeError):
        enc.encode(["a red cat", None])


def test_hash_shapes_and_truncation() -> None:
    enc = HashTextEncoder(channels=16, max_tokens=4)
    feats = enc.encode(["a red cat", "", "one two three four five"])
    assert [f.shape for f in feats] == [(4, 16), (1, 16), (4, 16)]
    assert all(f.dtype == torch.float32 for f in feats)
    # truncation drops words, keeps the end token
    torch.testing.assert_close(feats[2][-1], feats[1][0], rtol=0, atol=0)


def test_hash_features_are_per_token() -> None:
    a, b = HashTextEncoder(channels=16).encode(["a red cat", "a blue cat"])
    assert torch.equal(a[0], b[0]) and torch.equal(a[2:], b[2:])
    assert not torch.allclose(a[1], b[1])


def test_hash_is_deterministic_across_processes() -> None:
    prompt = "a red cat sits on the mat"
    here = HashTextEncoder(channels=32).encode([prompt])[0]
    code = (
        "import sys, torch; from generators.text_encoder import HashTextEncoder; "
        f"torch.save(HashTextEncoder(channels=32).encode([{prompt!r}])[0], sys.stdout.buffer)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    assert torch.equal(torch.load(io.BytesIO(out)), here)


def test_hash_validation() -> None:
    with pytest.raises(ValueError, match="channels"):
        HashTextEncoder(channels=0)
    with pytest.raises(ValueError, match="max_tokens"):
        HashTextEncoder(channels=8, max_tokens=0)
