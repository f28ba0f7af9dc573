"""Triton kernels for RRL's logical layers (NeurIPS'21 arXiv 2109.15103, TPAMI'24 arXiv 2310.14336).

x [B, K] (K = n_in) and W [K, N] (N = n_out) in [0, 1], one dtype; outputs [B, N] in x's dtype. Three ops:

* NLAF: s = G(u) @ G(W) with u = 1 − x (AND) or x (OR), G(t) = −p/(1 − p), p = (α t)^β; y = (1 + s)^−γ (AND),
  1 − (1 + s)^−γ (OR). A `tl.dot` matmul whose tile loads apply G and whose store applies the epilogue: G(X), G(W)
  never exist in memory. The backward fuses the epilogue derivative and G′ the same way.
* product (the NeurIPS LAF): y = P or 1 − P, P = 1/(1 − S), S = Σ_i log a_bij, a_bij = 1 − W_ij u_bi; a
  "log-matmul" over rank-1 updates of a [BM, BN] tile: a [B, K, N] tensor is never formed (the official code and the
  reference materialise it). Backward: ∂L/∂a = h/(a + ε) with h = ∂L/∂P · f(P) from the saved P.
* binarized: counts of selected "false" (AND) / "true" (OR) inputs by a 0/1 `tl.dot`, exact.

The derivation, the tiling and the numerics are in README.md next to this file. Every output buffer the kernels write
is allocated through `_empty` (the tests swap it for a NaN-filled allocator, so an unwritten tile shows up as NaN).

Importing this module raises ImportError when Triton is missing; `logical/__init__.py` catches it.
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

try:
    import triton
    import triton.language as tl
except ImportError as exc:  # pragma: no cover - exercised only where triton is absent
    raise ImportError(f"paperzoo.kernels.logical.triton needs triton: {exc}") from exc

from ..._env import triton_interpret
from .reference import logical_binarized_matmul, logical_nlaf_matmul, logical_product_materialized

__all__ = ["logical_binarized_triton", "logical_nlaf_triton", "logical_product_triton"]

# Product kernels under the interpreter: a-values multiplied before one log2 (≥ 2^-24 each or exactly 0 in fp32, so a
# product of up to 5 stays a normal number; the CUDA autotuning picks 1, 2 or 4) and rank-1 updates per loop step.
_UNROLL = 4
# Tiles under the interpreter (CPU): small, so that the tests' shapes cover partial and multiple blocks. The product
# kernels loop over one index at a time (the interpreter's cost is per operation): their tiles are wider.
_TILE = 16
_PRODUCT_TILE = 32


def _empty(shape, dtype, device) -> torch.Tensor:
    """The one allocator of kernel outputs (the tests poison it with NaN)."""
    return torch.empty(shape, dtype=dtype, device=device)


# --------------------------------------------------------------------------------------------------------------------
# NLAF kernels
# --------------------------------------------------------------------------------------------------------------------


@triton.jit
def _nlaf_g(t, alpha, beta):
    """G(t) = 1 − 1/(1 − p) = −p/(1 − p) with p = (α t)^β = 2^(β log2(α t)); t = 0 gives p = 0, G = 0."""
    p = tl.exp2(beta * tl.log2(alpha * t))
    return -p / (1.0 - p)


@triton.jit
def _nlaf_g_grad(t, alpha, beta, zero_pow):
    """G'(t) = −β α (α t)^(β−1) / (1 − p)², p = (α t)^β. At t = 0, (α t)^(β−1) is `zero_pow` (1 for β = 1, else 0)
    rather than 2^((β−1)·log2 0), which is NaN for β = 1."""
    at = alpha * t
    q = tl.where(t > 0.0, tl.exp2((beta - 1.0) * tl.log2(at)), zero_pow)
    inv = 1.0 / (1.0 - q * at)
    return -beta * alpha * q * inv * inv


@triton.jit
def _nlaf_ds(g, s, gamma, CONJ: tl.constexpr):
    """∂L/∂s from g = ∂L/∂y: y = (1 + s)^−γ (AND) has ∂y/∂s = −γ (1 + s)^(−γ−1); OR the opposite sign."""
    r = gamma * g * tl.exp2((-gamma - 1.0) * tl.log2(1.0 + s))
    if CONJ:
        r = -r
    return r


@triton.jit
def _logical_nlaf_fwd_kernel(
    x, w, y, s,
    B, K, N,
    stride_xb, stride_xk, stride_wk, stride_wn,
    alpha, beta, gamma,
    CONJ: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
    DOT_DT: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """One program per [BM, BN] output tile: s = Σ_k G(u)[BM, BK] @ G(W)[BK, BN] (G applied on the loaded tiles,
    masked entries 0), then s (fp32, for the backward) and y = (1 + s)^−γ (or 1 − that) are stored."""
    pid = tl.program_id(0)
    n_blocks = tl.cdiv(N, BN)
    row0 = (pid // n_blocks) * BM
    col0 = (pid % n_blocks) * BN
    offs_m = tl.arange(0, BM)
    offs_n = tl.arange(0, BN)
    offs_k = tl.arange(0, BK)
    m_m = row0 + offs_m < B
    m_n = col0 + offs_n < N
    # scalar int64 base pointers, advanced by BK inputs per step; in-tile offsets int32
    x_ptr = x + row0.to(tl.int64) * stride_xb
    w_ptr = w + col0.to(tl.int64) * stride_wn
    tile_x = offs_m[:, None] * stride_xb + offs_k[None, :] * stride_xk
    tile_w = offs_k[:, None] * stride_wk + offs_n[None, :] * stride_wn
    acc = tl.zeros([BM, BN], dtype=tl.float32)
    for k0 in range(0, K, BK):
        m_k = k0 + offs_k < K
        m_x = m_m[:, None] & m_k[None, :]
        m_w = m_k[:, None] & m_n[None, :]
        u = tl.load(x_ptr + tile_x, mask=m_x, other=0.0).to(tl.float32)
        if CONJ:
            u = 1.0 - u
        gx = tl.where(m_x, _nlaf_g(u, alpha, beta), 0.0)
        gw = tl.where(m_w, _nlaf_g(tl.load(w_ptr + tile_w, mask=m_w, other=0.0).to(tl.float32), alpha, beta), 0.0)
        acc += tl.dot(gx.to(DOT_DT), gw.to(DOT_DT), input_precision=PREC)
        x_ptr += BK * stride_xk
        w_ptr += BK * stride_wk
    out_base = row0.to(tl.int64) * N + col0
    tile_out = offs_m[:, None] * N + offs_n[None, :]
    m_out = m_m[:, None] & m_n[None, :]
    tl.store(s + out_base + tile_out, acc, mask=m_out)
    out = tl.exp2(-gamma * tl.log2(1.0 + acc))
    if not CONJ:
        out = 1.0 - out
    tl.store(y + out_base + tile_out, out.to(y.dtype.element_ty), mask=m_out)


@triton.jit
def _nlaf_bwd_dx(
    x, w, s, g, dx, i_m, i_k,
    B, K, N, stride_xb, stride_xk, stride_wk, stride_wn, stride_gb, stride_gn,
    alpha, beta, gamma, zero_pow,
    CONJ: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
    DOT_DT: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """dx [BM, BK] = ±(Σ_n r[BM, BN] @ G(W)[BK, BN]ᵀ) ⊙ G'(u), r = ∂L/∂s (fused from g and the saved s)."""
    row0 = i_m * BM
    k_0 = i_k * BK
    offs_m = tl.arange(0, BM)
    offs_k = tl.arange(0, BK)
    offs_n = tl.arange(0, BN)
    m_m = row0 + offs_m < B
    m_k = k_0 + offs_k < K
    g_ptr = g + row0.to(tl.int64) * stride_gb
    s_ptr = s + row0.to(tl.int64) * N
    w_ptr = w + k_0.to(tl.int64) * stride_wk
    tile_g = offs_m[:, None] * stride_gb + offs_n[None, :] * stride_gn
    tile_s = offs_m[:, None] * N + offs_n[None, :]
    tile_w = offs_k[:, None] * stride_wk + offs_n[None, :] * stride_wn
    acc = tl.zeros([BM, BK], dtype=tl.float32)
    for n0 in range(0, N, BN):
        m_n = n0 + offs_n < N
        m_r = m_m[:, None] & m_n[None, :]
        m_w = m_k[:, None] & m_n[None, :]
        gt = tl.load(g_ptr + tile_g, mask=m_r, other=0.0).to(tl.float32)
        st = tl.load(s_ptr + tile_s, mask=m_r, other=0.0)
        r = tl.where(m_r, _nlaf_ds(gt, st, gamma, CONJ), 0.0)
        gw = tl.where(m_w, _nlaf_g(tl.load(w_ptr + tile_w, mask=m_w, other=0.0).to(tl.float32), alpha, beta), 0.0)
        acc += tl.dot(r.to(DOT_DT), tl.trans(gw).to(DOT_DT), input_precision=PREC)
        g_ptr += BN * stride_gn
        s_ptr += BN
        w_ptr += BN * stride_wn
    # G'(u) after the loop (x is read again rather than held in registers across it)
    m_x = m_m[:, None] & m_k[None, :]
    x_ptr = x + row0.to(tl.int64) * stride_xb + k_0.to(tl.int64) * stride_xk
    u = tl.load(x_ptr + offs_m[:, None] * stride_xb + offs_k[None, :] * stride_xk, mask=m_x, other=0.0).to(tl.float32)
    if CONJ:
        u = 1.0 - u
    out = acc * _nlaf_g_grad(u, alpha, beta, zero_pow)
    if CONJ:  # u = 1 − x
        out = -out
    dx_ptr = dx + row0.to(tl.int64) * K + k_0
    tl.store(dx_ptr + offs_m[:, None] * K + offs_k[None, :], out.to(dx.dtype.element_ty), mask=m_x)


