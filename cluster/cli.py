"""The `varsearch` command line.

`run` decodes prompts with Infinity (official checkpoints from local paths, or a tiny random
model for a smoke test) and writes PNGs plus a JSON record of what ran. The other commands
are the surface later work fills in; until then they say so and exit with status 2.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Inference-time search over Infinity VAR models.")
shapes_app = typer.Typer(no_args_is_help=True, help="The shapes world: dataset, training and evaluation.")
app.add_typer(shapes_app, name="shapes")

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever downloaded at run time


def _not_yet(command: str) -> None:
    typer.echo(f"varsearch {command}: not available yet in this version (see the README's roadmap).", err=True)
    raise typer.Exit(2)


@app.command()
def run(
    prompt: Annotated[list[str] | None, typer.Option("--prompt", "-p", help="Prompt; repeat for several.")] = None,
    prompt_file: Annotated[Path | None, typer.Option(help="Text file with one prompt per line.")] = None,
    seed: Annotated[int, typer.Option(help="Request seed (prompt i of the file uses seed + i).")] = 0,
    method: Annotated[str, typer.Option(help="base | random | gto | beam | partial_beam")] = "beam",
    budget: Annotated[int, typer.Option(min=1, max=1_000_000, help="NFE budget per prompt.")] = 84,
    samples: Annotated[int, typer.Option(min=1, max=256, help="Official models: images per prompt.")] = 1,
    cfg: Annotated[float | None, typer.Option(help="Guidance scale (default: the model's).")] = None,
    tau: Annotated[float | None, typer.Option(min=1e-3, help="Sampling temperature (default: the model's).")] = None,
    transformer: Annotated[Path | None, typer.Option(help="Infinity checkpoint (.pth or sharded dir).")] = None,
    vae: Annotated[Path | None, typer.Option(help="VAE checkpoint, e.g. infinity_vae_d32reg.pth.")] = None,
    t5: Annotated[Path | None, typer.Option(help="Local Flan-T5-XL directory.")] = None,
    model_config: Annotated[str, typer.Option(help="infinity-2b | infinity-8b | infinity-125m")] = "infinity-2b",
    vae_config: Annotated[str, typer.Option(help="vae-d32 | vae-d56-patchify | vae-d16")] = "vae-d32",
    aspect_ratio: Annotated[float, typer.Option(help="Image height / width (snapped to a template).")] = 1.0,
    pixel_budget: Annotated[str, typer.Option(help="0.06M | 0.25M | 0.60M | 1M")] = "1M",
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, ...")] = "cpu",
    dtype: Annotated[str, typer.Option(help="Block dtype: float32 | bfloat16 | float16")] = "float32",
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("outputs/run"),
) -> None:
    """Search the shapes world (default), or sample an official Infinity model from local files.

    Shapes world: each prompt gets a `--method` search within `--budget` NFEs, scored by the
    tiny-CLIP verifier; the best image, a JSON record and the search trace (Parquet) are written.
    With --transformer/--vae/--t5: plain sampling of `--samples` images per prompt.
    """
    from generators.sampling import SamplingParams

    prompts = _read_prompts(prompt, prompt_file)
    official = [transformer, vae, t5]
    if any(official) and not all(official):
        raise typer.BadParameter("official weights need all of --transformer, --vae and --t5")
    out.mkdir(parents=True, exist_ok=True)
    if all(official):
        from generators.loading import official_engine
        from generators.schedules import get_schedule
        from generators.text_encoder import T5TextEncoder

        params = SamplingParams(cfg=3.0 if cfg is None else cfg, tau=0.5 if tau is None else tau)
        engine = official_engine(
            transformer, vae, T5TextEncoder.from_pretrained(t5, device=device), model_config, vae_config,
            get_schedule(aspect_ratio, pixel_budget), device, dtype,
        )  # fmt: skip
        _sample_official(engine, prompts, samples, seed, params, out, f"{model_config} from {transformer}")
        return
    from cluster.search_job import search_shapes_world

    record = search_shapes_world(prompts, seed, method, budget, cfg, tau, out)
    typer.echo(f"{len(prompts)} prompt(s), {record['totals']['nfe']} NFEs, {record['wall_s']:.1f} s -> {out}/")


def _sample_official(engine, prompts, samples, seed, params, out: Path, model_desc: str) -> None:
    import torch

    batch_prompts = [p for p in prompts for _ in range(samples)]
    paths = [(i,) for i in range(len(batch_prompts))]
    t0 = time.perf_counter()
    batch, cost = engine.advance(engine.start(batch_prompts, [seed] * len(batch_prompts), params, paths))
    files = _save_pngs(engine.decode(batch), out)
    record = {
        "model": model_desc,
        "prompts": batch_prompts,
        "seed": seed,
        "paths": paths,
        "sampling": repr(params),
        "schedule": [list(s) for s in engine.schedule.scales],
        "nfe": cost.nfe,
        "tokens": cost.tokens,
        "wall_s": round(time.perf_counter() - t0, 3),
        "images": files,
        "torch": torch.__version__,
        "host": platform.node(),
    }
    (out / "record.json").write_text(json.dumps(record, indent=2))
    typer.echo(f"{len(files)} images, {cost.nfe} NFEs -> {out}/")


def _read_prompts(prompt: list[str] | None, prompt_file: Path | None) -> list[str]:
    prompts = list(prompt or [])
    if prompt_file is not None:
        try:
            prompts += [line.strip() for line in prompt_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as err:
            raise typer.BadParameter(f"cannot read prompt file {prompt_file}: {err}") from err
    if not prompts:
        prompts = ["a red circle and a blue square", "two triangles", "a square left of a circle"]
    for p in prompts:
        if not p.strip():
            raise typer.BadParameter("prompts must not be empty")
        if len(p) > 2000:
            raise typer.BadParameter(f"prompt of {len(p)} characters is longer than 2000")
    return prompts


def _save_pngs(images, out: Path) -> list[str]:
    from PIL import Image

    names = []
    for i, img in enumerate(images):
        name = f"{i:04d}.png"
        Image.fromarray(img).save(out / name)
        names.append(name)
    return names


@app.command()
def study() -> None:
    """Run a best-of-N study (prompt suite x methods x budgets x seeds) into Parquet."""
    _not_yet("study")


@app.command()
def report() -> None:
    """Tables and plots from a study's Parquet files."""
    _not_yet("report")


