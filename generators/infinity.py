"""The Infinity transformer (Han et al., arXiv 2412.04431): a bitwise next-scale prediction model.

A clean reimplementation whose state-dict keys and shapes equal the official checkpoints'.
One forward processes the tokens of one or more scales for a batch of rows; with a
:class:`~generators.kv_cache.KVCache` the tokens attend to everything cached before them.

Shape convention (suffixes as upstream): B rows in the batch (cond and uncond rows of CFG
are separate rows), L tokens, C model width, H heads, d head dim, T text tokens, Ct text
feature width, V = 2 * bits per token (two logits per bit).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from generators.kv_cache import KVCache
from generators.rope import apply_rope

MAX_SCALES = 15  # rows of lvl_embed in every released checkpoint


@dataclass(frozen=True)
class InfinityConfig:
    depth: int = 32
    embed_dim: int = 2048  # C
    num_heads: int = 16
    mlp_ratio: float = 4.0
    text_channels: int = 2048  # Ct: width of the text encoder features (Flan-T5-XL: 2048)
    text_maxlen: int = 512  # rows of the learned null text `cfg_uncond`
    bits_per_token: int = 32  # VAE codebook_dim, x4 with spatial patchify (8B: 56)
    block_chunks: int = 8  # only decides state-dict key names: block_chunks.{c}.module.{j}
    norm_eps: float = 1e-6
    rope_base: float = 10000.0
    # Upstream's cross-attention casts q/k/v to bf16 around flash-attn even in fp32 models;
    # keep it to match official outputs, drop it for exact fp32 arithmetic.
    cross_attn_bf16: bool = True

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.head_dim % 4:
            raise ValueError(f"head_dim {self.head_dim} must be divisible by 4 for 2D RoPE")
        if self.text_channels % self.text_pool_head_dim:
            raise ValueError(f"text_channels {self.text_channels} must be a multiple of {self.text_pool_head_dim}")
        if self.embed_dim % self.text_pool_heads:
            raise ValueError(f"embed_dim must be divisible by the {self.text_pool_heads} text-pool heads")
        if self.depth % self.block_chunks:
            raise ValueError(f"depth {self.depth} is not divisible by block_chunks {self.block_chunks}")

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def ffn_hidden(self) -> int:
        return round(self.embed_dim * self.mlp_ratio / 256) * 256

    @property
    def text_pool_head_dim(self) -> int:
        """Head width in the text's K/V space of the attentive pool (upstream: 64 above C=4096)."""
        return 64 if self.embed_dim > 4096 else 128

    @property
    def text_pool_heads(self) -> int:
        return self.text_channels // self.text_pool_head_dim

    @classmethod
    def from_name(cls, name: str, **overrides: object) -> InfinityConfig:
        if name not in INFINITY_CONFIGS:
            raise ValueError(f"unknown Infinity config {name!r}; known: {sorted(INFINITY_CONFIGS)}")
        return replace(INFINITY_CONFIGS[name], **overrides)


INFINITY_CONFIGS: dict[str, InfinityConfig] = {
    "infinity-2b": InfinityConfig(depth=32, embed_dim=2048, num_heads=16, bits_per_token=32, block_chunks=8),
    "infinity-8b": InfinityConfig(depth=40, embed_dim=3584, num_heads=28, bits_per_token=56, block_chunks=8),
    "infinity-125m": InfinityConfig(depth=12, embed_dim=768, num_heads=8, bits_per_token=16, block_chunks=4),
    # Random-weight sizes for tests and benchmarks on a CPU.
    "infinity-tiny": InfinityConfig(
        depth=2, embed_dim=64, num_heads=2, text_channels=128, text_maxlen=64, bits_per_token=8, block_chunks=1
    ),
    "infinity-small": InfinityConfig(
        depth=4, embed_dim=128, num_heads=4, text_channels=128, text_maxlen=64, bits_per_token=16, block_chunks=2
    ),
}


