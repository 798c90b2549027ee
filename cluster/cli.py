"""The `varsearch` command line.

`run` decodes prompts with Infinity (official checkpoints from local paths, or a tiny random
model for a smoke test) and writes PNGs plus a JSON record of what ran. The other commands
are the surface later work fills in; until then they say so and exit with status 2.
"""

from __future__ import annotations

import contextlib
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


def _checked_device(device: str) -> str:
    """--device of the shapes commands (which run their models here), refused before any model loads."""
    from generators.shapes.evaluate import check_device

    try:
        check_device(device)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    return device


@contextlib.contextmanager
def _weights_error(param_hint: str = "--weights-dir", errors: tuple[type[Exception], ...] = ()):
    """A missing, unreadable or mismatched weights file is a usage error naming it, not a traceback."""
    from generators.checkpoint import CheckpointError

    try:
        yield
    except (CheckpointError, *errors) as err:
        raise typer.BadParameter(str(err), param_hint=param_hint) from err


DeviceOption = Annotated[str, typer.Option(help="cpu, cuda or cuda:N.", callback=_checked_device)]


@app.command()
def run(
    ctx: typer.Context,
    prompt: Annotated[list[str] | None, typer.Option("--prompt", "-p", help="Prompt; repeat for several.")] = None,
    prompt_file: Annotated[Path | None, typer.Option(help="Text file with one prompt per line.")] = None,
    recipe: Annotated[str | None, typer.Option(help="Recipe YAML, or a name in cluster/recipes.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="KEY=VALUE config override; repeatable.")] = None,
    seed: Annotated[int, typer.Option(help="Request seed, the same for every prompt.")] = 0,
    method: Annotated[str, typer.Option(help="base | random | gto | beam | partial_beam; beats the recipe.")] = "beam",
    budget: Annotated[int, typer.Option(min=1, max=1_000_000, help="NFE budget per search; beats the recipe.")] = 84,
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
    # Not checked here: on a cluster the driver may have no GPU while the replicas do.
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, ...")] = "cpu",
    dtype: Annotated[str, typer.Option(help="Block dtype: float32 | bfloat16 | float16")] = "float32",
    diversevar: Annotated[
        bool, typer.Option("--diversevar/--no-diversevar", help="Propose candidates with DiverseVAR's SSR/SAR hooks.")
    ] = False,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("outputs/run"),
    backend: Annotated[str, typer.Option(help=BACKEND_HELP)] = "ray",
    address: Annotated[str | None, typer.Option(help=ADDRESS_HELP)] = None,
) -> None:
    """Search each prompt as a recipe says (default: the shapes world), or sample Infinity from local files.

    A recipe sets the config; the flags you type, then --set KEY=VALUE, override it (e.g. --set
    search.beam_width=2). Each prompt gets a search; the best image, a JSON record, the trace
    (Parquet) and the resolved config.yaml are written. Without --recipe, --transformer/--vae/--t5
    sample `--samples` plain images per prompt.
    """
    from generators.sampling import SamplingParams

    prompts = _read_prompts(prompt, prompt_file)
    official = [transformer, vae, t5]
    if any(official) and not all(official) and recipe is None:
        raise typer.BadParameter("official weights need all of --transformer, --vae and --t5")
    out.mkdir(parents=True, exist_ok=True)
    if all(official) and recipe is None:
        from generators.diversevar import DiverseVARConfig
        from generators.loading import official_engine
        from generators.schedules import get_schedule
        from generators.text_encoder import T5TextEncoder

        schedule = get_schedule(aspect_ratio, pixel_budget)
        hooks = DiverseVARConfig.for_schedule(schedule.num_scales) if diversevar else None
        params = SamplingParams(cfg=3.0 if cfg is None else cfg, tau=0.5 if tau is None else tau, diversevar=hooks)
        # Every path, name and file here is the user's: a bad one is a usage error (exit 2).
        with _weights_error("--transformer/--vae/--t5/--model-config/--dtype", (ValueError, OSError)):
            engine = official_engine(
                transformer, vae, T5TextEncoder.from_pretrained(t5, device=device), model_config, vae_config,
                schedule, device, dtype,
            )  # fmt: skip
        _sample_official(engine, prompts, samples, seed, params, out, f"{model_config} from {transformer}")
        return
    from cluster import run_job
    from cluster.config import ConfigError

    try:
        config = run_job.load_run_config(recipe, ctx, set_ or [], prompts, bool(prompt or prompt_file))
        with _backend(config, backend, address) as search_backend:
            record = run_job.run_config(config, out, search_backend)
    except ConfigError as err:
        raise typer.BadParameter(str(err)) from err
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


BACKEND_HELP = "ray: replicas and a search coordinator on a Ray cluster; local: everything in this process."
ADDRESS_HELP = "A running Ray cluster to use (default with --backend ray: a private one on 127.0.0.1)."


@contextlib.contextmanager
def _backend(config, kind: str, address: str | None):
    """The backend for `run` / `study`; a Ray instance started here is shut down afterwards."""
    from cluster.build import make_backend

    if kind not in ("ray", "local"):
        raise typer.BadParameter(f"unknown backend {kind!r}; choose ray or local", param_hint="--backend")
    import ray

    started_ray = kind == "ray" and not ray.is_initialized()
    try:
        try:
            search_backend = make_backend(config, kind, address)
        except ValueError as err:
            raise typer.BadParameter(str(err)) from err
        yield search_backend
    finally:
        if started_ray:
            ray.shutdown()


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
def study(
    spec: Annotated[str, typer.Argument(help="Recipe or study spec: a YAML file or a name in cluster/recipes.")],
    out: Annotated[Path, typer.Option(help="Study folder; run the same command again to resume.")],
    prompts: Annotated[str | None, typer.Option(help="Prompt file or shapes:heldout:N (sets study.prompts).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="KEY=VALUE config override; repeatable.")] = None,
    part_size: Annotated[int, typer.Option(min=1, help="Searches per Parquet part (a kill loses fewer).")] = 8,
    backend: Annotated[str, typer.Option(help=BACKEND_HELP)] = "ray",
    address: Annotated[str | None, typer.Option(help=ADDRESS_HELP)] = None,
) -> None:
    """Run a study (prompts x methods x budgets x seeds x verifiers x DiverseVAR) into Parquet; resumable."""
    from cluster.config import ConfigError, load_config, merge_overrides, parse_set
    from cluster.study import run_study

    try:
        overrides = merge_overrides(parse_set(set_ or []), {"study.prompts": prompts} if prompts else {})
        config = load_config(spec, overrides)
        with _backend(config, backend, address) as search_backend:
            summary = run_study(config, out, search_backend, part_size=part_size)
    except ConfigError as err:
        raise typer.BadParameter(str(err)) from err
    typer.echo(f"{summary['ran']} searches run, {summary['already_done']} already done -> {out}/ (varsearch report)")


@app.command()
def report(
    study_dir: Annotated[Path, typer.Argument(metavar="DIR", help="A study folder (varsearch study --out DIR).")],
) -> None:
    """Print a study's Markdown table; write DIR/report/ (report.md, score_vs_nfe.png, winners.png)."""
    from cluster.report import write_report
    from cluster.study_store import NotAStudyError

    try:
        typer.echo(write_report(study_dir))
    except NotAStudyError as err:
        raise typer.BadParameter(str(err), param_hint="DIR") from err
    typer.echo(f"wrote {study_dir}/report/")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind; anything but loopback needs --token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    token: Annotated[
        str | None, typer.Option(envvar="VARSEARCH_SERVE_TOKEN", help="Require 'Authorization: Bearer TOKEN'.")
    ] = None,
    max_prompts: Annotated[int, typer.Option(min=1, help="Prompts per request.")] = 16,
    max_budget: Annotated[int, typer.Option(min=1, help="NFE budget per prompt.")] = 10_000,
    max_active_jobs: Annotated[int, typer.Option(min=1, help="Queued + running searches before 429.")] = 32,
    studies_dir: Annotated[
        Path, typer.Option(help="Folder of study folders (varsearch study --out DIR/NAME) shown read-only at /studies.")
    ] = Path("outputs/studies"),
) -> None:
    """Start the Ray Serve HTTP endpoint and the explorer page (/) on a local Ray instance; blocks until Ctrl-C."""
    from pydantic import ValidationError

    from cluster.serve.local import check_exposure, serve_forever
    from cluster.serve.settings import ServeArgs

    try:
        args = ServeArgs(
            token=token, max_prompts=max_prompts, max_budget_nfe=max_budget, max_active_jobs=max_active_jobs,
            studies_dir=str(studies_dir.resolve()),
        )  # fmt: skip
        check_exposure(args, host)
    except (ValidationError, ValueError) as err:
        raise typer.BadParameter(str(err)) from err
    serve_forever(args, host, port, echo=typer.echo)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def submit(
    ctx: typer.Context,
    address: Annotated[str, typer.Option(help="Ray dashboard (Jobs API) address.")] = "http://127.0.0.1:8265",
    wait: Annotated[bool, typer.Option(help="Follow the logs and exit with the job's status.")] = False,
    working_dir: Annotated[Path, typer.Option(help="Project directory uploaded with the job.")] = Path("."),
    env: Annotated[list[str] | None, typer.Option(help="KEY=VALUE for the job's environment; repeatable.")] = None,
    num_gpus: Annotated[float, typer.Option(min=0, help="GPUs reserved for the job's driver.")] = 0,
    python: Annotated[str | None, typer.Option(help="Cluster Python (default: this one for a local head).")] = None,
) -> None:
    """Submit a run or study as a Ray Job: varsearch submit [OPTIONS] -- run --method beam ..."""
    from cluster.submit import submit as submit_job

    pairs = [e.partition("=") for e in env or []]
    if any(not key or not sep for key, sep, _ in pairs):
        raise typer.BadParameter("--env takes KEY=VALUE")
    try:
        code = submit_job(
            ctx.args, address, working_dir, {k: v for k, _, v in pairs}, wait, num_gpus, python, echo=typer.echo
        )
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    raise typer.Exit(code)


@shapes_app.command("train")
def shapes_train(
    stage: Annotated[str, typer.Option(help="vae | infinity | clip | clip-hard | all (in that order)")] = "all",
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

    stages = list(train.STAGES) if stage == "all" else [stage]
    if any(s not in train.DEFAULTS for s in stages):
        raise typer.BadParameter(f"unknown stage {stage!r}; choose {', '.join(train.STAGES)} or all")
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
    device: DeviceOption = "cpu",
) -> None:
    """Judge the shipped models on held-out prompts with the evaluator (see the README's bar)."""
    from generators.shapes import evaluate, model

    wdir = weights_dir or model.WEIGHTS_DIR
    prompts = evaluate.eval_prompt_list(n_per_category, seed)
    with _weights_error():
        engine = model.load_engine(wdir, device=device)
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
    device: DeviceOption = "cpu",
    workers: Annotated[int, typer.Option(min=1, help="Processes, each with its own models (GPU: ~8).")] = 1,
    beam_prune_scales: Annotated[
        str | None, typer.Option(help="Beam's pruning scales, 0-based and comma-separated (default: every scale).")
    ] = None,
    beam_rollout_tau_scale: Annotated[
        float, typer.Option(min=1e-3, max=4.0, help="Beam's rollouts sample at the temperatures times this.")
    ] = 1.0,
    verifier: Annotated[
        str,
        typer.Option(
            help="The verifier to search with: shapes-clip, shapes-clip-hard (flawed renders), shapes-clip-pair "
            "(both), shapes-clip-pair-shift2 (the pair over 2-px shifts), shapes-clip-regions (that, plus each "
            "object scored on its own side)."
        ),
    ] = "shapes-clip",
) -> None:
    """Accuracy (held-out evaluator) and verifier score (tiny CLIP) against NFEs for every method.

    Each prompt's rows are kept in OUT/parts as they finish: the same command, rerun, resumes.
    """
    from cluster import curve
    from cluster.verifiers import SHAPES_SEARCH_VERIFIERS
    from generators.shapes import evaluate, model, world
    from search.budget import Budget
    from search.run import SearchConfig, plan_search

    if verifier not in SHAPES_SEARCH_VERIFIERS:
        raise typer.BadParameter(f"unknown verifier {verifier!r}; choose {', '.join(SHAPES_SEARCH_VERIFIERS)}")
    prompts = world.eval_prompts(n_per_category, seed)
    budgets = curve.budget_ladder(model.SCHEDULE.num_scales, tuple(int(x) for x in slots.split(",")))
    methods_list = tuple(m.strip() for m in methods.split(","))
    beam: dict = {"rollout_tau_scale": beam_rollout_tau_scale} if beam_rollout_tau_scale != 1.0 else {}
    if beam_prune_scales is not None:
        try:
            beam["prune_scales"] = tuple(int(k) for k in beam_prune_scales.split(","))
            plan_search(SearchConfig("beam", Budget(nfe=min(budgets)), **beam), model.SCHEDULE.num_scales)
        except ValueError as e:  # not integers, or outside the schedule (BudgetError)
            raise typer.BadParameter(str(e), param_hint="--beam-prune-scales") from e
    options = {"beam": beam} if beam else {}
    t0 = time.perf_counter()
    try:
        df = curve.run_shapes_curve(
            prompts, evaluate.DEFAULT_SAMPLING, methods_list, budgets, seed, device, workers, options, out / "parts",
            verifier,
        )  # fmt: skip
    except curve.CurveSettingsError as e:
        raise typer.BadParameter(str(e), param_hint="--out") from e
    run = {
        "verifier": verifier,
        "device": device,
        "workers": workers,
        "wall_s": round(time.perf_counter() - t0, 1),
        "resumed_prompts": df.attrs["resumed_prompts"],  # taken from OUT/parts, not timed by wall_s
        "search_options": options,
        "sampling": repr(evaluate.DEFAULT_SAMPLING),
    }
    out.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out / "curve.parquet")
    summary = curve.summarize(df)
    curve.plot(summary, out / "curve.png")
    has_bar_methods = {"beam", "random", "base"} <= set(summary)
    paired = curve.paired_differences(df) if {"beam", "random"} <= set(summary) else None
    report = {
        "methods": summary,
        "bar": curve.check_bar(summary) if has_bar_methods else None,
        "beam_minus_random_paired": paired,
        "run": run,
    }
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

    with _weights_error():
        engine = model.load_engine(weights_dir or model.WEIGHTS_DIR)
    rows = [(c, p) for c in world.CATEGORIES for p in world.eval_suite(c, prompts_per_category, seed)]
    prompts = [p for _, p in rows for _ in range(samples)]
    images = evaluate.sample_images(engine, prompts, seed=seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save_grid(images.reshape(len(rows), samples, *images.shape[1:]), [p for _, p in rows], out)
    typer.echo(f"wrote {out}")


@shapes_app.command("diversity")
def shapes_diversity(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    n_per_category: Annotated[int, typer.Option(min=1, help="Held-out prompts per category.")] = 20,
    samples: Annotated[int, typer.Option(min=6, help="Samples (and real renders) per prompt.")] = 16,
    search_per_category: Annotated[int, typer.Option(min=0, help="Held-out prompts per category searched.")] = 10,
    budget: Annotated[int, typer.Option(min=1, help="NFE budget of each search.")] = 84,
    repeats: Annotated[int, typer.Option(min=1, help="Timed pairs for overhead_ratio.")] = 7,
    seed: Annotated[int, typer.Option(help="Prompt i uses request seed seed+i.")] = 0,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("outputs/diversity"),
    device: DeviceOption = "cpu",
) -> None:
    """DiverseVAR's bar on held-out prompts: Vendi, Recall, Coverage, accuracy, overhead; search with it."""
    from cluster import diversity_report
    from cluster.verifiers import register_shapes_verifiers
    from generators.shapes import evaluate, model
    from verifiers.registry import load_verifier

    register_shapes_verifiers()
    report = diversity_report.run(
        model.load_engine(device=device), model.load_clip()[0], load_verifier("shapes-clip", device=device),
        evaluate.DEFAULT_SAMPLING, n_per_category, samples, search_per_category, budget, out, seed, repeats,
    )  # fmt: skip
    typer.echo(json.dumps(report, indent=2) if as_json else f"bar: {report['bar']} -> {out}/diversity.json, grid.png")


@shapes_app.command("diversevar-sweep")
def shapes_diversevar_sweep(
    n_captions: Annotated[int | None, typer.Option(min=1, help="Training captions, coarse/refine [24].")] = None,
    n_confirm: Annotated[int | None, typer.Option(min=1, help="Fresh training captions, confirm [48].")] = None,
    samples: Annotated[int | None, typer.Option("--samples", min=6, help="Samples per caption [16].")] = None,
    placements: Annotated[str | None, typer.Option(help="Comma-separated [block,model].")] = None,
    scales: Annotated[str | None, typer.Option(help="0-based scale sets like '1,2;2,3' [paper's readings].")] = None,
    b: Annotated[str | None, typer.Option(help="SSR exponents, comma-separated [0,0.3,1,2].")] = None,
    b2: Annotated[str | None, typer.Option(help="SAR exponents, comma-separated [0,0.1,0.3].")] = None,
    blocks: Annotated[str | None, typer.Option(help="0-based block subsets like '0,1;4,5' [every block].")] = None,
    refine: Annotated[bool, typer.Option(help="Also measure neighbours of the best coarse settings.")] = True,
    finalists: Annotated[int | None, typer.Option(min=1, help="Settings measured again to confirm [3].")] = None,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("outputs/diversevar_sweep"),
) -> None:
    """Sweep DiverseVAR's knobs on TRAINING captions: Parquet, a Vendi-vs-accuracy plot, chosen defaults."""
    from cluster import diversevar_sweep as sweep
    from generators.shapes import evaluate, model

    try:
        settings = sweep.SweepSettings.from_options(
            n_captions=n_captions, n_confirm=n_confirm, n_samples=samples, placements=placements, scales=scales,
            b=b, b2=b2, blocks=blocks, refine=refine, n_finalists=finalists,
        )  # fmt: skip
        engine = model.load_engine()
        sweep.checked_grid(settings, engine)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    clip = model.load_clip()[0]
    df, summary = sweep.run_sweep(engine, clip, settings, evaluate.DEFAULT_SAMPLING, log=typer.echo)
    sweep.write(df, summary, out)
    typer.echo(f"chosen: {json.dumps(summary['chosen'])} -> {out}/sweep.parquet, sweep.png, sweep.json")


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
