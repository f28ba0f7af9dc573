"""Triton kernels for the linear cross-entropy loss(h Wᵀ, y) without the [N, V] logits (in the style of Cut
Cross-Entropy, Wijmans et al. 2024, and Liger's fused linear cross-entropy).

h [N, d] hidden states, W [V, d] the output embedding / item table, y [N] int64 labels. Three kernels, each tiling
rows (BM), items (BV) and features (BD: the reduction of the logits tile, [BM, BV] = Σ_d-blocks h Wᵀ, fp32):

* `_lce_fwd_kernel`, grid (row blocks, V-splits): each program sweeps its split's items in BV tiles with an online
  logsumexp (running max m and sum s in fp32) and picks the target logit when y falls in a tile; it writes lse and
  the target logit of its split, [S, N] fp32 each. The host combines the S splits (logsumexp, sum): [S, N] numbers.
* `_lce_dh_kernel`, grid (row blocks, V-splits, d-parts): recomputes the logits tiles of its split,
  dlogits = (softmax − onehot) · scale per row, and accumulates dh = dlogits W over the split in registers
  ([BM, BDO] fp32); it writes its partial dh to [S, N, d] fp32, which the host sums over the S splits.
* `_lce_dw_kernel`, grid (item blocks, d-parts): recomputes the logits of its BV items against every row block and
  accumulates dW = dlogitsᵀ h ([BV, BDO] fp32), written once in W's dtype.

The backward is a second pass, not atomics: every output element is written by one program, so the result is
deterministic, and the price is that each backward kernel recomputes the logits (two recomputations where an
atomic version has one). Every kernel output is allocated through `_empty` (the tests swap it for a NaN-filled
allocator, so an unwritten element shows up as NaN). Importing this module raises ImportError when Triton is missing;
`linear_cross_entropy/__init__.py` catches it.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

try:
    import triton
    import triton.language as tl
except ImportError as exc:  # pragma: no cover - exercised only where triton is absent
    raise ImportError(f"paperzoo.kernels.linear_cross_entropy.triton needs triton: {exc}") from exc

from ..._env import triton_interpret
from .._triton_common import dot_options, mixed_dot
from .reference import linear_cross_entropy_reference

__all__ = ["linear_cross_entropy_triton"]

# Widest d-part of an output accumulator (dh [BM, BDO], dW [BV, BDO]): d ≤ _MAX_BDO keeps one part, so the logits are
# recomputed once per backward kernel; wider d is split into parts, each recomputing them. The tests lower it.
_MAX_BDO = 512
# fp32 accumulator elements per program on CUDA (BM · BDO and BV · BDO); 16384 over 8 warps is 64 registers a thread.
# Halved for fp32 inputs, whose [BV, BDO] / [BM, BDO] operand tiles take twice the shared memory.
_ACC = 16384
# Programs the forward and dh grids aim for on CUDA, per streaming multiprocessor (row blocks × V-splits).
_PROGRAMS_PER_SM = 4
_MAX_SPLITS = 64
# Under the interpreter (CPU): 16-row, 64-item, 32-feature tiles and at most 4 V-splits, so that the tests' odd
# shapes span partial tiles, several splits and (d = 64) several feature blocks; the interpreter's cost is per tile.
_INTERP_TILES = (16, 64, 32)
_INTERP_SPLITS = 4


def _empty(shape, dtype, device) -> torch.Tensor:
    """The one allocator of kernel outputs (the tests poison it with NaN)."""
    return torch.empty(shape, dtype=dtype, device=device)


# --------------------------------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------------------------------


@triton.jit
def _logits_tile(h_ptr, w_ptr, offs_m, offs_v, m_m, m_v, D, stride_h, stride_w,
                 BD: tl.constexpr, BM: tl.constexpr, BV: tl.constexpr, IN_DT: tl.constexpr, PREC: tl.constexpr):
    """logits [BM, BV] fp32 = h[offs_m] W[offs_v]ᵀ, summed over d in BD-wide blocks (masked rows, items, features
    read as 0); the row and item offsets are int64."""
    acc = tl.zeros([BM, BV], dtype=tl.float32)
    offs_d = tl.arange(0, BD)
    row_h = offs_m.to(tl.int64)[:, None] * stride_h  # [BM, 1]
    row_w = offs_v.to(tl.int64)[None, :] * stride_w  # [1, BV]
    for d0 in range(0, D, BD):
        m_d = d0 + offs_d < D
        a = tl.load(h_ptr + row_h + (d0 + offs_d)[None, :], mask=m_m[:, None] & m_d[None, :], other=0.0)  # [BM, BD]
        b = tl.load(w_ptr + row_w + (d0 + offs_d)[:, None], mask=m_d[:, None] & m_v[None, :], other=0.0)  # [BD, BV]
        acc += tl.dot(a.to(IN_DT), b.to(IN_DT), input_precision=PREC)
    return acc


@triton.jit
def _lce_fwd_kernel(
    h, w, labels, lse_part, tgt_part,
    N, V, D, stride_h, stride_w, V_SPLIT,
    BM: tl.constexpr, BV: tl.constexpr, BD: tl.constexpr, IN_DT: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """One program per (row block, V-split): lse [BM] = log Σ_v exp(logits) over the split's items (online, fp32) and
    the target logit [BM] (0 where y is outside the split), stored to lse_part / tgt_part [S, N] fp32."""
    pid_m = tl.program_id(0)
    pid_s = tl.program_id(1)
    offs_m = pid_m * BM + tl.arange(0, BM)
    m_m = offs_m < N
    y = tl.load(labels + offs_m, mask=m_m, other=-1)  # [BM] int64
    v_lo = pid_s * V_SPLIT
    v_hi = tl.minimum(V, v_lo + V_SPLIT)
    m_i = tl.full([BM], float("-inf"), dtype=tl.float32)
    s_i = tl.zeros([BM], dtype=tl.float32)
    t_i = tl.zeros([BM], dtype=tl.float32)
    for v0 in range(v_lo, v_hi, BV):
        offs_v = v0 + tl.arange(0, BV)
        m_v = offs_v < v_hi
        logits = _logits_tile(h, w, offs_m, offs_v, m_m, m_v, D, stride_h, stride_w, BD, BM, BV, IN_DT, PREC)
        logits = tl.where(m_v[None, :], logits, float("-inf"))  # every tile has an unmasked item: max is finite
        m_new = tl.maximum(m_i, tl.max(logits, axis=1))
        s_i = s_i * tl.exp(m_i - m_new) + tl.sum(tl.exp(logits - m_new[:, None]), axis=1)
        m_i = m_new
        is_y = (offs_v[None, :] == y[:, None]) & m_v[None, :]  # (a label past the split is another's)
        t_i += tl.sum(tl.where(is_y, logits, 0.0), axis=1)
    out = pid_s.to(tl.int64) * N + offs_m
    tl.store(lse_part + out, m_i + tl.log(s_i), mask=m_m)
    tl.store(tgt_part + out, t_i, mask=m_m)


@triton.jit
def _dlogits_tile(h, w, labels, lse, scale, offs_m, offs_v, m_m, m_v, D, stride_h, stride_w,
                  BD: tl.constexpr, BM: tl.constexpr, BV: tl.constexpr, IN_DT: tl.constexpr, PREC: tl.constexpr):
    """d loss / d logits [BM, BV] fp32 = (exp(logits − lse) − onehot(y)) · scale per row (0 on masked rows and
    items, and on ignored rows, whose scale is 0)."""
    logits = _logits_tile(h, w, offs_m, offs_v, m_m, m_v, D, stride_h, stride_w, BD, BM, BV, IN_DT, PREC)
    b_lse = tl.load(lse + offs_m, mask=m_m, other=0.0)  # [BM]
    b_scale = tl.load(scale + offs_m, mask=m_m, other=0.0)  # [BM]
    y = tl.load(labels + offs_m, mask=m_m, other=-1)  # [BM]
    p = tl.exp(logits - b_lse[:, None]) - tl.where(offs_v[None, :] == y[:, None], 1.0, 0.0)
    keep = (m_m & (b_scale != 0.0))[:, None] & m_v[None, :]
    return tl.where(keep, p * b_scale[:, None], 0.0)


@triton.jit
def _lce_dh_kernel(
    h, w, labels, lse, scale, dh_part,
    N, V, D, stride_h, stride_w, V_SPLIT,
    BM: tl.constexpr, BV: tl.constexpr, BD: tl.constexpr, BDO: tl.constexpr,
    IN_DT: tl.constexpr, MIX_BF16: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """One program per (row block, V-split, d-part): dh [BM, BDO] = Σ over the split's item tiles of
    dlogits [BM, BV] @ W[items, d-part] [BV, BDO], in fp32, stored to dh_part [S, N, D] fp32."""
    pid_m = tl.program_id(0)
    pid_s = tl.program_id(1)
    offs_m = pid_m * BM + tl.arange(0, BM)
    m_m = offs_m < N
    offs_o = tl.program_id(2) * BDO + tl.arange(0, BDO)
    m_o = offs_o < D
    v_lo = pid_s * V_SPLIT
    v_hi = tl.minimum(V, v_lo + V_SPLIT)
    acc = tl.zeros([BM, BDO], dtype=tl.float32)
    for v0 in range(v_lo, v_hi, BV):
        offs_v = v0 + tl.arange(0, BV)
        m_v = offs_v < v_hi
        dlogits = _dlogits_tile(h, w, labels, lse, scale, offs_m, offs_v, m_m, m_v, D, stride_h, stride_w,
                                BD, BM, BV, IN_DT, PREC)  # fmt: skip
        b_w = tl.load(w + offs_v.to(tl.int64)[:, None] * stride_w + offs_o[None, :],
                      mask=m_v[:, None] & m_o[None, :], other=0.0)  # [BV, BDO]  # fmt: skip
        acc += mixed_dot(dlogits, b_w, MIX_BF16, PREC)
    out = (pid_s.to(tl.int64) * N + offs_m.to(tl.int64))[:, None] * D + offs_o[None, :]
    tl.store(dh_part + out, acc, mask=m_m[:, None] & m_o[None, :])


@triton.jit
def _lce_dw_kernel(
    h, w, labels, lse, scale, dw,
    N, V, D, stride_h, stride_w,
    BM: tl.constexpr, BV: tl.constexpr, BD: tl.constexpr, BDO: tl.constexpr,
    IN_DT: tl.constexpr, MIX_BF16: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """One program per (item block, d-part): dW [BV, BDO] = Σ over every row block of
    dlogitsᵀ [BV, BM] @ h[rows, d-part] [BM, BDO], in fp32, stored once to dw [V, D] in W's dtype."""
    offs_v = tl.program_id(0) * BV + tl.arange(0, BV)
    m_v = offs_v < V
    offs_o = tl.program_id(1) * BDO + tl.arange(0, BDO)
    m_o = offs_o < D
    acc = tl.zeros([BV, BDO], dtype=tl.float32)
    for m0 in range(0, N, BM):
        offs_m = m0 + tl.arange(0, BM)
        m_m = offs_m < N
        dlogits = _dlogits_tile(h, w, labels, lse, scale, offs_m, offs_v, m_m, m_v, D, stride_h, stride_w,
                                BD, BM, BV, IN_DT, PREC)  # fmt: skip
        b_h = tl.load(h + offs_m.to(tl.int64)[:, None] * stride_h + offs_o[None, :],
                      mask=m_m[:, None] & m_o[None, :], other=0.0)  # [BM, BDO]  # fmt: skip
        acc += mixed_dot(tl.trans(dlogits), b_h, MIX_BF16, PREC)
    out = offs_v.to(tl.int64)[:, None] * D + offs_o[None, :]
    tl.store(dw + out, acc.to(dw.dtype.element_ty), mask=m_v[:, None] & m_o[None, :])


