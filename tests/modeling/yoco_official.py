"""A float64-capable transcription of the official YOCO decoder, the oracle of tests/modeling/test_yoco_official.py.

What it transcribes: microsoft/unilm `YOCO/yoco/models/decoder/` — yoco.py (YOCOArgs, DecoderLayer, SelfDecoder,
CrossDecoder, YOCO), gate_retention.py, sliding_window_attention.py, cross_attention.py, feedforward_network.py,
rms_norm.py, kernel/gate_recurrent.py (`parallel_gate_retention`, the chunk form's function), kernel/rotary.py
(interleaved mode), kernel/swiglu.py — as of commit 7402b0ee ("yoco init") with the sliding-window fix f4f7b27
("fix swa", merged in 53ed1159): a query sees itself and the `sliding_window − 1` keys before it. Written from the
math of that code (never copied); module and parameter names are the official ones, so `YOCO.state_dict()` has the
keys of an official checkpoint (`--load-ckpt` file, no prefix).

How it differs from the official code (none of which changes the function computed):
- no model parallelism: ColumnParallelLinear / RowParallelLinear / VocabParallelEmbedding are nn.Linear /
  nn.Embedding with the same names and shapes; no init methods (tests set the weights), no activation checkpointing;
- no CUDA kernels: flash_attn_func is an explicit-mask softmax attention with flash-attn's documented masks (causal
  aligned bottom-right, `window_size=(left, 0)`, GQA query head h reads K/V head h // (H / H_kv)); the chunked Triton
  gated retention is the parallel form (q kᵀ ⊙ exp(b_i − b_j), j ≤ i) v; rotary and SwiGLU are formulas;
- every computation stays in the input dtype: the official code rounds to fp32 even in a float64 model (RMSNorm's
  `x.float()`, the rotary table and Triton rotary kernel, `g.float().cumsum`, the Triton scan's fp32 accumulator, the
  jiterator SwiGLU), so this oracle is the official function without those roundings;
- full-sequence forward only, from position 0: no incremental state, no prefill padding to 256 (the official
  SelfDecoder pads a gated-retention prompt to a multiple of 256 with zeros at the end; causality makes that a
  no-op on the real positions), no `max_seq_len` limit on the rotary table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class YOCOArgs:
    """The official YOCOArgs fields (runtime-only fields kept for params.json round trips)."""

    dim: int
    n_layers: int
    hidden_dim: int
    n_self_heads: int
    n_attn_heads: int
    n_attn_kv_heads: int
    vocab_size: int
    max_batch_size: int = 0
    max_seq_len: int = -1
    model_parallel_size: int = 1
    load_checkpoint: bool = False
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    sliding_window: int | None = None


def _linear(n_in: int, n_out: int) -> nn.Linear:
    return nn.Linear(n_in, n_out, bias=False)


class RMSNorm(nn.Module):
    """x / sqrt(mean(x²) + eps) · weight (official: computed in fp32, here in promote(dtype, fp32))."""

    def __init__(self, dim: int, eps: float = 1e-6, elementwise_affine: bool = True):
        super().__init__()
        self.eps = eps
        if elementwise_affine:
            self.weight = nn.Parameter(torch.ones(dim))
        else:
            self.register_parameter("weight", None)

    def forward(self, x):
        acc = x.to(torch.promote_types(x.dtype, torch.float32))
        out = (acc * torch.rsqrt(acc.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)
        return out if self.weight is None else out * self.weight


def rotary_table(head_dim: int, theta: float, length: int, dtype, device=None):
    """(cos, sin) [length, head_dim/2] of angle_{t,i} = t · theta^(−linspace(0, 1, head_dim/2)_i) (official
    build_rel_pos: note linspace over [0, 1] inclusive, not the usual i / (head_dim/2))."""
    acc = torch.promote_types(dtype, torch.float32)
    inv = 1.0 / theta ** torch.linspace(0, 1, head_dim // 2, dtype=acc, device=device)
    angle = torch.arange(length, dtype=acc, device=device)[:, None] * inv  # [T, D/2]
    return angle.cos().to(dtype), angle.sin().to(dtype)


def apply_rotary_interleaved(x, cos, sin):
    """GPT-J pairs (x_{2i}, x_{2i+1}) rotated by angle i: flash-attn's apply_rotary_emb(interleaved=True).
    x [B, T, H, D]; cos, sin [T, D/2]."""
    x0, x1 = x[..., 0::2], x[..., 1::2]  # [B, T, H, D/2]
    c, s = cos[None, :, None], sin[None, :, None]
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2)


def flash_attention_reference(q, k, v, causal: bool = False, window_left: int = -1, softmax_scale=None):
    """flash_attn_func's documented function. q [B, Tq, H, D], k/v [B, Tk, Hkv, D] → [B, Tq, H, D].
    Query i sees key j iff j ≤ i + Tk − Tq (causal, bottom-right) and j ≥ i + Tk − Tq − window_left (window_left ≥ 0);
    a query that sees no key outputs 0."""
    B, Tq, H, D = q.shape
    Tk, Hkv = k.shape[1], k.shape[2]
    if H % Hkv:
        raise ValueError(f"query heads H={H} must be a multiple of K/V heads Hkv={Hkv}")
    k = k.repeat_interleave(H // Hkv, dim=2)  # head h reads K/V head h // (H / Hkv)
    v = v.repeat_interleave(H // Hkv, dim=2)
    scale = D ** -0.5 if softmax_scale is None else softmax_scale
    scores = torch.einsum("bihd,bjhd->bhij", q, k) * scale  # [B, H, Tq, Tk]
    i = torch.arange(Tq, device=q.device)[:, None] + (Tk - Tq)
    j = torch.arange(Tk, device=q.device)[None, :]
    visible = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device)
    if causal:
        visible &= j <= i
    if window_left >= 0:
        visible &= j >= i - window_left
    scores = scores.masked_fill(~visible, float("-inf"))
    probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # rows with no visible key: 0, as flash-attn
    return torch.einsum("bhij,bjhd->bihd", probs, v)


class FeedForwardNetwork(nn.Module):
    def __init__(self, embed_dim: int, ffn_dim: int):
        super().__init__()
        self.fc1 = _linear(embed_dim, ffn_dim)
        self.gate = _linear(embed_dim, ffn_dim)
        self.fc2 = _linear(ffn_dim, embed_dim)

    def forward(self, x):
        return self.fc2(F.silu(self.fc1(x)) * self.gate(x))  # official swiglu(fc1(x), gate(x))


def parallel_gated_retention(q, k, v, log_gate):
    """o_i = Σ_{j≤i} exp(b_i − b_j) (q_i · k_j / sqrt(D)) v_j with b = cumsum(log_gate): the same function as the
    recurrence S_t = exp(g_t) S_{t−1} + k_tᵀ v_t / sqrt(D), o_t = q_t S_t. q, k, v [B, H, T, D]; log_gate [B, H, T]."""
    T = q.shape[-2]
    b = log_gate.cumsum(-1)  # [B, H, T]
    future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
    decay = (b[..., :, None] - b[..., None, :]).masked_fill(future, float("-inf")).exp()  # [B, H, T, T]
    scores = q @ (k * q.shape[-1] ** -0.5).transpose(-1, -2)
    return (scores * decay) @ v


class GateRetention(nn.Module):
    def __init__(self, args: YOCOArgs, gate_logit_normalizer: float = 16):
        super().__init__()
        self.num_heads = args.n_self_heads
        self.head_dim = args.dim // args.n_self_heads
        self.q_proj = _linear(args.dim, args.dim)
        self.k_proj = _linear(args.dim, args.dim)
        self.v_proj = _linear(args.dim, args.dim)
        self.g_proj = _linear(args.dim, args.dim)
        self.gt_proj = _linear(args.dim, args.n_self_heads)
        self.out_proj = _linear(args.dim, args.dim)
        self.subln = RMSNorm(self.head_dim, elementwise_affine=False, eps=args.norm_eps)
        self.gate_logit_normalizer = gate_logit_normalizer

    def forward(self, x, rel_pos):
        B, T, _ = x.shape
        H, D = self.num_heads, self.head_dim
        q = apply_rotary_interleaved(self.q_proj(x).view(B, T, H, D), *rel_pos).transpose(1, 2)  # [B, H, T, D]
        k = apply_rotary_interleaved(self.k_proj(x).view(B, T, H, D), *rel_pos).transpose(1, 2)
        v = self.v_proj(x).view(B, T, H, D).transpose(1, 2)
        gt = F.logsigmoid(self.gt_proj(x).transpose(1, 2)) / self.gate_logit_normalizer  # [B, H, T]
        o = parallel_gated_retention(q, k, v, gt)  # [B, H, T, D]
        o = self.subln(o).transpose(1, 2).reshape(B, T, H * D)
        return self.out_proj(F.silu(self.g_proj(x)) * o)  # official swiglu(g, o)


class SlidingWindowAttention(nn.Module):
    def __init__(self, args: YOCOArgs):
        super().__init__()
        self.num_heads = args.n_self_heads
        self.head_dim = args.dim // args.n_self_heads
        self.window_size = args.sliding_window
        self.q_proj = _linear(args.dim, args.dim)
        self.k_proj = _linear(args.dim, args.dim)
        self.v_proj = _linear(args.dim, args.dim)
        self.out_proj = _linear(args.dim, args.dim)

    def forward(self, x, rel_pos):
        B, T, _ = x.shape
        H, D = self.num_heads, self.head_dim
        q = apply_rotary_interleaved(self.q_proj(x).view(B, T, H, D), *rel_pos)  # [B, T, H, D]
        k = apply_rotary_interleaved(self.k_proj(x).view(B, T, H, D), *rel_pos)
        v = self.v_proj(x).view(B, T, H, D)
        # official flash_attn_func(q, k, v, causal=True, window_size=(window − 1, 0))
        attn = flash_attention_reference(q, k, v, causal=True, window_left=self.window_size - 1)
        return self.out_proj(attn.reshape(B, T, H * D))


class CrossAttention(nn.Module):
    def __init__(self, args: YOCOArgs):
        super().__init__()
        self.num_heads = args.n_attn_heads
        self.head_dim = args.dim // args.n_attn_heads
        self.q_proj = _linear(args.dim, args.dim)
        self.out_proj = _linear(args.dim, args.dim)

    def forward(self, x, key, value, rel_pos):
        B, T, _ = x.shape
        q = apply_rotary_interleaved(self.q_proj(x).view(B, T, self.num_heads, self.head_dim), *rel_pos)
        attn = flash_attention_reference(q, key, value, causal=True)  # GQA: key/value [B, T, Hkv, D]
        return self.out_proj(attn.reshape(B, T, self.num_heads * self.head_dim))


class DecoderLayer(nn.Module):
    def __init__(self, args: YOCOArgs, is_cross_layer: bool = False):
        super().__init__()
        self.is_cross_layer = is_cross_layer
        if is_cross_layer:
            self.mixer = CrossAttention(args)
        elif args.sliding_window is not None:
            self.mixer = SlidingWindowAttention(args)
        else:
            self.mixer = GateRetention(args)
        self.mixer_layer_norm = RMSNorm(args.dim, eps=args.norm_eps)
        self.ffn = FeedForwardNetwork(args.dim, args.hidden_dim)
        self.final_layer_norm = RMSNorm(args.dim, eps=args.norm_eps)

    def forward(self, x, rel_pos, key=None, value=None):
        h = self.mixer_layer_norm(x)
        h = self.mixer(h, key, value, rel_pos) if self.is_cross_layer else self.mixer(h, rel_pos)
        x = x + h
        return x + self.ffn(self.final_layer_norm(x))


class SelfDecoder(nn.Module):
    def __init__(self, args: YOCOArgs):
        super().__init__()
        self.args = args
        self.head_dim = args.dim // args.n_self_heads
        self.layers = nn.ModuleList(DecoderLayer(args) for _ in range(args.n_layers // 2))

    def forward(self, x):
        rel_pos = rotary_table(self.head_dim, self.args.rope_theta, x.shape[1], x.dtype, x.device)
        for layer in self.layers:
            x = layer(x, rel_pos)
        return x


class CrossDecoder(nn.Module):
    def __init__(self, args: YOCOArgs):
        super().__init__()
        self.args = args
        self.num_heads = args.n_attn_kv_heads
        self.head_dim = args.dim // args.n_attn_heads
        self.k_proj = _linear(args.dim, self.head_dim * args.n_attn_kv_heads)
        self.v_proj = _linear(args.dim, self.head_dim * args.n_attn_kv_heads)
        self.kv_layer_norm = RMSNorm(args.dim, eps=args.norm_eps)
        self.layers = nn.ModuleList(DecoderLayer(args, is_cross_layer=True) for _ in range(args.n_layers // 2))

    def forward(self, x):
        B, T, _ = x.shape
        rel_pos = rotary_table(self.head_dim, self.args.rope_theta, T, x.dtype, x.device)
        x_norm = self.kv_layer_norm(x)
        key = self.k_proj(x_norm).view(B, T, self.num_heads, self.head_dim)  # the one shared K/V [B, T, Hkv, D]
        value = self.v_proj(x_norm).view(B, T, self.num_heads, self.head_dim)
        key = apply_rotary_interleaved(key, *rel_pos)  # rotated once, read by every cross layer
        for layer in self.layers:
            x = layer(x, rel_pos, key=key, value=value)
        return x


class YOCO(nn.Module):
    """tokens [B, T] → logits [B, T, vocab]: sqrt(dim)·embed → self-decoder → cross-decoder → norm → projection."""

    def __init__(self, args: YOCOArgs, share_input_output_embed: bool = False):
        super().__init__()
        self.args = args
        self.embed_scale = math.sqrt(args.dim)
        self.embed_tokens = nn.Embedding(args.vocab_size, args.dim)
        self.output_projection = _linear(args.dim, args.vocab_size)
        if share_input_output_embed:
            self.output_projection.weight = self.embed_tokens.weight
        self.self_decoder = SelfDecoder(args)
        self.cross_decoder = CrossDecoder(args)
        self.layer_norm = RMSNorm(args.dim, eps=args.norm_eps)

    def forward(self, tokens):
        x = self.embed_scale * self.embed_tokens(tokens)
        x = self.cross_decoder(self.self_decoder(x))
        return self.output_projection(self.layer_norm(x))
