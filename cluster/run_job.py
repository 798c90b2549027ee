"""`varsearch run`: search every (prompt, seed) of a config and write images, records and the config.

Outputs in `out`: one PNG per search (0000.png, ...), record.json (per search: score, path,
totals, the evaluator's verdict in the shapes world), trace.parquet (every score and prune
event) and config.yaml (the resolved config).
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from cluster import records
from cluster.config import ConfigError, RunConfig, apply_overrides, dump_config, load_config, merge_overrides, parse_set
from search.context import flat_trace, path_str
from search.request import SearchBackend

if TYPE_CHECKING:
    import typer

# run's options -> the config key each overrides when given on the command line (and how)
RUN_FLAGS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "seed": ("seeds", lambda seed: [seed]),
    "method": ("search.method", str),
    "budget": ("search.budget_nfe", int),
    "cfg": ("sampling.cfg", float),
    "tau": ("sampling.tau", float),
    "transformer": ("model.transformer", str),
    "vae": ("model.vae", str),
    "t5": ("model.t5", str),
    "model_config": ("model.preset", str),
    "vae_config": ("model.vae_preset", str),
    "aspect_ratio": ("model.aspect_ratio", float),
    "pixel_budget": ("model.pixel_budget", str),
    "device": ("model.device", str),
    "dtype": ("model.dtype", str),
    "diversevar": ("diversity.enabled", bool),
}


def typed_flags(ctx: typer.Context, flags: Mapping[str, tuple[str, Callable[[Any], Any]]]) -> dict[str, Any]:
    """{config key: value} for the flags the user typed; a flag left at its default overrides nothing."""
    # by name: typer vendors its own click, so its ParameterSource is not click's
    given = {name for name in flags if getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE"}
    return {key: convert(ctx.params[name]) for name, (key, convert) in flags.items() if name in given}


def load_run_config(
    recipe: str | None, ctx: typer.Context, set_items: list[str], prompts: list[str], prompts_given: bool
) -> RunConfig:
    """The recipe (or the defaults), then typed flags and --set overrides; `prompts` if none are set."""
    overrides = merge_overrides(typed_flags(ctx, RUN_FLAGS), parse_set(set_items))
    if prompts_given:
        overrides = merge_overrides(overrides, {"prompts": prompts})
    config = load_config(recipe, overrides)
    return config if config.prompts else apply_overrides(config, {"prompts": prompts})


def run_config(config: RunConfig, out: Path, backend: SearchBackend | None = None) -> dict[str, Any]:
    """Run `config.resolve()` through `backend` (in-process by default); returns what record.json holds."""
    if config.study is not None:
        raise ConfigError("this config has a study section: run it with `varsearch study SPEC --out DIR`")
    requests = config.resolve()
    if backend is None:
        from cluster.build import local_backend

        backend = local_backend(config)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(config, out / "config.yaml")
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = [{} for _ in requests]
    traces = []
    for i, result in backend.run(requests):
        name = f"{i:04d}.png"
        records.save_png(result.image, out / name)
        results[i] = {
            "prompt": result.prompt,
            "seed": result.seed,
            "image": name,
            "verifier_score": result.score,
            "path": path_str(result.path),
            "params": result.params,
            "totals": result.totals,
            "judged_correct": records.judge(config.model.world, result.image, result.prompt),
            "wall_s": round(result.wall_s, 3),
        }
        traces += flat_trace(result.trace, search=i, prompt=result.prompt, seed=result.seed)
    pd.DataFrame(traces).to_parquet(out / "trace.parquet")
    record = {
        "config": "config.yaml",
        "results": results,
        "totals": {k: sum(r["totals"][k] for r in results) for k in records.TOTALS},
        "wall_s": round(time.perf_counter() - t0, 3),
        "torch": torch.__version__,
        "host": platform.node(),
    }
    (out / "record.json").write_text(json.dumps(record, indent=2))
    return record