@triton.jit
def _nlaf_bwd_dw(
    x, w, s, g, dw, i_k, i_n,
    B, K, N, stride_xb, stride_xk, stride_wk, stride_wn, stride_gb, stride_gn,
    alpha, beta, gamma, zero_pow,
    CONJ: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
    DOT_DT: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """dW [BK, BN] = (Σ_m G(u)[BM, BK]ᵀ @ r[BM, BN]) ⊙ G'(W)."""
    k_0 = i_k * BK
    col0 = i_n * BN
    offs_m = tl.arange(0, BM)
    offs_k = tl.arange(0, BK)
    offs_n = tl.arange(0, BN)
    m_k = k_0 + offs_k < K
    m_n = col0 + offs_n < N
    x_ptr = x + k_0.to(tl.int64) * stride_xk
    g_ptr = g + col0.to(tl.int64) * stride_gn
    s_ptr = s + col0
    tile_x = offs_m[:, None] * stride_xb + offs_k[None, :] * stride_xk
    tile_g = offs_m[:, None] * stride_gb + offs_n[None, :] * stride_gn
    tile_s = offs_m[:, None] * N + offs_n[None, :]
    acc = tl.zeros([BK, BN], dtype=tl.float32)
    for m0 in range(0, B, BM):
        m_m = m0 + offs_m < B
        m_x = m_m[:, None] & m_k[None, :]
        m_r = m_m[:, None] & m_n[None, :]
        u = tl.load(x_ptr + tile_x, mask=m_x, other=0.0).to(tl.float32)
        if CONJ:
            u = 1.0 - u
        gx = tl.where(m_x, _nlaf_g(u, alpha, beta), 0.0)
        gt = tl.load(g_ptr + tile_g, mask=m_r, other=0.0).to(tl.float32)
        st = tl.load(s_ptr + tile_s, mask=m_r, other=0.0)
        r = tl.where(m_r, _nlaf_ds(gt, st, gamma, CONJ), 0.0)
        acc += tl.dot(tl.trans(gx).to(DOT_DT), r.to(DOT_DT), input_precision=PREC)
        x_ptr += BM * stride_xb
        g_ptr += BM * stride_gb
        s_ptr += BM * N
    m_w = m_k[:, None] & m_n[None, :]
    w_ptr = w + k_0.to(tl.int64) * stride_wk + col0.to(tl.int64) * stride_wn
    wt = tl.load(w_ptr + offs_k[:, None] * stride_wk + offs_n[None, :] * stride_wn, mask=m_w, other=0.0)
    out = acc * _nlaf_g_grad(wt.to(tl.float32), alpha, beta, zero_pow)
    dw_ptr = dw + k_0.to(tl.int64) * N + col0
    tl.store(dw_ptr + offs_k[:, None] * N + offs_n[None, :], out.to(dw.dtype.element_ty), mask=m_w)


@triton.jit
def _logical_nlaf_bwd_kernel(
    x, w, s, g, dx, dw,
    B, K, N,
    stride_xb, stride_xk, stride_wk, stride_wn, stride_gb, stride_gn,
    alpha, beta, gamma, zero_pow,
    CONJ: tl.constexpr, NEED_DX: tl.constexpr, NEED_DW: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, DOT_DT: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """Two kinds of independent programs: ⌈B/BM⌉·⌈K/BK⌉ dx tiles (reduce over N), then ⌈K/BK⌉·⌈N/BN⌉ dW tiles
    (reduce over B). Every output element has exactly one writer: deterministic, no atomics."""
    pid = tl.program_id(0)
    nk = tl.cdiv(K, BK)
    n_dx = tl.cdiv(B, BM) * nk * NEED_DX
    if pid < n_dx:
        if NEED_DX:
            _nlaf_bwd_dx(x, w, s, g, dx, pid // nk, pid % nk, B, K, N, stride_xb, stride_xk, stride_wk, stride_wn,
                         stride_gb, stride_gn, alpha, beta, gamma, zero_pow,
                         CONJ, BM, BN, BK, DOT_DT, PREC)  # fmt: skip
    else:
        if NEED_DW:
            q = pid - n_dx
            nn = tl.cdiv(N, BN)
            _nlaf_bwd_dw(x, w, s, g, dw, q // nn, q % nn, B, K, N, stride_xb, stride_xk, stride_wk, stride_wn,
                         stride_gb, stride_gn, alpha, beta, gamma, zero_pow,
                         CONJ, BM, BN, BK, DOT_DT, PREC)  # fmt: skip


# --------------------------------------------------------------------------------------------------------------------
# product (NeurIPS LAF) kernels
# --------------------------------------------------------------------------------------------------------------------


@triton.jit
def _logical_product_fwd_kernel(
    x, w, y, p,
    B, K, N,
    stride_xb, stride_xk, stride_wk, stride_wn,
    CONJ: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, UNROLL: tl.constexpr,
):  # fmt: skip
    """One program per [BM, BN] tile, a "log-matmul" of rank-1 updates: for each input k, a = 1 − u[:, k] W[k, :]
    ([BM, BN], never stored); UNROLL a's are multiplied before one log2 (no underflow: see README). Stores
    y = P (AND) or 1 − P (OR) and P (fp32, for the backward), P = 1/(1 − ln2 · Σ log2 a)."""
    pid = tl.program_id(0)
    n_blocks = tl.cdiv(N, BN)
    row0 = (pid // n_blocks) * BM
    col0 = (pid % n_blocks) * BN
    offs_m = tl.arange(0, BM)
    offs_n = tl.arange(0, BN)
    m_m = row0 + offs_m < B
    m_n = col0 + offs_n < N
    zero_m = offs_m * 0  # + a scalar index: a vector mask (the interpreter takes no scalar masks)
    zero_n = offs_n * 0
    tile_x = offs_m * stride_xb  # column k of x over the tile's rows
    tile_w = offs_n * stride_wn  # row k of W over the tile's columns
    x_ptr = x + row0.to(tl.int64) * stride_xb  # scalar int64 pointers, advanced per input k
    w_ptr = w + col0.to(tl.int64) * stride_wn
    acc = tl.zeros([BM, BN], dtype=tl.float32)
    for k0 in range(0, K, UNROLL):
        prod = tl.full([BM, BN], 1.0, dtype=tl.float32)
        for kk in tl.static_range(UNROLL):
            u = tl.load(x_ptr + tile_x, mask=m_m & (zero_m + (k0 + kk) < K), other=0.0).to(tl.float32)
            if CONJ:
                u = 1.0 - u
            wv = tl.load(w_ptr + tile_w, mask=m_n & (zero_n + (k0 + kk) < K), other=0.0).to(tl.float32)  # a = 1 past K
            prod = prod * (1.0 - u[:, None] * wv[None, :])
            x_ptr += stride_xk
            w_ptr += stride_wk
        acc += tl.log2(prod)
    pj = 1.0 / (1.0 - acc * 0.6931471805599453)  # −1/(−1 + S), S = Σ ln a ≤ 0 (−inf when some a = 0: P = 0)
    out_base = row0.to(tl.int64) * N + col0
    tile_out = offs_m[:, None] * N + offs_n[None, :]
    m_out = m_m[:, None] & m_n[None, :]
    tl.store(p + out_base + tile_out, pj, mask=m_out)
    if CONJ:
        out = pj
    else:
        out = 1.0 - pj
    tl.store(y + out_base + tile_out, out.to(y.dtype.element_ty), mask=m_out)


@triton.jit
def _product_h(g, pj, CONJ: tl.constexpr, EST: tl.constexpr):
    """h = ∂L/∂P · f(P), so that ∂L/∂a = h / (a + ε): ∂L/∂P = g (AND) or −g (OR, y = 1 − P); f(P) = P² (Product:
    the exact derivative) or 1/(1 − log P²) (EstimatedProduct). P = 0 (some a = 0) gives f = 0 either way."""
    if EST:
        f = 1.0 / (1.0 - 1.3862943611198906 * tl.log2(pj))  # 1 − 2 ln P
    else:
        f = pj * pj
    h = g * f
    if not CONJ:
        h = -h
    return h


@triton.jit
def _product_bwd_dx(
    x, wc, pc, gc, dx, i_m, i_k,
    B, K, N, stride_xb, stride_xk, stride_wk, stride_wn, stride_pb, stride_pn, stride_gb, stride_gn,
    CONJ: tl.constexpr, EST: tl.constexpr, BM: tl.constexpr, BK: tl.constexpr, UNROLL: tl.constexpr,
):  # fmt: skip
    """dx [BM, BK] = ± Σ_n h[:, n] W[:, n] / (a + ε), one output column n per rank-1 update (W, P and g are read a
    column at a time: the caller passes column-major copies)."""
    row0 = i_m * BM
    k_0 = i_k * BK
    offs_m = tl.arange(0, BM)
    offs_k = tl.arange(0, BK)
    m_m = row0 + offs_m < B
    m_k = k_0 + offs_k < K
    m_x = m_m[:, None] & m_k[None, :]
    x_ptr = x + row0.to(tl.int64) * stride_xb + k_0.to(tl.int64) * stride_xk
    u = tl.load(x_ptr + offs_m[:, None] * stride_xb + offs_k[None, :] * stride_xk, mask=m_x, other=0.0).to(tl.float32)
    if CONJ:
        u = 1.0 - u
    zero_m = offs_m * 0
    zero_k = offs_k * 0
    tile_g = offs_m * stride_gb
    tile_p = offs_m * stride_pb
    tile_w = offs_k * stride_wk
    g_ptr = gc + row0.to(tl.int64) * stride_gb  # scalar int64 pointers, advanced per output n
    p_ptr = pc + row0.to(tl.int64) * stride_pb
    w_ptr = wc + k_0.to(tl.int64) * stride_wk
    acc = tl.zeros([BM, BK], dtype=tl.float32)
    for n0 in range(0, N, UNROLL):
        for nn in tl.static_range(UNROLL):
            m_mn = m_m & (zero_m + (n0 + nn) < N)
            gv = tl.load(g_ptr + tile_g, mask=m_mn, other=0.0).to(tl.float32)
            pv = tl.load(p_ptr + tile_p, mask=m_mn, other=1.0)
            wv = tl.load(w_ptr + tile_w, mask=m_k & (zero_k + (n0 + nn) < N), other=0.0).to(tl.float32)
            h = _product_h(gv, pv, CONJ, EST)
            a = 1.0 - u * wv[None, :]
            acc += h[:, None] * (wv[None, :] / (a + 1e-10))
            g_ptr += stride_gn
            p_ptr += stride_pn
            w_ptr += stride_wn
    if not CONJ:  # ∂a/∂x = W (AND, a = 1 − W(1 − x)) or −W (OR, a = 1 − W x)
        acc = -acc
    dx_ptr = dx + row0.to(tl.int64) * K + k_0
    tl.store(dx_ptr + offs_m[:, None] * K + offs_k[None, :], acc.to(dx.dtype.element_ty), mask=m_x)


@triton.jit
def _product_bwd_dw(
    x, w, p, g, dw, i_k, i_n,
    B, K, N, stride_xb, stride_xk, stride_wk, stride_wn, stride_pb, stride_pn, stride_gb, stride_gn,
    CONJ: tl.constexpr, EST: tl.constexpr, BK: tl.constexpr, BN: tl.constexpr, UNROLL: tl.constexpr,
):  # fmt: skip
    """dW [BK, BN] = − Σ_b u[b, :]ᵀ h[b, :] / (a + ε), one batch row b per rank-1 update (∂a/∂W = −u)."""
    k_0 = i_k * BK
    col0 = i_n * BN
    offs_k = tl.arange(0, BK)
    offs_n = tl.arange(0, BN)
    m_k = k_0 + offs_k < K
    m_n = col0 + offs_n < N
    m_w = m_k[:, None] & m_n[None, :]
    w_ptr = w + k_0.to(tl.int64) * stride_wk + col0.to(tl.int64) * stride_wn
    wt = tl.load(w_ptr + offs_k[:, None] * stride_wk + offs_n[None, :] * stride_wn, mask=m_w, other=0.0).to(tl.float32)
    zero_k = offs_k * 0
    zero_n = offs_n * 0
    tile_x = offs_k * stride_xk
    tile_g = offs_n * stride_gn
    tile_p = offs_n * stride_pn
    x_ptr = x + k_0.to(tl.int64) * stride_xk  # scalar int64 pointers, advanced per batch row b
    g_ptr = g + col0.to(tl.int64) * stride_gn
    p_ptr = p + col0.to(tl.int64) * stride_pn
    acc = tl.zeros([BK, BN], dtype=tl.float32)
    for b0 in range(0, B, UNROLL):
        for bb in tl.static_range(UNROLL):
            u = tl.load(x_ptr + tile_x, mask=m_k & (zero_k + (b0 + bb) < B), other=0.0).to(tl.float32)
            if CONJ:
                u = 1.0 - u
            m_nb = m_n & (zero_n + (b0 + bb) < B)
            gv = tl.load(g_ptr + tile_g, mask=m_nb, other=0.0).to(tl.float32)
            pv = tl.load(p_ptr + tile_p, mask=m_nb, other=1.0)
            h = _product_h(gv, pv, CONJ, EST)
            a = 1.0 - u[:, None] * wt
            acc += u[:, None] * h[None, :] / (a + 1e-10)
            x_ptr += stride_xb
            g_ptr += stride_gb
            p_ptr += stride_pb
    dw_ptr = dw + k_0.to(tl.int64) * N + col0
    tl.store(dw_ptr + offs_k[:, None] * N + offs_n[None, :], (-acc).to(dw.dtype.element_ty), mask=m_w)


@triton.jit
def _logical_product_bwd_kernel(
    x, w, p, g, wc, pc, gc, dx, dw,
    B, K, N,
    stride_xb, stride_xk,
    stride_wk, stride_wn, stride_pb, stride_pn, stride_gb, stride_gn,
    stride_wck, stride_wcn, stride_pcb, stride_pcn, stride_gcb, stride_gcn,
    CONJ: tl.constexpr, EST: tl.constexpr, NEED_DX: tl.constexpr, NEED_DW: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, UNROLL: tl.constexpr,
):  # fmt: skip
    """⌈B/BM⌉·⌈K/BK⌉ dx programs (reduce over N; read wc, pc, gc: the column-major copies of W, P, g), then
    ⌈K/BK⌉·⌈N/BN⌉ dW programs (reduce over B; read the row-major w, p, g). One writer per element, no atomics."""
    pid = tl.program_id(0)
    nk = tl.cdiv(K, BK)
    n_dx = tl.cdiv(B, BM) * nk * NEED_DX
    if pid < n_dx:
        if NEED_DX:
            _product_bwd_dx(x, wc, pc, gc, dx, pid // nk, pid % nk, B, K, N, stride_xb, stride_xk,
                            stride_wck, stride_wcn, stride_pcb, stride_pcn, stride_gcb, stride_gcn,
                            CONJ, EST, BM, BK, UNROLL)  # fmt: skip
    else:
        if NEED_DW:
            q = pid - n_dx
            nn = tl.cdiv(N, BN)
            _product_bwd_dw(x, w, p, g, dw, q // nn, q % nn, B, K, N, stride_xb, stride_xk,
                            stride_wk, stride_wn, stride_pb, stride_pn, stride_gb, stride_gn,
                            CONJ, EST, BK, BN, UNROLL)  # fmt: skip


# --------------------------------------------------------------------------------------------------------------------
# binarized kernel
# --------------------------------------------------------------------------------------------------------------------


@triton.jit
def _logical_binarized_fwd_kernel(
    x, w, y,
    B, K, N,
    stride_xb, stride_xk, stride_wk, stride_wn,
    threshold,
    CONJ: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, DOT_DT: tl.constexpr,
):  # fmt: skip
    """count = 1[x < 1 (AND) | x > 0 (OR)] @ 1[W > threshold] with 0/1 operands and fp32 accumulation (exact
    integers); y = 1[count == 0] (AND) or 1[count > 0] (OR). `threshold` is the largest fp32 ≤ the caller's."""
    pid = tl.program_id(0)
    n_blocks = tl.cdiv(N, BN)
    row0 = (pid // n_blocks) * BM
    col0 = (pid % n_blocks) * BN
    offs_m = tl.arange(0, BM)
    offs_n = tl.arange(0, BN)
    offs_k = tl.arange(0, BK)
    m_m = row0 + offs_m < B
    m_n = col0 + offs_n < N
    x_ptr = x + row0.to(tl.int64) * stride_xb
    w_ptr = w + col0.to(tl.int64) * stride_wn
    tile_x = offs_m[:, None] * stride_xb + offs_k[None, :] * stride_xk
    tile_w = offs_k[:, None] * stride_wk + offs_n[None, :] * stride_wn
    acc = tl.zeros([BM, BN], dtype=tl.float32)
    for k0 in range(0, K, BK):
        m_k = k0 + offs_k < K
        m_x = m_m[:, None] & m_k[None, :]
        m_w = m_k[:, None] & m_n[None, :]
        xt = tl.load(x_ptr + tile_x, mask=m_x, other=0.0).to(tl.float32)
        if CONJ:
            hit = xt < 1.0
        else:
            hit = xt > 0.0
        ix = tl.where(m_x & hit, 1.0, 0.0)
        wt = tl.load(w_ptr + tile_w, mask=m_w, other=0.0).to(tl.float32)
        iw = tl.where(m_w & (wt > threshold), 1.0, 0.0)
        acc += tl.dot(ix.to(DOT_DT), iw.to(DOT_DT))
        x_ptr += BK * stride_xk
        w_ptr += BK * stride_wk
    if CONJ:
        out = tl.where(acc == 0.0, 1.0, 0.0)
    else:
        out = tl.where(acc > 0.0, 1.0, 0.0)
    y_ptr = y + row0.to(tl.int64) * N + col0
    m_out = m_m[:, None] & m_n[None, :]
    tl.store(y_ptr + offs_m[:, None] * N + offs_n[None, :], out.to(y.dtype.element_ty), mask=m_out)


# --------------------------------------------------------------------------------------------------------------------
# launch configuration
# --------------------------------------------------------------------------------------------------------------------

# CUDA tuning spaces, every configuration compiled offline for sm_90 (fp32, tf32, fp16, bf16, both kinds, every
# gradient set): no register spills except, in fp32 / fp16, nlaf fwd 128×128×32 (28–68 bytes) and 64×64×32 with 4 warps
# (36 bytes) and nlaf bwd 64×64×64 (24–84 bytes); the autotuning weighs that. The product kernels
# also tune UNROLL (a's multiplied per log2 in the forward; rank-1 updates per loop step in the backward): unrolling
# costs registers (product fwd 64×64, 8 warps: 112 / 154 / 217 registers for UNROLL 1 / 2 / 4). Not yet timed on a GPU.
_nlaf_fwd_tuned = triton.autotune(
    configs=[
        triton.Config({"BM": bm, "BN": bn, "BK": bk}, num_warps=wp, num_stages=st)
        for bm, bn, bk, wp, st in ((128, 64, 32, 8, 3), (64, 128, 32, 8, 3), (128, 128, 32, 8, 3), (64, 64, 32, 4, 3))
    ],
    key=["K", "N", "CONJ", "DOT_DT", "PREC"],
)(_logical_nlaf_fwd_kernel)

_nlaf_bwd_tuned = triton.autotune(
    configs=[
        triton.Config({"BM": bm, "BN": bn, "BK": bk}, num_warps=wp, num_stages=st)
        for bm, bn, bk, wp, st in ((64, 64, 32, 8, 3), (64, 64, 32, 8, 2), (64, 64, 64, 8, 3), (32, 32, 32, 4, 3))
    ],
    key=["K", "N", "CONJ", "NEED_DX", "NEED_DW", "DOT_DT", "PREC"],
)(_logical_nlaf_bwd_kernel)

_product_fwd_tuned = triton.autotune(
    configs=[
        triton.Config({"BM": bm, "BN": bn, "UNROLL": un}, num_warps=wp, num_stages=1)
        for bm, bn, un, wp in ((64, 64, 1, 8), (64, 64, 2, 8), (64, 64, 4, 8), (128, 64, 2, 8))
    ],
    key=["K", "N", "CONJ"],
)(_logical_product_fwd_kernel)

_product_bwd_tuned = triton.autotune(
    configs=[
        triton.Config({"BM": bm, "BN": bn, "BK": bk, "UNROLL": un}, num_warps=wp, num_stages=1)
        for bm, bn, bk, un, wp in ((64, 64, 64, 1, 8), (64, 64, 32, 1, 4), (64, 64, 64, 2, 8), (32, 32, 32, 2, 4))
    ],
    key=["K", "N", "CONJ", "EST", "NEED_DX", "NEED_DW"],
)(_logical_product_bwd_kernel)


def _use_autotune(x: torch.Tensor) -> bool:
    return x.is_cuda and not triton_interpret()


def _dot_options(x: torch.Tensor) -> dict:
    """DOT_DT, PREC for the NLAF dots (their operands are G values and ∂L/∂s, computed in fp32).

    bf16 inputs on CUDA multiply them in bf16 (fp32 accumulation; every term of s has one sign, so the relative error
    stays ~2^-8). fp16 inputs multiply them as tf32 (G reaches α^β/(1 − α^β), which overflows fp16 for α close to 1).
    fp32 inputs follow PyTorch's matmul setting: tf32 where torch.backends.cuda.matmul.allow_tf32 is set, else exact
    fp32 ("ieee"). Under the interpreter (CPU tensors) everything is fp32 "ieee" (the interpreter multiplies bf16 dot
    operands as raw uint16 bits in Triton 3.9).
    """
    if not x.is_cuda:
        return dict(DOT_DT=tl.float32, PREC="ieee")
    if x.dtype == torch.bfloat16:
        return dict(DOT_DT=tl.bfloat16, PREC="tf32")
    if x.dtype == torch.float16:
        return dict(DOT_DT=tl.float32, PREC="tf32")
    return dict(DOT_DT=tl.float32, PREC="tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee")


def _n_bwd_programs(B, K, N, BM, BN, BK, need_dx, need_dw) -> int:
    n_dx = triton.cdiv(B, BM) * triton.cdiv(K, BK) if need_dx else 0
    return n_dx + (triton.cdiv(K, BK) * triton.cdiv(N, BN) if need_dw else 0)


def _threshold_fp32(threshold: float) -> float:
    """The largest fp32 ≤ threshold: for any fp32 w, w > threshold ⇔ w > this (compared exactly in the kernel)."""
    t = torch.tensor(float(threshold), dtype=torch.float64)
    t32 = t.to(torch.float32)
    if t32.double() > t:
        t32 = torch.nextafter(t32, torch.tensor(-math.inf, dtype=torch.float32))
    return t32.item()


# --------------------------------------------------------------------------------------------------------------------
# host functions and autograd
# --------------------------------------------------------------------------------------------------------------------


def _nlaf_fwd(x, w, conj, alpha, beta, gamma):
    B, K = x.shape
    N = w.shape[1]
    y = _empty((B, N), x.dtype, x.device)
    s = _empty((B, N), torch.float32, x.device)
    args = (x, w, y, s, B, K, N, x.stride(0), x.stride(1), w.stride(0), w.stride(1), alpha, beta, gamma)
    meta = dict(CONJ=conj, **_dot_options(x))
    if _use_autotune(x):
        _nlaf_fwd_tuned[lambda m: (triton.cdiv(B, m["BM"]) * triton.cdiv(N, m["BN"]),)](*args, **meta)
    else:
        grid = (triton.cdiv(B, _TILE) * triton.cdiv(N, _TILE),)
        _logical_nlaf_fwd_kernel[grid](*args, BM=_TILE, BN=_TILE, BK=_TILE, **meta)
    return y, s


def _nlaf_bwd(x, w, s, g, conj, alpha, beta, gamma, need_dx, need_dw):
    B, K = x.shape
    N = w.shape[1]
    dx = _empty((B, K), x.dtype, x.device) if need_dx else None
    dw = _empty((K, N), w.dtype, x.device) if need_dw else None
    zero_pow = 1.0 if beta == 1.0 else 0.0
    args = (x, w, s, g, dx, dw, B, K, N, x.stride(0), x.stride(1), w.stride(0), w.stride(1), g.stride(0), g.stride(1),
            alpha, beta, gamma, zero_pow)  # fmt: skip
    meta = dict(CONJ=conj, NEED_DX=int(need_dx), NEED_DW=int(need_dw), **_dot_options(x))
    if _use_autotune(x):
        grid = lambda m: (_n_bwd_programs(B, K, N, m["BM"], m["BN"], m["BK"], need_dx, need_dw),)  # noqa: E731
        _nlaf_bwd_tuned[grid](*args, **meta)
    else:
        grid = (_n_bwd_programs(B, K, N, _TILE, _TILE, _TILE, need_dx, need_dw),)
        _logical_nlaf_bwd_kernel[grid](*args, BM=_TILE, BN=_TILE, BK=_TILE, **meta)
    return dx, dw


class _LogicalNLAF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, conj, alpha, beta, gamma):
        y, s = _nlaf_fwd(x, w, conj, alpha, beta, gamma)
        ctx.save_for_backward(x, w, s)
        ctx.params = (conj, alpha, beta, gamma)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, gy):
        x, w, s = ctx.saved_tensors
        need_dx, need_dw = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        dx, dw = _nlaf_bwd(x, w, s, gy, *ctx.params, need_dx, need_dw)
        return dx, dw, None, None, None, None


def _product_fwd(x, w, conj):
    B, K = x.shape
    N = w.shape[1]
    y = _empty((B, N), x.dtype, x.device)
    p = _empty((B, N), torch.float32, x.device)
    xc = x.t().contiguous().t()  # column-major: the kernel reads x a column at a time
    args = (xc, w, y, p, B, K, N, xc.stride(0), xc.stride(1), w.stride(0), w.stride(1))
    if _use_autotune(x):
        grid = lambda m: (triton.cdiv(B, m["BM"]) * triton.cdiv(N, m["BN"]),)  # noqa: E731
        _product_fwd_tuned[grid](*args, CONJ=conj)
    else:
        T = _PRODUCT_TILE
        grid = (triton.cdiv(B, T) * triton.cdiv(N, T),)
        _logical_product_fwd_kernel[grid](*args, CONJ=conj, BM=T, BN=T, UNROLL=_UNROLL)
    return y, p


def _product_bwd(x, w, p, g, conj, estimated, need_dx, need_dw):
    B, K = x.shape
    N = w.shape[1]
    dx = _empty((B, K), x.dtype, x.device) if need_dx else None
    dw = _empty((K, N), w.dtype, x.device) if need_dw else None
    if need_dx:  # the dx programs read W, P and g a column at a time: column-major copies (O(K·N + B·N))
        wc, pc, gc = (t.t().contiguous().t() for t in (w, p, g))
    else:
        wc, pc, gc = w, p, g
    args = (
        x, w, p, g, wc, pc, gc, dx, dw, B, K, N, x.stride(0), x.stride(1),
        w.stride(0), w.stride(1), p.stride(0), p.stride(1), g.stride(0), g.stride(1),
        wc.stride(0), wc.stride(1), pc.stride(0), pc.stride(1), gc.stride(0), gc.stride(1),
    )  # fmt: skip
    meta = dict(CONJ=conj, EST=bool(estimated), NEED_DX=int(need_dx), NEED_DW=int(need_dw))
    if _use_autotune(x):
        grid = lambda m: (_n_bwd_programs(B, K, N, m["BM"], m["BN"], m["BK"], need_dx, need_dw),)  # noqa: E731
        _product_bwd_tuned[grid](*args, **meta)
    else:
        T = _PRODUCT_TILE
        grid = (_n_bwd_programs(B, K, N, T, T, T, need_dx, need_dw),)
        _logical_product_bwd_kernel[grid](*args, BM=T, BN=T, BK=T, UNROLL=_UNROLL, **meta)
    return dx, dw


class _LogicalProduct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, conj, estimated):
        y, p = _product_fwd(x, w, conj)
        ctx.save_for_backward(x, w, p)
        ctx.params = (conj, estimated)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, gy):
        x, w, p = ctx.saved_tensors
        need_dx, need_dw = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        dx, dw = _product_bwd(x, w, p, gy.contiguous(), *ctx.params, need_dx, need_dw)
        return dx, dw, None, None