@app.command()
def serve() -> None:
    """Start the Ray Serve HTTP endpoint (127.0.0.1 by default)."""
    _not_yet("serve")


@app.command()
def submit() -> None:
    """Submit a run or study as a Ray Job to a cluster."""
    _not_yet("submit")


@shapes_app.command("train")
def shapes_train(
    stage: Annotated[str, typer.Option(help="vae | infinity | clip | all (in that order)")] = "all",
    steps: Annotated[int | None, typer.Option(min=1, help="Steps for the stage (default: its recipe).")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Batch size (default: the stage's).")] = None,
    minutes: Annotated[float | None, typer.Option(min=0.1, help="Stop resumably after this many minutes.")] = None,
    weights_dir: Annotated[Path | None, typer.Option(help="Where finished weights go (default: shipped).")] = None,
    checkpoint_dir: Annotated[Path, typer.Option(help="Resumable training state.")] = Path("checkpoints/shapes"),
) -> None:
    """Train the shapes-world tokenizer, transformer and tiny CLIP; rerun the same command to resume."""
    from dataclasses import replace

    from generators.shapes import train
    from generators.shapes.model import WEIGHTS_DIR

    stages = ["vae", "infinity", "clip"] if stage == "all" else [stage]
    if any(s not in train.DEFAULTS for s in stages):
        raise typer.BadParameter(f"unknown stage {stage!r}; choose vae, infinity, clip or all")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # shared cores: don't spin
    for name in stages:
        cfg = train.DEFAULTS[name]
        cfg = replace(cfg, steps=steps or cfg.steps, batch_size=batch_size or cfg.batch_size, max_minutes=minutes)
        finished = train.STAGES[name](cfg, weights_dir or WEIGHTS_DIR, checkpoint_dir)
        if not finished:
            raise typer.Exit(3)


@shapes_app.command("export")
def shapes_export(
    weights_dir: Annotated[Path | None, typer.Option(help="Where the weights go (default: shipped).")] = None,
    checkpoint_dir: Annotated[Path, typer.Option(help="Resumable training state.")] = Path("checkpoints/shapes"),
) -> None:
    """Ship the transformer from an unfinished training run's checkpoint (records the step reached)."""
    from generators.shapes import train
    from generators.shapes.model import WEIGHTS_DIR

    step = train.export_infinity(weights_dir or WEIGHTS_DIR, checkpoint_dir)
    typer.echo(f"exported the transformer at step {step}")


@shapes_app.command("evaluate")
def shapes_evaluate(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    n_per_category: Annotated[int, typer.Option(min=1, help="Held-out prompts per category.")] = 100,
    seed: Annotated[int, typer.Option(help="Sampling and ground-truth seed.")] = 0,
    weights_dir: Annotated[Path | None, typer.Option(help="Weights to evaluate (default: shipped).")] = None,
    record: Annotated[bool, typer.Option(help="Also store the report in the weights' manifest.json.")] = False,
) -> None:
    """Judge the shipped models on held-out prompts with the evaluator (see the README's bar)."""
    from generators.shapes import evaluate, model

    wdir = weights_dir or model.WEIGHTS_DIR
    prompts = evaluate.eval_prompt_list(n_per_category, seed)
    engine = model.load_engine(wdir)
    clip, clip_tokenizer = model.load_clip(wdir)
    base = evaluate.generation_report(engine, prompts, seed=seed)
    report = {
        "base": {**base["per_category"], "overall": base["overall"]},
        "clip_caption_accuracy": evaluate.clip_caption_accuracy(clip, clip_tokenizer, prompts, seed),
        "tokenizer_accuracy": evaluate.tokenizer_accuracy(engine.vae, prompts, seed),
        "n_images": base["n_images"],
        "sampling": repr(evaluate.DEFAULT_SAMPLING),
    }
    if record:
        model.write_manifest({"evaluation": {**report, "command": "varsearch shapes evaluate --json"}}, wdir)
    typer.echo(json.dumps(report, indent=2) if as_json else _format_report(report))


def _format_report(report: dict) -> str:
    lines = [f"{k:>16}: {v:.3f}" for k, v in report["base"].items()]
    lines += [
        f"clip caption acc: {report['clip_caption_accuracy']:.3f}",
        f"tokenizer acc: {report['tokenizer_accuracy']:.3f}",
    ]
    return "\n".join(lines)


@shapes_app.command("curve")
def shapes_curve(
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    n_per_category: Annotated[int, typer.Option(min=1, help="Held-out prompts per category.")] = 20,
    methods: Annotated[str, typer.Option(help="Comma-separated methods.")] = "base,random,gto,beam,partial_beam",
    slots: Annotated[str, typer.Option(help="Budgets as multiples of K(K+1)/2 NFEs, comma-separated.")] = "2,4,8,16",
    seed: Annotated[int, typer.Option(help="Prompt i uses request seed seed+i.")] = 0,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("outputs/curve"),
) -> None:
    """Accuracy (held-out evaluator) and verifier score (tiny CLIP) against NFEs for every method."""
    from cluster import curve
    from cluster.verifiers import register_shapes_verifiers
    from generators.shapes import evaluate, evaluator, model, world
    from verifiers.registry import load_verifier

    register_shapes_verifiers()
    engine = model.load_engine()
    prompts = world.eval_prompts(n_per_category, seed)
    budgets = curve.budget_ladder(engine.schedule.num_scales, tuple(int(x) for x in slots.split(",")))
    df = curve.run_curve(
        engine,
        load_verifier("shapes-clip"),
        evaluator.judge,
        prompts,
        evaluate.DEFAULT_SAMPLING,
        tuple(m.strip() for m in methods.split(",")),
        budgets,
        seed,
    )
    out.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out / "curve.parquet")
    summary = curve.summarize(df)
    curve.plot(summary, out / "curve.png")
    has_bar_methods = {"beam", "random", "base"} <= set(summary)
    report = {"methods": summary, "bar": curve.check_bar(summary) if has_bar_methods else None}
    (out / "curve.json").write_text(json.dumps(report, indent=2))
    typer.echo(json.dumps(report, indent=2) if as_json else f"wrote {out}/curve.parquet, curve.png, curve.json")


@shapes_app.command("grid")
def shapes_grid(
    out: Annotated[Path, typer.Option(help="PNG file to write.")] = Path("outputs/shapes_grid.png"),
    prompts_per_category: Annotated[int, typer.Option(min=1, max=8)] = 2,
    samples: Annotated[int, typer.Option(min=1, max=8, help="Samples per prompt.")] = 4,
    seed: Annotated[int, typer.Option()] = 0,
    weights_dir: Annotated[Path | None, typer.Option()] = None,
) -> None:
    """A PNG grid of samples: one row per prompt, grouped by category, captions on the left."""
    from generators.shapes import evaluate, grid, model, world

    engine = model.load_engine(weights_dir or model.WEIGHTS_DIR)
    rows = [(c, p) for c in world.CATEGORIES for p in world.eval_suite(c, prompts_per_category, seed)]
    prompts = [p for _, p in rows for _ in range(samples)]
    images = evaluate.sample_images(engine, prompts, seed=seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save_grid(images.reshape(len(rows), samples, *images.shape[1:]), [p for _, p in rows], out)
    typer.echo(f"wrote {out}")


@app.command("verifiers")
def list_verifiers_command(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List the registered verifiers: version, score definition and the files each needs."""
    from cluster.verifiers import register_shapes_verifiers
    from verifiers.registry import list_verifiers

    register_shapes_verifiers()
    infos = [info.to_dict() for info in list_verifiers()]
    if as_json:
        typer.echo(json.dumps(infos, indent=2))
        return
    for info in infos:
        typer.echo(f"{info['name']}{' (judge)' if info['is_judge'] else ''}: {info['score_definition']}")
        typer.echo(f"    files: {'; '.join(info['files_needed']) or 'none'}")


if __name__ == "__main__":
    app()
