"""Weighted relational graph convolution (the R-GCN layer of KCF-PLM) in pure PyTorch: the graph preprocessing, the
normalisation, and two exact forms of the aggregation.

For node features x [N, D], a block-diagonal weight W [R, B, D/B, O/B] (relation r's transform is
BlockDiag(W[r, 0], …, W[r, B−1]), block b mapping input columns b·D/B … (b+1)·D/B − 1 to output columns
b·O/B … (b+1)·O/B − 1) and typed, weighted edges (src, dst, type, norm),

    out[n] = Σ_{e : dst_e = n} norm_e · x[src_e] · BlockDiag(W[type_e])                                  [N, O]

with norm_e = edge_weight_e / |{e' : dst_e' = dst_e, type_e' = type_e}| ("mean": PyG's RGCNConv with aggr="mean",
one mean per relation, the edge weight multiplied into the message as in KCF-PLM's modified layer; the count is of
edges, not a sum of weights) or norm_e = edge_weight_e ("none"). The root transform x @ root + bias is not part of
the op (the model adds it).

* `RelationalGraph.build(...)`: validates the edges once and sorts them three ways (by destination, by source, by
  relation), with CSR pointers and the runs of one relation inside each row ("segments"); see README.md.
* `relation_mean_norm(dst, edge_type, edge_weight)`: the "mean" norm.
* `rgcn_aggregate_reference`: per relation, the messages of its edges (gathered x rows times the relation's blocks,
  scaled by norm) `index_add_`-ed into the output. Autograd-differentiable in x and W; the executable specification
  and the benchmark's index_add_ baseline. Never builds W[type_e] per edge.
* `rgcn_aggregate_segments`: aggregate first, then transform: z_(n, r) = Σ_{e in (n, r)} norm_e x[src_e] for every
  (destination, relation) pair with edges (one sparse CSR product), then z_(n, r) · BlockDiag(W[r]) once per pair.
  The same sum by linearity, with E·D + S·D·O/B multiply-adds instead of E·D·O/B (S pairs ≤ E edges). The public
  op's CPU path (faster on the ml-100k graph: benchmarks/rgcn.py).

Computation runs in fp32 for fp32 / fp16 / bf16 inputs and in float64 for float64 ones; the output has x's dtype.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields

import torch

__all__ = [
    "NORMALIZATIONS",
    "RelationalGraph",
    "relation_mean_norm",
    "rgcn_aggregate_reference",
    "rgcn_aggregate_segments",
]

NORMALIZATIONS = ("mean", "none")


def _acc_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


# --------------------------------------------------------------------------------------------------------------------
# the graph
# --------------------------------------------------------------------------------------------------------------------


def relation_mean_norm(dst: torch.Tensor, edge_type: torch.Tensor, edge_weight: torch.Tensor | None = None,
                       dtype: torch.dtype | None = None) -> torch.Tensor:
    """norm [E] = edge_weight_e / (number of edges e' with dst_e' = dst_e and type_e' = type_e): the mean over each
    destination's in-edges of one relation, with the edge weight multiplied into the message (KCF-PLM's layer).
    edge_weight None counts as ones. dtype: that of edge_weight (float32 without one) unless given."""
    dtype = dtype or (edge_weight.dtype if edge_weight is not None else torch.float32)
    if dst.numel() == 0:
        return torch.zeros(0, dtype=dtype, device=dst.device)
    key = dst * (int(edge_type.max()) + 1) + edge_type  # one int64 key per (dst, type) pair
    _, inverse, counts = torch.unique(key, return_inverse=True, return_counts=True)
    weight = torch.ones_like(dst, dtype=dtype) if edge_weight is None else edge_weight.to(dtype)
    return weight / counts[inverse].to(dtype)


def _csr_ptr(rows: torch.Tensor, n: int) -> torch.Tensor:
    """[n + 1] int64 pointers of sorted row ids `rows` into [0, n)."""
    ptr = torch.zeros(n + 1, dtype=torch.int64, device=rows.device)
    torch.cumsum(torch.bincount(rows, minlength=n), 0, out=ptr[1:])
    return ptr


def _segments(rows: torch.Tensor, types: torch.Tensor, n_rows: int):
    """The runs of one (row, type) pair in edges sorted by (row, type): (seg_ptr [S + 1] edge offsets, seg_type [S],
    row_seg_ptr [n_rows + 1] segment offsets of each row)."""
    E = rows.numel()
    starts = torch.ones(E, dtype=torch.bool, device=rows.device)
    if E > 1:
        starts[1:] = (rows[1:] != rows[:-1]) | (types[1:] != types[:-1])
    first = starts.nonzero().squeeze(1)  # [S]
    seg_ptr = torch.cat([first, torch.tensor([E], dtype=torch.int64, device=rows.device)])
    return seg_ptr, types[first], _csr_ptr(rows[first], n_rows)


def _sort(primary: torch.Tensor, secondary: torch.Tensor, tertiary: torch.Tensor) -> torch.Tensor:
    """The permutation sorting edges by (primary, secondary, tertiary) (three stable sorts)."""
    order = torch.argsort(tertiary, stable=True)
    order = order[torch.argsort(secondary[order], stable=True)]
    return order[torch.argsort(primary[order], stable=True)]


@dataclass(frozen=True, eq=False)
class Adjacency:
    """The edges grouped by one endpoint (the "row": the destination for the forward, the source for grad x), sorted
    by (row, type, other endpoint), with CSR pointers and the runs of one relation inside each row (segments).

    row_ptr [N + 1]: row n's edges are [row_ptr[n], row_ptr[n + 1]); other, edge_type, norm [E]: each edge's other
    endpoint, relation and norm; seg_ptr [S + 1]: segment s's edges; seg_type [S]: its relation; row_seg_ptr [N + 1]:
    row n's segments."""

    row_ptr: torch.Tensor
    other: torch.Tensor
    edge_type: torch.Tensor
    norm: torch.Tensor
    seg_ptr: torch.Tensor
    seg_type: torch.Tensor
    row_seg_ptr: torch.Tensor

    @classmethod
    def build(cls, rows, others, types, norm, num_nodes: int, num_relations: int) -> Adjacency:
        order = _sort(rows, types, others)
        rows, others, types, norm = rows[order], others[order], types[order], norm[order]
        seg_ptr, seg_type, row_seg_ptr = _segments(rows, types, num_nodes)
        return cls(_csr_ptr(rows, num_nodes), others, types, norm, seg_ptr, seg_type, row_seg_ptr)

    @property
    def num_segments(self) -> int:
        return self.seg_type.numel()

    def to(self, device) -> Adjacency:
        return Adjacency(*(getattr(self, f.name).to(device) for f in fields(self)))