def _check_dtype(x: torch.Tensor) -> None:
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"the logical triton kernels take fp32, fp16 or bf16; got {x.dtype}")


def _empty_dims(x: torch.Tensor, w: torch.Tensor) -> bool:
    return x.shape[0] == 0 or x.shape[1] == 0 or w.shape[1] == 0


def logical_nlaf_triton(x, w, kind, alpha=0.999, beta=8.0, gamma=1.0):
    """NLAF layer on Triton (see `reference.logical_nlaf_matmul`), differentiable in x and w. Memory: y and s [B, N]
    (s fp32, saved for the backward) besides the inputs."""
    if _empty_dims(x, w):  # nothing to tile: the reference handles the empty shapes
        return logical_nlaf_matmul(x, w, kind, alpha, beta, gamma)
    _check_dtype(x)
    return _LogicalNLAF.apply(
        x.contiguous(), w.contiguous(), kind == "conjunction", float(alpha), float(beta), float(gamma)
    )


def logical_product_triton(x, w, kind, estimated_grad=False):
    """NeurIPS LAF layer on Triton (see `reference.logical_product_materialized`), differentiable in x and w, with
    the official custom backward. Memory O(B·K + K·N + B·N): no [B, K, N] tensor in either pass."""
    if _empty_dims(x, w):
        return logical_product_materialized(x, w, kind, estimated_grad)
    _check_dtype(x)
    return _LogicalProduct.apply(x.contiguous(), w.contiguous(), kind == "conjunction", bool(estimated_grad))


