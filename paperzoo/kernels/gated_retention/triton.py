"""Triton kernels for gated retention (YOCO, arXiv 2405.05254): chunkwise forward/backward and a fused recurrent step.

    S_t = exp(g_t) S_{t-1} + k_tᵀ v_t,    o_t = q_t S_t,    S_{-1} = state (zeros if None)

Layout q, k [B, T, H, K], v [B, T, H, V], log_decay g [B, T, H] fp32, state [B, H, K, V] fp32; o has q's dtype.
These are retention's kernels (retention/triton.py) with the per-head powers γ^n replaced by in-chunk cumulative sums
of g, loaded per token; the backward also gives dg. The derivation, the tiling and the numerics are in README.md next to
this file. Every output buffer the kernels write is allocated through `_empty` (the tests swap it for a NaN-filled
allocator, so an unwritten tile shows up as NaN).

Importing this module raises ImportError when Triton is missing; `gated_retention/__init__.py` catches it.
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError as exc:  # pragma: no cover - exercised only where triton is absent
    raise ImportError(f"paperzoo.kernels.gated_retention.triton needs triton: {exc}") from exc

from .._triton_common import (
    autotune_bwd,
    autotune_fwd,
    bwd_blocks,
    bwd_outputs,
    chunk_tiles,
    dot_options,
    empty as _empty,
    mixed_dot,
    pow2,
    prepare_inputs,
    recurrent_step,
    split_outputs,
    state_tile,
    sum_v_parts,
    tiles as _tiles,
    use_autotune,
)
from .reference import gated_retention_chunkwise

__all__ = ["gated_retention_chunkwise_triton", "gated_retention_step_triton"]


# --------------------------------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------------------------------


@triton.jit
def _chunk_decays(g_ptr, offs_c, m_t, L, H, TRANSPOSED: tl.constexpr):
    """The decays of one chunk from its g (rows offs_c, valid where m_t, L valid rows), all in fp32:

    D [C, C] (Dᵀ with TRANSPOSED): exp(c_n − c_m) for n ≥ m, 0 above; ξ_j = exp(c_j); ζ_j = exp(c_{L-1} − c_j);
    and exp(c_{L-1}), where c_j = Σ_{i≤j} g_i inside the chunk. Padded rows load g = 0 (they repeat c_{L-1}); the
    upper triangle and the padded ζ get exponent −∞ before exp2 (exp of a positive number may overflow: inf · 0)."""
    c = tl.cumsum(tl.load(g_ptr + offs_c * H, mask=m_t, other=0.0).to(tl.float32) * 1.4426950408889634, axis=0)
    c_last = tl.sum(tl.where(offs_c == L - 1, c, 0.0), axis=0)  # log2 of the whole chunk's decay
    if TRANSPOSED:  # [m, n]
        diff = c[None, :] - c[:, None]
        causal = offs_c[None, :] >= offs_c[:, None]
    else:  # [n, m]
        diff = c[:, None] - c[None, :]
        causal = offs_c[:, None] >= offs_c[None, :]
    decay = tl.exp2(tl.where(causal, diff, float("-inf")))
    zeta = tl.exp2(tl.where(m_t, c_last - c, float("-inf")))
    return decay, tl.exp2(c), zeta, tl.exp2(c_last)


@triton.jit
def _gated_chunkwise_fwd_kernel(
    q, k, v, g, h0, o, ht,
    T, H, K, V,
    C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    USE_H0: tl.constexpr, STORE_HT: tl.constexpr, IN_DT: tl.constexpr, MIX_BF16: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """One program per (V-block, b·h): scans the chunks in order, the [BK, BV] state stays in registers (fp32)."""
    i_v = tl.program_id(0)
    i_bh = tl.program_id(1)
    i_b = i_bh // H
    i_h = i_bh % H

    offs_c, offs_k, offs_v, m_k, m_v, tile_qk, tile_v = chunk_tiles(0, i_v, H, K, V, C, BK, BV)
    # scalar pointers at (b, t=0, h, ·), int64; a chunk's tile adds int32 offsets, the loop advances by C rows
    row0 = i_b.to(tl.int64) * T * H + i_h
    g_ptr = g + row0
    q_ptr = q + row0 * K
    k_ptr = k + row0 * K
    v_ptr = v + row0 * V
    o_ptr = o + row0 * V
    S, p_s, m_s = state_tile(h0, i_bh, offs_k, offs_v, m_k, m_v, K, V, USE_H0, BK, BV)

    for i_t in range(0, tl.cdiv(T, C)):
        m_t = i_t * C + offs_c < T
        L = tl.minimum(T - i_t * C, C)
        decay, xi, zeta, chunk_decay = _chunk_decays(g_ptr, offs_c, m_t, L, H, False)
        b_q = tl.load(q_ptr + tile_qk, mask=m_t[:, None] & m_k[None, :], other=0.0).to(IN_DT)
        b_k = tl.load(k_ptr + tile_qk, mask=m_t[:, None] & m_k[None, :], other=0.0).to(IN_DT)
        b_v = tl.load(v_ptr + tile_v, mask=m_t[:, None] & m_v[None, :], other=0.0).to(IN_DT)

        scores = tl.dot(b_q, tl.trans(b_k), input_precision=PREC) * decay  # [C, C]
        b_o = mixed_dot(scores, b_v, MIX_BF16, PREC) + mixed_dot(b_q * xi[:, None], S, MIX_BF16, PREC)
        tl.store(o_ptr + tile_v, b_o.to(o.dtype.element_ty), mask=m_t[:, None] & m_v[None, :])
        S = S * chunk_decay + mixed_dot(tl.trans(b_k), b_v * zeta[:, None], MIX_BF16, PREC)
        g_ptr += C * H
        q_ptr += C * H * K
        k_ptr += C * H * K
        v_ptr += C * H * V
        o_ptr += C * H * V

    if STORE_HT:
        tl.store(ht + p_s, S, mask=m_s)


@triton.jit
def _gated_dq_scan(
    q, k, v, g, do, dq, db, h0, i_bh, i_blk, i_part, i_slice, first, T, H, K, V,
    C: tl.constexpr, BKB: tl.constexpr, BVP: tl.constexpr, USE_H0: tl.constexpr, STORE_DB: tl.constexpr,
    IN_DT: tl.constexpr, MIX_BF16: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """dq for K-block i_blk and V-part i_part, chunks in order: dq = (dO Vᵀ ⊙ D) K + (dO ⊙ ξ) S_prevᵀ over the
    part's columns, with the state tile S [BKB, BVP]; written to slice i_part of dq (summed by the caller if > 1).
    With STORE_DB also Σ_k q ⊙ dq over the block (fp32, before dq is rounded) into slice i_slice of db."""
    offs_c, offs_k, offs_v, m_k, m_v, tile_qk, tile_v = chunk_tiles(i_blk, i_part, H, K, V, C, BKB, BVP)
    g_ptr = g + first
    db_row = i_slice.to(tl.int64) * tl.num_programs(1) * T + first  # slice i_slice of [2·NK·NVP, B, T, H]
    q_ptr = q + first * K
    k_ptr = k + first * K
    dq_ptr = dq + (i_part.to(tl.int64) * tl.num_programs(1) * T + first) * K  # slice i_part of [NVP, B, T, H, K]
    v_ptr = v + first * V
    do_ptr = do + first * V
    S, _, _ = state_tile(h0, i_bh, offs_k, offs_v, m_k, m_v, K, V, USE_H0, BKB, BVP)  # the state before chunk 0
    for i_t in range(0, tl.cdiv(T, C)):
        m_t = i_t * C + offs_c < T
        m_tk = m_t[:, None] & m_k[None, :]
        decay, xi, zeta, chunk_decay = _chunk_decays(g_ptr, offs_c, m_t, tl.minimum(T - i_t * C, C), H, False)
        b_k = tl.load(k_ptr + tile_qk, mask=m_tk, other=0.0).to(IN_DT)
        b_v = tl.load(v_ptr + tile_v, mask=m_t[:, None] & m_v[None, :], other=0.0).to(IN_DT)
        b_do = tl.load(do_ptr + tile_v, mask=m_t[:, None] & m_v[None, :], other=0.0).to(IN_DT)

        dscores = tl.dot(b_do, tl.trans(b_v), input_precision=PREC) * decay  # [n, m]
        b_dq = mixed_dot(dscores, b_k, MIX_BF16, PREC) + mixed_dot(b_do * xi[:, None], tl.trans(S), MIX_BF16, PREC)
        tl.store(dq_ptr + tile_qk, b_dq.to(dq.dtype.element_ty), mask=m_tk)
        if STORE_DB:
            b_q = tl.load(q_ptr + tile_qk, mask=m_tk, other=0.0).to(tl.float32)
            tl.store(db + db_row + offs_c * H, tl.sum(b_q * b_dq, axis=1), mask=m_t)
        S = S * chunk_decay + mixed_dot(tl.trans(b_k), b_v * zeta[:, None], MIX_BF16, PREC)
        g_ptr += C * H
        db_row += C * H
        q_ptr += C * H * K
        k_ptr += C * H * K
        dq_ptr += C * H * K
        v_ptr += C * H * V
        do_ptr += C * H * V


@triton.jit
def _gated_dk_scan(
    q, k, v, g, do, dk, db, dht, i_bh, i_blk, i_part, i_slice, last, T, H, K, V,
    C: tl.constexpr, BKB: tl.constexpr, BVP: tl.constexpr, USE_DHT: tl.constexpr, STORE_DB: tl.constexpr,
    IN_DT: tl.constexpr, MIX_BF16: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """dk for K-block i_blk and V-part i_part, chunks in reverse: dk = (V dOᵀ ⊙ Dᵀ) Q + (V ⊙ ζ) dSᵀ over the part's
    columns, with the state-gradient tile dS [BKB, BVP]; written to slice i_part of dk. With STORE_DB also Σ_k k ⊙ dk
    over the block into slice i_slice of db."""
    offs_c, offs_k, offs_v, m_k, m_v, tile_qk, tile_v = chunk_tiles(i_blk, i_part, H, K, V, C, BKB, BVP)
    g_ptr = g + last
    db_row = i_slice.to(tl.int64) * tl.num_programs(1) * T + last  # db is None without STORE_DB: offsets only
    q_ptr = q + last * K
    k_ptr = k + last * K
    dk_ptr = dk + (i_part.to(tl.int64) * tl.num_programs(1) * T + last) * K  # slice i_part of [NVP, B, T, H, K]
    v_ptr = v + last * V
    do_ptr = do + last * V
    dS, _, _ = state_tile(dht, i_bh, offs_k, offs_v, m_k, m_v, K, V, USE_DHT, BKB, BVP)  # d final state
    NT = tl.cdiv(T, C)
    for i_r in range(0, NT):
        i_t = NT - 1 - i_r
        m_t = i_t * C + offs_c < T
        m_tk = m_t[:, None] & m_k[None, :]
        decay_t, xi, zeta, chunk_decay = _chunk_decays(g_ptr, offs_c, m_t, tl.minimum(T - i_t * C, C), H, True)
        b_q = tl.load(q_ptr + tile_qk, mask=m_tk, other=0.0).to(IN_DT)
        b_v = tl.load(v_ptr + tile_v, mask=m_t[:, None] & m_v[None, :], other=0.0).to(IN_DT)
        b_do = tl.load(do_ptr + tile_v, mask=m_t[:, None] & m_v[None, :], other=0.0).to(IN_DT)

        dscores_t = tl.dot(b_v, tl.trans(b_do), input_precision=PREC) * decay_t  # [m, n]
        b_dk = mixed_dot(dscores_t, b_q, MIX_BF16, PREC) + mixed_dot(b_v * zeta[:, None], tl.trans(dS), MIX_BF16, PREC)
        tl.store(dk_ptr + tile_qk, b_dk.to(dk.dtype.element_ty), mask=m_tk)
        if STORE_DB:
            b_k = tl.load(k_ptr + tile_qk, mask=m_tk, other=0.0).to(tl.float32)
            tl.store(db + db_row + offs_c * H, tl.sum(b_k * b_dk, axis=1), mask=m_t)
        dS = dS * chunk_decay + mixed_dot(tl.trans(b_q * xi[:, None]), b_do, MIX_BF16, PREC)
        g_ptr -= C * H
        db_row -= C * H
        q_ptr -= C * H * K
        k_ptr -= C * H * K
        dk_ptr -= C * H * K
        v_ptr -= C * H * V
        do_ptr -= C * H * V


@triton.jit
def _gated_dv_scan(
    q, k, g, do, dv, dht, dh0, i_bh, i_blk, last, T, H, K, V,
    C: tl.constexpr, BKF: tl.constexpr, BVB: tl.constexpr, USE_DHT: tl.constexpr, STORE_DH0: tl.constexpr,
    IN_DT: tl.constexpr, MIX_BF16: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """dv and d state for V-block i_blk, chunks in reverse: dv = (K Qᵀ ⊙ Dᵀ) dO + (K ⊙ ζ) dS, dS [K, BVB]."""
    offs_c, offs_k, offs_v, m_k, m_v, tile_qk, tile_v = chunk_tiles(0, i_blk, H, K, V, C, BKF, BVB)
    dS, p_s, m_s = state_tile(dht, i_bh, offs_k, offs_v, m_k, m_v, K, V, USE_DHT, BKF, BVB)  # d final state
    g_ptr = g + last
    q_ptr = q + last * K
    k_ptr = k + last * K
    do_ptr = do + last * V
    dv_ptr = dv + last * V
    NT = tl.cdiv(T, C)
    for i_r in range(0, NT):
        i_t = NT - 1 - i_r
        m_t = i_t * C + offs_c < T
        m_tv = m_t[:, None] & m_v[None, :]
        decay_t, xi, zeta, chunk_decay = _chunk_decays(g_ptr, offs_c, m_t, tl.minimum(T - i_t * C, C), H, True)
        b_q = tl.load(q_ptr + tile_qk, mask=m_t[:, None] & m_k[None, :], other=0.0).to(IN_DT)
        b_k = tl.load(k_ptr + tile_qk, mask=m_t[:, None] & m_k[None, :], other=0.0).to(IN_DT)
        b_do = tl.load(do_ptr + tile_v, mask=m_tv, other=0.0).to(IN_DT)

        scores_t = tl.dot(b_k, tl.trans(b_q), input_precision=PREC) * decay_t  # [m, n]
        b_dv = mixed_dot(scores_t, b_do, MIX_BF16, PREC) + mixed_dot(b_k * zeta[:, None], dS, MIX_BF16, PREC)
        tl.store(dv_ptr + tile_v, b_dv.to(dv.dtype.element_ty), mask=m_tv)
        dS = dS * chunk_decay + mixed_dot(tl.trans(b_q * xi[:, None]), b_do, MIX_BF16, PREC)
        g_ptr -= C * H
        q_ptr -= C * H * K
        k_ptr -= C * H * K
        do_ptr -= C * H * V
        dv_ptr -= C * H * V
    if STORE_DH0:
        tl.store(dh0 + p_s, dS, mask=m_s)


@triton.jit
def _gated_chunkwise_bwd_kernel(
    q, k, v, g, h0, do, dht, dq, dk, dv, dh0, db,
    T, H, K, V,
    C: tl.constexpr, BKF: tl.constexpr, BVB: tl.constexpr, BKB: tl.constexpr, BVP: tl.constexpr,
    USE_H0: tl.constexpr, USE_DHT: tl.constexpr, STORE_DH0: tl.constexpr, STORE_DB: tl.constexpr,
    IN_DT: tl.constexpr, MIX_BF16: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """Grid (2·NK·NVP + NV, b·h), retention's three kinds of independent programs, each one scan over the chunks:
    dq (+ q·dq partials), dk (+ k·dk partials), dv and d state; dS ← exp(c_{L-1}) dS + (Q ⊙ ξ)ᵀ dO. Program i_p < 2·NKP
    writes db slice i_p: the caller forms d b_t = Σ q·dq − Σ k·dk and dg from it."""
    i_p = tl.program_id(0)
    i_bh = tl.program_id(1)
    i_b = i_bh // H
    i_h = i_bh % H
    NK = tl.cdiv(K, BKB)
    NKP = NK * tl.cdiv(V, BVP)
    first = i_b.to(tl.int64) * T * H + i_h  # row of (b, t=0, h)
    last = (i_b.to(tl.int64) * T + (tl.cdiv(T, C) - 1) * C) * H + i_h  # first row of the last chunk
    if i_p < NKP:
        _gated_dq_scan(q, k, v, g, do, dq, db, h0, i_bh, i_p % NK, i_p // NK, i_p, first, T, H, K, V, C, BKB, BVP,
                       USE_H0, STORE_DB, IN_DT, MIX_BF16, PREC)  # fmt: skip
    elif i_p < 2 * NKP:
        _gated_dk_scan(q, k, v, g, do, dk, db, dht, i_bh, (i_p - NKP) % NK, (i_p - NKP) // NK, i_p, last, T, H, K, V,
                       C, BKB, BVP, USE_DHT, STORE_DB, IN_DT, MIX_BF16, PREC)  # fmt: skip
    else:
        _gated_dv_scan(q, k, g, do, dv, dht, dh0, i_bh, i_p - 2 * NKP, last, T, H, K, V, C, BKF, BVB, USE_DHT,
                       STORE_DH0, IN_DT, MIX_BF16, PREC)  # fmt: skip


_fwd_tuned = autotune_fwd(_gated_chunkwise_fwd_kernel)
_bwd_tuned = autotune_bwd(_gated_chunkwise_bwd_kernel)


# --------------------------------------------------------------------------------------------------------------------
# autograd
# --------------------------------------------------------------------------------------------------------------------


def _fwd(q, k, v, g, h0, output_final_state, C):
    B, T, H, K = q.shape
    V = v.shape[-1]
    o = _empty((B, T, H, V), q.dtype, q.device)
    ht = _empty((B, H, K, V), torch.float32, q.device) if output_final_state else None
    args = (q, k, v, g, h0, o, ht, T, H, K, V)
    meta = dict(C=C, BK=pow2(K), USE_H0=h0 is not None, STORE_HT=output_final_state, **dot_options(q))
    if use_autotune(q):
        _fwd_tuned[lambda m: (triton.cdiv(V, m["BV"]), B * H)](*args, **meta)
    else:
        BV = min(64, pow2(V))
        _gated_chunkwise_fwd_kernel[(triton.cdiv(V, BV), B * H)](*args, BV=BV, **meta)
    return o, ht


def _bwd(q, k, v, g, h0, do, dht, ht, C, need_dh0, need_dg):
    """(dq, dk, dv, dg or None, d state or None). dg: d b_t = q_t·dq_t − k_t·dk_t (+ <dS_final, S_final> at T−1) from
    the kernels' fp32 partial sums, then dg = the reverse cumulative sum of db over t (README.md)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    opts = dot_options(q)
    BKF, BVB, BKB, BVP = bwd_blocks(K, V, opts["MIX_BF16"])
    NKP = triton.cdiv(K, BKB) * triton.cdiv(V, BVP)
    dq, dk, dv, dh0 = bwd_outputs(_empty, q, v, BVP, need_dh0)
    db = _empty((2 * NKP, B, T, H), torch.float32, q.device) if need_dg else None  # q·dq, then k·dk partials
    args = (q, k, v, g, h0, do, dht, dq, dk, dv, dh0, db, T, H, K, V)
    meta = dict(
        C=C, BKF=BKF, BVB=BVB, BKB=BKB, BVP=BVP, USE_H0=h0 is not None, USE_DHT=dht is not None,
        STORE_DH0=need_dh0, STORE_DB=need_dg, **opts,
    )  # fmt: skip
    grid = (2 * NKP + triton.cdiv(V, BVB), B * H)
    (_bwd_tuned if use_autotune(q) else _gated_chunkwise_bwd_kernel)[grid](*args, **meta)
    dq, dk = sum_v_parts(dq, dk, q.dtype)
    dg = None
    if need_dg:
        db = db[:NKP].sum(0) - db[NKP:].sum(0)  # [B, T, H]
        if dht is not None:
            db[:, -1] += (dht * ht).sum((-2, -1))  # ∂S_final / ∂b_{T-1} = S_final
        dg = db.flip(1).cumsum(1).flip(1)  # g_i enters every b_t with t ≥ i
    return dq, dk, dv, dg, dh0


