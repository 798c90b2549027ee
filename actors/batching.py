"""Settings shared by the replicas' schedulers, and where a replica runs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BatchingConfig:
    max_batch: int = 64  # candidates per forward (whole requests are never split)
    max_wait_s: float = 0.002  # how long a forward waits for more work when the batch is not full

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if not 0 <= self.max_wait_s <= 1:
            raise ValueError(f"max_wait_s must be in [0, 1] seconds, got {self.max_wait_s}")


def node_id() -> str | None:
    """The Ray node this process runs on (None outside Ray)."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except ImportError:
        return None
