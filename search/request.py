"""One search request, the unit every way of running varsearch passes around.

The CLI, the study runner, the Ray coordinator and the Serve endpoint all turn their input into
`SearchRequest`s and hand them to a `SearchBackend`; a backend runs them in-process or on a
cluster and yields `SearchResult`s. Requests are plain data (strings, numbers, frozen
dataclasses): they cross process boundaries without custom pickling and serialise to JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from generators.sampling import SamplingParams
from search.context import Generator, Verifier
from search.run import SearchConfig, SearchResult, run_search

MAX_PROMPT_CHARS = 1000


@dataclass(frozen=True)
class SearchRequest:
    """Search `prompt` from `seed` with `config`, sampling with `sampling`, scored by `verifier`."""

    prompt: str
    seed: int = 0
    config: SearchConfig = field(default_factory=SearchConfig)
    sampling: SamplingParams = field(default_factory=SamplingParams)
    verifier: str = "shapes-clip"

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ValueError("prompt must be a non-empty string")
        if len(self.prompt) > MAX_PROMPT_CHARS:
            raise ValueError(f"prompt is {len(self.prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be an integer in [0, 2**63), got {self.seed!r}")
        if not isinstance(self.verifier, str) or not self.verifier:
            raise ValueError(f"verifier must be a registered verifier name, got {self.verifier!r}")

    def describe(self) -> dict[str, Any]:
        """JSON-ready description (the resolved config saved with every result)."""
        return asdict(self)


EventCallback = Callable[[int, dict], None]  # (request index, trace row): score and prune records as they happen


class SearchBackend(Protocol):
    """Runs requests and yields (request index, result) in completion order."""

    def run(
        self, requests: Sequence[SearchRequest], on_event: EventCallback | None = None
    ) -> Iterator[tuple[int, SearchResult]]: ...


class LocalBackend:
    """Runs requests one after another in this process, against one generator."""

    def __init__(self, generator: Generator, verifiers: Mapping[str, Verifier]) -> None:
        self.generator = generator
        self.verifiers = dict(verifiers)

    def run(
        self, requests: Sequence[SearchRequest], on_event: EventCallback | None = None
    ) -> Iterator[tuple[int, SearchResult]]:
        for i, request in enumerate(requests):
            if request.verifier not in self.verifiers:
                raise ValueError(f"verifier {request.verifier!r} is not loaded; loaded: {sorted(self.verifiers)}")
            events = None if on_event is None else (lambda row, i=i: on_event(i, row))
            yield (
                i,
                run_search(
                    self.generator,
                    self.verifiers[request.verifier],
                    request.prompt,
                    request.seed,
                    request.config,
                    request.sampling,
                    events,
                ),
            )