# --------------------------------------------------------------------------------------------------------------------
# launch configuration, host functions and autograd
# --------------------------------------------------------------------------------------------------------------------


def _on_cuda(x: torch.Tensor) -> bool:
    return x.is_cuda and not triton_interpret()


def _tiles(D: int, x: torch.Tensor) -> tuple[int, int, int, int]:
    """(BM, BV, BD, BDO). On CUDA: BD = 64 (32 for fp32), BDO = d rounded up to a power of two (at most _MAX_BDO),
    BM = BV = _ACC / BDO (half that for fp32) clamped to [16, 64]. Under the interpreter: `_INTERP_TILES`, BDO as
    on CUDA (≥ 16)."""
    BDO = max(16, min(triton.next_power_of_2(D), _MAX_BDO))
    if not _on_cuda(x):
        BM, BV, BD = _INTERP_TILES
        return BM, BV, BD, BDO
    fp32 = x.dtype == torch.float32
    BMV = max(16, min(64, (_ACC // 2 if fp32 else _ACC) // BDO))
    return BMV, BMV, 32 if fp32 else 64, BDO


def _splits(N: int, V: int, BM: int, BV: int, x: torch.Tensor) -> tuple[int, int]:
    """(S, items per split): V cut into S splits of whole BV tiles so that row blocks × S fills the GPU
    (`_PROGRAMS_PER_SM` programs per SM, at most `_MAX_SPLITS` splits); under the interpreter up to 4 splits."""
    tiles = triton.cdiv(V, BV)
    if _on_cuda(x):
        sms = torch.cuda.get_device_properties(x.device).multi_processor_count
        want = triton.cdiv(_PROGRAMS_PER_SM * sms, triton.cdiv(N, BM))
        S = max(1, min(_MAX_SPLITS, tiles, want))
    else:
        S = min(_INTERP_SPLITS, tiles)
    per = triton.cdiv(tiles, S) * BV
    return triton.cdiv(V, per), per


def _launch(x: torch.Tensor) -> dict:
    """num_warps / num_stages: 8 warps and 2 stages on CUDA (not autotuned; see README.md), 4 warps otherwise."""
    return dict(num_warps=8, num_stages=2) if _on_cuda(x) else dict(num_warps=4)


def _forward(h, w, labels):
    """(lse [N] fp32, target logit [N] fp32) of every row (ignored rows included; the caller masks them)."""
    N, D = h.shape
    V = w.shape[0]
    BM, BV, BD, _ = _tiles(D, h)
    S, per = _splits(N, V, BM, BV, h)
    opts = dot_options(h)
    lse_part = _empty((S, N), torch.float32, h.device)
    tgt_part = _empty((S, N), torch.float32, h.device)
    _lce_fwd_kernel[(triton.cdiv(N, BM), S)](
        h, w, labels, lse_part, tgt_part, N, V, D, h.stride(0), w.stride(0), per,
        BM=BM, BV=BV, BD=BD, IN_DT=opts["IN_DT"], PREC=opts["PREC"], **_launch(h),
    )  # fmt: skip
    return torch.logsumexp(lse_part, 0), tgt_part.sum(0)


def _dhidden(h, w, labels, lse, scale):
    """dh [N, d] in h's dtype: the [S, N, d] fp32 partials of the V-splits, summed."""
    N, D = h.shape
    V = w.shape[0]
    BM, BV, BD, BDO = _tiles(D, h)
    S, per = _splits(N, V, BM, BV, h)
    opts = dot_options(h)
    dh_part = _empty((S, N, D), torch.float32, h.device)
    _lce_dh_kernel[(triton.cdiv(N, BM), S, triton.cdiv(D, BDO))](
        h, w, labels, lse, scale, dh_part, N, V, D, h.stride(0), w.stride(0), per,
        BM=BM, BV=BV, BD=BD, BDO=BDO, **opts, **_launch(h),
    )  # fmt: skip
    return dh_part.sum(0).to(h.dtype)


def _dweight(h, w, labels, lse, scale):
    """dW [V, d] in W's dtype, one program per item block and d-part."""
    N, D = h.shape
    V = w.shape[0]
    BM, BV, BD, BDO = _tiles(D, h)
    dw = _empty((V, D), w.dtype, w.device)
    _lce_dw_kernel[(triton.cdiv(V, BV), triton.cdiv(D, BDO))](
        h, w, labels, lse, scale, dw, N, V, D, h.stride(0), w.stride(0),
        BM=BM, BV=BV, BD=BD, BDO=BDO, **dot_options(h), **_launch(h),
    )  # fmt: skip
    return dw


def _rows(t: torch.Tensor) -> torch.Tensor:
    """t [R, d] with a unit feature stride (any row stride is read in place), else a contiguous copy."""
    return t if t.stride(1) == 1 else t.contiguous()


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, labels, ignore_index, reduction):
        h, w, y = _rows(hidden), _rows(weight), labels.contiguous()
        lse, target = _forward(h, w, y)  # [N] fp32
        valid = y != ignore_index  # [N]
        total = torch.where(valid, lse - target, 0.0).sum()
        denom = valid.sum().clamp_min(1).to(torch.float32) if reduction == "mean" else None  # no host sync
        ctx.save_for_backward(h, w, y, lse, valid, denom)
        return total if denom is None else total / denom

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        h, w, y, lse, valid, denom = ctx.saved_tensors
        g = grad.to(torch.float32) if denom is None else grad.to(torch.float32) / denom
        scale = (valid * g).contiguous()  # [N] fp32: d loss / d loss_i, 0 on ignored rows
        dh = _dhidden(h, w, y, lse, scale) if ctx.needs_input_grad[0] else None
        dw = _dweight(h, w, y, lse, scale) if ctx.needs_input_grad[1] else None
        return dh, dw, None, None, None


def linear_cross_entropy_triton(hidden, weight, labels, ignore_index: int = -100, reduction: str = "mean"):
    """The op on Triton (see `reference.linear_cross_entropy_reference`): an fp32 scalar, differentiable in hidden
    and weight (fp32, fp16 or bf16, one dtype). hidden [N, d], weight [V, d], labels [N] int64."""
    if hidden.shape[0] == 0:  # nothing to launch: the reference handles the empty batch
        return linear_cross_entropy_reference(hidden, weight, labels, ignore_index, reduction)
    if hidden.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"the linear_cross_entropy triton kernels take fp32, fp16 or bf16; got {hidden.dtype}")
    return _LinearCrossEntropy.apply(hidden, weight, labels, int(ignore_index), reduction)
