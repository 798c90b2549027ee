"""Training the shapes world's models on a CPU: tokenizer, transformer, tiny CLIP, then that CLIP
fine-tuned against flawed renders (a second verifier).

Every stage is resumable: it checkpoints its models, optimizer and step atomically every
`checkpoint_every` steps and on a time limit, and data is a pure function of (seed, step), so a
resumed run sees exactly the batches it would have seen. When a stage finishes it writes its
weights as safetensors into the weights directory and records itself in the manifest.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from generators.bsq_vae import BSQVAE
from generators.infinity import Infinity
from generators.multiscale import ScaleCodec
from generators.rope import rope_angles
from generators.shapes import flawed, world
from generators.shapes import model as shapes_model
from generators.shapes.evaluate import reconstruct

CHECKPOINT_DIR = Path("checkpoints/shapes")


@dataclass(frozen=True)
class StageConfig:
    steps: int
    batch_size: int
    lr: float
    seed: int = 0
    warmup: int = 100
    checkpoint_every: int = 100
    max_minutes: float | None = None  # stop (resumably) after this much wall time


DEFAULTS = {
    "vae": StageConfig(steps=1500, batch_size=32, lr=2e-3),
    "infinity": StageConfig(steps=3000, batch_size=64, lr=1e-3),
    "clip": StageConfig(steps=800, batch_size=128, lr=1e-3),
    "clip-hard": StageConfig(steps=400, batch_size=64, lr=3e-4, warmup=20, checkpoint_every=50),
}


def images_to_tensor(images_NHW3: np.ndarray) -> Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(images_NHW3).permute(0, 3, 1, 2).float().div(127.5).sub(1)


def lr_at(step: int, cfg: StageConfig) -> float:
    """Linear warmup, then cosine decay to 10%."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class Checkpoint:
    """Atomic, resumable training state: module and optimizer state dicts plus the step."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, modules: dict[str, nn.Module], optimizer: torch.optim.Optimizer) -> int:
        if not self.path.exists():
            return 0
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        for name, module in modules.items():
            module.load_state_dict(state[name])
        optimizer.load_state_dict(state["optimizer"])
        return int(state["step"])

    def save(self, modules: dict[str, nn.Module], optimizer: torch.optim.Optimizer, step: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = {name: m.state_dict() for name, m in modules.items()}
        state.update(optimizer=optimizer.state_dict(), step=step)
        tmp = self.path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.path)


def run_stage(
    name: str,
    cfg: StageConfig,
    modules: dict[str, nn.Module],
    loss_fn: Callable[[int], tuple[Tensor, dict[str, float]]],
    checkpoint_dir: Path,
) -> bool:
    """The shared loop: resume, step, log, checkpoint. Returns True when all steps are done."""
    params = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.01)
    ckpt = Checkpoint(checkpoint_dir / f"{name}.pt")
    start = ckpt.load(modules, optimizer)
    deadline = None if cfg.max_minutes is None else time.monotonic() + 60 * cfg.max_minutes
    for m in modules.values():
        m.train()
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=f"train {name}", dynamic_ncols=True)
    step = start
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss, logs = loss_fn(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()})
        done = step + 1
        out_of_time = deadline is not None and time.monotonic() > deadline
        if done % cfg.checkpoint_every == 0 or done == cfg.steps or out_of_time:
            ckpt.save(modules, optimizer, done)
        if out_of_time:
            bar.close()
            print(f"{name}: time limit reached at step {done}/{cfg.steps}; rerun the same command to resume")
            return False
    for m in modules.values():
        m.eval()
    return step + 1 >= cfg.steps


# ---- stage 1: the tokenizer ----------------------------------------------------------------------


def vae_loss(vae: BSQVAE, images: Tensor, commitment: float = 0.25) -> tuple[Tensor, dict[str, float]]:
    """Reconstruction through the multi-scale quantizer with one global straight-through estimator.

    Per-scale straight-through on unit-norm codes does not learn; quantizing the whole latent
    and passing gradients straight through the sum, with a commitment loss, does. Object pixels
    weigh 5x the background's, so small shapes and their colours are not averaged away.
    """
    z = vae.encoder(images)
    with torch.no_grad():
        _, quantized = vae.quantizer.encode(z, shapes_model.SCHEDULE.scales)
    recon = vae.decoder(z + (quantized - z).detach())
    background = torch.tensor(world.BACKGROUND, dtype=images.dtype).div(127.5).sub(1).view(1, 3, 1, 1)
    foreground = ((images - background).abs().amax(1, keepdim=True) > 0.05).float()
    weight = 1 + 4 * F.max_pool2d(foreground, 3, stride=1, padding=1)  # edges count as object
    err = recon - images
    rec = (weight * (err.abs() + err.square())).mean()
    commit = (z - quantized).square().mean()
    return rec + commitment * commit, {"rec": rec.item(), "commit": commit.item()}


def train_vae(cfg: StageConfig, weights_dir: Path, checkpoint_dir: Path = CHECKPOINT_DIR) -> bool:
    torch.manual_seed(cfg.seed)
    vae = BSQVAE(shapes_model.VAE_CONFIG)

    def step_loss(step: int) -> tuple[Tensor, dict[str, float]]:
        _, images = world.training_batch(cfg.seed, step * cfg.batch_size, cfg.batch_size)
        return vae_loss(vae, images_to_tensor(images))

    finished = run_stage("vae", cfg, {"vae": vae}, step_loss, checkpoint_dir)
    if finished:
        shapes_model.save_module(vae, weights_dir / shapes_model.VAE_FILE)
        shapes_model.write_manifest({"vae_training": _record("vae", cfg)}, weights_dir)
    return finished


# ---- stage 2: the transformer and its text encoder ----------------------------------------------


def quantize_with_flips(vae: BSQVAE, codec: ScaleCodec, z: Tensor, max_flip: float, g: torch.Generator):
    """Bitwise self-correction (Infinity's BSC): labels per scale, computed against a history
    whose bits were randomly flipped, so the model learns to correct earlier mistakes.

    Returns (labels per scale [B, h*w, d] uint8, transformer inputs for scales 1..K-1).
    """
    schedule = codec.schedule
    residual = z.float()
    summed = torch.zeros_like(residual)
    labels, inputs = [], []
    for si, (h, w) in enumerate(schedule.scales):
        r = residual if (h, w) == tuple(residual.shape[-2:]) else F.interpolate(residual, size=(h, w), mode="area")
        _, bits_Bhwd = vae.quantizer.lfq(r)
        bits = bits_Bhwd.flatten(1, 2)  # [B, h*w, d]
        labels.append(bits)
        p = torch.rand((), generator=g).item() * max_flip
        flips = (torch.rand(bits.shape, generator=g) < p).to(bits.dtype)
        codes = codec.codes_on_latent(bits ^ flips, si)
        summed = summed + codes
        residual = z - summed
        if si + 1 < schedule.num_scales:
            inputs.append(codec.next_input(summed, si + 1))
    return labels, inputs


def scale_weights(schedule) -> Tensor:
    """Per-token loss weights ∝ sqrt(final area / scale area), mean 1 (upstream's reweighting)."""
    final = schedule.tokens_per_scale[-1]
    w = torch.cat([torch.full((n,), math.sqrt(final / n)) for n in schedule.tokens_per_scale])
    return w / w.mean()


def infinity_loss(
    model: Infinity,
    text_encoder: nn.Module,
    vae: BSQVAE,
    captions: list[str],
    images: Tensor,
    g: torch.Generator,
    cond_drop: float = 0.1,
    max_flip: float = 0.1,
) -> tuple[Tensor, dict[str, float]]:
    schedule, codec = shapes_model.SCHEDULE, ScaleCodec(shapes_model.SCHEDULE)
    with torch.no_grad():
        labels, inputs = quantize_with_flips(vae, codec, vae.encoder(images), max_flip, g)
    ids, mask = text_encoder.tokenizer(captions)
    text = text_encoder(ids, mask)
    drop = torch.rand(len(captions), generator=g) < cond_drop  # learn the unconditional model for CFG
    text = torch.where(drop[:, None, None], model.cfg_uncond[: text.shape[1]].unsqueeze(0), text)
    cond = model.encode_text(text, mask)
    x = torch.cat([model.sos_tokens(cond), model.word_embed(torch.cat(inputs, dim=1))], dim=1)
    scale_ids = torch.repeat_interleave(torch.arange(schedule.num_scales), torch.tensor(schedule.tokens_per_scale))
    angles = rope_angles(schedule, model.cfg.head_dim, model.cfg.rope_base)
    h = model(x, cond, scale_ids, angles.cos(), angles.sin(), attn_mask=scale_ids[None, :] <= scale_ids[:, None])
    logits = model.logits(h, cond.cond_BD)  # [B, L, 2d]
    target = torch.cat(labels, dim=1).long()  # [B, L, d]
    ce = F.cross_entropy(logits.view(-1, 2), target.view(-1), reduction="none").view(target.shape)
    loss = (ce.mean(-1) * scale_weights(schedule)).mean()
    bit_acc = (logits.view(*target.shape, 2).argmax(-1) == target).float().mean()
    return loss, {"loss": loss.item(), "bit_acc": bit_acc.item()}


def train_infinity(cfg: StageConfig, weights_dir: Path, checkpoint_dir: Path = CHECKPOINT_DIR) -> bool:
    torch.manual_seed(cfg.seed)
    vae = shapes_model.load_vae(weights_dir)
    vocab = vocabulary()
    text_encoder = shapes_model.build_text_encoder(vocab)
    model = Infinity(shapes_model.INFINITY_CONFIG).init_weights(cfg.seed)
    model.cfg_uncond.data.normal_(0, 1.0, generator=torch.Generator().manual_seed(cfg.seed))

    def step_loss(step: int) -> tuple[Tensor, dict[str, float]]:
        captions, images = world.training_batch(cfg.seed + 1, step * cfg.batch_size, cfg.batch_size)
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        return infinity_loss(model, text_encoder, vae, captions, images_to_tensor(images), g)

    finished = run_stage("infinity", cfg, {"infinity": model, "text": text_encoder}, step_loss, checkpoint_dir)
    if finished:
        _ship_infinity(model, text_encoder, vocab, _record("infinity", cfg), weights_dir)
    return finished


def _ship_infinity(model: Infinity, text_encoder: nn.Module, vocab: list[str], record: dict, weights_dir: Path) -> None:
    shapes_model.save_module(model, weights_dir / shapes_model.INFINITY_FILE)
    shapes_model.save_module(text_encoder, weights_dir / shapes_model.TEXT_FILE)
    shapes_model.write_manifest({"vocab": vocab, "infinity_training": record}, weights_dir)


def export_infinity(weights_dir: Path, checkpoint_dir: Path = CHECKPOINT_DIR) -> int:
    """Ship the transformer of an unfinished run from its checkpoint (training spans sessions).

    The manifest records the step reached, so shipped weights never pass for a finished schedule.
    """
    state = torch.load(checkpoint_dir / "infinity.pt", map_location="cpu", weights_only=True)
    vocab = vocabulary()
    model, text_encoder = Infinity(shapes_model.INFINITY_CONFIG), shapes_model.build_text_encoder(vocab)
    model.load_state_dict(state["infinity"])
    text_encoder.load_state_dict(state["text"])
    record = {
        "command": "varsearch shapes train --stage infinity (resumable), then varsearch shapes export",
        "steps_done": int(state["step"]),
        "note": "exported from a checkpoint mid-schedule",
        "torch": torch.__version__,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _ship_infinity(model, text_encoder, vocab, record, weights_dir)
    return record["steps_done"]


# ---- stage 3: the tiny CLIP verifier -------------------------------------------------------------

CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)  # OpenAI's


def clip_embed(model: nn.Module, tokenizer, images: Tensor, texts: list[str]) -> tuple[Tensor, Tensor]:
    """Unit-norm image embeddings of [-1, 1] images [N, 3, H, W] and text embeddings."""
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    image_emb = F.normalize(model.encode_image(((images + 1) / 2 - mean) / std), dim=-1)
    return image_emb, F.normalize(model.encode_text(tokenizer(texts)), dim=-1)


def clip_loss(model: nn.Module, tokenizer, captions: list[str], negatives: list[str], images: Tensor):
    """Symmetric contrastive loss, with one hard negative caption per image (same category,
    different objects, colours or relation, false for that image) among the texts, so fine
    distinctions are learned."""
    image_emb, text_emb = clip_embed(model, tokenizer, images, captions + negatives)
    loss, beats_negative = _contrastive(model.logit_scale.exp() * image_emb @ text_emb.T)
    return loss, {"loss": loss.item(), "beats_negative": beats_negative}


def _contrastive(logits: Tensor) -> tuple[Tensor, float]:
    """Symmetric InfoNCE over logits [B images, B captions + B negative captions], and how often an
    image's caption beats its negative."""
    n = len(logits)
    target = torch.arange(n)
    loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits[:, :n].T, target)) / 2
    return loss, (logits[target, target] > logits[target, target + n]).float().mean().item()


