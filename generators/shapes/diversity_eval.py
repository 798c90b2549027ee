"""How diverse the shapes world's samples are for a sampling setting (e.g. with or without
DiverseVAR), how correct, and what the setting costs in decode time.

Per prompt: N samples (prompt i uses request seed seed + i and candidate paths (0,) .. (N-1,), so
two settings draw the same random numbers) and N real images the world renders for the prompt
(world.scene_for_prompt, its own random draw per image). The tiny CLIP embeds every image; then
  vendi, pairwise: Vendi score and mean cosine distance of the samples' embeddings;
  recall (k = 3, Kynkaanniemi et al.'s choice) and coverage (k = 5, Naeem et al.'s): the
    samples against that prompt's real images;
  layouts: distinct arrangements the evaluator reads among the samples (layouts_correct: among
    the samples it judges correct, so broken images do not count as variety);
each averaged over prompts. accuracy is the evaluator's, GenEval-style (mean over categories).
overhead_ratio times decoding one batch with and without hooks, interleaved, median of repeats.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from generators import diversity
from generators.engine import InfinityEngine
from generators.sampling import SamplingParams
from generators.shapes import evaluator, world

RECALL_K, COVERAGE_K = 3, 5
MIN_SAMPLES = COVERAGE_K + 1  # k-NN radii need k other points in the set
METRICS = ("vendi", "pairwise", "recall", "coverage", "accuracy", "layouts", "layouts_correct")


def _check(prompts: Sequence[str], n_samples: int) -> None:
    if not prompts:
        raise ValueError("need at least one prompt")
    if n_samples < MIN_SAMPLES:
        raise ValueError(f"need at least {MIN_SAMPLES} samples per prompt for k-NN recall/coverage, got {n_samples}")


@torch.no_grad()
def sample_sets(
    engine: InfinityEngine,
    prompts: Sequence[str],
    n_samples: int,
    sampling: SamplingParams,
    seed: int = 0,
    batch_size: int = 64,
) -> np.ndarray:
    """n_samples images per prompt as uint8 [P, N, H, W, 3]. Each candidate's random numbers are its
    own; batch_size changes only float rounding (which, rarely, flips a bit near its threshold)."""
    jobs = [(p, seed + i, (j,)) for i, p in enumerate(prompts) for j in range(n_samples)]
    images = []
    for lo in range(0, len(jobs), batch_size):
        chunk_prompts, seeds, paths = zip(*jobs[lo : lo + batch_size], strict=True)
        batch, _ = engine.advance(engine.start(list(chunk_prompts), list(seeds), sampling, list(paths)))
        images.append(engine.decode(batch))
    return np.concatenate(images).reshape(len(prompts), n_samples, *images[0].shape[1:])


def real_sets(prompts: Sequence[str], n_real: int, seed: int = 0) -> np.ndarray:
    """n_real renders of each prompt's scenes as uint8 [P, M, H, W, 3]; prompt i draws from rng (seed, i)."""

    def renders(i: int, prompt: str) -> np.ndarray:
        rng = np.random.default_rng((seed, i))
        return np.stack([world.render(world.scene_for_prompt(prompt, rng)) for _ in range(n_real)])

    return np.stack([renders(i, p) for i, p in enumerate(prompts)])


