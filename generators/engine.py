"""Stepwise decoding: the generator interface that search drives.

A :class:`CandidateBatch` holds the decoding state of candidates that have all sampled the
same number of scales. :class:`InfinityEngine` turns one batch into another: advance by one or
more scales (one batched forward per scale), fork into children that share the parent's KV
cache (gathered, not recomputed), select or drop rows, truncate back to a scale boundary,
rebuild from prefix bits with one teacher-forced forward, and decode previews or final images.

A candidate's SamplingParams may turn on DiverseVAR (generators.diversevar): its forwards then
run with feature hooks that reweight only that candidate's rows.

Batches are values: an operation returns a new batch and leaves its input usable, so a
snapshot for a rollout is just the old batch. Every forward reports its cost as
:class:`ForwardCost` (1 NFE = one candidate through one scale; CFG rows are not counted twice).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from generators.bsq_vae import BSQVAE
from generators.diversevar import DiverseVARConfig, DiverseVARHook
from generators.infinity import FeatureHook, Infinity, TextConditioning
from generators.kv_cache import KVCache
from generators.multiscale import ScaleCodec
from generators.rope import rope_angles
from generators.sampling import (
    SamplingParams,
    bit_probabilities,
    check_same_guidance,
    guided_logits,
    sample_bits,
)
from generators.schedules import ScaleSchedule
from generators.text_encoder import TextEncoder

Path = tuple[int, ...]
DEFAULT_SAMPLING = SamplingParams()


@dataclass(frozen=True)
class ForwardCost:
    """What one engine call spent."""

    nfe: int = 0  # candidates x scales forwarded (CFG counted once)
    tokens: int = 0  # candidates x tokens forwarded: the token-weighted cost
    rebuild_nfe: int = 0  # NFEs spent re-creating caches from prefixes (reported apart)
    rebuild_tokens: int = 0
    wall_s: float = 0.0

    def __add__(self, other: ForwardCost) -> ForwardCost:
        return ForwardCost(*(a + b for a, b in zip(self.astuple(), other.astuple(), strict=True)))

    def astuple(self) -> tuple:
        return (self.nfe, self.tokens, self.rebuild_nfe, self.rebuild_tokens, self.wall_s)


@dataclass(frozen=True)
class CandidateBatch:
    """B candidates, all with `num_scales_done` scales sampled.

    Rows of `cache` are [cond_0 .. cond_{B-1}] or, with CFG, [cond_0 .. cond_{B-1}, uncond_0 .. uncond_{B-1}].
    """

    prompts: tuple[str, ...]
    seeds: tuple[int, ...]
    paths: tuple[Path, ...]  # addresses a candidate's randomness: (fork index, ...)
    sampling: tuple[SamplingParams, ...]
    bits: tuple[Tensor, ...]  # per sampled scale, uint8 [B, h*w, bits_per_token]
    summed_codes_BdHW: Tensor  # sum of all sampled scales' codes on the final latent grid
    cache: KVCache
    num_cfg_rows: int  # 2 with classifier-free guidance, else 1

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def num_scales_done(self) -> int:
        return len(self.bits)

    def prefix_bits(self, index: int) -> list[Tensor]:
        """Candidate `index`'s sampled bits per scale: its address, [h*w, bits] uint8 each."""
        return [b[index] for b in self.bits]