def train_clip(cfg: StageConfig, weights_dir: Path, checkpoint_dir: Path = CHECKPOINT_DIR) -> bool:
    torch.manual_seed(cfg.seed)
    model, tokenizer = shapes_model.build_clip()

    def step_loss(step: int) -> tuple[Tensor, dict[str, float]]:
        data_seed, start = cfg.seed + 2, step * cfg.batch_size
        captions, images = world.training_batch(data_seed, start, cfg.batch_size)
        rng = np.random.default_rng(cfg.seed * 7919 + step)
        scenes = [world.training_scene(data_seed, start + i)[1] for i in range(len(captions))]
        negatives = [world.mismatched_prompt(c, rng, scene) for c, scene in zip(captions, scenes, strict=True)]
        return clip_loss(model, tokenizer, captions, negatives, images_to_tensor(images))

    finished = run_stage("clip", cfg, {"clip": model}, step_loss, checkpoint_dir)
    if finished:
        shapes_model.save_module(model, weights_dir / shapes_model.CLIP_FILE, dtype=torch.float16)
        shapes_model.write_manifest({"clip_training": _record("clip", cfg)}, weights_dir)
    return finished


# ---- stage 4: tiny CLIP against flawed renders --------------------------------------------------


def clip_hard_loss(
    model: nn.Module, tokenizer, captions: list[str], negatives: list[str], images: Tensor, flawed_images: Tensor
) -> tuple[Tensor, dict[str, float]]:
    """clip_loss, plus for each caption a two-way choice between its image and the same scene with
    one named object flawed (flawed.py): the caption must score its clean image higher."""
    n = len(captions)
    image_emb, text_emb = clip_embed(model, tokenizer, torch.cat([images, flawed_images]), captions + negatives)
    scale = model.logit_scale.exp()
    contrastive, beats_negative = _contrastive(scale * image_emb[:n] @ text_emb.T)
    clean, bad = (image_emb[:n] * text_emb[:n]).sum(-1), (image_emb[n:] * text_emb[:n]).sum(-1)
    choice = F.cross_entropy(scale * torch.stack([clean, bad], dim=1), torch.zeros(n, dtype=torch.long))
    loss = contrastive + choice
    return loss, {
        "loss": loss.item(),
        "beats_negative": beats_negative,
        "beats_flawed": (clean > bad).float().mean().item(),
    }