def logical_binarized_triton(x, w, kind, threshold=0.5):
    """Binarized layer on Triton (see `reference.logical_binarized_matmul`): {0, 1} in x's dtype, no gradient.
    Equal to the reference for x ∈ [0, 1] (any W, any threshold)."""
    if _empty_dims(x, w):
        return logical_binarized_matmul(x, w, kind, threshold)
    _check_dtype(x)
    B, K = x.shape
    N = w.shape[1]
    x, w = x.detach(), w.detach()
    y = _empty((B, N), x.dtype, x.device)
    args = (x, w, y, B, K, N, x.stride(0), x.stride(1), w.stride(0), w.stride(1), _threshold_fp32(threshold))
    if _use_autotune(x):
        grid = (triton.cdiv(B, 128) * triton.cdiv(N, 128),)
        _logical_binarized_fwd_kernel[grid](
            *args, CONJ=kind == "conjunction", BM=128, BN=128, BK=32, DOT_DT=tl.float16, num_warps=8, num_stages=3
        )
    else:
        grid = (triton.cdiv(B, _TILE) * triton.cdiv(N, _TILE),)
        _logical_binarized_fwd_kernel[grid](
            *args, CONJ=kind == "conjunction", BM=_TILE, BN=_TILE, BK=_TILE, DOT_DT=tl.float32
        )
    return y
