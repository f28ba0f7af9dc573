"""Triton kernels for retention (RetNet, arXiv 2307.08621): chunkwise forward/backward and a fused recurrent step.

    S_t = γ_h S_{t-1} + k_tᵀ v_t,    o_t = q_t S_t,    S_{-1} = state (zeros if None)

Layout q, k [B, T, H, K], v [B, T, H, V], log_decay [H] fp32, state [B, H, K, V] fp32; o has q's dtype.
The derivation, the tiling and the numerics are in README.md next to this file. Every output buffer the kernels write
is allocated through `_empty` (the tests swap it for a NaN-filled allocator, so an unwritten tile shows up as NaN).

Importing this module raises ImportError when Triton is missing; `retention/__init__.py` catches it.
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError as exc:  # pragma: no cover - exercised only where triton is absent
    raise ImportError(f"paperzoo.kernels.retention.triton needs triton: {exc}") from exc

from .._triton_common import (
    CUDA_MAX_C as _CUDA_MAX_C,  # noqa: F401  (read by the tests, like _prune_fwd / _prune_bwd)
    autotune_bwd,
    autotune_fwd,
    bwd_blocks as _bwd_blocks,
    bwd_outputs,
    chunk_tiles,
    dot_options as _dot_options,
    empty as _empty,
    mixed_dot as _mixed_dot,
    pow2 as _pow2,
    prepare_inputs,
    prune_bwd as _prune_bwd,  # noqa: F401
    prune_fwd as _prune_fwd,  # noqa: F401
    recurrent_step,
    split_outputs,
    state_tile,
    sum_v_parts,
    tiles as _tiles,
    use_autotune as _use_autotune,
)
from .reference import retention_chunkwise

__all__ = ["retention_chunkwise_triton", "retention_step_triton"]


# --------------------------------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------------------------------


@triton.jit
def _retention_chunkwise_fwd_kernel(
    q, k, v, log_decay, h0, o, ht,
    T, H, K, V,
    C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    USE_H0: tl.constexpr, STORE_HT: tl.constexpr, IN_DT: tl.constexpr, MIX_BF16: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """One program per (V-block, b·h): scans the chunks in order, the [BK, BV] state stays in registers (fp32)."""
    i_v = tl.program_id(0)
    i_bh = tl.program_id(1)
    i_b = i_bh // H
    i_h = i_bh % H
    b2 = tl.load(log_decay + i_h).to(tl.float32) * 1.4426950408889634  # log2 γ

    offs_c, offs_k, offs_v, m_k, m_v, tile_qk, tile_v = chunk_tiles(0, i_v, H, K, V, C, BK, BV)
    # scalar pointers at (b, t=0, h, ·), int64; a chunk's tile adds int32 offsets, the loop advances by C rows
    row0 = i_b.to(tl.int64) * T * H + i_h
    q_ptr = q + row0 * K
    k_ptr = k + row0 * K
    v_ptr = v + row0 * V
    o_ptr = o + row0 * V
    S, p_s, m_s = state_tile(h0, i_bh, offs_k, offs_v, m_k, m_v, K, V, USE_H0, BK, BV)

    diff = offs_c[:, None] - offs_c[None, :]  # n - m
    decay = tl.exp2(tl.where(diff >= 0, diff.to(tl.float32) * b2, float("-inf")))  # [C, C]: γ^{n-m}, 0 above
    xi = tl.exp2((offs_c + 1).to(tl.float32) * b2)  # [C]: γ^{j+1}

    for i_t in range(0, tl.cdiv(T, C)):
        m_t = i_t * C + offs_c < T
        m_tk = m_t[:, None] & m_k[None, :]
        m_tv = m_t[:, None] & m_v[None, :]
        b_q = tl.load(q_ptr + tile_qk, mask=m_tk, other=0.0).to(IN_DT)
        b_k = tl.load(k_ptr + tile_qk, mask=m_tk, other=0.0).to(IN_DT)
        b_v = tl.load(v_ptr + tile_v, mask=m_tv, other=0.0).to(IN_DT)

        scores = tl.dot(b_q, tl.trans(b_k), input_precision=PREC) * decay  # [C, C]
        b_o = _mixed_dot(scores, b_v, MIX_BF16, PREC)
        b_o += _mixed_dot(b_q * xi[:, None], S, MIX_BF16, PREC)
        tl.store(o_ptr + tile_v, b_o.to(o.dtype.element_ty), mask=m_tv)

        L = tl.minimum(T - i_t * C, C)
        zeta = tl.exp2(tl.where(offs_c < L, (L - 1 - offs_c).to(tl.float32) * b2, float("-inf")))  # γ^{L-1-j}
        S = S * tl.exp2(L.to(tl.float32) * b2) + _mixed_dot(tl.trans(b_k), b_v * zeta[:, None], MIX_BF16, PREC)
        q_ptr += C * H * K
        k_ptr += C * H * K
        v_ptr += C * H * V
        o_ptr += C * H * V

    if STORE_HT:
        tl.store(ht + p_s, S, mask=m_s)


@triton.jit
def _bwd_dq_scan(
    k, v, do, dq, h0, i_bh, i_blk, i_part, b2, first, T, H, K, V,
    C: tl.constexpr, BKB: tl.constexpr, BVP: tl.constexpr, USE_H0: tl.constexpr,
    IN_DT: tl.constexpr, MIX_BF16: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """dq for K-block i_blk and V-part i_part, chunks in order: dq = (dO Vᵀ ⊙ D) K + (dO ⊙ ξ) S_prevᵀ over the
    part's columns, with the state tile S [BKB, BVP]; written to slice i_part of dq (summed by the caller if > 1)."""
    offs_c, offs_k, offs_v, m_k, m_v, tile_qk, tile_v = chunk_tiles(i_blk, i_part, H, K, V, C, BKB, BVP)
    k_ptr = k + first * K
    dq_ptr = dq + (i_part.to(tl.int64) * tl.num_programs(1) * T + first) * K  # slice i_part of [NVP, B, T, H, K]
    v_ptr = v + first * V
    do_ptr = do + first * V
    diff = offs_c[:, None] - offs_c[None, :]
    decay = tl.exp2(tl.where(diff >= 0, diff.to(tl.float32) * b2, float("-inf")))  # [n, m]: γ^{n-m}
    xi = tl.exp2((offs_c + 1).to(tl.float32) * b2)
    S, _, _ = state_tile(h0, i_bh, offs_k, offs_v, m_k, m_v, K, V, USE_H0, BKB, BVP)  # the state before chunk 0
    for i_t in range(0, tl.cdiv(T, C)):
        m_t = i_t * C + offs_c < T
        m_tk = m_t[:, None] & m_k[None, :]
        m_tv = m_t[:, None] & m_v[None, :]
        b_k = tl.load(k_ptr + tile_qk, mask=m_tk, other=0.0).to(IN_DT)
        b_v = tl.load(v_ptr + tile_v, mask=m_tv, other=0.0).to(IN_DT)
        b_do = tl.load(do_ptr + tile_v, mask=m_tv, other=0.0).to(IN_DT)

        dscores = tl.dot(b_do, tl.trans(b_v), input_precision=PREC) * decay  # [n, m]
        b_dq = _mixed_dot(dscores, b_k, MIX_BF16, PREC)
        b_dq += _mixed_dot(b_do * xi[:, None], tl.trans(S), MIX_BF16, PREC)
        tl.store(dq_ptr + tile_qk, b_dq.to(dq.dtype.element_ty), mask=m_tk)

        L = tl.minimum(T - i_t * C, C)
        zeta = tl.exp2(tl.where(offs_c < L, (L - 1 - offs_c).to(tl.float32) * b2, float("-inf")))  # γ^{L-1-j}
        S = S * tl.exp2(L.to(tl.float32) * b2) + _mixed_dot(tl.trans(b_k), b_v * zeta[:, None], MIX_BF16, PREC)
        k_ptr += C * H * K
        dq_ptr += C * H * K
        v_ptr += C * H * V
        do_ptr += C * H * V


