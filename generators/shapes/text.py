"""The shapes world's text encoder: a word-level tokenizer and a small transformer encoder.

The vocabulary is the caption grammar's words, built offline from the world itself and shipped
with the weights; unknown words map to <unk>. Features play the role Flan-T5 plays for the
real model: per-token vectors that Infinity's text pool and cross-attention read.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

PAD, UNK, END = "<pad>", "<unk>", "</s>"


class WordTokenizer:
    def __init__(self, words: list[str], max_tokens: int) -> None:
        specials = [PAD, UNK, END]
        self.vocab = specials + sorted(set(words) - set(specials))
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.max_tokens = max_tokens

    def __call__(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        """Token ids [B, T] (padded with 0) and mask [B, T]; each prompt ends with </s>."""
        if not prompts:
            raise ValueError("no prompts to tokenize")
        ids = []
        for prompt in prompts:
            if not isinstance(prompt, str):
                raise TypeError(f"prompts must be strings, got {type(prompt).__name__}")
            words = prompt.lower().split()[: self.max_tokens - 1]
            ids.append([self.index.get(w, 1) for w in words] + [self.index[END]])
        T = max(len(x) for x in ids)
        ids_BT = torch.tensor([x + [0] * (T - len(x)) for x in ids])
        return ids_BT, ids_BT != 0


class ShapesTextEncoder(nn.Module):
    """Embedding + learned positions + a pre-norm transformer encoder; [B, T] ids -> [B, T, C]."""

    def __init__(self, vocab: list[str], channels: int = 128, depth: int = 2, heads: int = 4, max_tokens: int = 16):
        super().__init__()
        self.tokenizer = WordTokenizer(vocab, max_tokens)
        self.channels = channels
        self.tok_emb = nn.Embedding(len(self.tokenizer.vocab), channels)
        self.pos_emb = nn.Parameter(torch.zeros(max_tokens, channels))
        layer = nn.TransformerEncoderLayer(
            channels, heads, 4 * channels, dropout=0.0, batch_first=True, norm_first=True, activation="gelu"
        )
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(channels)

    def forward(self, ids_BT: Tensor, mask_BT: Tensor) -> Tensor:
        x = self.tok_emb(ids_BT) + self.pos_emb[: ids_BT.shape[1]]
        return self.norm(self.encoder(x, src_key_padding_mask=~mask_BT))

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> list[Tensor]:
        """TextEncoder protocol: one [T_i, C] float32 tensor per prompt."""
        ids, mask = self.tokenizer(list(prompts))
        device = self.pos_emb.device
        feats = self.forward(ids.to(device), mask.to(device)).float()
        return [f[: int(m.sum())] for f, m in zip(feats, mask, strict=True)]