@dataclass(frozen=True, eq=False)
class RelationalGraph:
    """A static typed, weighted graph prepared once for `rgcn_aggregate` (build it with `RelationalGraph.build`, move
    it with `.to(device)`; models cache one per device).

    * `by_dst` (Adjacency): edges by destination, the forward's CSR (each destination gathers its in-edges: no atomics).
    * `by_src` (Adjacency): edges by source, grad x's CSR (grad x[s] gathers grad out over s's out-edges).
    * `rel_src`, `rel_dst`, `rel_norm` [E]: edges sorted by (relation, destination, source); relation r's edges are
      [rel_bounds[r], rel_bounds[r + 1]) (a host tuple: the reference slices without a device sync; `rel_ptr` is the
      same on the device). `rel_seg_ptr` [S + 1], `rel_seg_dst` [S]: the runs of one destination within each
      relation, `rel_seg_bounds` (host) relation r's runs; `seg_t_ptr` [N + 1], `seg_t_seg`, `seg_t_norm` [E]: the
      transposed segment matrix (per source node, its edges' run and norm): the segment form's layout.
    * norm: float64 when the edge weights are float64, else float32; the kernels read it in fp32.
    """

    num_nodes: int
    num_relations: int
    normalize: str
    by_dst: Adjacency
    by_src: Adjacency
    rel_src: torch.Tensor
    rel_dst: torch.Tensor
    rel_norm: torch.Tensor
    rel_ptr: torch.Tensor
    rel_bounds: tuple[int, ...]
    rel_seg_ptr: torch.Tensor
    rel_seg_dst: torch.Tensor
    rel_seg_bounds: tuple[int, ...]
    seg_t_ptr: torch.Tensor
    seg_t_seg: torch.Tensor
    seg_t_norm: torch.Tensor

    # ---------------------------------------------------------------------------------------------- construction

    @classmethod
    def build(cls, src, dst, edge_type, edge_weight=None, num_nodes: int | None = None,
              num_relations: int | None = None, normalize: str = "mean") -> RelationalGraph:
        """Validate and preprocess the edges src → dst of relation edge_type (tensors or NumPy arrays [E] int64)
        with edge_weight [E] (float, finite, >= 0; None: ones; a graph constant, never trained). normalize "mean":
        norm = edge_weight / (in-edges of the same destination and relation), "none": norm = edge_weight.
        ValueError naming the argument and the value it cannot take."""
        src, dst, edge_type = (_as_tensor(t, n) for t, n in ((src, "src"), (dst, "dst"), (edge_type, "edge_type")))
        for name, value in (("num_nodes", num_nodes), ("num_relations", num_relations)):
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "num_nodes" else 1):
                raise ValueError(f"{name}={value!r} must be an int >= {0 if name == 'num_nodes' else 1}")
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize={normalize!r} is not one of {NORMALIZATIONS}")
        E = src.shape[0] if src.dim() == 1 else -1
        for name, t in (("src", src), ("dst", dst), ("edge_type", edge_type)):
            if t.dim() != 1 or t.shape[0] != E:
                raise ValueError(f"src, dst, edge_type must be [E] tensors of one length; got {name} {tuple(t.shape)} "
                                 f"(src {tuple(src.shape)})")  # fmt: skip
            if t.dtype != torch.int64:
                raise ValueError(f"{name} must be int64; got {t.dtype}")
        device = src.device
        if edge_weight is not None:
            edge_weight = _as_tensor(edge_weight, "edge_weight")
            if edge_weight.shape != (E,):
                raise ValueError(f"edge_weight must be [E]={(E,)} like src; got {tuple(edge_weight.shape)}")
            if not edge_weight.is_floating_point():
                raise ValueError(f"edge_weight must be a floating tensor; got {edge_weight.dtype}")
            if edge_weight.requires_grad:
                raise ValueError("edge_weight requires grad: edge weights (and the norm made from them) are graph "
                                 "constants here and get no gradient; pass edge_weight.detach()")  # fmt: skip
        tensors = {"src": src, "dst": dst, "edge_type": edge_type, "edge_weight": edge_weight}
        if len({t.device for t in tensors.values() if t is not None}) != 1:
            raise ValueError("src, dst, edge_type, edge_weight must be on one device; got "
                             + ", ".join(f"{k} {t.device}" for k, t in tensors.items() if t is not None))  # fmt: skip
        for name, t, hi in (("src", src, num_nodes), ("dst", dst, num_nodes), ("edge_type", edge_type, num_relations)):
            bad = (t < 0) | (t >= hi)
            if bad.any():
                bound = "num_nodes" if name != "edge_type" else "num_relations"
                raise ValueError(f"{name} contains {t[bad][0].item()}, outside [0, {bound}={hi})")
        if edge_weight is not None:
            bad = ~torch.isfinite(edge_weight) | (edge_weight < 0)
            if bad.any():
                raise ValueError(f"edge_weight contains {edge_weight[bad][0].item()}; edge weights must be finite "
                                 f"and >= 0")  # fmt: skip

        dtype = torch.float64 if edge_weight is not None and edge_weight.dtype == torch.float64 else torch.float32
        if normalize == "mean":
            norm = relation_mean_norm(dst, edge_type, edge_weight, dtype)
        else:
            norm = torch.ones(E, dtype=dtype, device=device) if edge_weight is None else edge_weight.to(dtype)
        norm = norm.detach().contiguous()

        by_dst = Adjacency.build(dst, src, edge_type, norm, num_nodes, num_relations)
        by_src = Adjacency.build(src, dst, edge_type, norm, num_nodes, num_relations)
        order = _sort(edge_type, dst, src)
        rel_src, rel_dst, rel_type, rel_norm = src[order], dst[order], edge_type[order], norm[order]
        rel_ptr = _csr_ptr(rel_type, num_relations)
        rel_seg_ptr, rel_seg_dst, rel_seg_rel_ptr = _segments(rel_type, rel_dst, num_relations)  # (type, dst) runs
        seg = torch.repeat_interleave(torch.arange(rel_seg_dst.numel(), device=device), rel_seg_ptr.diff())  # [E]
        order_t = _sort(rel_src, seg, seg)  # by source, then run: the CSR of the transposed segment matrix
        return cls(num_nodes, num_relations, normalize, by_dst, by_src, rel_src, rel_dst, rel_norm, rel_ptr,
                   tuple(rel_ptr.tolist()), rel_seg_ptr, rel_seg_dst, tuple(rel_seg_rel_ptr.tolist()),
                   _csr_ptr(rel_src[order_t], num_nodes), seg[order_t], rel_norm[order_t])  # fmt: skip

    # ---------------------------------------------------------------------------------------------- views

    @property
    def num_edges(self) -> int:
        return self.rel_src.numel()

    @property
    def device(self) -> torch.device:
        return self.rel_src.device

    @property
    def src(self) -> torch.Tensor:
        """[E] sources of the edges in destination order (sorted by destination, relation, source)."""
        return self.by_dst.other

    @property
    def dst(self) -> torch.Tensor:
        """[E] destinations in destination order."""
        return torch.repeat_interleave(torch.arange(self.num_nodes, device=self.device), self.by_dst.row_ptr.diff())

    @property
    def edge_type(self) -> torch.Tensor:
        """[E] relations in destination order."""
        return self.by_dst.edge_type

    @property
    def norm(self) -> torch.Tensor:
        """[E] norms in destination order."""
        return self.by_dst.norm

    def to(self, device) -> RelationalGraph:
        """The same graph with every tensor on `device` (itself when it is there already)."""
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            moved[f.name] = value.to(device) if isinstance(value, (torch.Tensor, Adjacency)) else value
        return RelationalGraph(**moved)

    def __repr__(self) -> str:
        return (f"RelationalGraph(num_nodes={self.num_nodes}, num_relations={self.num_relations}, "
                f"num_edges={self.num_edges}, normalize={self.normalize!r}, device={self.device})")  # fmt: skip