def ada_layer_norm(x_BLC: Tensor, scale: Tensor, shift: Tensor, eps: float) -> Tensor:
    """LayerNorm without affine, modulated by AdaLN scale/shift; always in fp32."""
    x = F.layer_norm(x_BLC.float(), (x_BLC.shape[-1],), eps=eps)
    return x * (scale + 1) + shift


class SelfAttention(nn.Module):
    """Cosine attention with a learned per-head scale and 2D RoPE on q and k."""

    def __init__(self, cfg: InfinityConfig) -> None:
        super().__init__()
        C, self.num_heads, self.head_dim = cfg.embed_dim, cfg.num_heads, cfg.head_dim
        self.mat_qkv = nn.Linear(C, 3 * C, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(C))
        self.v_bias = nn.Parameter(torch.zeros(C))
        self.register_buffer("zero_k_bias", torch.zeros(C))
        self.scale_mul_1H11 = nn.Parameter(torch.full((1, self.num_heads, 1, 1), math.log(4.0)))
        self.max_scale_mul = math.log(100.0)
        self.proj = nn.Linear(C, C)

    def forward(
        self,
        x_BLC: Tensor,
        cos_Ld: Tensor,
        sin_Ld: Tensor,
        cache: KVCache | None,
        layer: int,
        attn_mask: Tensor | None,
    ) -> Tensor:
        B, L, C = x_BLC.shape
        bias = torch.cat((self.q_bias, self.zero_k_bias, self.v_bias))
        qkv = F.linear(x_BLC, self.mat_qkv.weight, bias).view(B, L, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, L, d]
        scale_mul = self.scale_mul_1H11.clamp_max(self.max_scale_mul).exp()
        q = F.normalize(q, dim=-1).mul(scale_mul)
        k = F.normalize(k, dim=-1)
        q, k = apply_rope(q, cos_Ld, sin_Ld), apply_rope(k, cos_Ld, sin_Ld)
        if cache is not None:
            k, v = cache.append(layer, k, v)  # [B, H, L_cached + L, d]
        out = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=attn_mask, scale=1.0)
        return self.proj(out.transpose(1, 2).reshape(B, L, C))


class CrossAttention(nn.Module):
    """Attention from image tokens (or a learned pool query) to padded text tokens."""

    def __init__(self, cfg: InfinityConfig, q_dim: int, kv_dim: int, num_heads: int, pool: bool) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, q_dim // num_heads
        self.bf16_io = cfg.cross_attn_bf16
        if pool:  # one learned query per head (TextAttentivePool)
            self.mat_q = nn.Parameter(torch.zeros(1, num_heads, self.head_dim))
        else:
            self.mat_q = nn.Linear(q_dim, q_dim)
        self.mat_kv = nn.Linear(kv_dim, 2 * q_dim, bias=False)
        self.v_bias = nn.Parameter(torch.zeros(q_dim))
        self.register_buffer("zero_k_bias", torch.zeros(q_dim))
        self.proj = nn.Linear(q_dim, q_dim)

    def forward(self, x_BLC: Tensor | None, text_BTC: Tensor, text_mask_BT: Tensor) -> Tensor:
        """Returns (B, L, C); with the pool query (x_BLC None) L is 1."""
        B, T, _ = text_BTC.shape
        kv = F.linear(text_BTC, self.mat_kv.weight, torch.cat((self.zero_k_bias, self.v_bias)))
        k, v = kv.view(B, T, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)  # [B, H, T, d]
        if x_BLC is None:
            q = self.mat_q.to(kv.dtype).expand(B, -1, -1).unsqueeze(2)  # [B, H, 1, d]
        else:
            q = self.mat_q(x_BLC).view(B, x_BLC.shape[1], self.num_heads, self.head_dim).transpose(1, 2)
        out_dtype = q.dtype
        if self.bf16_io:  # round like upstream's flash-attn call, attend in fp32
            q, k, v = (t.to(torch.bfloat16).float() for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=text_mask_BT[:, None, None, :])
        if self.bf16_io:
            out = out.to(torch.bfloat16)
        out = out.to(out_dtype).transpose(1, 2).reshape(B, q.shape[2], -1)
        return self.proj(out)


