"""Run every benchmark and write one report: results/report.json and results/report.md.

Each benchmark runs in its own process (its own Ray instance, its own threads), one after
another so they never share the cores, and writes results/<name>.json; the report gathers the
headline ratios (medians of interleaved repetitions, measured side by side in one run).

Usage: python -m benchmarks [--json] [--only bench_ray,bench_generator] [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import RESULTS_DIR, hardware

# module -> (extra arguments for --quick, headline keys to put in the table)
BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    "bench_generator": (["--repeats", "3"], ["batched_speedup", "fork_vs_recompute_speedup"]),
    "bench_verifiers": (["--repeats", "3"], []),
    "bench_diversevar": (["--repeats", "3"], ["overhead_ratio"]),
    "bench_serve": (
        ["--repeats", "10", "--load-requests", "10", "--load-seconds", "4"],
        ["serve_overhead_ratio", "healthz_p50_ms", "load_requests_per_s", "load_errors"],
    ),
    "bench_ray": (
        ["--repeats", "1", "--sim-replicas", "16"],
        ["continuous_batching_speedup", "ray_vs_inprocess", "coordinator_idle_fraction"],
    ),
    "bench_scaling": (
        ["--repeats", "1", "--grid-factor", "4", "--max-replicas", "16"],
        [
            "per_candidate_speedup_256_vs_1",
            "sim_max_replicas_measured",
            "sim_efficiency_at_max_replicas",
            "study_speedup_max_vs_1_concurrent",
        ],
    ),
}


def run_one(name: str, quick: bool) -> dict:
    args = BENCHMARKS[name][0] if quick else []
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", *args], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:] or ["failed"], "wall_s": wall}
    return {**json.loads((RESULTS_DIR / f"{name}.json").read_text()), "wall_s": wall}


def headlines(name: str, result: dict) -> dict[str, object]:
    """The module's headline keys (None where the result lacks one, so a rename shows up)."""
    keys = BENCHMARKS[name][1]
    if keys:
        return {k: result.get(k) for k in keys}
    return {  # per-verifier batching ratios
        f"{verifier}.batched_speedup": r["batched_speedup"]
        for verifier, r in result.items()
        if isinstance(r, dict) and "batched_speedup" in r
    }


def cell(value: object) -> str:
    """A table cell: floats to 3 significant digits, ints as they are, yes/no, n/a, else JSON."""
    if isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, float):
        text = f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    elif value is None:
        text = "n/a"
    elif isinstance(value, int | str):
        text = str(value)
    else:
        text = json.dumps(value, sort_keys=True)
    return text.replace("|", "\\|")


def markdown(report: dict) -> str:
    """results/report.md: one table of headline values, wall times, then every listed plot."""
    hw = report["hardware"]
    lines = [
        "# varsearch benchmark report",
        "",
        f"Hardware: {hw['processor']}, {hw['cpu_count']} cores, CUDA: {hw['cuda']}, torch {hw['torch']}.",
        "Ratios are of medians measured side by side in one run; other values are as named (ms, per s, counts).",
        "",
        "| benchmark | metric | value |",
        "|---|---|---|",
    ]
    for name, result in report["benchmarks"].items():
        if "error" in result:
            lines.append(f"| {name} | error | {cell(' '.join(result['error']))} |")
            continue
        for key, value in headlines(name, result).items():
            lines.append(f"| {name} | {key} | {cell(value)} |")
    walls = [f"{name} {result['wall_s']:.0f} s" for name, result in report["benchmarks"].items() if "wall_s" in result]
    if walls:
        lines += ["", f"Wall time per module: {', '.join(walls)}."]
    for name, result in report["benchmarks"].items():
        for plot in result.get("plots", []):  # paths relative to results/, where report.md is
            lines += ["", f"![{name}: {plot}]({plot})"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the report as JSON (one key per module)")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated benchmark modules")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run, noisier ratios)")
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {list(BENCHMARKS)}")
    report = {"hardware": hardware(), "benchmarks": {}}
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        report["benchmarks"][name] = run_one(name, args.quick)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "report.json").write_text(json.dumps(report, indent=2))
    md = markdown(report)
    Path(RESULTS_DIR / "report.md").write_text(md)
    print(json.dumps(report["benchmarks"], indent=2) if args.json else md)


if __name__ == "__main__":
    main()
