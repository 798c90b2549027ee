"""A small real study of the shapes world, for the tests of the study viewer's API and page."""

from __future__ import annotations

from pathlib import Path

from cluster.config import load_config, parse_set
from cluster.study import run_study

PROMPTS = ("a red circle", "two squares")


def make_study(
    out: Path,
    prompts: tuple[str, ...] = PROMPTS,
    methods: str = "[base, random]",
    budgets: str = "[12, 24]",
    seeds: str = "[0, 1]",
) -> Path:
    """Run `varsearch study shapes-beam` in-process into `out` (the defaults: 12 searches, ~0.1 s each)."""
    prompt_file = out.parent / f".{out.name}-prompts.txt"
    prompt_file.write_text("\n".join(prompts) + "\n")
    overrides = parse_set([f"study.methods={methods}", f"study.budgets={budgets}", f"seeds={seeds}"])
    run_study(load_config("shapes-beam", {**overrides, "study.prompts": str(prompt_file)}), out, progress=False)
    return out