class InfinityEngine:
    """Runs an Infinity model and its VAE over candidate batches for one scale schedule."""

    def __init__(
        self,
        model: Infinity,
        vae: BSQVAE,
        text_encoder: TextEncoder,
        schedule: ScaleSchedule,
        max_cached_prompts: int = 4096,
    ) -> None:
        if text_encoder.channels != model.cfg.text_channels:
            raise ValueError(
                f"text encoder gives {text_encoder.channels}-d features, the model expects {model.cfg.text_channels}"
            )
        self.model, self.vae, self.text_encoder = model.eval(), vae.eval(), text_encoder
        self.schedule = schedule
        self.codec = ScaleCodec(schedule, vae.config.apply_spatial_patchify)
        expected_bits = vae.config.codebook_dim * (4 if self.codec.patchify else 1)
        if expected_bits != model.cfg.bits_per_token:
            raise ValueError(f"VAE gives {expected_bits} bits per token, the model expects {model.cfg.bits_per_token}")
        self.device = next(model.parameters()).device
        self.compute_dtype = model.ordered_blocks[0].ffn.fc1.weight.dtype
        angles = rope_angles(schedule, model.cfg.head_dim, model.cfg.rope_base).to(self.device)
        self._cos_Ld, self._sin_Ld = angles.cos(), angles.sin()
        self._prompt_cache: OrderedDict[str, TextConditioning] = OrderedDict()
        self._max_cached_prompts = max_cached_prompts

    # ---- candidates -------------------------------------------------------------------------

    @torch.no_grad()
    def start(
        self,
        prompts: Sequence[str],
        seeds: Sequence[int],
        sampling: SamplingParams | Sequence[SamplingParams] = DEFAULT_SAMPLING,
        paths: Sequence[Path] | None = None,
    ) -> CandidateBatch:
        """New candidates with nothing sampled yet; text is encoded once per distinct prompt."""
        if len(prompts) == 0:
            raise ValueError("cannot start a batch of zero candidates")
        if len(seeds) != len(prompts):
            raise ValueError(f"got {len(prompts)} prompts but {len(seeds)} seeds")
        params = (sampling,) * len(prompts) if isinstance(sampling, SamplingParams) else tuple(sampling)
        if len(params) != len(prompts):
            raise ValueError(f"got {len(prompts)} prompts but {len(params)} sampling params")
        self._check_sampling(params)
        num_cfg_rows = 2 if any(p.uses_cfg for p in params) else 1
        self._conditioning(prompts)  # encode and cache now, so errors surface here
        d = self.vae.config.codebook_dim
        return CandidateBatch(
            prompts=tuple(prompts),
            seeds=tuple(int(s) for s in seeds),
            paths=tuple(tuple(p) for p in paths) if paths is not None else ((),) * len(prompts),
            sampling=params,
            bits=(),
            summed_codes_BdHW=torch.zeros(len(prompts), d, *self.codec.latent_hw, device=self.device),
            cache=KVCache.empty(self.model.cfg.depth),
            num_cfg_rows=num_cfg_rows,
        )

    @torch.no_grad()
    def advance(
        self, batch: CandidateBatch, to_scale: int | None = None, forced_bits: dict[int, Tensor] | None = None
    ) -> tuple[CandidateBatch, ForwardCost]:
        """Sample scales until `to_scale` scales are done (default: all), one forward per scale.

        `forced_bits` maps a scale index to bits [B, h*w, bits] used instead of sampling
        (teacher forcing); the forward still runs and is charged.
        """
        to_scale = self.schedule.num_scales if to_scale is None else to_scale
        if not batch.num_scales_done <= to_scale <= self.schedule.num_scales:
            raise ValueError(
                f"cannot advance from {batch.num_scales_done} to {to_scale} scales "
                f"(schedule has {self.schedule.num_scales})"
            )
        cost = ForwardCost()
        while batch.num_scales_done < to_scale:
            batch, step_cost, _ = self._step(batch, (forced_bits or {}).get(batch.num_scales_done))
            cost = cost + step_cost
        return batch, cost

    @torch.no_grad()
    def step_logits(self, batch: CandidateBatch, forced: Tensor | None = None) -> tuple[CandidateBatch, Tensor]:
        """Advance one scale and also return the guided logits it sampled from, [B, h*w, V]."""
        batch, _, logits = self._step(batch, forced)
        return batch, logits

    def _step(self, batch: CandidateBatch, forced: Tensor | None) -> tuple[CandidateBatch, ForwardCost, Tensor]:
        t0 = time.perf_counter()
        si, B = batch.num_scales_done, len(batch)
        lo, hi = self.schedule.token_offsets[si], self.schedule.token_offsets[si + 1]
        cond = self._batch_conditioning(batch)
        x_BLC = self._scale_input(batch, cond)
        cache = KVCache(list(batch.cache.keys), list(batch.cache.values))  # keep `batch` intact
        with self._autocast():
            h_BLC = self.model(
                x_BLC,
                cond,
                torch.full((hi - lo,), si, device=self.device),
                self._cos_Ld[lo:hi],
                self._sin_Ld[lo:hi],
                cache,
                hooks=self._hooks(batch),
            )
        logits_RBLV = self.model.logits(h_BLC, cond.cond_BD)
        cfg_B = self._per_candidate(batch, lambda p: p.cfg_at(si))
        inv_tau_B = self._per_candidate(batch, lambda p: 1.0 / p.tau_at(si))
        logits_BLV = guided_logits(logits_RBLV, cfg_B, inv_tau_B, B)
        if forced is None:
            p1 = bit_probabilities(
                logits_BLV,
                self._per_candidate(batch, lambda p: p.top_k),
                self._per_candidate(batch, lambda p: p.top_p),
            )
            bits_BLd = sample_bits(p1, batch.seeds, batch.paths, si)
        else:
            bits_BLd = self._check_bits(forced.to(self.device, torch.uint8), B, si)
        summed = batch.summed_codes_BdHW + self.codec.codes_on_latent(bits_BLd, si)
        nxt = replace(batch, bits=(*batch.bits, bits_BLd), summed_codes_BdHW=summed, cache=cache)
        cost = ForwardCost(nfe=B, tokens=B * (hi - lo), wall_s=time.perf_counter() - t0)
        return nxt, cost, logits_BLV

    @torch.no_grad()
    def rebuild(
        self,
        prompts: Sequence[str],
        seeds: Sequence[int],
        paths: Sequence[Path],
        prefix_bits: Sequence[Sequence[Tensor]],
        sampling: SamplingParams | Sequence[SamplingParams] = DEFAULT_SAMPLING,
    ) -> tuple[CandidateBatch, ForwardCost]:
        """Re-create candidates from their addresses with ONE teacher-forced forward.

        All candidates must have the same number k of sampled scales; the forward runs over
        the tokens of scales 0..k-1 with a block-causal mask and fills the KV cache exactly as
        k incremental steps would have.
        """
        batch = self.start(prompts, seeds, sampling, paths)
        num_scales = {len(b) for b in prefix_bits}
        if len(num_scales) != 1:
            raise ValueError(f"rebuild needs prefixes of equal length, got {sorted(num_scales)}")
        k = num_scales.pop()
        if len(prefix_bits) != len(prompts):
            raise ValueError(f"got {len(prompts)} prompts but {len(prefix_bits)} prefixes")
        if k == 0:
            return batch, ForwardCost()
        if k > self.schedule.num_scales:
            raise ValueError(f"prefix has {k} scales, the schedule only {self.schedule.num_scales}")
        t0 = time.perf_counter()
        bits = tuple(
            self._check_bits(torch.stack([p[si] for p in prefix_bits]).to(self.device, torch.uint8), len(batch), si)
            for si in range(k)
        )
        inputs, summed = self.codec.teacher_forcing(list(bits), batch.summed_codes_BdHW)
        batch = replace(batch, bits=bits, summed_codes_BdHW=summed)
        cond = self._batch_conditioning(batch)
        x_BLC = torch.cat([self.model.sos_tokens(cond), *(self._embed(inp, batch) for inp in inputs)], dim=1)
        L = self.schedule.token_offsets[k]
        scale_ids = torch.repeat_interleave(
            torch.arange(k, device=self.device), torch.tensor(self.schedule.tokens_per_scale[:k], device=self.device)
        )
        block_causal = scale_ids[None, :] <= scale_ids[:, None]  # [L, L] token i sees scales <= its own
        cache = KVCache.empty(self.model.cfg.depth)
        with self._autocast():
            self.model(
                x_BLC, cond, scale_ids, self._cos_Ld[:L], self._sin_Ld[:L], cache, block_causal, self._hooks(batch)
            )
        cost = ForwardCost(rebuild_nfe=len(batch) * k, rebuild_tokens=len(batch) * L, wall_s=time.perf_counter() - t0)
        return replace(batch, cache=cache), cost

    def fork(self, batch: CandidateBatch, num_children: int | Sequence[int]) -> CandidateBatch:
        """Each candidate i becomes num_children[i] children with paths path + (j,).

        Children share the parent's prefix: cache rows and codes are gathered, not recomputed.
        """
        counts = [num_children] * len(batch) if isinstance(num_children, int) else list(num_children)
        if len(counts) != len(batch) or any(c < 0 for c in counts):
            raise ValueError(f"need a non-negative child count per candidate ({len(batch)}), got {counts}")
        parents = [i for i, c in enumerate(counts) for _ in range(c)]
        child_paths = [(*batch.paths[i], j) for i, c in enumerate(counts) for j in range(c)]
        return replace(self.select(batch, parents), paths=tuple(child_paths))

    def with_sampling(
        self, batch: CandidateBatch, sampling: SamplingParams | Sequence[SamplingParams]
    ) -> CandidateBatch:
        """The same candidates, sampling their later scales with other settings (a rollout policy).

        Guidance may not be turned on or off: the KV cache holds unconditional rows or not.
        """
        params = (sampling,) * len(batch) if isinstance(sampling, SamplingParams) else tuple(sampling)
        check_same_guidance(batch.sampling, params)
        self._check_sampling(params)
        return replace(batch, sampling=params)

    def _check_sampling(self, params: Sequence[SamplingParams]) -> None:
        """Per-scale values cover the schedule; DiverseVAR's scales and blocks exist in this model."""
        for p in params:
            p.check_scales(self.schedule.num_scales)
            if p.diversevar is not None:
                p.diversevar.check(self.schedule.num_scales, self.model.cfg.depth)

    def select(self, batch: CandidateBatch, indices: Sequence[int]) -> CandidateBatch:
        """Keep candidates `indices` in that order (repeats allowed); dropping is selecting the rest."""
        if len(indices) == 0:
            raise ValueError("selecting zero candidates leaves an empty batch; drop the batch instead")
        B = len(batch)
        if any(not 0 <= i < B for i in indices):
            raise IndexError(f"candidate indices {list(indices)} out of range for a batch of {B}")
        idx = torch.as_tensor(list(indices), device=self.device)
        rows = torch.cat([idx + r * B for r in range(batch.num_cfg_rows)])
        return CandidateBatch(
            prompts=tuple(batch.prompts[i] for i in indices),
            seeds=tuple(batch.seeds[i] for i in indices),
            paths=tuple(batch.paths[i] for i in indices),
            sampling=tuple(batch.sampling[i] for i in indices),
            bits=tuple(b.index_select(0, idx) for b in batch.bits),
            summed_codes_BdHW=batch.summed_codes_BdHW.index_select(0, idx),
            cache=batch.cache.select(rows) if batch.cache.num_tokens else batch.cache,
            num_cfg_rows=batch.num_cfg_rows,
        )

    def truncate(self, batch: CandidateBatch, num_scales: int) -> CandidateBatch:
        """Roll candidates back to `num_scales` sampled scales (the state a rollout started from)."""
        if not 0 <= num_scales <= batch.num_scales_done:
            raise ValueError(f"cannot truncate {batch.num_scales_done} sampled scales to {num_scales}")
        _, summed = self.codec.teacher_forcing(list(batch.bits[:num_scales]), torch.zeros_like(batch.summed_codes_BdHW))
        return replace(
            batch,
            bits=batch.bits[:num_scales],
            summed_codes_BdHW=summed,
            cache=batch.cache.truncated(self.schedule.token_offsets[num_scales]),
        )

    @staticmethod
    def concat(batches: Sequence[CandidateBatch]) -> CandidateBatch:
        """One batch from several at the same scale (continuous batching across searches)."""
        if not batches:
            raise ValueError("nothing to concatenate")
        if len({b.num_scales_done for b in batches}) != 1 or len({b.num_cfg_rows for b in batches}) != 1:
            raise ValueError("can only concatenate batches at the same scale with the same CFG setting")
        R = batches[0].num_cfg_rows
        device = batches[0].summed_codes_BdHW.device
        if batches[0].cache.num_tokens:  # each batch's rows are [cond..., uncond...]: regroup them
            cache = KVCache.concat(
                [
                    b.cache.select(torch.arange(r * len(b), (r + 1) * len(b), device=device))
                    for r in range(R)
                    for b in batches
                ]
            )
        else:
            cache = batches[0].cache
        return CandidateBatch(
            prompts=sum((b.prompts for b in batches), ()),
            seeds=sum((b.seeds for b in batches), ()),
            paths=sum((b.paths for b in batches), ()),
            sampling=sum((b.sampling for b in batches), ()),
            bits=tuple(torch.cat(per_scale) for per_scale in zip(*(b.bits for b in batches), strict=True)),
            summed_codes_BdHW=torch.cat([b.summed_codes_BdHW for b in batches]),
            cache=cache,
            num_cfg_rows=R,
        )

    # ---- images -----------------------------------------------------------------------------

    @torch.no_grad()
    def decode(self, batch: CandidateBatch) -> np.ndarray:
        """RGB uint8 images (B, H, W, 3) of the accumulated codes: final images when all scales
        are sampled, blurry previews before that.

        One VAE call per candidate: conv kernels choose algorithms by batch size, so a batched
        decode could change a pixel by one depending on batch-mates.
        """
        if batch.num_scales_done == 0:
            raise ValueError("nothing sampled yet: advance the batch at least one scale before decoding")
        z = batch.summed_codes_BdHW.to(self.vae.dtype)
        img = torch.cat([self.vae.decode(z[i : i + 1]) for i in range(len(batch))]).float()
        # (x+1)/2*255 truncated to uint8, as upstream (decode clamps to [-1, 1])
        return ((img + 1) / 2).permute(0, 2, 3, 1).mul(255).to(torch.uint8).cpu().numpy()

    # ---- internals ---------------------------------------------------------------------------

    def _autocast(self) -> torch.autocast:
        enabled = self.compute_dtype != torch.float32
        return torch.autocast(self.device.type, dtype=self.compute_dtype, enabled=enabled)

    def _per_candidate(self, batch: CandidateBatch, value) -> Tensor:
        return torch.tensor([float(value(p)) for p in batch.sampling], device=self.device)

    def _hooks(self, batch: CandidateBatch) -> tuple[FeatureHook, ...]:
        """One DiverseVAR hook per distinct config in the batch, acting only on its candidates' rows.

        Rows are [cond_0..cond_{B-1}(, uncond_0..uncond_{B-1})]; other rows pass through untouched,
        so a candidate decodes the same whatever its batch-mates ask for.
        """
        B = len(batch)
        groups: dict[DiverseVARConfig, list[int]] = {}
        for i, p in enumerate(batch.sampling):
            if p.diversevar is not None:
                groups.setdefault(p.diversevar, []).append(i)
        hooks = []
        for config, idx in groups.items():
            halves = {"cond": (0,), "uncond": (1,), "both": (0, 1)}[config.rows]
            rows = [i + r * B for r in halves if r < batch.num_cfg_rows for i in idx]
            if not rows:  # rows="uncond" without CFG
                continue
            every_row = rows == list(range(B * batch.num_cfg_rows))
            rows_R = None if every_row else torch.tensor(rows, device=self.device)
            hooks.append(DiverseVARHook(config, rows_R, self.model.cfg.depth))
        return tuple(hooks)

    def _check_bits(self, bits: Tensor, B: int, si: int) -> Tensor:
        h, w = self.schedule.scales[si]
        expected = (B, h * w, self.model.cfg.bits_per_token)
        if tuple(bits.shape) != expected:
            raise ValueError(f"bits for scale {si} must have shape {expected}, got {tuple(bits.shape)}")
        if bits.max() > 1:
            raise ValueError(f"bits for scale {si} must be 0 or 1")
        return bits

    def _embed(self, inp_BLd: Tensor, batch: CandidateBatch) -> Tensor:
        x = self.model.word_embed(inp_BLd.float())
        return x.repeat(batch.num_cfg_rows, 1, 1)

    def _scale_input(self, batch: CandidateBatch, cond: TextConditioning) -> Tensor:
        if batch.num_scales_done == 0:
            return self.model.sos_tokens(cond)
        return self._embed(self.codec.next_input(batch.summed_codes_BdHW, batch.num_scales_done), batch)

    def _conditioning(self, prompts: Sequence[str]) -> list[TextConditioning]:
        """Per prompt: rows (cond, uncond) of its text conditioning, computed once and cached."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self._prompt_cache]
        if missing:
            for prompt, feats in zip(missing, self.text_encoder.encode(missing), strict=True):
                feats = feats.to(self.device, torch.float32)
                text = torch.stack([feats, self.model.null_text(feats.shape[0]).float()])  # [2, T, Ct]
                mask = torch.ones(2, feats.shape[0], dtype=torch.bool, device=self.device)
                with torch.no_grad():
                    self._prompt_cache[prompt] = self.model.encode_text(text, mask)
        for p in prompts:
            self._prompt_cache.move_to_end(p)
        while len(self._prompt_cache) > self._max_cached_prompts:
            self._prompt_cache.popitem(last=False)
        return [self._prompt_cache[p] for p in prompts]

    def _batch_conditioning(self, batch: CandidateBatch) -> TextConditioning:
        """Rows [cond_0..cond_{B-1}(, uncond_0..uncond_{B-1})], text padded to the longest."""
        per_prompt = self._conditioning(batch.prompts)
        rows = [(c, r) for r in range(batch.num_cfg_rows) for c in per_prompt]
        T = max(c.text_BTC.shape[1] for c, _ in rows)
        text = torch.stack([F.pad(c.text_BTC[r], (0, 0, 0, T - c.text_BTC.shape[1])) for c, r in rows])
        mask = torch.stack([F.pad(c.text_mask_BT[r], (0, T - c.text_mask_BT.shape[1])) for c, r in rows])
        return TextConditioning(
            cond_BD=torch.stack([c.cond_BD[r] for c, r in rows]),
            ada_B16C=torch.stack([c.ada_B16C[r] for c, r in rows]),
            text_BTC=text,
            text_mask_BT=mask,
        )
