"""Choose DiverseVAR's defaults in the shapes world, on TRAINING captions only.

The held-out evaluation prompts are never used here: captions come from world.sample_example
(the training distribution; held-out colour-shape pairs never appear), and request seeds and real
renders start at TUNING_SEED. Every setting of a stage sees the same captions, request seeds and
candidate paths as that stage's baseline, so settings differ only by their hooks.

  coarse:  placement x scales (the paper's two readings) x SSR b x SAR b2, with a = a2 = 1, rows "both",
           every block (or, given block subsets, each subset for placement "block");
  refine:  around the best coarse settings: b or b2 x 0.5 and x 1.5 (from 0: 0.15 and 0.05), a or a2
           +- 0.1, one CFG half only, one scale only;
  confirm: the best settings so far and the baseline again, on fresh and more captions.

A setting is admissible when its accuracy is within `tolerance` of its stage's baseline and its
Recall is higher. Settings are ranked admissible first, then by Vendi; the chosen defaults are
the best admissible setting of the confirm stage (none if no setting stays admissible there).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from torch import nn

from generators.diversevar import SCALE_READINGS, DiverseVARConfig, paper_scales
from generators.engine import InfinityEngine
from generators.sampling import SamplingParams
from generators.shapes import diversity_eval, world

TUNING_SEED = 10_000  # apart from the held-out evaluation's seed 0, as in benchmarks/tune_shapes_sampling.py


@dataclass(frozen=True)
class SweepSettings:
    """What the sweep measures; the coarse grid is the product of the four axes."""

    placements: tuple[str, ...] = ("block", "model")
    scales: tuple[tuple[int, ...], ...] | None = None  # None: both SCALE_READINGS carried to the schedule
    b: tuple[float, ...] = (0.0, 0.3, 1.0, 2.0)  # SSR exponents (relative: top singular value x e^-b)
    b2: tuple[float, ...] = (0.0, 0.1, 0.3)  # SAR exponents (top singular value x e^b2)
    blocks: tuple[tuple[int, ...] | None, ...] = (None,)  # block subsets for placement "block"; None = all
    refine: bool = True
    n_refined: int = 2  # best coarse settings whose neighbours are measured
    n_finalists: int = 3  # best settings so far measured again at the confirm stage
    n_captions: int = 24  # training captions for coarse and refine (categories take turns)
    n_confirm: int = 48  # fresh training captions for confirm
    n_samples: int = 16  # samples per caption, and real renders per caption
    tolerance: float = 0.02  # accuracy may drop at most this much below the baseline's
    seed: int = TUNING_SEED

    def __post_init__(self) -> None:
        if min(self.n_captions, self.n_confirm) < 1:
            raise ValueError(f"n_captions and n_confirm must be >= 1, got {self.n_captions}, {self.n_confirm}")
        if self.n_samples < diversity_eval.MIN_SAMPLES:
            raise ValueError(f"n_samples must be >= {diversity_eval.MIN_SAMPLES} for k-NN recall and coverage")
        if min(self.n_refined, self.n_finalists) < 1:
            raise ValueError("n_refined and n_finalists must be >= 1")
        axes = (self.placements, self.b, self.b2, self.blocks)
        if not all(axes) or (self.scales is not None and not self.scales):
            raise ValueError("every grid axis needs at least one value")
        if not set(self.placements) <= {"block", "model"}:
            raise ValueError(f"placements must be 'block' and/or 'model', got {self.placements}")
        if min(self.b + self.b2) < 0:
            raise ValueError(f"exponents must be >= 0 (SSR suppresses, SAR amplifies), got b={self.b}, b2={self.b2}")

    @classmethod
    def from_options(cls, **options: object) -> SweepSettings:
        """Settings from command-line values: None keeps the default; placements, b and b2 are
        comma-separated strings, scales and blocks like '1,2;2,3'."""
        given = {k: v for k, v in options.items() if v is not None}
        parsers = {"placements": lambda t: tuple(t.split(",")), "scales": parse_scale_sets, "b": parse_floats}
        parsers |= {"b2": parse_floats, "blocks": lambda t: parse_scale_sets(t) or (None,)}
        return cls(**{k: parsers[k](v) if k in parsers else v for k, v in given.items()})


def parse_floats(text: str) -> tuple[float, ...]:
    """'0,1,2.5' -> (0.0, 1.0, 2.5)."""
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"expected comma-separated numbers, got {text!r}") from None


def parse_scale_sets(text: str) -> tuple[tuple[int, ...], ...] | None:
    """'1,2;2,3' -> ((1, 2), (2, 3)); '' -> None (the default: the paper's readings, or every block)."""
    if not text.strip():
        return None
    try:
        return tuple(tuple(int(x) for x in part.split(",")) for part in text.split(";"))
    except ValueError:
        raise ValueError(f"expected index sets like '1,2;2,3', got {text!r}") from None


def training_captions(n: int, seed: int) -> list[str]:
    """n training captions, categories taking turns; captions may repeat (some categories have 3)."""
    rng = np.random.default_rng(seed)
    return [world.sample_example(rng, world.CATEGORIES[i % len(world.CATEGORIES)])[0] for i in range(n)]


def coarse_grid(settings: SweepSettings, num_scales: int) -> list[DiverseVARConfig]:
    scales = settings.scales or tuple(dict.fromkeys(paper_scales(num_scales, s) for s in SCALE_READINGS.values()))
    placed = [(pl, bl) for pl in settings.placements for bl in (settings.blocks if pl == "block" else (None,))]
    return [
        DiverseVARConfig(
            a=1.0, b=b, a2=1.0, b2=b2, scales=sc, placement=pl, blocks=bl, rows="both", relative_strength=True
        )
        for (pl, bl), sc, b, b2 in itertools.product(placed, scales, settings.b, settings.b2)
        if (b, b2) != (0.0, 0.0)  # the identity is the baseline
    ]


def checked_grid(settings: SweepSettings, engine: InfinityEngine) -> list[DiverseVARConfig]:
    """The coarse grid, refused (ValueError) before any measurement if a scale or block is not in the model."""
    grid = coarse_grid(settings, engine.schedule.num_scales)
    for config in grid:
        config.check(engine.schedule.num_scales, engine.model.cfg.depth)
    return grid


def refine_grid(config: DiverseVARConfig) -> list[DiverseVARConfig]:
    """Neighbours of one setting, one knob moved at a time (invalid or identity moves dropped)."""
    moves = [
        *({"b": b} for b in _nearby(config.b, 0.15)),
        *({"b2": b2} for b2 in _nearby(config.b2, 0.05)),
        *({"a": config.a + d} for d in (-0.1, 0.1)),
        *({"a2": config.a2 + d} for d in (-0.1, 0.1)),
        *({"rows": r} for r in ("cond", "uncond") if r != config.rows),
        *({"scales": (s,)} for s in config.scales if len(config.scales) > 1),
    ]
    out = []
    for move in moves:
        move = {k: round(v, 6) if isinstance(v, float) else v for k, v in move.items()}
        try:
            neighbour = replace(config, **move)
        except ValueError:  # e.g. a negative exponent
            continue
        if neighbour.ssr_on or neighbour.sar_on:
            out.append(neighbour)
    return out


def _nearby(value: float, first: float) -> tuple[float, ...]:
    """An exponent's neighbours: half and one and a half times it, or `first` from zero."""
    return (value / 2, value * 1.5) if value > 0 else (first,)


def label(config: DiverseVARConfig | None) -> str:
    if config is None:
        return "baseline"
    blocks = "" if config.blocks is None else f" blocks={','.join(map(str, config.blocks))}"
    return (
        f"{config.placement}{blocks} s{','.join(map(str, config.scales))} a={config.a:g} b={config.b:g} "
        f"a2={config.a2:g} b2={config.b2:g} rows={config.rows}"
    )


def _row(stage: str, config: DiverseVARConfig | None, metrics: dict, base: dict | None, tol: float) -> dict:
    fields = asdict(config) if config is not None else dict.fromkeys(asdict(DiverseVARConfig()))
    fields["scales"] = None if config is None else ",".join(map(str, config.scales))
    fields["blocks"] = None if config is None or config.blocks is None else ",".join(map(str, config.blocks))
    row = {"stage": stage, "setting": label(config), **fields, **metrics}
    base = base or metrics
    row |= {
        "vendi_ratio": metrics["vendi"] / base["vendi"],
        "accuracy_delta": metrics["accuracy"] - base["accuracy"],
        "recall_delta": metrics["recall"] - base["recall"],
    }
    row["admissible"] = bool(config is not None and row["accuracy_delta"] >= -tol - 1e-12 and row["recall_delta"] > 0)
    return row


def _rank(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: (not r["admissible"], -r["vendi"]))


class _Footing:
    """One caption set: its captions, request seeds, embedded real renders, and (once measured) baseline."""

    def __init__(self, engine, clip, sampling: SamplingParams, settings: SweepSettings, stage_idx: int) -> None:
        self.engine, self.clip, self.sampling, self.n_samples = engine, clip, sampling, settings.n_samples
        n = settings.n_confirm if stage_idx else settings.n_captions
        self.captions = training_captions(n, settings.seed + stage_idx)
        self.seed = settings.seed + 1000 * stage_idx  # request seeds and real renders
        self.real_PMD = diversity_eval.real_embeddings(clip, self.captions, settings.n_samples, self.seed)
        self.base: dict | None = None

    def measure(self, config: DiverseVARConfig | None) -> dict:
        sampling = replace(self.sampling, diversevar=config)
        return diversity_eval.measure(
            self.engine, self.clip, self.captions, self.n_samples, sampling, self.real_PMD, self.seed
        )


def run_sweep(
    engine: InfinityEngine,
    clip: nn.Module,
    settings: SweepSettings,
    sampling: SamplingParams,
    log: Callable[[str], None] = print,
) -> tuple[pd.DataFrame, dict]:
    """All stages; returns one row per (stage, setting) and a summary with the chosen defaults."""
    t_start = time.perf_counter()
    rows: list[dict] = []
    configs_of: dict[str, DiverseVARConfig] = {}

    def record(stage: str, footing: _Footing, config: DiverseVARConfig | None) -> dict:
        t0 = time.perf_counter()
        row = _row(stage, config, footing.measure(config), footing.base, settings.tolerance)
        row["wall_s"] = time.perf_counter() - t0
        rows.append(row)
        configs_of[row["setting"]] = config
        log(
            f"[{stage} {len(rows)}] {row['setting']}: vendi x{row['vendi_ratio']:.3f} "
            f"accuracy {row['accuracy_delta']:+.3f} recall {row['recall_delta']:+.3f} ({row['wall_s']:.0f} s)"
        )
        return row

    coarse = checked_grid(settings, engine)
    tune = _Footing(engine, clip, sampling, settings, 0)
    tune.base = record("coarse", tune, None)
    tuned = [record("coarse", tune, c) for c in coarse]
    if settings.refine:
        seeds = [configs_of[r["setting"]] for r in _rank(tuned)[: settings.n_refined]]
        nearby = {label(n): n for c in seeds for n in refine_grid(c) if label(n) not in configs_of}
        tuned += [record("refine", tune, c) for c in nearby.values()]
    confirm = _Footing(engine, clip, sampling, settings, 1)
    confirm.base = record("confirm", confirm, None)
    confirmed = [record("confirm", confirm, configs_of[r["setting"]]) for r in _rank(tuned)[: settings.n_finalists]]
    best = _rank(confirmed)[0]
    summary = {
        "chosen": asdict(configs_of[best["setting"]]) if best["admissible"] else None,
        "chosen_confirm": best if best["admissible"] else None,
        "best_confirmed_setting": best["setting"],
        "baseline": {"tune": tune.base, "confirm": confirm.base},
        "settings": asdict(settings),
        "sampling": repr(sampling),
        "readings": {k: paper_scales(engine.schedule.num_scales, v) for k, v in SCALE_READINGS.items()},
        "n_settings_measured": len(rows) - 2,
        "wall_s": round(time.perf_counter() - t_start, 1),
    }
    return pd.DataFrame(rows), summary


def plot(df: pd.DataFrame, summary: dict, path: Path) -> None:
    """Vendi (as a multiple of the stage's baseline) against accuracy change, every setting measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    tol = summary["settings"]["tolerance"]
    markers = {"coarse": "o", "refine": "s", "confirm": "D"}
    colours = {"block": "tab:blue", "model": "tab:orange"}
    for (stage, placement), g in df[df["placement"].notna()].groupby(["stage", "placement"]):
        ax.scatter(
            g["accuracy_delta"], g["vendi_ratio"], marker=markers[stage], edgecolors=colours[placement],
            facecolors=[colours[placement] if ok else "none" for ok in g["admissible"]], label=f"{stage}, {placement}",
        )  # fmt: skip
    ax.scatter([0], [1], marker="*", s=200, color="black", label="baseline")
    if summary["chosen_confirm"] is not None:
        c = summary["chosen_confirm"]
        ax.scatter([c["accuracy_delta"]], [c["vendi_ratio"]], marker="*", s=300, color="red", label="chosen (confirm)")
    ax.axvline(-tol, color="green", linestyle="--", linewidth=1)
    ax.axhline(1.2, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("accuracy - baseline accuracy (evaluator, training captions)")
    ax.set_ylabel("Vendi / baseline Vendi (tiny-CLIP embeddings)")
    ax.set_title(
        "DiverseVAR sweep, shapes world, training captions\n"
        f"filled: admissible (accuracy within {tol:g} of the baseline's, Recall higher)",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    for handle in ax.legend(fontsize=8).legend_handles:  # hollow points are not admissible; the key shows colour
        handle.set_facecolor(handle.get_edgecolor())
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


ROW_COLUMNS = ("stage", "setting", *diversity_eval.METRICS, "vendi_ratio", "accuracy_delta", "recall_delta")


def write(df: pd.DataFrame, summary: dict, out: Path) -> None:
    """sweep.parquet (one row per stage and setting), sweep.png, and sweep.json: the summary plus
    every row's main columns, so the JSON alone backs the documented choice."""
    out.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out / "sweep.parquet")
    plot(df, summary, out / "sweep.png")
    rows = df[[*ROW_COLUMNS, "admissible"]].round(4).to_dict("records")
    (out / "sweep.json").write_text(json.dumps({**summary, "rows": rows}, indent=2) + "\n")