@triton.jit
def _bwd_dk_scan(
    q, v, do, dk, dht, i_bh, i_blk, i_part, b2, last, T, H, K, V,
    C: tl.constexpr, BKB: tl.constexpr, BVP: tl.constexpr, USE_DHT: tl.constexpr,
    IN_DT: tl.constexpr, MIX_BF16: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """dk for K-block i_blk and V-part i_part, chunks in reverse: dk = (V dOᵀ ⊙ Dᵀ) Q + (V ⊙ ζ) dSᵀ over the part's
    columns, with the state-gradient tile dS [BKB, BVP]; written to slice i_part of dk."""
    offs_c, offs_k, offs_v, m_k, m_v, tile_qk, tile_v = chunk_tiles(i_blk, i_part, H, K, V, C, BKB, BVP)
    q_ptr = q + last * K
    dk_ptr = dk + (i_part.to(tl.int64) * tl.num_programs(1) * T + last) * K  # slice i_part of [NVP, B, T, H, K]
    v_ptr = v + last * V
    do_ptr = do + last * V
    diff = offs_c[:, None] - offs_c[None, :]
    decay_t = tl.exp2(tl.where(diff <= 0, (-diff).to(tl.float32) * b2, float("-inf")))  # [m, n]: γ^{n-m}
    xi = tl.exp2((offs_c + 1).to(tl.float32) * b2)
    dS, _, _ = state_tile(dht, i_bh, offs_k, offs_v, m_k, m_v, K, V, USE_DHT, BKB, BVP)  # d final state
    NT = tl.cdiv(T, C)
    for i_r in range(0, NT):
        i_t = NT - 1 - i_r
        m_t = i_t * C + offs_c < T
        m_tk = m_t[:, None] & m_k[None, :]
        m_tv = m_t[:, None] & m_v[None, :]
        b_q = tl.load(q_ptr + tile_qk, mask=m_tk, other=0.0).to(IN_DT)
        b_v = tl.load(v_ptr + tile_v, mask=m_tv, other=0.0).to(IN_DT)
        b_do = tl.load(do_ptr + tile_v, mask=m_tv, other=0.0).to(IN_DT)
        L = tl.minimum(T - i_t * C, C)
        zeta = tl.exp2(tl.where(offs_c < L, (L - 1 - offs_c).to(tl.float32) * b2, float("-inf")))

        dscores_t = tl.dot(b_v, tl.trans(b_do), input_precision=PREC) * decay_t  # [m, n]
        b_dk = _mixed_dot(dscores_t, b_q, MIX_BF16, PREC)
        b_dk += _mixed_dot(b_v * zeta[:, None], tl.trans(dS), MIX_BF16, PREC)
        tl.store(dk_ptr + tile_qk, b_dk.to(dk.dtype.element_ty), mask=m_tk)
        dS = dS * tl.exp2(L.to(tl.float32) * b2) + _mixed_dot(tl.trans(b_q * xi[:, None]), b_do, MIX_BF16, PREC)
        q_ptr -= C * H * K
        dk_ptr -= C * H * K
        v_ptr -= C * H * V
        do_ptr -= C * H * V


@triton.jit
def _bwd_dv_scan(
    q, k, do, dv, dht, dh0, i_bh, i_blk, b2, last, T, H, K, V,
    C: tl.constexpr, BKF: tl.constexpr, BVB: tl.constexpr, USE_DHT: tl.constexpr, STORE_DH0: tl.constexpr,
    IN_DT: tl.constexpr, MIX_BF16: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """dv and d state for V-block i_blk, chunks in reverse: dv = (K Qᵀ ⊙ Dᵀ) dO + (K ⊙ ζ) dS, dS [K, BVB]."""
    offs_c, offs_k, offs_v, m_k, m_v, tile_qk, tile_v = chunk_tiles(0, i_blk, H, K, V, C, BKF, BVB)
    dS, p_s, m_s = state_tile(dht, i_bh, offs_k, offs_v, m_k, m_v, K, V, USE_DHT, BKF, BVB)  # d final state
    q_ptr = q + last * K
    k_ptr = k + last * K
    do_ptr = do + last * V
    dv_ptr = dv + last * V
    diff = offs_c[:, None] - offs_c[None, :]
    decay_t = tl.exp2(tl.where(diff <= 0, (-diff).to(tl.float32) * b2, float("-inf")))  # [m, n]: γ^{n-m}
    xi = tl.exp2((offs_c + 1).to(tl.float32) * b2)
    NT = tl.cdiv(T, C)
    for i_r in range(0, NT):
        i_t = NT - 1 - i_r
        m_t = i_t * C + offs_c < T
        m_tk = m_t[:, None] & m_k[None, :]
        m_tv = m_t[:, None] & m_v[None, :]
        b_q = tl.load(q_ptr + tile_qk, mask=m_tk, other=0.0).to(IN_DT)
        b_k = tl.load(k_ptr + tile_qk, mask=m_tk, other=0.0).to(IN_DT)
        b_do = tl.load(do_ptr + tile_v, mask=m_tv, other=0.0).to(IN_DT)
        L = tl.minimum(T - i_t * C, C)
        zeta = tl.exp2(tl.where(offs_c < L, (L - 1 - offs_c).to(tl.float32) * b2, float("-inf")))

        scores_t = tl.dot(b_k, tl.trans(b_q), input_precision=PREC) * decay_t  # [m, n]
        b_dv = _mixed_dot(scores_t, b_do, MIX_BF16, PREC)
        b_dv += _mixed_dot(b_k * zeta[:, None], dS, MIX_BF16, PREC)
        tl.store(dv_ptr + tile_v, b_dv.to(dv.dtype.element_ty), mask=m_tv)
        dS = dS * tl.exp2(L.to(tl.float32) * b2) + _mixed_dot(tl.trans(b_q * xi[:, None]), b_do, MIX_BF16, PREC)
        q_ptr -= C * H * K
        k_ptr -= C * H * K
        do_ptr -= C * H * V
        dv_ptr -= C * H * V
    if STORE_DH0:
        tl.store(dh0 + p_s, dS, mask=m_s)


@triton.jit
def _retention_chunkwise_bwd_kernel(
    q, k, v, log_decay, h0, do, dht, dq, dk, dv, dh0,
    T, H, K, V,
    C: tl.constexpr, BKF: tl.constexpr, BVB: tl.constexpr, BKB: tl.constexpr, BVP: tl.constexpr,
    USE_H0: tl.constexpr, USE_DHT: tl.constexpr, STORE_DH0: tl.constexpr,
    IN_DT: tl.constexpr, MIX_BF16: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """Grid (2·NK·NVP + NV, b·h): three kinds of independent programs, each one scan over the chunks
    (`_bwd_dq_scan`, `_bwd_dk_scan`, `_bwd_dv_scan`), the state gradient dS (of the state at a chunk's end) following
    dS ← γ^L dS + (Q ⊙ ξ)ᵀ dO. The rows of S and dS evolve independently, so dq and dk split K into NK blocks of
    BKB rows without partial sums; V is split into NVP parts of BVP columns only where V > 256 (the parts' dq / dk
    are then partial sums, added by the caller). dv and d state: NV blocks of BVB columns with all of K.
    """
    i_p = tl.program_id(0)
    i_bh = tl.program_id(1)
    i_b = i_bh // H
    i_h = i_bh % H
    b2 = tl.load(log_decay + i_h).to(tl.float32) * 1.4426950408889634  # log2 γ
    NK = tl.cdiv(K, BKB)
    NKP = NK * tl.cdiv(V, BVP)
    first = i_b.to(tl.int64) * T * H + i_h  # row of (b, t=0, h)
    last = (i_b.to(tl.int64) * T + (tl.cdiv(T, C) - 1) * C) * H + i_h  # first row of the last chunk
    if i_p < NKP:
        _bwd_dq_scan(k, v, do, dq, h0, i_bh, i_p % NK, i_p // NK, b2, first, T, H, K, V, C, BKB, BVP, USE_H0,
                     IN_DT, MIX_BF16, PREC)  # fmt: skip
    elif i_p < 2 * NKP:
        _bwd_dk_scan(q, v, do, dk, dht, i_bh, (i_p - NKP) % NK, (i_p - NKP) // NK, b2, last, T, H, K, V, C, BKB, BVP,
                     USE_DHT, IN_DT, MIX_BF16, PREC)  # fmt: skip
    else:
        _bwd_dv_scan(q, k, do, dv, dht, dh0, i_bh, i_p - 2 * NKP, b2, last, T, H, K, V, C, BKF, BVB, USE_DHT,
                     STORE_DH0, IN_DT, MIX_BF16, PREC)  # fmt: skip


# --------------------------------------------------------------------------------------------------------------------
# launch configuration (the tuning spaces and tiles are shared with gated retention: `_triton_common`)
# --------------------------------------------------------------------------------------------------------------------


_fwd_tuned = autotune_fwd(_retention_chunkwise_fwd_kernel)
_bwd_tuned = autotune_bwd(_retention_chunkwise_bwd_kernel)


# --------------------------------------------------------------------------------------------------------------------
# autograd
# --------------------------------------------------------------------------------------------------------------------


def _fwd(q, k, v, log_decay, h0, output_final_state, C):
    B, T, H, K = q.shape
    V = v.shape[-1]
    BK = _pow2(K)
    o = _empty((B, T, H, V), q.dtype, q.device)
    ht = _empty((B, H, K, V), torch.float32, q.device) if output_final_state else None
    args = (q, k, v, log_decay, h0, o, ht, T, H, K, V)
    meta = dict(C=C, BK=BK, USE_H0=h0 is not None, STORE_HT=output_final_state, **_dot_options(q))
    if _use_autotune(q):
        _fwd_tuned[lambda m: (triton.cdiv(V, m["BV"]), B * H)](*args, **meta)
    else:
        BV = min(64, _pow2(V))
        _retention_chunkwise_fwd_kernel[(triton.cdiv(V, BV), B * H)](*args, BV=BV, **meta)
    return o, ht


def _bwd(q, k, v, log_decay, h0, do, dht, C, need_dh0):
    B, T, H, K = q.shape
    V = v.shape[-1]
    opts = _dot_options(q)
    BKF, BVB, BKB, BVP = _bwd_blocks(K, V, opts["MIX_BF16"])
    dq, dk, dv, dh0 = bwd_outputs(_empty, q, v, BVP, need_dh0)
    args = (q, k, v, log_decay, h0, do, dht, dq, dk, dv, dh0, T, H, K, V)
    meta = dict(
        C=C, BKF=BKF, BVB=BVB, BKB=BKB, BVP=BVP, USE_H0=h0 is not None, USE_DHT=dht is not None,
        STORE_DH0=need_dh0, **opts,
    )  # fmt: skip
    grid = (2 * triton.cdiv(K, BKB) * triton.cdiv(V, BVP) + triton.cdiv(V, BVB), B * H)
    if _use_autotune(q):
        _bwd_tuned[grid](*args, **meta)
    else:
        _retention_chunkwise_bwd_kernel[grid](*args, **meta)
    return *sum_v_parts(dq, dk, q.dtype), dv, dh0


class _RetentionChunkwise(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, log_decay, state, output_final_state, chunk_size):
        C_fwd, C_bwd = _tiles(q, chunk_size)
        o, ht = _fwd(q, k, v, log_decay, state, output_final_state, C_fwd)
        ctx.save_for_backward(q, k, v, log_decay, state)
        ctx.chunk = C_bwd
        if ht is None:
            return o
        return o, ht

    @staticmethod
    def backward(ctx, do, dht=None):
        q, k, v, log_decay, state = ctx.saved_tensors
        need_dh0 = state is not None and ctx.needs_input_grad[4]
        dht = None if dht is None else dht.float().contiguous()
        dq, dk, dv, dh0 = _bwd(q, k, v, log_decay, state, do.contiguous(), dht, ctx.chunk, need_dh0)
        return dq, dk, dv, None, dh0, None, None


def _prepare(q, k, v, log_decay, state):
    return prepare_inputs("retention", q, k, v, log_decay, state, decay_grad=False)


def retention_chunkwise_triton(q, k, v, log_decay, state=None, output_final_state=False, chunk_size=64):
    """Chunkwise retention on Triton, differentiable in q, k, v and `state` (not in log_decay).

    Returns (o [B, T, H, V] in q's dtype, final state [B, H, K, V] fp32 or None). `chunk_size` is the tile C,
    clamped to [16, 64], to the next power of two ≥ T and on CUDA to per-dtype register caps (`_tiles`); it changes
    rounding only, never the result.
    """
    if q.shape[1] == 0:  # nothing to tile: the reference handles the empty sequence
        return retention_chunkwise(q, k, v, log_decay, state, output_final_state, chunk_size)
    state_dtype = None if state is None else state.dtype
    q, k, v, log_decay, state = _prepare(q, k, v, log_decay, state)
    out = _RetentionChunkwise.apply(q, k, v, log_decay, state, bool(output_final_state), int(chunk_size))
    return split_outputs(out, output_final_state, state_dtype)


def retention_step_triton(q, k, v, log_decay, state=None, output_final_state=True):
    """Recurrent retention over a few tokens (decoding), forward only: (o, final state fp32 or None).

    The caller's `state` is read, never written: the final state is a new tensor.
    """
    return recurrent_step(*_prepare(q, k, v, log_decay, state), output_final_state, per_token=False, alloc=_empty)
