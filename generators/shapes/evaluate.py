"""Quality of the shapes world's models, judged by the held-out evaluator on held-out prompts.

- tokenizer accuracy: ground-truth renders of the evaluation prompts, encoded to multi-scale bits
  and decoded, still judged correct;
- base accuracy: one sample per evaluation prompt at the default sampling settings;
- CLIP caption accuracy: the tiny CLIP scores the true caption above a mismatched one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm

from generators.bsq_vae import BSQVAE
from generators.engine import InfinityEngine
from generators.sampling import SamplingParams
from generators.shapes import evaluator, world
from generators.shapes.model import SCHEDULE

# Default sampling for the shapes world, chosen on TRAINING captions by
# `python -m benchmarks.tune_shapes_sampling --grid focus` (docs/tune_shapes_sampling.json: best pooled
# overall 0.363 over 2 x 600 captions, single_object 0.63/0.66; cfg 4, tau 1, top-p 0.97 had 0.302):
# weak guidance while the first scales place the objects, cool temperatures where the last ones paint
# their pixels. Per-scale values follow the 6-scale schedule.
DEFAULT_SAMPLING = SamplingParams(
    cfg=(1.0, 2.0, 3.0, 4.0, 4.0, 4.0), tau=(1.0, 1.0, 1.0, 0.5, 0.3, 0.3), top_k=0, top_p=0.9
)


def check_device(device: str) -> torch.device:
    """The torch device a shapes command was asked to run on, refused early with a clear message
    (rather than deep inside a forward) when it is unknown or not present here."""
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'") from e
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r} is not supported: use 'cpu', 'cuda' or 'cuda:N'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r} asked for, but this machine has {torch.cuda.device_count()} GPU(s)")
    return dev


def ground_truth_images(prompts: Sequence[str], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([world.render(world.scene_for_prompt(p, rng)) for p in prompts])


def to_uint8(images_B3HW: torch.Tensor) -> np.ndarray:
    """[-1, 1] float images -> uint8 (B, H, W, 3), rounding to nearest."""
    return ((images_B3HW.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def reconstruct(vae: BSQVAE, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Images through the multi-scale tokenizer and back: what generation can at best reach."""
    device = next(vae.parameters()).device
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(images[i : i + batch_size]).to(device).permute(0, 3, 1, 2).float().div(127.5).sub(1)
        _, quantized = vae.quantizer.encode(vae.encode_latent(x), SCHEDULE.scales)
        out.append(to_uint8(vae.decode(quantized)))
    return np.concatenate(out)


def tokenizer_accuracy(vae: BSQVAE, prompts: Sequence[str], seed: int = 0) -> float:
    recon = reconstruct(vae, ground_truth_images(prompts, seed))
    return float(np.mean([evaluator.judge(img, p) for img, p in zip(recon, prompts, strict=True)]))


@torch.no_grad()
def sample_images(
    engine: InfinityEngine,
    prompts: Sequence[str],
    sampling: SamplingParams = DEFAULT_SAMPLING,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool = True,
) -> np.ndarray:
    """One sample per prompt; candidate i has path (i,), so results do not depend on batching."""
    images = []
    starts = range(0, len(prompts), batch_size)
    for i in tqdm(starts, desc="sampling", disable=not progress):
        chunk = list(prompts[i : i + batch_size])
        batch = engine.start(chunk, [seed] * len(chunk), sampling, paths=[(i + j,) for j in range(len(chunk))])
        batch, _ = engine.advance(batch)
        images.append(engine.decode(batch))
    return np.concatenate(images)


def generation_report(engine: InfinityEngine, prompts: Sequence[str], sampling=DEFAULT_SAMPLING, seed=0) -> dict:
    images = sample_images(engine, prompts, sampling, seed)
    report = evaluator.evaluate(images, list(prompts))
    return {"per_category": report["per_category"], "overall": report["overall"], "n_images": report["n_images"]}


@torch.no_grad()
def clip_caption_accuracy(clip: torch.nn.Module, tokenizer, prompts: Sequence[str], seed: int = 0) -> float:
    """How often the CLIP scores a ground-truth image's caption above a mismatched caption."""
    from generators.shapes.train import clip_embed

    rng = np.random.default_rng(seed + 1)
    negatives = [world.mismatched_prompt(p, rng) for p in prompts]
    images = torch.from_numpy(ground_truth_images(prompts, seed)).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    wins = []
    for i in range(0, len(prompts), 128):
        chunk = list(prompts[i : i + 128])
        img, txt = clip_embed(clip, tokenizer, images[i : i + 128], chunk + negatives[i : i + 128])
        n = len(chunk)
        wins += ((img * txt[:n]).sum(-1) > (img * txt[n:]).sum(-1)).tolist()
    return float(np.mean(wins))


def eval_prompt_list(n_per_category: int, seed: int = 0) -> list[str]:
    return [p for _, p in world.eval_prompts(n_per_category, seed)]
