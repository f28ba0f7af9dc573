"""Triton kernels for the weighted relational graph convolution out[n] = Σ_{e: dst_e = n} norm_e x[src_e]
BlockDiag(W[type_e]) (KCF-PLM's R-GCN layer; see reference.py and README.md).

x [N, D], W [R, B, D/B, O/B] (fp32, fp16 or bf16, one dtype), the graph a `RelationalGraph`. Two kernels:

* `_rgcn_gather_kernel`, grid (rows, block groups, output parts): for one row n of a CSR (destinations for the
  forward, sources for grad x), loops over its segments (runs of in-edges of one relation); per segment it gathers
  the other endpoints' feature rows in chunks of BE edges and sums them scaled by norm (z [BBP, DK], fp32), then
  applies the relation's blocks once (z @ W[r, b] per block b of the group: a [BBP, DK, OBP] broadcast product
  summed over DK) and accumulates into acc [BBP, OBP] fp32, stored once: no atomics, every output element written
  by one program (rows without edges write zeros). The forward reads x by destination (feat = x, W[r, b] [D/B, O/B]);
  grad x is the same kernel on the source-sorted CSR with feat = grad out and W[r, b]ᵀ (the weight's strides swapped):
  grad x[s] = Σ_{e: src_e = s} norm_e grad_out[dst_e] BlockDiag(W[type_e])ᵀ.
* `_rgcn_dw_kernel`, grid (relations × edge splits, block groups, input × output parts): grad W[r, b] =
  Σ_{e: type_e = r} norm_e x[src_e, b]ᵀ grad_out[dst_e, b] over the relation-sorted edges: per chunk of BE edges a
  [TI, BE] @ [BE, TO] tl.dot of the gathered rows of x and grad out (the product of all the group's blocks with
  each other; only its diagonal blocks are stored). Each (relation, split) program writes its own partial (zeros
  when the split has no edges); the host sums the splits: deterministic, no atomics.

Every kernel output is allocated through `_empty` (the tests swap it for a NaN-filled allocator). Importing this
module raises ImportError when Triton is missing; `rgcn/__init__.py` catches it.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

try:
    import triton
    import triton.language as tl
except ImportError as exc:  # pragma: no cover - exercised only where triton is absent
    raise ImportError(f"paperzoo.kernels.rgcn.triton needs triton: {exc}") from exc

from ..._env import triton_interpret
from .._triton_common import dot_options, mixed_dot

__all__ = ["rgcn_aggregate_triton"]

# Widest tile along a block group's columns on CUDA (BBP blocks × their padded width): 8 blocks of 8 columns, or one
# block of 64 (wider blocks are cut into parts). The interpreter uses 32 so that the tests' shapes (D = 64 in
# 8 blocks) span several block groups; the tests lower it further to cut blocks into parts.
_MAX_COLS = 64
_INTERP_COLS = 32
# Edges per gathered chunk: 32 on CUDA (a [32, 64] tile of feature rows), 4 under the interpreter (the tests' small
# degrees then span several chunks). The weight-gradient kernel's chunk is the tl.dot reduction (at least 16).
_CUDA_BE, _INTERP_BE = 32, 4
_CUDA_BE_W, _INTERP_BE_W = 32, 16
# Weight-gradient programs the grid aims for on CUDA, per SM (relations × edge splits); under the interpreter every
# split has 2 chunks, so the tests' relations span several splits.
_PROGRAMS_PER_SM = 4


def _empty(shape, dtype, device) -> torch.Tensor:
    """The one allocator of kernel outputs (the tests poison it with NaN)."""
    return torch.empty(shape, dtype=dtype, device=device)


# --------------------------------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------------------------------


@triton.jit
def _rgcn_gather_kernel(
    feat, weight, row_seg_ptr, seg_ptr, seg_type, other, norm, out,
    NB, DIN, DOUT, stride_w_in, stride_w_out,
    BE: tl.constexpr, BBP: tl.constexpr, DK: tl.constexpr, OBP: tl.constexpr,
):  # fmt: skip
    """One program per (row n, block group, output part): out[n, blocks of the group, part] =
    Σ_{segments s of n} (Σ_{e in s} norm_e feat[other_e, group's input columns]) · W[type_s, group's blocks], in fp32.

    feat [*, NB·DIN] rows are gathered; out [N, NB·DOUT]; weight element (r, b, i, o) (i an input index < DIN, o an
    output index < DOUT) sits at (r·NB + b)·DIN·DOUT + i·stride_w_in + o·stride_w_out."""
    n = tl.program_id(0).to(tl.int64)
    offs_b = tl.program_id(1) * BBP + tl.arange(0, BBP)  # [BBP] blocks of this group
    m_b = offs_b < NB
    offs_o = tl.program_id(2) * OBP + tl.arange(0, OBP)  # [OBP] output index within a block
    m_o = offs_o < DOUT
    offs_k = tl.arange(0, DK)
    offs_e = tl.arange(0, BE)
    FIN = NB * DIN  # row length of feat
    w_blk = offs_b.to(tl.int64)[:, None, None] * (DIN * DOUT)  # [BBP, 1, 1]
    acc = tl.zeros([BBP, OBP], dtype=tl.float32)
    s_lo = tl.load(row_seg_ptr + n)
    s_hi = tl.load(row_seg_ptr + n + 1)
    for s in range(s_lo, s_hi):
        e_lo = tl.load(seg_ptr + s)
        e_hi = tl.load(seg_ptr + s + 1)
        w_rel = weight + tl.load(seg_type + s) * NB * DIN * DOUT + w_blk
        for k0 in range(0, DIN, DK):
            kk = k0 + offs_k
            m_k = kk < DIN
            col = offs_b[:, None] * DIN + kk[None, :]  # [BBP, DK] columns of feat
            m_col = m_b[:, None] & m_k[None, :]
            z = tl.zeros([BBP, DK], dtype=tl.float32)
            for e0 in range(e_lo, e_hi, BE):
                ee = e0 + offs_e
                m_e = ee < e_hi
                rows = tl.load(other + ee, mask=m_e, other=0)  # [BE] int64
                nrm = tl.load(norm + ee, mask=m_e, other=0.0)  # [BE] fp32
                xt = tl.load(feat + rows[:, None, None] * FIN + col[None, :, :],
                             mask=m_e[:, None, None] & m_col[None, :, :], other=0.0)  # [BE, BBP, DK]  # fmt: skip
                z += tl.sum(xt.to(tl.float32) * nrm[:, None, None], axis=0)
            wt = tl.load(w_rel + kk[None, :, None] * stride_w_in + offs_o[None, None, :] * stride_w_out,
                         mask=m_b[:, None, None] & m_k[None, :, None] & m_o[None, None, :], other=0.0)  # fmt: skip
            acc += tl.sum(z[:, :, None] * wt.to(tl.float32), axis=1)  # [BBP, OBP]
    out_col = offs_b[:, None] * DOUT + offs_o[None, :]
    tl.store(out + n * (NB * DOUT) + out_col, acc.to(out.dtype.element_ty), mask=m_b[:, None] & m_o[None, :])


@triton.jit
def _rgcn_dw_kernel(
    x, g, rel_ptr, rel_src, rel_dst, rel_norm, dw,
    NB, DI, DO, M, SPLIT,
    BE: tl.constexpr, BBP: tl.constexpr, PI: tl.constexpr, PO: tl.constexpr, TI: tl.constexpr, TO: tl.constexpr,
    MIX_BF16: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """One program per (relation r · M + split m, block group, input part · output part): the partial
    Σ over split m of relation r's edges of norm_e x[src_e, b]ᵀ grad_out[dst_e, b] for the group's blocks b, within
    the parts, stored to dw [R, M, NB, DI, DO] (zeros where the split has no edges).

    Tile index i < TI is (local block i // PI, in-block input index ip·PI + i % PI), likewise for the output; the
    [TI, TO] product also pairs different blocks of the group, which are not stored."""
    pid = tl.program_id(0)
    r = pid // M
    m = pid % M
    grp = tl.program_id(1)
    n_po = tl.cdiv(DO, PO)
    ip = tl.program_id(2) // n_po
    op = tl.program_id(2) % n_po
    offs_i = tl.arange(0, TI)
    offs_o = tl.arange(0, TO)
    lb_i = offs_i // PI
    lb_o = offs_o // PO
    blk_i = grp * BBP + lb_i
    blk_o = grp * BBP + lb_o
    j_i = ip * PI + offs_i % PI
    j_o = op * PO + offs_o % PO
    m_i = (lb_i < BBP) & (blk_i < NB) & (j_i < DI)
    m_o = (lb_o < BBP) & (blk_o < NB) & (j_o < DO)
    col_i = blk_i * DI + j_i  # columns of x
    col_o = blk_o * DO + j_o  # columns of grad out
    lo = tl.load(rel_ptr + r) + m * SPLIT
    hi = tl.minimum(tl.load(rel_ptr + r + 1), lo + SPLIT)
    offs_e = tl.arange(0, BE)
    acc = tl.zeros([TI, TO], dtype=tl.float32)
    for e0 in range(lo, hi, BE):
        ee = e0 + offs_e
        m_e = ee < hi
        s = tl.load(rel_src + ee, mask=m_e, other=0)  # [BE] int64
        d = tl.load(rel_dst + ee, mask=m_e, other=0)
        nrm = tl.load(rel_norm + ee, mask=m_e, other=0.0)
        xs = tl.load(x + s[:, None] * (NB * DI) + col_i[None, :], mask=m_e[:, None] & m_i[None, :], other=0.0)
        gs = tl.load(g + d[:, None] * (NB * DO) + col_o[None, :], mask=m_e[:, None] & m_o[None, :], other=0.0)
        acc += mixed_dot(tl.trans(xs.to(tl.float32)), gs.to(tl.float32) * nrm[:, None], MIX_BF16, PREC)
    keep = (lb_i[:, None] == lb_o[None, :]) & m_i[:, None] & m_o[None, :]
    base = (pid.to(tl.int64) * NB + blk_i[:, None]) * (DI * DO)
    tl.store(dw + base + j_i[:, None] * DO + j_o[None, :], acc.to(dw.dtype.element_ty), mask=keep)


# --------------------------------------------------------------------------------------------------------------------
# launch configuration, host functions and autograd
# --------------------------------------------------------------------------------------------------------------------


def _on_cuda(x: torch.Tensor) -> bool:
    return x.is_cuda and not triton_interpret()


def _pow2(n: int) -> int:
    return triton.next_power_of_2(max(int(n), 1))


def _gather_tiles(nb: int, din: int, dout: int, x: torch.Tensor) -> tuple[int, int, int, int]:
    """(BE, BBP, DK, OBP): edges per chunk; blocks per group, input chunk and output part (powers of two) with
    BBP·DK and BBP·OBP at most the column cap (64 on CUDA, `_INTERP_COLS` under the interpreter)."""
    cols = _MAX_COLS if _on_cuda(x) else _INTERP_COLS
    DK, OBP = min(_pow2(din), cols), min(_pow2(dout), cols)
    BBP = min(_pow2(nb), max(1, cols // max(DK, OBP)))
    return (_CUDA_BE if _on_cuda(x) else _INTERP_BE), BBP, DK, OBP


def _dw_tiles(nb: int, di: int, do: int, x: torch.Tensor) -> tuple[int, int, int, int, int, int]:
    """(BE, BBP, PI, PO, TI, TO): edges per chunk (the tl.dot reduction, >= 16); blocks per group, input / output
    part widths within a block, and the [TI, TO] tile (BBP·PI, BBP·PO, at least 16 for tl.dot)."""
    cols = _MAX_COLS if _on_cuda(x) else _INTERP_COLS
    PI, PO = min(_pow2(di), cols), min(_pow2(do), cols)
    BBP = min(_pow2(nb), max(1, cols // max(PI, PO)))
    BE = _CUDA_BE_W if _on_cuda(x) else _INTERP_BE_W
    return BE, BBP, PI, PO, max(16, BBP * PI), max(16, BBP * PO)


def _splits(graph, BE: int, x: torch.Tensor) -> tuple[int, int]:
    """(M, SPLIT): every relation's edges cut into M splits of SPLIT edges (a multiple of BE), so that relations ×
    splits gives the GPU about `_PROGRAMS_PER_SM` programs per SM whatever the largest relation; under the
    interpreter SPLIT = 2·BE."""
    largest = max((hi - lo for lo, hi in zip(graph.rel_bounds[:-1], graph.rel_bounds[1:])), default=0)
    if _on_cuda(x):
        sms = torch.cuda.get_device_properties(x.device).multi_processor_count
        split = max(4 * BE, triton.cdiv(triton.cdiv(graph.num_edges, _PROGRAMS_PER_SM * sms), BE) * BE)
    else:
        split = 2 * BE
    return max(1, triton.cdiv(largest, split)), split


def _launch(x: torch.Tensor) -> dict:
    """4 warps (not autotuned; see README.md)."""
    return dict(num_warps=4)


def _gather(feat, weight, adj, transpose: bool) -> torch.Tensor:
    """out [N, B·DOUT] in feat's dtype: the gather kernel over the rows of `adj` (an Adjacency). transpose False:
    feat = x [N, B·D/B], blocks W[r, b]; True: feat = grad out [N, B·O/B], blocks W[r, b]ᵀ."""
    _, NB, Di, Do = weight.shape
    N = adj.row_ptr.numel() - 1
    DIN, DOUT = (Do, Di) if transpose else (Di, Do)
    s_in, s_out = (1, Do) if transpose else (Do, 1)
    BE, BBP, DK, OBP = _gather_tiles(NB, DIN, DOUT, feat)
    out = _empty((N, NB * DOUT), feat.dtype, feat.device)
    if N:
        _rgcn_gather_kernel[(N, triton.cdiv(NB, BBP), triton.cdiv(DOUT, OBP))](
            feat, weight, adj.row_seg_ptr, adj.seg_ptr, adj.seg_type, adj.other, adj.norm.to(torch.float32), out,
            NB, DIN, DOUT, s_in, s_out, BE=BE, BBP=BBP, DK=DK, OBP=OBP, **_launch(feat),
        )  # fmt: skip
    return out


def _dweight(x, g, weight, graph) -> torch.Tensor:
    """grad W [R, B, D/B, O/B] in W's dtype: the [R, M, B, D/B, O/B] partials of the edge splits (fp32 when M > 1,
    then summed; written in W's dtype directly when M = 1)."""
    R, NB, Di, Do = weight.shape
    BE, BBP, PI, PO, TI, TO = _dw_tiles(NB, Di, Do, x)
    M, split = _splits(graph, BE, x)
    part = _empty((R, M, NB, Di, Do), weight.dtype if M == 1 else torch.float32, x.device)
    opts = dot_options(x)
    grid = (R * M, triton.cdiv(NB, BBP), triton.cdiv(Di, PI) * triton.cdiv(Do, PO))
    _rgcn_dw_kernel[grid](
        x, g, graph.rel_ptr, graph.rel_src, graph.rel_dst, graph.rel_norm.to(torch.float32), part,
        NB, Di, Do, M, split, BE=BE, BBP=BBP, PI=PI, PO=PO, TI=TI, TO=TO,
        MIX_BF16=opts["MIX_BF16"], PREC=opts["PREC"], **_launch(x),
    )  # fmt: skip
    return part[:, 0] if M == 1 else part.sum(1).to(weight.dtype)


class _RGCNAggregate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, graph):
        x, w = x.contiguous(), weight.contiguous()
        ctx.graph = graph
        ctx.save_for_backward(x, w)
        if graph.num_edges == 0:  # nothing to gather (and no pointer to give the kernels)
            return torch.zeros(graph.num_nodes, w.shape[1] * w.shape[3], dtype=x.dtype, device=x.device)
        return _gather(x, w, graph.by_dst, transpose=False)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, w = ctx.saved_tensors
        graph = ctx.graph
        need_x, need_w = ctx.needs_input_grad[:2]
        if graph.num_edges == 0:
            return (torch.zeros_like(x) if need_x else None), (torch.zeros_like(w) if need_w else None), None
        g = grad_out.contiguous()
        gx = _gather(g, w, graph.by_src, transpose=True) if need_x else None
        gw = _dweight(x, g, w, graph) if need_w else None
        return gx, gw, None


def rgcn_aggregate_triton(x: torch.Tensor, weight: torch.Tensor, graph) -> torch.Tensor:
    """The op on Triton (see `reference.rgcn_aggregate_reference`): out [N, O] in x's dtype, differentiable in x
    and weight. x [N, D], weight [R, B, D/B, O/B] of one dtype (fp32, fp16 or bf16), graph on their device."""
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"the rgcn triton kernels take fp32, fp16 or bf16; got {x.dtype}")
    return _RGCNAggregate.apply(x, weight, graph)
