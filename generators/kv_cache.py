"""Per-layer self-attention keys and values for a batch of rows, forkable between scales.

Unlike upstream (caches hidden inside attention modules behind on/off flags), the cache is an
explicit object owned by the caller, so a search can gather rows (fork, prune), truncate to a
scale boundary (rollouts) and concatenate batches (continuous batching).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class KVCache:
    keys: list[Tensor | None] = field(default_factory=list)  # per layer [B, H, L, d]
    values: list[Tensor | None] = field(default_factory=list)  # per layer [B, H, L, d]

    @classmethod
    def empty(cls, num_layers: int) -> KVCache:
        return cls([None] * num_layers, [None] * num_layers)

    @property
    def num_tokens(self) -> int:
        return 0 if self.keys[-1] is None else self.keys[-1].shape[2]

    @property
    def num_rows(self) -> int:
        return 0 if self.keys[-1] is None else self.keys[-1].shape[0]

    def append(self, layer: int, k_BHLd: Tensor, v_BHLd: Tensor) -> tuple[Tensor, Tensor]:
        """Add this forward's keys/values for one layer; returns all keys/values of the layer."""
        if self.keys[layer] is not None:
            k_BHLd = torch.cat((self.keys[layer], k_BHLd), dim=2)
            v_BHLd = torch.cat((self.values[layer], v_BHLd), dim=2)
        self.keys[layer], self.values[layer] = k_BHLd, v_BHLd
        return k_BHLd, v_BHLd

    def select(self, rows: Tensor) -> KVCache:
        """A new cache holding the given rows (in that order); rows may repeat (fork)."""
        return KVCache(
            [None if k is None else k.index_select(0, rows) for k in self.keys],
            [None if v is None else v.index_select(0, rows) for v in self.values],
        )

    def truncated(self, num_tokens: int) -> KVCache:
        """The first `num_tokens` tokens of every row (views, no copy)."""
        if num_tokens > self.num_tokens:
            raise ValueError(f"cannot truncate a cache of {self.num_tokens} tokens to {num_tokens}")
        if num_tokens == 0:
            return KVCache.empty(len(self.keys))
        return KVCache([k[:, :, :num_tokens] for k in self.keys], [v[:, :, :num_tokens] for v in self.values])

    @staticmethod
    def concat(caches: list[KVCache]) -> KVCache:
        """Stack the rows of caches that hold the same number of tokens."""
        lengths = {c.num_tokens for c in caches}
        if len(lengths) != 1:
            raise ValueError(f"can only concatenate caches of equal length, got {sorted(lengths)}")
        if lengths == {0}:
            return KVCache.empty(len(caches[0].keys))
        return KVCache(
            [torch.cat(layer) for layer in zip(*(c.keys for c in caches), strict=True)],
            [torch.cat(layer) for layer in zip(*(c.values for c in caches), strict=True)],
        )