class TextAttentivePool(nn.Module):
    """Pools text features into one vector: the SOS token and the AdaLN condition."""

    def __init__(self, cfg: InfinityConfig) -> None:
        super().__init__()
        self.ca = CrossAttention(cfg, cfg.embed_dim, cfg.text_channels, cfg.text_pool_heads, pool=True)

    def forward(self, text_BTC: Tensor, text_mask_BT: Tensor) -> Tensor:
        return self.ca(None, text_BTC, text_mask_BT).squeeze(1)  # [B, C]


class FFN(nn.Module):
    def __init__(self, cfg: InfinityConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cfg.embed_dim, cfg.ffn_hidden)
        self.fc2 = nn.Linear(cfg.ffn_hidden, cfg.embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class Block(nn.Module):
    """Self-attention, cross-attention to text, FFN; AdaLN from the shared condition."""

    def __init__(self, cfg: InfinityConfig) -> None:
        super().__init__()
        C = cfg.embed_dim
        self.eps = cfg.norm_eps
        self.ada_gss = nn.Parameter(torch.zeros(1, 1, 6, C))
        self.sa = SelfAttention(cfg)
        self.ca = CrossAttention(cfg, C, C, cfg.num_heads, pool=False)
        self.ca_norm = nn.LayerNorm(C, eps=cfg.norm_eps)
        self.ffn = FFN(cfg)

    def forward(self, x_BLC: Tensor, ctx: BlockContext, layer: int) -> Tensor:
        gamma1, gamma2, scale1, scale2, shift1, shift2 = (self.ada_gss + ctx.ada_B16C).unbind(2)  # each [B, 1, C]
        h = ada_layer_norm(x_BLC, scale1, shift1, self.eps)
        x_BLC = x_BLC + self.sa(h, ctx.cos_Ld, ctx.sin_Ld, ctx.cache, layer, ctx.attn_mask) * gamma1
        x_BLC = x_BLC + self.ca(self._ca_norm(x_BLC), ctx.text_BTC, ctx.text_mask_BT).float()
        h = ada_layer_norm(x_BLC, scale2, shift2, self.eps)
        return x_BLC + self.ffn(h) * gamma2

    def _ca_norm(self, x_BLC: Tensor) -> Tensor:
        """ca_norm in fp32 whatever the block dtype, as autocast runs upstream's bf16 LayerNorm."""
        norm = self.ca_norm
        return F.layer_norm(x_BLC.float(), norm.normalized_shape, norm.weight.float(), norm.bias.float(), norm.eps)


@dataclass
class BlockContext:
    """Everything a block needs besides its input, for one forward."""

    ada_B16C: Tensor  # shared AdaLN condition, [B, 1, 6, C]
    text_BTC: Tensor  # projected text tokens for cross-attention, [B, T, C]
    text_mask_BT: Tensor  # True for real text tokens, [B, T]
    cos_Ld: Tensor  # RoPE cos for this forward's tokens, [L, d/2]
    sin_Ld: Tensor
    cache: KVCache | None
    attn_mask: Tensor | None  # [L, L_cached + L] bool, None = attend to everything


class _BlockChunk(nn.Module):
    """Only exists so state-dict keys read `block_chunks.{c}.module.{j}` as upstream's."""

    def __init__(self, blocks: list[Block]) -> None:
        super().__init__()
        self.module = nn.ModuleList(blocks)


class AdaLNBeforeHead(nn.Module):
    def __init__(self, cfg: InfinityConfig) -> None:
        super().__init__()
        self.eps = cfg.norm_eps
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(cfg.embed_dim, 2 * cfg.embed_dim))

    def forward(self, x_BLC: Tensor, cond_BD: Tensor) -> Tensor:
        scale, shift = self.ada_lin(cond_BD).view(-1, 1, 2, x_BLC.shape[-1]).unbind(2)
        return ada_layer_norm(x_BLC, scale, shift, self.eps)


