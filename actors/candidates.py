"""Candidates as the coordinator sees them: prefix addresses plus a lease on a replica's cache.

A candidate is (prompt, seed, path, sampling, the bits it sampled at each scale so far). That
address is enough for any replica to rebuild it with one teacher-forced forward; the lease only
says which replica holds its KV cache right now, so work can go there without recomputation.
Bits travel packed (8 per byte): a shapes-world candidate is about 260 bytes, an Infinity-2B one
at the last scale about 42 KB. KV caches never leave their replica.

A `RemoteBatch` is a value, like the in-process `CandidateBatch`: fork and select make new
batches without touching replicas (children share their parent's lease, and the replica gathers
the parent's cache row for each child), so the search algorithms run unchanged.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # this module stays free of torch: simulated replicas import it by the hundred
    import torch

    from generators.sampling import SamplingParams

Path = tuple[int, ...]
CacheKey = tuple[int, int, int]  # (replica incarnation, group id, row): never reused after a restart


def pack_bits(bits_Ld: np.ndarray) -> np.ndarray:
    """uint8 0/1 bits [h*w, d] -> packed uint8 [h*w, ceil(d/8)]."""
    return np.packbits(bits_Ld.astype(np.uint8, copy=False), axis=-1)


def unpack_bits(packed: np.ndarray, bits_per_token: int) -> np.ndarray:
    return np.unpackbits(packed, axis=-1, count=bits_per_token)


class CacheLease:
    """A reference to one cached candidate state on one replica.

    Candidates share lease objects (a fork's children point at the parent's). When the last
    batch holding a lease is garbage, its finalizer hands the key back, so replicas free caches
    of pruned candidates without the algorithms saying so.
    """

    __slots__ = ("__weakref__", "key", "replica")

    def __init__(self, replica: int, key: CacheKey, on_release: Callable[[int, CacheKey], None]) -> None:
        self.replica, self.key = replica, key
        weakref.finalize(self, on_release, replica, key)


@dataclass(frozen=True)
class RemoteCandidate:
    prompt: str
    seed: int
    path: Path
    sampling: SamplingParams
    bits: tuple[np.ndarray, ...]  # packed bits per sampled scale
    lease: CacheLease | None  # where this exact state is cached; None: rebuild from `bits`
    image: np.ndarray | None = None  # (H, W, 3) uint8, sent along when it reached the last scale

    def address(self) -> CandidateAddress:
        return CandidateAddress(self.prompt, self.seed, self.path, self.sampling, self.bits)


@dataclass(frozen=True)
class CandidateAddress:
    """What crosses the wire to a replica: everything needed to rebuild the candidate."""

    prompt: str
    seed: int
    path: Path
    sampling: SamplingParams
    bits: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class WorkItem:
    """One candidate of a replica request: its cache key there (if any) and its address."""

    key: CacheKey | None
    address: CandidateAddress


@dataclass(frozen=True)
class RemoteBatch:
    """Candidates at the same number of sampled scales (the search algorithms' batch)."""

    candidates: tuple[RemoteCandidate, ...]
    num_scales_done: int
    bits_per_token: int

    def __len__(self) -> int:
        return len(self.candidates)

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(c.path for c in self.candidates)

    @property
    def prompts(self) -> tuple[str, ...]:
        return tuple(c.prompt for c in self.candidates)

    def prefix_bits(self, index: int) -> list[torch.Tensor]:
        """Candidate `index`'s bits per scale, [h*w, bits] uint8 each (as CandidateBatch gives)."""
        import torch

        return [torch.from_numpy(unpack_bits(b, self.bits_per_token)) for b in self.candidates[index].bits]

    def fork(self, num_children: int | Sequence[int]) -> RemoteBatch:
        counts = [num_children] * len(self) if isinstance(num_children, int) else list(num_children)
        if len(counts) != len(self) or any(c < 0 for c in counts):
            raise ValueError(f"need a non-negative child count per candidate ({len(self)}), got {counts}")
        children = tuple(
            replace(c, path=(*c.path, j)) for c, n in zip(self.candidates, counts, strict=True) for j in range(n)
        )
        return replace(self, candidates=children)

    def select(self, indices: Sequence[int]) -> RemoteBatch:
        if len(indices) == 0:
            raise ValueError("selecting zero candidates leaves an empty batch; drop the batch instead")
        if any(not 0 <= i < len(self) for i in indices):
            raise IndexError(f"candidate indices {list(indices)} out of range for a batch of {len(self)}")
        return replace(self, candidates=tuple(self.candidates[i] for i in indices))


class ReleaseBuffer:
    """Cache keys whose leases died, per replica, until the next call to that replica carries them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[int, list[CacheKey]] = {}

    def add(self, replica: int, key: CacheKey) -> None:
        with self._lock:
            self._keys.setdefault(replica, []).append(key)

    def take(self, replica: int) -> list[CacheKey]:
        with self._lock:
            return self._keys.pop(replica, [])

    def forget(self, replica: int) -> None:
        """A replica restarted empty: its keys mean nothing any more."""
        self.take(replica)