class _GatedRetentionChunkwise(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, g, state, output_final_state, chunk_size):
        C_fwd, C_bwd = _tiles(q, chunk_size)
        o, ht = _fwd(q, k, v, g, state, output_final_state, C_fwd)
        ctx.save_for_backward(q, k, v, g, state, ht)
        ctx.chunk = C_bwd
        if ht is None:
            return o
        return o, ht

    @staticmethod
    def backward(ctx, do, dht=None):
        q, k, v, g, state, ht = ctx.saved_tensors
        need_dh0 = state is not None and ctx.needs_input_grad[4]
        dht = None if dht is None else dht.float().contiguous()
        dq, dk, dv, dg, dh0 = _bwd(q, k, v, g, state, do.contiguous(), dht, ht, ctx.chunk, need_dh0,
                                   ctx.needs_input_grad[3])  # fmt: skip
        return dq, dk, dv, dg, dh0, None, None


def _prepare(q, k, v, log_decay, state):
    return prepare_inputs("gated retention", q, k, v, log_decay, state, decay_grad=True)


def gated_retention_chunkwise_triton(q, k, v, log_decay, state=None, output_final_state=False, chunk_size=64):
    """Chunkwise gated retention on Triton, differentiable in q, k, v, log_decay and `state`.

    Returns (o [B, T, H, V] in q's dtype, final state [B, H, K, V] fp32 or None). `chunk_size` is the tile C,
    clamped to [16, 64], to the next power of two ≥ T and on CUDA to per-dtype register caps (`_tiles`); it changes
    rounding only, never the result.
    """
    if q.shape[1] == 0:  # nothing to tile: the reference handles the empty sequence
        return gated_retention_chunkwise(q, k, v, log_decay, state, output_final_state, chunk_size)
    state_dtype = None if state is None else state.dtype
    q, k, v, g, state = _prepare(q, k, v, log_decay, state)
    out = _GatedRetentionChunkwise.apply(q, k, v, g, state, bool(output_final_state), int(chunk_size))
    return split_outputs(out, output_final_state, state_dtype)


def gated_retention_step_triton(q, k, v, log_decay, state=None, output_final_state=True):
    """Recurrent gated retention over a few tokens (decoding), forward only: (o, final state fp32 or None).

    The caller's `state` is read, never written: the final state is a new tensor.
    """
    return recurrent_step(*_prepare(q, k, v, log_decay, state), output_final_state, per_token=True, alloc=_empty)