def _as_tensor(t, name: str) -> torch.Tensor:
    if isinstance(t, torch.Tensor):
        return t
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None
    if np is not None and isinstance(t, np.ndarray):
        return torch.from_numpy(t)
    raise ValueError(f"{name} must be a tensor or a NumPy array; got {type(t).__name__}")


# --------------------------------------------------------------------------------------------------------------------
# the aggregation
# --------------------------------------------------------------------------------------------------------------------


def _connected_zeros(out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """`out` (zeros, no edges) made a function of x and W, so that backward gives zero gradients, not an error."""
    return out + (x[:0].sum() + weight[:0].sum()).to(out.dtype)


def _block_diagonal(weight: torch.Tensor) -> torch.Tensor:
    """[R, B, D/B, O/B] blocks → [R, D, O] dense block-diagonal matrices (zeros off the blocks)."""
    R, B, Di, Do = weight.shape
    eye = torch.eye(B, dtype=weight.dtype, device=weight.device)
    return torch.einsum("rbio,bc->rbico", weight, eye).reshape(R, B * Di, B * Do)


def _per_relation(rows: torch.Tensor, weight: torch.Tensor, bounds: tuple[int, ...]) -> torch.Tensor:
    """rows [M, D] cut at `bounds` (relation r's rows: [bounds[r], bounds[r + 1])), each part times its relation's
    block-diagonal matrix: [M, O]. One dense [D, O] GEMM per relation: B× the multiply-adds of the blocks alone, but
    8×8 blocks as a batched matmul run ~10× slower on a CPU. torch.split, not slices (whose backward would write an
    [M, D] zero gradient per relation)."""
    dense = _block_diagonal(weight)  # [R, D, O]
    parts = rows.split([hi - lo for lo, hi in zip(bounds[:-1], bounds[1:])])
    return torch.cat([part @ dense[r] for r, part in enumerate(parts) if part.numel()])


def rgcn_aggregate_reference(x: torch.Tensor, weight: torch.Tensor, graph: RelationalGraph) -> torch.Tensor:
    """out [N, O] = Σ over in-edges of norm · x[src] · BlockDiag(W[type]): the rows x[src] of every edge gathered
    once (edges sorted by relation), each relation's rows times its blocks (einsum over the B blocks), the messages
    scaled by norm and index_add_-ed into out at their destinations. x [N, D] and weight [R, B, D/B, O/B] of one
    float dtype (computed in fp32; float64 in float64), graph a RelationalGraph on their device. Differentiable in
    x and weight by autograd, which keeps the gathered rows (E·D numbers) for W's gradient. Returns x's dtype."""
    B, Do = weight.shape[1], weight.shape[3]
    acc = _acc_dtype(x)
    xa, wa = x.to(acc), weight.to(acc)
    out = torch.zeros(graph.num_nodes, B * Do, dtype=acc, device=x.device)
    if graph.num_edges == 0:
        return _connected_zeros(out, xa, wa).to(x.dtype)
    msg = _per_relation(xa[graph.rel_src], wa, graph.rel_bounds)  # [E, O]
    out.index_add_(0, graph.rel_dst, msg * graph.rel_norm[:, None].to(acc))
    return out.to(x.dtype)


def _csr(ptr, col, values, shape) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta" (once per process)
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(ptr, col, values, shape, check_invariants=False)


class _SegmentSum(torch.autograd.Function):
    """z [S, D] = A x for the [S, N] segment matrix A (row s: norm_e at column src_e for each edge e of run s);
    the backward is Aᵀ grad z with Aᵀ prebuilt in the graph (torch.sparse.mm's own backward transposes A at every
    call: 15x slower on the CPU than the product itself)."""

    @staticmethod
    def forward(ctx, x, graph):
        ctx.graph = graph
        S = graph.rel_seg_dst.numel()
        return torch.sparse.mm(_csr(graph.rel_seg_ptr, graph.rel_src, graph.rel_norm.to(x.dtype),
                                    (S, graph.num_nodes)), x)  # fmt: skip

    @staticmethod
    def backward(ctx, grad_z):
        graph = ctx.graph
        at = _csr(graph.seg_t_ptr, graph.seg_t_seg, graph.seg_t_norm.to(grad_z.dtype),
                  (graph.num_nodes, graph.rel_seg_dst.numel()))  # fmt: skip
        return torch.sparse.mm(at, grad_z.contiguous()), None


def rgcn_aggregate_segments(x: torch.Tensor, weight: torch.Tensor, graph: RelationalGraph) -> torch.Tensor:
    """The same out [N, O] as `rgcn_aggregate_reference`, aggregating before transforming: z [S, D] = A x with A the
    [S, N] sparse CSR matrix of norms (one row per (relation, destination) pair with edges; torch.sparse.mm), then
    per relation m_r = z_r · BlockDiag(W[r]) [S_r, O] (an einsum over the B blocks), index_add_-ed into out at the
    pairs' destinations. Differentiable in x and weight (the backward of z = A x is Aᵀ grad z, with Aᵀ
    prebuilt in the graph; autograd keeps z, S·D numbers). Same dtypes as the reference."""
    B, Do = weight.shape[1], weight.shape[3]
    acc = _acc_dtype(x)
    xa, wa = x.to(acc), weight.to(acc)
    out = torch.zeros(graph.num_nodes, B * Do, dtype=acc, device=x.device)
    if graph.num_edges == 0:
        return _connected_zeros(out, xa, wa).to(x.dtype)
    z = _SegmentSum.apply(xa, graph)  # [S, D]
    msg = _per_relation(z, wa, graph.rel_seg_bounds)  # [S, O]
    out.index_add_(0, graph.rel_seg_dst, msg)
    return out.to(x.dtype)
