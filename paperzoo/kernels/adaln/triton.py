"""Triton kernels for LatentLM's diffusion-head modulation (arXiv 2412.08635, `MLPBlock` of microsoft/unilm).

Rows of D features: x, shift, scale, residual, gate, y are [..., D] tensors seen as [N, D] (leading dims flattened).
Two ops, each a forward and a backward kernel, all memory-bound:

* adaln_modulate: y = x · r · (1 + scale) + shift, r = rsqrt(mean(x², −1) + eps). One program per BM rows; the row
  statistic r is fp32 and saved ([N] fp32) for the backward, dx = r · (g' − n · mean(g' · n)) with n = x · r,
  g' = dy · (1 + scale), dscale = dy · n; dshift = dy needs no kernel.
* gated_residual: out = residual + gate ⊙ y, elementwise over [BM, BD] tiles; dgate = dout ⊙ y, dy = dout ⊙ gate,
  dresidual = dout needs no kernel.

Inputs may have any row stride (the chunks of the adaLN Linear output `Linear(SiLU(c)).chunk(3, dim=-1)` are views
whose rows are 3·D apart: they are read in place, not copied); the feature dimension must be contiguous (otherwise
the host copies). Outputs are contiguous [N, D]. Every output buffer the kernels write is allocated through `_empty`
(the tests swap it for a NaN-filled allocator, so an unwritten element shows up as NaN).

Importing this module raises ImportError when Triton is missing; `adaln/__init__.py` catches it.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

try:
    import triton
    import triton.language as tl
except ImportError as exc:  # pragma: no cover - exercised only where triton is absent
    raise ImportError(f"paperzoo.kernels.adaln.triton needs triton: {exc}") from exc

from ..._env import triton_interpret
from .reference import adaln_modulate_reference, gated_residual_reference

__all__ = ["adaln_modulate_triton", "gated_residual_triton"]

# Widest row block of adaln_modulate: D ≤ _MAX_BD keeps a row tile in registers (one pass over memory); wider rows are
# swept twice in _MAX_BD-wide blocks. The tests lower it to exercise the two-pass path.
_MAX_BD = 8192
# Elements per program on CUDA (BM rows × BD features; see `_launch`), and the widest gated_residual column block.
_TILE = 4096
_MAX_BD_EW = 1024
# Under the interpreter (CPU): 4 rows and 16-wide gated_residual blocks, so the tests' odd shapes span partial tiles.
_ROWS = 4
_EW_BD = 16


def _empty(shape, dtype, device) -> torch.Tensor:
    """The one allocator of kernel outputs (the tests poison it with NaN)."""
    return torch.empty(shape, dtype=dtype, device=device)


# --------------------------------------------------------------------------------------------------------------------
# adaln_modulate kernels
# --------------------------------------------------------------------------------------------------------------------


@triton.jit
def _adaln_modulate_fwd_kernel(
    x, shift, scale, y, rstd,
    N, D, stride_x, stride_b, stride_s, eps,
    BM: tl.constexpr, BD: tl.constexpr, ONE_PASS: tl.constexpr, STORE_RSTD: tl.constexpr,
):  # fmt: skip
    """One program per BM rows: r = rsqrt(Σ x² / D + eps) [BM] in fp32, y = x · r · (1 + scale) + shift. ONE_PASS
    (BD ≥ D): the [BM, BD] tiles stay in registers; otherwise two sweeps over D in BD-wide blocks (Σ x², then y).
    With STORE_RSTD, r is stored to rstd [N] fp32 for the backward."""
    row0 = tl.program_id(0) * BM
    offs_m = tl.arange(0, BM)
    offs_d = tl.arange(0, BD)
    m_m = row0 + offs_m < N
    row64 = row0.to(tl.int64)  # scalar int64 row bases; in-tile offsets int32
    x_ptr = x + row64 * stride_x
    b_ptr = shift + row64 * stride_b
    s_ptr = scale + row64 * stride_s
    y_ptr = y + row64 * D
    tile_x = offs_m[:, None] * stride_x + offs_d[None, :]
    tile_b = offs_m[:, None] * stride_b + offs_d[None, :]
    tile_s = offs_m[:, None] * stride_s + offs_d[None, :]
    tile_y = offs_m[:, None] * D + offs_d[None, :]
    if ONE_PASS:
        m = m_m[:, None] & (offs_d < D)[None, :]
        xv = tl.load(x_ptr + tile_x, mask=m, other=0.0).to(tl.float32)
        r = tl.rsqrt(tl.sum(xv * xv, axis=1) / D + eps)  # masked rows: rsqrt(eps), never stored
        sv = tl.load(s_ptr + tile_s, mask=m, other=0.0).to(tl.float32)
        bv = tl.load(b_ptr + tile_b, mask=m, other=0.0).to(tl.float32)
        out = xv * r[:, None] * (1.0 + sv) + bv
        tl.store(y_ptr + tile_y, out.to(y.dtype.element_ty), mask=m)
    else:
        acc = tl.zeros([BM], dtype=tl.float32)
        for d0 in range(0, D, BD):
            m = m_m[:, None] & (d0 + offs_d < D)[None, :]
            xv = tl.load(x_ptr + d0 + tile_x, mask=m, other=0.0).to(tl.float32)
            acc += tl.sum(xv * xv, axis=1)
        r = tl.rsqrt(acc / D + eps)
        for d0 in range(0, D, BD):
            m = m_m[:, None] & (d0 + offs_d < D)[None, :]
            xv = tl.load(x_ptr + d0 + tile_x, mask=m, other=0.0).to(tl.float32)
            sv = tl.load(s_ptr + d0 + tile_s, mask=m, other=0.0).to(tl.float32)
            bv = tl.load(b_ptr + d0 + tile_b, mask=m, other=0.0).to(tl.float32)
            out = xv * r[:, None] * (1.0 + sv) + bv
            tl.store(y_ptr + d0 + tile_y, out.to(y.dtype.element_ty), mask=m)
    if STORE_RSTD:
        tl.store(rstd + row0 + offs_m, r, mask=m_m)


@triton.jit
def _adaln_modulate_bwd_kernel(
    x, scale, dy, rstd, dx, dscale,
    N, D, stride_x, stride_s, stride_g,
    BM: tl.constexpr, BD: tl.constexpr, ONE_PASS: tl.constexpr, NEED_DX: tl.constexpr, NEED_DS: tl.constexpr,
):  # fmt: skip
    """One program per BM rows, from the saved r [N] fp32: n = x · r, g' = dy · (1 + scale),
    dx = r · (g' − n · c) with c = Σ g' · n / D = r · Σ g' · x / D, dscale = dy · n. Two sweeps over D unless
    ONE_PASS (the first computes c); only the requested gradients are computed and stored."""
    row0 = tl.program_id(0) * BM
    offs_m = tl.arange(0, BM)
    offs_d = tl.arange(0, BD)
    m_m = row0 + offs_m < N
    r = tl.load(rstd + row0 + offs_m, mask=m_m, other=0.0)
    row64 = row0.to(tl.int64)
    x_ptr = x + row64 * stride_x
    s_ptr = scale + row64 * stride_s
    g_ptr = dy + row64 * stride_g
    tile_x = offs_m[:, None] * stride_x + offs_d[None, :]
    tile_s = offs_m[:, None] * stride_s + offs_d[None, :]
    tile_g = offs_m[:, None] * stride_g + offs_d[None, :]
    tile_o = offs_m[:, None] * D + offs_d[None, :]
    if ONE_PASS:
        m = m_m[:, None] & (offs_d < D)[None, :]
        n = tl.load(x_ptr + tile_x, mask=m, other=0.0).to(tl.float32) * r[:, None]
        gv = tl.load(g_ptr + tile_g, mask=m, other=0.0).to(tl.float32)
        if NEED_DX:
            gp = gv * (1.0 + tl.load(s_ptr + tile_s, mask=m, other=0.0).to(tl.float32))
            c = tl.sum(gp * n, axis=1) / D
            out = r[:, None] * (gp - n * c[:, None])
            tl.store(dx + row64 * D + tile_o, out.to(dx.dtype.element_ty), mask=m)
        if NEED_DS:
            tl.store(dscale + row64 * D + tile_o, (gv * n).to(dscale.dtype.element_ty), mask=m)
    else:
        if NEED_DX:
            acc = tl.zeros([BM], dtype=tl.float32)
            for d0 in range(0, D, BD):
                m = m_m[:, None] & (d0 + offs_d < D)[None, :]
                xv = tl.load(x_ptr + d0 + tile_x, mask=m, other=0.0).to(tl.float32)
                gv = tl.load(g_ptr + d0 + tile_g, mask=m, other=0.0).to(tl.float32)
                sv = tl.load(s_ptr + d0 + tile_s, mask=m, other=0.0).to(tl.float32)
                acc += tl.sum(gv * (1.0 + sv) * xv, axis=1)
            c = acc * r / D
        for d0 in range(0, D, BD):
            m = m_m[:, None] & (d0 + offs_d < D)[None, :]
            n = tl.load(x_ptr + d0 + tile_x, mask=m, other=0.0).to(tl.float32) * r[:, None]
            gv = tl.load(g_ptr + d0 + tile_g, mask=m, other=0.0).to(tl.float32)
            if NEED_DX:
                gp = gv * (1.0 + tl.load(s_ptr + d0 + tile_s, mask=m, other=0.0).to(tl.float32))
                out = r[:, None] * (gp - n * c[:, None])
                tl.store(dx + row64 * D + d0 + tile_o, out.to(dx.dtype.element_ty), mask=m)
            if NEED_DS:
                tl.store(dscale + row64 * D + d0 + tile_o, (gv * n).to(dscale.dtype.element_ty), mask=m)


# --------------------------------------------------------------------------------------------------------------------
# gated_residual kernels
# --------------------------------------------------------------------------------------------------------------------


@triton.jit
def _gated_residual_fwd_kernel(
    residual, gate, y, out,
    N, D, stride_r, stride_g, stride_y,
    BM: tl.constexpr, BD: tl.constexpr,
):  # fmt: skip
    """One program per [BM, BD] tile (grid: row blocks × column blocks): out = residual + gate · y in fp32."""
    row0 = tl.program_id(0) * BM
    col0 = tl.program_id(1) * BD
    offs_m = tl.arange(0, BM)
    offs_d = tl.arange(0, BD)
    m = (row0 + offs_m < N)[:, None] & (col0 + offs_d < D)[None, :]
    row64 = row0.to(tl.int64)
    rv = tl.load(residual + row64 * stride_r + col0 + offs_m[:, None] * stride_r + offs_d[None, :], mask=m, other=0.0)
    gv = tl.load(gate + row64 * stride_g + col0 + offs_m[:, None] * stride_g + offs_d[None, :], mask=m, other=0.0)
    yv = tl.load(y + row64 * stride_y + col0 + offs_m[:, None] * stride_y + offs_d[None, :], mask=m, other=0.0)
    o = rv.to(tl.float32) + gv.to(tl.float32) * yv.to(tl.float32)
    tl.store(out + row64 * D + col0 + offs_m[:, None] * D + offs_d[None, :], o.to(out.dtype.element_ty), mask=m)


@triton.jit
def _gated_residual_bwd_kernel(
    gate, y, dout, dgate, dy,
    N, D, stride_g, stride_y, stride_o,
    BM: tl.constexpr, BD: tl.constexpr, NEED_DG: tl.constexpr, NEED_DY: tl.constexpr,
):  # fmt: skip
    """One program per [BM, BD] tile: dgate = dout · y, dy = dout · gate (fp32 products), the requested ones only."""
    row0 = tl.program_id(0) * BM
    col0 = tl.program_id(1) * BD
    offs_m = tl.arange(0, BM)
    offs_d = tl.arange(0, BD)
    m = (row0 + offs_m < N)[:, None] & (col0 + offs_d < D)[None, :]
    row64 = row0.to(tl.int64)
    tile_out = row64 * D + col0 + offs_m[:, None] * D + offs_d[None, :]
    do = tl.load(dout + row64 * stride_o + col0 + offs_m[:, None] * stride_o + offs_d[None, :], mask=m, other=0.0)
    do = do.to(tl.float32)
    if NEED_DG:
        yv = tl.load(y + row64 * stride_y + col0 + offs_m[:, None] * stride_y + offs_d[None, :], mask=m, other=0.0)
        tl.store(dgate + tile_out, (do * yv.to(tl.float32)).to(dgate.dtype.element_ty), mask=m)
    if NEED_DY:
        gv = tl.load(gate + row64 * stride_g + col0 + offs_m[:, None] * stride_g + offs_d[None, :], mask=m, other=0.0)
        tl.store(dy + tile_out, (do * gv.to(tl.float32)).to(dy.dtype.element_ty), mask=m)


# --------------------------------------------------------------------------------------------------------------------
# launch configuration, host functions and autograd
# --------------------------------------------------------------------------------------------------------------------


def _on_cuda(x: torch.Tensor) -> bool:
    return x.is_cuda and not triton_interpret()


def _row_launch(D: int, cuda: bool) -> tuple[int, int, int]:
    """(BM, BD, num_warps) of the adaln_modulate kernels: BD = D rounded up to a power of two (at most _MAX_BD). On
    CUDA, BM rows fill a tile of _TILE elements (4 rows at D = 1024), with 4 warps up to 2048 elements, 8 up to 4096,
    16 above; the interpreter takes _ROWS rows."""
    BD = min(triton.next_power_of_2(D), _MAX_BD)
    if not cuda:
        return _ROWS, BD, 4
    BM = max(1, min(16, _TILE // BD))
    tile = BM * BD
    return BM, BD, 4 if tile <= 2048 else 8 if tile <= 4096 else 16


def _ew_launch(D: int, cuda: bool) -> tuple[int, int, int]:
    """(BM, BD, num_warps) of the gated_residual kernels: [BM, BD] tiles of _TILE elements, 8 warps, on CUDA."""
    if not cuda:
        return _ROWS, _EW_BD, 4
    BD = min(triton.next_power_of_2(D), _MAX_BD_EW)
    return max(1, _TILE // BD), BD, 8


def _rows(t: torch.Tensor, D: int) -> torch.Tensor:
    """t [..., D] as [N, D] with unit feature stride: a view when the leading dims flatten (any row stride), else a
    contiguous copy."""
    t2 = t.reshape(-1, D)
    return t2 if t2.stride(1) == 1 else t2.contiguous()


def _modulate_fwd(x, shift, scale, eps: float, store_rstd: bool):
    """y [N, D] in x's dtype and r [N] fp32 (None unless store_rstd) from [N, D] inputs."""
    N, D = x.shape
    y = _empty((N, D), x.dtype, x.device)
    rstd = _empty((N,), torch.float32, x.device) if store_rstd else None
    BM, BD, warps = _row_launch(D, _on_cuda(x))
    _adaln_modulate_fwd_kernel[(triton.cdiv(N, BM),)](
        x, shift, scale, y, rstd, N, D, x.stride(0), shift.stride(0), scale.stride(0), eps,
        BM=BM, BD=BD, ONE_PASS=BD >= D, STORE_RSTD=store_rstd, num_warps=warps,
    )  # fmt: skip
    return y, rstd


def _modulate_bwd(x, scale, dy, rstd, need_dx: bool, need_ds: bool):
    """(dx in x's dtype or None, dscale in scale's dtype or None), [N, D]."""
    N, D = x.shape
    dx = _empty((N, D), x.dtype, x.device) if need_dx else None
    ds = _empty((N, D), scale.dtype, x.device) if need_ds else None
    BM, BD, warps = _row_launch(D, _on_cuda(x))
    _adaln_modulate_bwd_kernel[(triton.cdiv(N, BM),)](
        x, scale, dy, rstd, dx, ds, N, D, x.stride(0), scale.stride(0), dy.stride(0),
        BM=BM, BD=BD, ONE_PASS=BD >= D, NEED_DX=need_dx, NEED_DS=need_ds, num_warps=warps,
    )  # fmt: skip
    return dx, ds


class _AdaLNModulate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, shift, scale, eps):
        D = x.shape[-1]
        x2, s2 = _rows(x, D), _rows(scale, D)
        y, rstd = _modulate_fwd(x2, _rows(shift, D), s2, eps, store_rstd=True)
        ctx.save_for_backward(x2, s2, rstd)
        ctx.shift_dtype = shift.dtype
        return y.view(x.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        x2, s2, rstd = ctx.saved_tensors
        need_dx, need_db, need_ds = ctx.needs_input_grad[:3]
        dx = ds = None
        if need_dx or need_ds:
            dx, ds = _modulate_bwd(x2, s2, _rows(dy, x2.shape[1]), rstd, need_dx, need_ds)
            dx = None if dx is None else dx.view(dy.shape)
            ds = None if ds is None else ds.view(dy.shape)
        return dx, dy.to(ctx.shift_dtype) if need_db else None, ds, None


def _gated_fwd(residual, gate, y):
    N, D = residual.shape
    out = _empty((N, D), residual.dtype, residual.device)
    BM, BD, warps = _ew_launch(D, _on_cuda(residual))
    _gated_residual_fwd_kernel[(triton.cdiv(N, BM), triton.cdiv(D, BD))](
        residual, gate, y, out, N, D, residual.stride(0), gate.stride(0), y.stride(0), BM=BM, BD=BD, num_warps=warps
    )
    return out


def _gated_bwd(gate, y, dout, need_dg: bool, need_dy: bool):
    N, D = gate.shape
    dg = _empty((N, D), gate.dtype, gate.device) if need_dg else None
    dy = _empty((N, D), y.dtype, gate.device) if need_dy else None
    BM, BD, warps = _ew_launch(D, _on_cuda(gate))
    _gated_residual_bwd_kernel[(triton.cdiv(N, BM), triton.cdiv(D, BD))](
        gate, y, dout, dg, dy, N, D, gate.stride(0), y.stride(0), dout.stride(0),
        BM=BM, BD=BD, NEED_DG=need_dg, NEED_DY=need_dy, num_warps=warps,
    )  # fmt: skip
    return dg, dy


class _GatedResidual(torch.autograd.Function):
    @staticmethod
    def forward(ctx, residual, gate, y):
        D = residual.shape[-1]
        g2, y2 = _rows(gate, D), _rows(y, D)
        out = _gated_fwd(_rows(residual, D), g2, y2)
        ctx.save_for_backward(g2, y2)
        ctx.residual_dtype = residual.dtype
        return out.view(residual.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        g2, y2 = ctx.saved_tensors
        need_dr, need_dg, need_dy = ctx.needs_input_grad[:3]
        dg = dy = None
        if need_dg or need_dy:
            dg, dy = _gated_bwd(g2, y2, _rows(dout, g2.shape[1]), need_dg, need_dy)
            dg = None if dg is None else dg.view(dout.shape)
            dy = None if dy is None else dy.view(dout.shape)
        return dout.to(ctx.residual_dtype) if need_dr else None, dg, dy


def _check_dtype(*tensors: torch.Tensor) -> None:
    for t in tensors:
        if t.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise TypeError(f"the adaln triton kernels take fp32, fp16 or bf16; got {t.dtype}")


def _needs_grad(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def adaln_modulate_triton(x, shift, scale, eps=1e-6):
    """y = x · rsqrt(mean(x², −1) + eps) · (1 + scale) + shift on Triton (see `reference.adaln_modulate_reference`),
    differentiable in x, shift and scale. Without gradients (sampling) one kernel and no autograd node; with them the
    forward also stores r [N] fp32 for the backward."""
    if x.numel() == 0:  # nothing to launch: the reference handles the empty shapes
        return adaln_modulate_reference(x, shift, scale, eps)
    _check_dtype(x, shift, scale)
    if _needs_grad(x, shift, scale):
        return _AdaLNModulate.apply(x, shift, scale, float(eps))
    D = x.shape[-1]
    y, _ = _modulate_fwd(_rows(x, D), _rows(shift, D), _rows(scale, D), float(eps), store_rstd=False)
    return y.view(x.shape)


def gated_residual_triton(residual, gate, y):
    """out = residual + gate ⊙ y on Triton (see `reference.gated_residual_reference`), differentiable in all three."""
    if residual.numel() == 0:
        return gated_residual_reference(residual, gate, y)
    _check_dtype(residual, gate, y)
    if _needs_grad(residual, gate, y):
        return _GatedResidual.apply(residual, gate, y)
    D = residual.shape[-1]
    return _gated_fwd(_rows(residual, D), _rows(gate, D), _rows(y, D)).view(residual.shape)
