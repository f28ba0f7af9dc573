"""`rgcn_aggregate(x, weight, graph)`: the weighted relational graph convolution of KCF-PLM's R-GCN layer,
out[n] = Σ_{e: dst_e = n} norm_e · x[src_e] · BlockDiag(W[type_e]), dispatched to Triton or the PyTorch reference.

The graph is static: build it once with `RelationalGraph.build(src, dst, edge_type, edge_weight, num_nodes,
num_relations, normalize="mean")` (validated, sorted by destination / source / relation with CSR pointers, the
"mean" norm edge_weight / count per (destination, relation)) and move it with `graph.to(device)`. The root transform
(x @ root + bias) is the model's. The math is in `reference.py` and README.md.
"""

from __future__ import annotations

import torch

from .._registry import resolve, triton_unavailable_reason
from .reference import (
    NORMALIZATIONS,
    Adjacency,
    RelationalGraph,
    relation_mean_norm,
    rgcn_aggregate_reference,
    rgcn_aggregate_segments,
)

try:
    from .triton import rgcn_aggregate_triton
except ImportError:  # triton missing: the reference serves every call
    rgcn_aggregate_triton = None

__all__ = [
    "NORMALIZATIONS",
    "Adjacency",
    "RelationalGraph",
    "relation_mean_norm",
    "rgcn_aggregate",
    "rgcn_aggregate_reference",
    "rgcn_aggregate_segments",
]

_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def _check(x, weight, graph) -> None:
    """ValueError naming the argument whose type, shape, dtype or device the op cannot take."""
    if not isinstance(graph, RelationalGraph):
        raise ValueError(f"graph must be a RelationalGraph (RelationalGraph.build(...)); got {type(graph).__name__}")
    if not all(isinstance(t, torch.Tensor) for t in (x, weight)):
        raise ValueError(f"x and weight must be tensors; got x {type(x).__name__}, weight {type(weight).__name__}")
    if weight.dim() != 4 or 0 in weight.shape[1:]:
        raise ValueError(f"weight must be [R, B, D/B, O/B] with B, D/B, O/B >= 1; got weight {tuple(weight.shape)}")
    R, B, Di, _ = weight.shape
    if R != graph.num_relations:
        raise ValueError(f"weight has R={R} relations (weight {tuple(weight.shape)}); the graph has "
                         f"num_relations={graph.num_relations}")  # fmt: skip
    if x.dim() != 2:
        raise ValueError(f"x must be [N, D]; got x {tuple(x.shape)}")
    N, D = x.shape
    if N != graph.num_nodes:
        raise ValueError(f"x has {N} rows (x {tuple(x.shape)}); the graph has num_nodes={graph.num_nodes}")
    if D % B or D // B != Di:
        raise ValueError(f"x's D={D} must be B·D/B = {B}·{Di} = {B * Di} for weight {tuple(weight.shape)} "
                         f"(D % B = {D % B})")  # fmt: skip
    if x.dtype != weight.dtype or x.dtype not in _DTYPES:
        raise ValueError(f"x and weight must share one of {[str(t) for t in _DTYPES]}; got x {x.dtype}, weight "
                         f"{weight.dtype}")  # fmt: skip
    if not (x.device == weight.device == graph.device):
        raise ValueError(f"x, weight and graph must be on one device (graph.to(device)); got x {x.device}, weight "
                         f"{weight.device}, graph {graph.device}")  # fmt: skip
    for name, norm in (("graph.norm", graph.by_dst.norm), ("graph.by_src.norm", graph.by_src.norm),
                       ("graph.rel_norm", graph.rel_norm)):  # fmt: skip
        if norm.requires_grad:
            raise ValueError(f"{name} requires grad: the edge norms are graph constants and the op gives them no "
                             f"gradient; build the graph from detached edge weights")  # fmt: skip


def _unsupported(x, weight, graph):
    def reason():
        if rgcn_aggregate_triton is None:
            return "paperzoo's triton kernels failed to import"
        if x.dtype == torch.float64:
            return "float64 runs on the reference (the kernels accumulate in fp32)"
        return triton_unavailable_reason(x, weight, graph.rel_src)

    return reason


def rgcn_aggregate(x: torch.Tensor, weight: torch.Tensor, graph: RelationalGraph,
                   backend: str | None = None) -> torch.Tensor:
    """out [N, O] = Σ_{e: dst_e = n} norm_e · x[src_e] · BlockDiag(W[type_e]) for every node n (0 for nodes without
    in-edges): KCF-PLM's relational aggregation, without the root term. Differentiable in x and weight (the edge
    norms are graph constants).

    x [N, D] and weight [R, B, D/B, O/B] (block b of relation r maps x's columns b·D/B … (b+1)·D/B − 1 to the output's
    b·O/B … (b+1)·O/B − 1) of one dtype: fp32, fp16, bf16 (Triton or the reference, both accumulating in fp32) or
    float64 (the reference); graph a `RelationalGraph` with N nodes and R relations on their device. The output has
    x's dtype. `backend` is "auto" | "reference" | "triton" (None: PAPERZOO_KERNEL_BACKEND, else auto); the
    reference backend is `rgcn_aggregate_segments` (aggregate per (destination, relation), then transform; faster
    than `rgcn_aggregate_reference`'s per-edge messages on CPU, see README.md).
    """
    _check(x, weight, graph)
    if resolve("rgcn_aggregate", backend, _unsupported(x, weight, graph)) == "triton":
        return rgcn_aggregate_triton(x, weight, graph)
    if torch.compiler.is_compiling():  # sparse CSR tensors do not trace; the index_add_ form does (static slices)
        return rgcn_aggregate_reference(x, weight, graph)
    return rgcn_aggregate_segments(x, weight, graph)