@torch.no_grad()
def image_embeddings(clip: nn.Module, images_NHW3: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Unit-norm tiny-CLIP image embeddings [N, D] of uint8 images (the preprocessing CLIP was trained with)."""
    from generators.shapes.train import CLIP_MEAN, CLIP_STD

    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    out = []
    for lo in range(0, len(images_NHW3), batch_size):
        x_N3HW = torch.from_numpy(images_NHW3[lo : lo + batch_size]).permute(0, 3, 1, 2).float().div(255)
        out.append(nn.functional.normalize(clip.encode_image((x_N3HW - mean) / std), dim=-1))
    return torch.cat(out).numpy()


def real_embeddings(clip: nn.Module, prompts: Sequence[str], n_real: int, seed: int = 0) -> np.ndarray:
    """Embedded real images [P, M, D]: computed once and shared by every setting measured on these prompts."""
    real = real_sets(prompts, n_real, seed)
    return image_embeddings(clip, real.reshape(-1, *real.shape[2:])).reshape(len(prompts), n_real, -1)


def score_sets(clip: nn.Module, prompts: Sequence[str], images_PNHW3: np.ndarray, real_PMD: np.ndarray) -> dict:
    """Every metric of the module docstring for samples [P, N, H, W, 3] against real embeddings [P, M, D]."""
    P, N = images_PNHW3.shape[:2]
    if len(prompts) != P or len(real_PMD) != P:
        raise ValueError(f"{len(prompts)} prompts, {P} sample sets and {len(real_PMD)} real sets must agree")
    _check(prompts, N)
    emb_PND = image_embeddings(clip, images_PNHW3.reshape(-1, *images_PNHW3.shape[2:])).reshape(P, N, -1)
    per_prompt: dict[str, list[float]] = {m: [] for m in METRICS if m != "accuracy"}
    correct_by_category: dict[str, list[bool]] = {}
    for prompt, images, emb_ND, real_MD in zip(prompts, images_PNHW3, emb_PND, real_PMD, strict=True):
        spec = world.parse_prompt(prompt)
        detections = [evaluator.detect(image) for image in images]
        correct = [world.holds(spec, d) for d in detections]
        layouts = [diversity.layout_signature(((o.shape, o.colour), o.cx, o.cy) for o in d) for d in detections]
        correct_by_category.setdefault(spec.category, []).extend(correct)
        per_prompt["vendi"].append(diversity.vendi_score(emb_ND))
        per_prompt["pairwise"].append(diversity.mean_pairwise_distance(emb_ND))
        per_prompt["recall"].append(diversity.recall(real_MD, emb_ND, k=RECALL_K))
        per_prompt["coverage"].append(diversity.coverage(real_MD, emb_ND, k=COVERAGE_K))
        per_prompt["layouts"].append(diversity.distinct_layouts(layouts))
        per_prompt["layouts_correct"].append(
            diversity.distinct_layouts([s for s, ok in zip(layouts, correct, strict=True) if ok])
        )
    report = {m: float(np.mean(v)) for m, v in per_prompt.items()}
    report["accuracy"] = float(np.mean([np.mean(v) for v in correct_by_category.values()]))
    return {m: report[m] for m in METRICS} | {"n_prompts": P, "n_samples": N}


def measure(
    engine: InfinityEngine,
    clip: nn.Module,
    prompts: Sequence[str],
    n_samples: int,
    sampling: SamplingParams,
    real_PMD: np.ndarray,
    seed: int = 0,
) -> dict:
    """Sample n_samples per prompt with `sampling` and score them (see score_sets)."""
    _check(prompts, n_samples)
    return score_sets(clip, prompts, sample_sets(engine, prompts, n_samples, sampling, seed), real_PMD)


@torch.no_grad()
def _decode_seconds(engine: InfinityEngine, prompts: Sequence[str], sampling: SamplingParams) -> float:
    t0 = time.perf_counter()
    n = len(prompts)
    batch, _ = engine.advance(engine.start(prompts, [0] * n, sampling, [(i,) for i in range(n)]))
    engine.decode(batch)
    if engine.device.type == "cuda":
        torch.cuda.synchronize(engine.device)
    return time.perf_counter() - t0


def overhead_ratio(
    engine: InfinityEngine, prompts: Sequence[str], plain: SamplingParams, hooked: SamplingParams, repeats: int = 7
) -> dict:
    """Decode time of one batch with `hooked` / with `plain`: after a warm-up of each, `repeats`
    back-to-back pairs in alternating order, so drift and order effects cancel; the ratio is the
    median of the pairs' ratios."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    _decode_seconds(engine, prompts, plain), _decode_seconds(engine, prompts, hooked)
    pairs = []  # (plain seconds, hooked seconds)
    for r in range(repeats):
        if r % 2 == 0:
            plain_s = _decode_seconds(engine, prompts, plain)
            pairs.append((plain_s, _decode_seconds(engine, prompts, hooked)))
        else:
            hooked_s = _decode_seconds(engine, prompts, hooked)
            pairs.append((_decode_seconds(engine, prompts, plain), hooked_s))
    plain_s, hooked_s = np.median(pairs, axis=0)
    return {
        "overhead_ratio": float(np.median([h / p for p, h in pairs])),
        "decode_s_plain": float(plain_s),
        "decode_s_hooked": float(hooked_s),
        "batch": len(prompts),
        "repeats": repeats,
        "pairs_s": [[float(p), float(h)] for p, h in pairs],  # (plain, hooked) seconds, to judge the noise
    }
