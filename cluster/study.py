"""Best-of-N studies: a prompt suite x methods x budgets x seeds x verifiers x DiverseVAR on/off.

`expand` turns a config with a `study` section into one `StudyRow` per search, each with a row id
derived from every axis. `run_study` runs the rows not yet written through any `SearchBackend`
(in-process by default; the Ray backend plugs in through the same protocol) and commits the
results in parts (cluster/study_store.py), so a killed study resumes where it stopped when the
same command is run again, without losing or repeating rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cluster import records
from cluster.config import SHAPES_SUITE, ConfigError, RunConfig, read_prompt_file
from cluster.study_store import open_store
from search.request import SearchBackend, SearchRequest


@dataclass(frozen=True)
class StudyRow:
    """One search of a study."""

    row_id: str  # every axis, e.g. p00003_beam_n84_s0_shapes-clip_dv0 (prompt 3, 84 NFEs, DiverseVAR off)
    prompt_id: int
    category: str | None  # shapes-grammar category, None outside the grammar
    diversity: bool
    request: SearchRequest

    def keys(self) -> dict[str, Any]:
        """The key columns every record of this search carries."""
        return {
            "row_id": self.row_id,
            "prompt_id": self.prompt_id,
            "method": self.request.config.method,
            "budget_nfe": self.request.config.budget.nfe,
            "seed": self.request.seed,
            "verifier": self.request.verifier,
            "diversity": self.diversity,
            "category": self.category,
            "prompt": self.request.prompt,
        }


def load_suite(spec: str) -> list[tuple[str | None, str]]:
    """(category, prompt) pairs of a suite: shapes:heldout:N (N per category), or a text file, one a line."""
    match = SHAPES_SUITE.fullmatch(spec)
    if match:
        from generators.shapes import world

        return world.eval_prompts(int(match.group(1)), seed=0)
    try:
        prompts = read_prompt_file(spec)
    except ValueError as err:
        raise ConfigError(f"study.prompts: {err}") from None
    return [(records.category(p), p) for p in prompts]


def expand(config: RunConfig) -> list[StudyRow]:
    """Every search of the study, in a fixed order; the row ids are unique and stable across runs."""
    if config.study is None or config.study.prompts is None:
        raise ConfigError("a study needs study.prompts: a prompt file or shapes:heldout:N (pass --prompts)")
    suite = load_suite(config.study.prompts)
    rows = []
    for method, budget in config.method_budgets():
        search = config.search.to_search_config(method, budget)
        cost = f"n{budget}" if budget is not None else f"v{search.budget.verifier_calls}"  # NFEs or verifier calls
        for verifier in config.axes()["verifiers"]:
            for diversity in config.axes()["diversity"]:
                sampling = config.sampling_params(diversity)
                for seed in config.seeds:
                    for prompt_id, (category, prompt) in enumerate(suite):
                        row_id = f"p{prompt_id:05d}_{method}_{cost}_s{seed}_{verifier}_dv{int(diversity)}"
                        request = SearchRequest(prompt, seed, search, sampling, verifier)
                        rows.append(StudyRow(row_id, prompt_id, category, diversity, request))
    return rows


def run_study(
    config: RunConfig,
    out: Path,
    backend: SearchBackend | None = None,
    part_size: int = 8,
    progress: bool = True,
) -> dict[str, int]:
    """Run the searches of `config` not yet in `out`, committing a part every `part_size` results.

    backend: None builds the in-process LocalBackend (only if something is left to run).
    Returns counts: searches in the study, already done before this call, run now, parts written.
    """
    if part_size < 1:
        raise ValueError(f"part_size must be >= 1, got {part_size}")
    rows = expand(config)
    with open_store(out, config) as store:
        _check_same_suite(rows, store.done_prompts())
        todo = [r for r in rows if r.row_id not in store.done_ids]
        summary = {"searches": len(rows), "already_done": len(rows) - len(todo), "ran": 0, "parts": 0}
        if not todo:
            return summary
        if backend is None:
            from cluster.build import local_backend

            backend = local_backend(config)
        searches: list[dict] = []
        candidates: list[dict] = []

        def commit() -> None:
            if searches:
                store.write_part(searches, candidates)
                summary["parts"] += 1
                searches.clear()
                candidates.clear()

        bar = tqdm(total=len(rows), initial=summary["already_done"], desc="study", unit="search", disable=not progress)
        try:
            for i, result in backend.run([r.request for r in todo]):
                row = todo[i]
                path, ref = store.image_path(row.row_id)
                records.save_png(result.image, path)
                correct = records.judge(config.model.world, result.image, row.request.prompt)
                searches.append(records.search_record(row.keys(), result, ref, correct))
                candidates.extend(records.candidate_records(row.keys(), result))
                summary["ran"] += 1
                bar.update()
                if len(searches) >= part_size:
                    commit()
        finally:  # keep what finished, also when the backend fails or the user interrupts
            commit()
            bar.close()
    return summary


def _check_same_suite(rows: list[StudyRow], done: dict[str, str]) -> None:
    prompts = {r.row_id: r.request.prompt for r in rows}
    changed = [i for i, p in done.items() if i in prompts and prompts[i] != p]
    if changed:
        raise ConfigError(
            f"the prompt suite changed since rows were written ({changed[0]} was {done[changed[0]]!r}, now "
            f"{prompts[changed[0]]!r}); resume with the same prompts or pass another --out"
        )