def train_clip_hard(cfg: StageConfig, weights_dir: Path, checkpoint_dir: Path = CHECKPOINT_DIR) -> bool:
    """Fine-tune the clip stage's CLIP (its weights file) into a second one, in which flawed objects
    lose to clean ones. Half of the pairs go through the tokenizer first, so its blur, which every
    generated image has, tells nothing about which image is flawed."""
    torch.manual_seed(cfg.seed)
    model, tokenizer = shapes_model.load_clip(weights_dir)
    model.train().requires_grad_(True)
    vae = shapes_model.load_vae(weights_dir)

    def step_loss(step: int) -> tuple[Tensor, dict[str, float]]:
        data_seed, start = cfg.seed + 3, step * cfg.batch_size
        rng = np.random.default_rng(cfg.seed * 7919 + step)
        examples = [world.training_scene(data_seed, start + i) for i in range(cfg.batch_size)]
        kept = [(c, s, f) for c, s in examples if (f := flawed.flawed_render(c, s, rng)) is not None]
        captions = [c for c, _, _ in kept]
        negatives = [world.mismatched_prompt(c, rng, s) for c, s, _ in kept]
        pairs = np.stack([np.stack([world.render(s), f]) for _, s, f in kept])  # [B, 2, 64, 64, 3]
        through_vae = rng.random(len(kept)) < 0.5
        if through_vae.any():
            recon = reconstruct(vae, pairs[through_vae].reshape(-1, *pairs.shape[2:]))
            pairs[through_vae] = recon.reshape(-1, *pairs.shape[1:])
        images, bad = images_to_tensor(pairs[:, 0]), images_to_tensor(pairs[:, 1])
        return clip_hard_loss(model, tokenizer, captions, negatives, images, bad)

    finished = run_stage("clip-hard", cfg, {"clip": model}, step_loss, checkpoint_dir)
    if finished:
        shapes_model.save_module(model, weights_dir / shapes_model.CLIP_HARD_FILE, dtype=torch.float16)
        shapes_model.write_manifest({"clip_hard_training": _record("clip-hard", cfg)}, weights_dir)
    return finished


STAGES: dict[str, Callable[[StageConfig, Path, Path], bool]] = {
    "vae": train_vae,
    "infinity": train_infinity,
    "clip": train_clip,
    "clip-hard": train_clip_hard,
}


def vocabulary(num_captions: int = 20000) -> list[str]:
    """Every word of the caption grammar: training captions plus the held-out evaluation prompts."""
    words = {w for _, prompt in world.eval_prompts() for w in prompt.split()}
    rng = np.random.default_rng(12345)
    words |= {w for _ in range(num_captions) for w in world.sample_example(rng)[0].split()}
    return sorted(words)


def _record(stage: str, cfg: StageConfig) -> dict:
    return {
        "command": f"varsearch shapes train --stage {stage}",
        "config": asdict(cfg),
        "torch": torch.__version__,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
