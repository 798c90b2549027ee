"""Plots of benchmarks/bench_scaling.py: one PNG per sweep (matplotlib, Agg backend, no display)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

DPI = 110


def _log2_x(ax, counts: list[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(counts, [str(c) for c in counts])
    ax.minorticks_off()
    ax.grid(True, alpha=0.3)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plot_decode(decode: dict, path: Path) -> Path:
    """Cumulative time to reach each scale against the batch size (log-log), one line per scale."""
    points = decode["points"]
    counts = [p["candidates"] for p in points]
    fig, (ax, ax_per) = plt.subplots(1, 2, figsize=(10, 4))
    for k in range(len(points[0]["cumulative_s"])):
        ax.plot(counts, [p["cumulative_s"][k] for p in points], marker="o", ms=3, label=f"scale {k + 1}")
    ideal = [points[0]["cumulative_s"][-1] * n for n in counts]
    ax.plot(counts, ideal, "k:", lw=1, label="last scale, N x (N=1)")
    ax.set(xscale="log", yscale="log", xlabel="candidates N", ylabel="seconds (cumulative)")
    ax.set_title("time to reach scale k", fontsize=10)
    ax.legend(fontsize=7)
    ax_per.plot(counts, [1e3 * p["per_candidate_s"] for p in points], marker="o", color="C3")
    ax_per.set(xscale="log", xlabel="candidates N", ylabel="ms per candidate (all scales)")
    ax_per.set_title("per-candidate cost", fontsize=10)
    for a in (ax, ax_per):
        _log2_x(a, counts)
    threads = decode.get("torch_threads")
    on = f"{decode['device']}, {threads} torch thread{'s' if threads != 1 else ''}" if threads else decode["device"]
    fig.suptitle(f"{decode['engine']} decode on {on} (medians of {decode['repeats']})", fontsize=10)
    return _save(fig, path)


def plot_memory(decode: dict, path: Path) -> Path:
    """Exact KV cache bytes after the last scale and the measured peak memory growth, against N."""
    points = decode["points"]
    counts = [p["candidates"] for p in points]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(counts, [p["kv_cache_bytes"][-1] / 2**20 for p in points], marker="o", label="KV cache (exact)")
    peaks = [(n, p["peak_memory_growth_bytes"]) for n, p in zip(counts, points, strict=True)]
    measured = [(n, b / 2**20) for n, b in peaks if b is not None and b > 0]
    if measured:
        ax.plot(*zip(*measured, strict=True), marker="s", label=f"peak growth ({decode['memory_method']})")
    ax.set(yscale="log", xlabel="candidates N", ylabel="MiB")
    _log2_x(ax, counts)
    ax.set_title(f"{decode['engine']} decode memory on {decode['device']}", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_replicas(replicas: dict, path: Path) -> Path:
    """Achieved over ideal throughput, idle fraction and coordinator time per call, against replicas."""
    points = [p for p in replicas["points"] if "wall_s" in p]
    counts = [p["replicas"] for p in points]
    fig, (ax, ax_call) = plt.subplots(1, 2, figsize=(10, 4))
    ax.plot(counts, [p["efficiency"] for p in points], marker="o", label="achieved / ideal steps per s")
    ax.plot(counts, [p["idle_fraction"] for p in points], marker="s", label="replica idle fraction")
    ax.set(ylim=(0, 1.05), xlabel="simulated generator replicas", ylabel="fraction")
    ax.legend(fontsize=8)
    ax_call.plot(counts, [1e3 * p["wall_s_per_call"] for p in points], marker="o", label="wall per replica call")
    ax_call.plot(counts, [1e3 * p["idle_s_per_call"] for p in points], marker="s", label="replica idle per call")
    ax_call.set(yscale="log", xlabel="simulated generator replicas", ylabel="ms")
    ax_call.legend(fontsize=8)
    for a in (ax, ax_call):
        _log2_x(a, counts)
    missing = [str(p["replicas"]) for p in replicas["points"] if "wall_s" not in p]
    note = f"; not measured: {', '.join(missing)}" if missing else ""
    fig.suptitle(
        f"coordinator over simulated replicas ({1e3 * replicas['step_s']:.0f} ms per step, "
        f"{replicas['searches_per_replica']} beam searches per replica{note})",
        fontsize=10,
    )
    return _save(fig, path)


def plot_study(study: dict, path: Path) -> Path:
    """Searches/s and NFE/s of the study driver against the number of searches it keeps in flight."""
    points = study["points"]
    counts = [p["concurrency"] for p in points]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, key, label, color in zip(
        axes, ("searches_per_s", "nfe_per_s"), ("searches/s", "NFE/s"), ("C0", "C1"), strict=True
    ):
        ax.plot(counts, [p[key] for p in points], marker="o", color=color)
        ax.set(xlabel="concurrent searches", ylabel=label, ylim=(0, 1.1 * max(p[key] for p in points)))
        _log2_x(ax, counts)
    fig.suptitle(
        f"shapes study through the study driver on Ray, one generator replica ({study['searches']} searches "
        f"per point, medians of {study['repeats']})",
        fontsize=10,
    )
    return _save(fig, path)
