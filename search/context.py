"""What every search algorithm works through: the generator and verifier, with each forward and
each verifier call checked against the budget, charged, and written to the trace.

Algorithms never touch the ledger or the trace themselves; they call `advance`, `score` and
`prune` here, so the accounting is the same for all of them and cannot be forgotten.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from search.budget import Budget, Ledger


class Generator(Protocol):
    """The stepwise generator interface (generators.engine.InfinityEngine implements it)."""

    schedule: Any  # .num_scales, .tokens_per_scale

    def start(self, prompts: Sequence[str], seeds: Sequence[int], sampling: Any = ..., paths: Any = ...) -> Any: ...
    def advance(self, batch: Any, to_scale: int | None = None) -> tuple[Any, Any]: ...
    def fork(self, batch: Any, num_children: int | Sequence[int]) -> Any: ...
    def select(self, batch: Any, indices: Sequence[int]) -> Any: ...
    def with_sampling(self, batch: Any, sampling: Any) -> Any: ...
    def decode(self, batch: Any) -> np.ndarray: ...


class Verifier(Protocol):
    def score(self, prompts: Sequence[str], images: np.ndarray) -> np.ndarray: ...


THUMBNAIL_SIDE = 64  # progress events carry scored images at most this large (uint8 HxWx3)


def thumbnail(image_HW3: np.ndarray, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """A strided downscale (no filtering, no dependencies): cheap enough for every scored image."""
    step = max(1, -(-max(image_HW3.shape[:2]) // side))
    return np.ascontiguousarray(image_HW3[::step, ::step])


def path_str(path: Sequence[int]) -> str:
    return ".".join(map(str, path))


def flat_trace(trace: list[dict], **columns: Any) -> list[dict]:
    """Trace rows ready for Parquet: path lists joined with commas, extra constant columns added."""
    return [{**columns, **{k: ",".join(v) if isinstance(v, list) else v for k, v in row.items()}} for row in trace]


@dataclass
class Best:
    score: float = -np.inf
    image: np.ndarray | None = None
    path: tuple[int, ...] = ()
    bits: list | None = None  # the winner's address: bits per scale


@dataclass
class SearchRun:
    """One search for one prompt and seed."""

    generator: Generator
    verifier: Verifier
    prompt: str
    seed: int
    budget: Budget
    sampling: Any
    method: str
    ledger: Ledger = field(init=False)
    trace: list[dict] = field(default_factory=list)
    best: Best = field(default_factory=Best)  # best complete image ever scored
    last_complete: Best = field(default_factory=Best)  # best complete image of the last scoring round
    on_event: Callable[[dict], None] | None = None  # every trace row as it happens, scores with a "thumbnail"
    rollout_tau_scale: float = 1.0  # rollouts sample at the request's temperatures times this

    def __post_init__(self) -> None:
        self.ledger = Ledger(self.budget)

    @property
    def num_scales(self) -> int:
        return self.generator.schedule.num_scales

    def start(self, num: int, paths: Sequence[tuple[int, ...]]) -> Any:
        return self.generator.start([self.prompt] * num, [self.seed] * num, self.sampling, paths)

    def advance(self, batch: Any, to_scale: int | None = None) -> Any:
        """Advance and charge; refuses before spending if the budget cannot pay."""
        to_scale = self.num_scales if to_scale is None else to_scale
        self.ledger.check_nfe(len(batch) * (to_scale - batch.num_scales_done))
        batch, cost = self.generator.advance(batch, to_scale)
        self.ledger.charge_forward(cost.nfe, cost.tokens, cost.rebuild_nfe, cost.rebuild_tokens)
        return batch

    def rollout(self, batch: Any) -> Any:
        """Complete candidates under the rollout policy: the request's sampling, or cooler by rollout_tau_scale."""
        if self.rollout_tau_scale != 1.0:
            batch = self.generator.with_sampling(batch, self.sampling.cooled(self.rollout_tau_scale))
        return self.advance(batch)

    def score(self, batch: Any, kind: str, branch_scale: int) -> np.ndarray:
        """Decode and score every candidate of `batch`; complete images compete for `best`.

        kind: "sample" (independent sample), "rollout" (a branch completed to the last scale),
        "preview" (partial image of the accumulated codes), "final" (a finished beam).
        """
        self.ledger.check_verifier_calls(len(batch))
        images = self.generator.decode(batch)
        scores = np.asarray(self.verifier.score([self.prompt] * len(batch), images), dtype=np.float64)
        if scores.shape != (len(batch),):
            raise ValueError(f"verifier returned {scores.shape} scores for {len(batch)} images")
        self.ledger.charge_verifier(len(batch))
        complete = batch.num_scales_done == self.num_scales
        for i, s in enumerate(scores):
            self._record(
                {
                    "event": "score",
                    "kind": kind,
                    "branch_scale": branch_scale,
                    "scales_done": batch.num_scales_done,
                    "path": path_str(batch.paths[i]),
                    "score": float(s),
                    "complete": complete,
                    **self._so_far(),
                },
                images[i],
            )
        if complete:
            top = int(np.argmax(scores))
            self.last_complete = Best(float(scores[top]), images[top], batch.paths[top], batch.prefix_bits(top))
            if scores[top] > self.best.score:
                self.best = self.last_complete
        return scores

    def prune(self, batch: Any, scores: np.ndarray, keep: int, scale: int) -> list[int]:
        """Indices of the `keep` best candidates (ties: earlier first), recorded as a decision."""
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        kept, dropped = order[:keep], order[keep:]
        self._record(
            {
                "event": "prune",
                "kind": "keep_top",
                "branch_scale": scale,
                "scales_done": batch.num_scales_done,
                "kept": [path_str(batch.paths[i]) for i in kept],
                "dropped": [path_str(batch.paths[i]) for i in dropped],
                "threshold": float(scores[kept[-1]]),
                **self._so_far(),
            }
        )
        return kept

    def _record(self, row: dict, image: np.ndarray | None = None) -> None:
        """Append to the trace; progress listeners also get a thumbnail of a scored image."""
        self.trace.append(row)
        if self.on_event is not None:
            self.on_event(row if image is None else {**row, "thumbnail": thumbnail(image)})

    def _so_far(self) -> dict[str, int]:
        return {f"{k}_so_far": v for k, v in self.ledger.totals().items()}