@dataclass
class TextConditioning:
    """Per-row text conditioning, computed once per prompt and gathered per candidate row."""

    cond_BD: Tensor  # pooled text = SOS token and head condition, [B, C]
    ada_B16C: Tensor  # shared_ada_lin(cond_BD), [B, 1, 6, C]
    text_BTC: Tensor  # text_proj_for_ca(text), [B, T, C]
    text_mask_BT: Tensor  # [B, T] bool


ScaleSpan = tuple[int, int, int]  # (scale index, first token, end token) of one scale's tokens in a forward


def scale_spans(scale_ids_L: Tensor) -> tuple[ScaleSpan, ...]:
    """Contiguous token segment of every scale in a forward (scales are consecutive runs)."""
    ids, counts = torch.unique_consecutive(scale_ids_L, return_counts=True)
    ends = counts.cumsum(0).tolist()
    return tuple((s, e - n, e) for s, n, e in zip(ids.tolist(), counts.tolist(), ends, strict=True))


class FeatureHook:
    """Rewrites hidden states at fixed points of a forward; every method defaults to identity.

    `spans` tells a hook which tokens belong to which scale, so a multi-scale (teacher-forced)
    forward can be treated one scale at a time. Hooks see all rows of the batch; which rows are
    cond or uncond is the caller's knowledge (the engine builds hooks that know their rows).
    """

    def model_input(self, x_BLC: Tensor, spans: tuple[ScaleSpan, ...]) -> Tensor:
        """Embedded input tokens (after word_embed / the SOS token, before lvl_embed)."""
        return x_BLC

    def block_input(self, x_BLC: Tensor, block_idx: int, spans: tuple[ScaleSpan, ...]) -> Tensor:
        return x_BLC

    def block_output(self, x_BLC: Tensor, block_idx: int, spans: tuple[ScaleSpan, ...]) -> Tensor:
        return x_BLC

    def final_hidden(self, h_BLC: Tensor, spans: tuple[ScaleSpan, ...]) -> Tensor:
        """The last block's output, before head_nm and the head."""
        return h_BLC


