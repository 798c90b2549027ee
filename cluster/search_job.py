"""The default job: search the shapes world for each prompt and write images plus records."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch
from PIL import Image

from cluster.verifiers import register_shapes_verifiers
from generators.shapes import evaluate, evaluator, model
from search.budget import Budget
from search.context import flat_trace
from search.run import SearchConfig, run_search
from verifiers.registry import load_verifier


def search_shapes_world(
    prompts: list[str], seed: int, method: str, budget: int, cfg: float | None, tau: float | None, out: Path
) -> dict:
    """Run one search per prompt (prompt i with seed + i); returns the record also written to record.json."""
    register_shapes_verifiers()
    engine = model.load_engine()
    verifier = load_verifier("shapes-clip")
    sampling = evaluate.DEFAULT_SAMPLING
    sampling = replace(sampling, cfg=sampling.cfg if cfg is None else cfg, tau=sampling.tau if tau is None else tau)
    config = SearchConfig(method=method, budget=Budget(nfe=budget))
    t0 = time.perf_counter()
    results, traces = [], []
    for i, prompt in enumerate(prompts):
        result = run_search(engine, verifier, prompt, seed + i, config, sampling)
        name = f"{i:04d}.png"
        Image.fromarray(result.image).save(out / name)
        judged = evaluator.judge(result.image, prompt) if _in_grammar(prompt) else None
        results.append(
            {
                "prompt": prompt,
                "seed": seed + i,
                "image": name,
                "verifier_score": result.score,
                "path": list(result.path),
                "params": result.params,
                "totals": result.totals,
                "judged_correct": judged,
                "wall_s": round(result.wall_s, 3),
            }
        )
        traces += flat_trace(result.trace, prompt_id=i, prompt=prompt)
    pd.DataFrame(traces).to_parquet(out / "trace.parquet")
    totals = {k: sum(r["totals"][k] for r in results) for k in results[0]["totals"]}
    record = {
        "world": "shapes",
        "method": method,
        "budget_nfe": budget,
        "verifier": "shapes-clip",
        "sampling": repr(sampling),
        "config": repr(config),
        "results": results,
        "totals": totals,
        "wall_s": round(time.perf_counter() - t0, 3),
        "torch": torch.__version__,
        "host": platform.node(),
    }
    (out / "record.json").write_text(json.dumps(record, indent=2))
    return record


def _in_grammar(prompt: str) -> bool:
    from generators.shapes import world

    try:
        world.parse_prompt(prompt)
    except ValueError:
        return False
    return True