class Infinity(nn.Module):
    def __init__(self, cfg: InfinityConfig) -> None:
        super().__init__()
        self.cfg = cfg
        C, Ct = cfg.embed_dim, cfg.text_channels
        self.cfg_uncond = nn.Parameter(torch.zeros(cfg.text_maxlen, Ct))  # learned null text
        self.pos_start = nn.Parameter(torch.zeros(1, 1, C))
        self.text_norm = RMSNorm(Ct, cfg.norm_eps)
        self.text_proj_for_sos = TextAttentivePool(cfg)
        self.text_proj_for_ca = nn.Sequential(nn.Linear(Ct, C), nn.GELU(approximate="tanh"), nn.Linear(C, C))
        self.lvl_embed = nn.Embedding(MAX_SCALES, C)
        self.word_embed = nn.Linear(cfg.bits_per_token, C)
        self.shared_ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(C, 6 * C))
        blocks = [Block(cfg) for _ in range(cfg.depth)]
        if cfg.block_chunks > 1:
            per_chunk = cfg.depth // cfg.block_chunks
            self.block_chunks = nn.ModuleList(
                _BlockChunk(blocks[i : i + per_chunk]) for i in range(0, cfg.depth, per_chunk)
            )
        else:
            self.blocks = nn.ModuleList(blocks)
        self.ordered_blocks: tuple[Block, ...] = tuple(blocks)
        self.head_nm = AdaLNBeforeHead(cfg)
        self.head = nn.Linear(C, 2 * cfg.bits_per_token)
        # Hooks run in every forward; per-call hooks (a request's) are passed to forward instead.
        self.feature_hooks: list[FeatureHook] = []

    @torch.no_grad()
    def init_weights(self, seed: int = 0) -> Infinity:
        """Random weights for tests and benchmarks: N(0, 1/fan_in) matrices, unit norms, zero biases.

        Checkpoints overwrite every one of these; the seed makes random models reproducible.
        """
        g = torch.Generator().manual_seed(seed)
        for name, p in self.named_parameters():
            if name.endswith("scale_mul_1H11"):
                p.fill_(math.log(4.0))
            elif p.ndim == 1:
                p.fill_(1.0 if name.endswith("norm.weight") else 0.0)
            else:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[-1]))
        return self

    def encode_text(self, text_BTC: Tensor, text_mask_BT: Tensor) -> TextConditioning:
        """Text features (padded, with mask) -> the conditioning every forward needs."""
        text = self.text_norm(text_BTC.float())
        cond_BD = self.text_proj_for_sos(text, text_mask_BT)
        return TextConditioning(
            cond_BD=cond_BD,
            ada_B16C=self.shared_ada_lin(cond_BD.float()).view(-1, 1, 6, self.cfg.embed_dim),
            text_BTC=self.text_proj_for_ca(text),
            text_mask_BT=text_mask_BT,
        )

    def null_text(self, length: int) -> Tensor:
        """The unconditional text of a prompt with `length` tokens: cfg_uncond[:length], [length, Ct]."""
        if length > self.cfg.text_maxlen:
            raise ValueError(f"text of {length} tokens exceeds text_maxlen {self.cfg.text_maxlen}")
        return self.cfg_uncond[:length]

    def sos_tokens(self, cond: TextConditioning) -> Tensor:
        """Input of scale 0: the pooled text plus pos_start, [B, 1, C]."""
        return cond.cond_BD.unsqueeze(1) + self.pos_start

    def forward(
        self,
        x_BLC: Tensor,
        cond: TextConditioning,
        scale_ids_L: Tensor,
        cos_Ld: Tensor,
        sin_Ld: Tensor,
        cache: KVCache | None = None,
        attn_mask: Tensor | None = None,
        hooks: Sequence[FeatureHook] = (),
    ) -> Tensor:
        """Run all blocks over embedded tokens; returns the final hidden state [B, L, C].

        Args:
            x_BLC: embedded input tokens of one or more consecutive scales.
            scale_ids_L: scale index of every token (for lvl_embed and hooks), [L].
            cos_Ld, sin_Ld: RoPE tables for exactly these tokens.
            cache: keys/values of earlier tokens; this forward's are appended to it.
            attn_mask: bool [L, L_cached + L], True = may attend; None attends to all.
            hooks: run after `self.feature_hooks`, for this call only.
        """
        ctx = BlockContext(cond.ada_B16C, cond.text_BTC, cond.text_mask_BT, cos_Ld, sin_Ld, cache, attn_mask)
        hooks = (*self.feature_hooks, *hooks)  # empty: the loops below add no work, outputs are unchanged
        spans = scale_spans(scale_ids_L) if hooks else ()
        for hook in hooks:
            x_BLC = hook.model_input(x_BLC, spans)
        x_BLC = x_BLC + self.lvl_embed(scale_ids_L)  # before the first block only
        for i, block in enumerate(self.ordered_blocks):
            for hook in hooks:
                x_BLC = hook.block_input(x_BLC, i, spans)
            x_BLC = block(x_BLC, ctx, i)
            for hook in hooks:
                x_BLC = hook.block_output(x_BLC, i, spans)
        for hook in hooks:
            x_BLC = hook.final_hidden(x_BLC, spans)
        return x_BLC

    def logits(self, h_BLC: Tensor, cond_BD: Tensor) -> Tensor:
        """Bit logits [B, L, V], V = 2 * bits: index 2j+k is the logit of "bit j == k".

        The head stays in fp32 whatever the blocks' dtype (as upstream's get_logits).
        """
        with torch.autocast(h_BLC.device.type, enabled=False):
            return self.head(self.head_nm(h_BLC.float(), cond_BD.float()))


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight).to(x.dtype)
