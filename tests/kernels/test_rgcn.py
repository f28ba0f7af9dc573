"""R-GCN aggregation (KCF-PLM's weighted relational graph convolution): the graph preprocessing and the "mean" norm;
the two PyTorch forms and the Triton kernels against an independent dense float64 formula, forward and backward;
argument and backend checks; GPU at the ml-100k graph's size.

The dense formula builds, per relation, the [N, N] adjacency holding the norms and the full block-diagonal matrix
(torch.block_diag): out = Σ_r A_r x BlockDiag(W_r); its gradients come from autograd. The test graphs hold isolated
nodes, self-loops, duplicate edges, a zero edge weight and a relation without edges. The Triton tests run on CPU under
TRITON_INTERPRET=1 (`make test` sets it) or on CUDA; with neither they skip. Every kernel output buffer is allocated
NaN-filled during these tests (`poison`), so an unwritten element fails.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest
import torch

import paperzoo._env
from paperzoo.kernels import _registry as registry
from paperzoo.kernels import rgcn as rgcn_pkg
from paperzoo.kernels.rgcn import (
    RelationalGraph,
    relation_mean_norm,
    rgcn_aggregate,
    rgcn_aggregate_reference,
    rgcn_aggregate_segments,
)

from .triton_support import DEVICE, assert_close, poison_outputs, rel_err, triton_module
from .triton_support import needs_triton as _needs_triton

lt = triton_module("paperzoo.kernels.rgcn.triton")
needs_triton = _needs_triton(lt)

F64 = torch.float64
# (B, D/B, O/B): KCF-PLM's 8 blocks of 8 (D = O = 64); 4 blocks of 12 (D = 48: not a power of two); one block of
# 40 -> 36 (an unblocked weight, D != O); 3 blocks of 3 -> 5 (three blocks, tiny widths)
BLOCKS = [(8, 8, 8), (4, 12, 12), (1, 40, 36), (3, 3, 5)]


def make_edges(N=13, R=4, E=60, seed=0):
    """(src, dst, edge_type, edge_weight float64) over N nodes and R relations: random edges among the first N − 2
    nodes (the last two are isolated), relation R − 1 without edges, 3 self-loops, the first 5 edges duplicated, one
    zero weight, and node 0 receiving 12 edges of relation 0 (several edge chunks of the kernels)."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, N - 2, (E,), generator=g)
    dst = torch.randint(0, N - 2, (E,), generator=g)
    typ = torch.randint(0, R - 1, (E,), generator=g)
    loops = torch.tensor([1, 4, 7])
    hub = torch.arange(12) % (N - 2)
    src = torch.cat([src, loops, src[:5], hub])
    dst = torch.cat([dst, loops, dst[:5], torch.zeros(12, dtype=torch.long)])
    typ = torch.cat([typ, torch.tensor([0, 1, 2]) % (R - 1), typ[:5], torch.zeros(12, dtype=torch.long)])
    weight = torch.rand(src.numel(), generator=g, dtype=F64) * 1.9 + 0.1
    weight[3] = 0.0
    return src, dst, typ, weight


def expected_norm(dst, typ, weight, normalize):
    """norm by counting in Python: weight / |{e': dst, type equal}| ("mean") or weight ("none")."""
    if normalize == "none":
        return weight.clone()
    counts = Counter(zip(dst.tolist(), typ.tolist()))
    return torch.tensor([w / counts[(d, t)] for w, d, t in zip(weight.tolist(), dst.tolist(), typ.tolist())], dtype=F64)


def dense_rgcn(x, weight, src, dst, typ, norm, N):
    """Σ_r A_r x BlockDiag(W_r) with A_r [N, N] the dense adjacency of relation r holding norm (accumulated over
    duplicate edges), in x's dtype."""
    out = x.new_zeros(N, weight.shape[1] * weight.shape[3])
    for r in range(weight.shape[0]):
        m = typ == r
        A = x.new_zeros(N, N).index_put_((dst[m], src[m]), norm[m].to(x.dtype), accumulate=True)
        out = out + A @ x @ torch.block_diag(*weight[r])
    return out


def make_inputs(N, R, blocks, seed=0):
    B, Di, Do = blocks
    g = torch.Generator().manual_seed(seed + 100)
    x = torch.randn(N, B * Di, generator=g, dtype=F64)
    w = torch.randn(R, B, Di, Do, generator=g, dtype=F64) / Di**0.5
    cot = torch.randn(N, B * Do, generator=g, dtype=F64)  # the loss's weights on out
    return x, w, cot


def out_and_grads(fn, x, w, cot, dtype=None, device="cpu", grads=(True, True)):
    """fn(x, w) and the gradients (None where not asked) of Σ out · cot, on leaf copies in `dtype` on `device`."""
    xl = x.to(device=device, dtype=dtype or x.dtype).detach().requires_grad_(grads[0])
    wl = w.to(device=device, dtype=dtype or w.dtype).detach().requires_grad_(grads[1])
    out = fn(xl, wl)
    leaves = [t for t, need in zip((xl, wl), grads) if need]
    got = iter(torch.autograd.grad((out.double() * cot.to(device)).sum(), leaves))
    return out.detach(), *(next(got) if need else None for need in grads)


def dense_case(normalize, blocks, N=13, R=4, seed=0, dtype=F64):
    """The graph, the inputs, and the dense float64 result (out, dx, dw) on the inputs rounded to `dtype`."""
    src, dst, typ, ew = make_edges(N, R, seed=seed)
    graph = RelationalGraph.build(src, dst, typ, ew, N, R, normalize=normalize)
    x, w, cot = make_inputs(N, R, blocks, seed)
    x, w = x.to(dtype).double(), w.to(dtype).double()
    norm = expected_norm(dst, typ, ew, normalize)
    ref = out_and_grads(lambda a, b: dense_rgcn(a, b, src, dst, typ, norm, N), x, w, cot)
    return graph, x, w, cot, ref


@pytest.fixture
def poison(monkeypatch):
    return poison_outputs(monkeypatch, lt)


# ---------------------------------------------------------------------------------------------------------------------
# (a) the graph and the norm
# ---------------------------------------------------------------------------------------------------------------------


def test_mean_norm_hand_checked():
    """Node 2 receives three relation-0 edges (one a self-loop) and one relation-1 edge; node 1 receives a
    duplicated relation-1 edge: the mean divides by the edge count of each (destination, relation), not by the sum
    of the weights."""
    src = torch.tensor([0, 1, 3, 2, 0, 0])
    dst = torch.tensor([2, 2, 2, 2, 1, 1])
    typ = torch.tensor([0, 0, 1, 0, 1, 1])
    w = torch.tensor([1.0, 0.5, 2.0, 1.0, 3.0, 3.0], dtype=F64)
    want = torch.tensor([1 / 3, 0.5 / 3, 2.0, 1 / 3, 1.5, 1.5], dtype=F64)
    torch.testing.assert_close(relation_mean_norm(dst, typ, w), want, rtol=0, atol=1e-15)
    torch.testing.assert_close(relation_mean_norm(dst, typ), torch.tensor([1 / 3, 1 / 3, 1.0, 1 / 3, 0.5, 0.5]))
    g = RelationalGraph.build(src, dst, typ, w, num_nodes=4, num_relations=2)
    # destination order: node 1's two edges, then node 2's relation-0 edges by source (0, 1, 2), then relation 1
    assert g.dst.tolist() == [1, 1, 2, 2, 2, 2] and g.edge_type.tolist() == [1, 1, 0, 0, 0, 1]
    assert g.src.tolist() == [0, 0, 0, 1, 2, 3]
    torch.testing.assert_close(g.norm, torch.tensor([1.5, 1.5, 1 / 3, 0.5 / 3, 1 / 3, 2.0], dtype=F64))
    assert g.by_dst.row_ptr.tolist() == [0, 0, 2, 6, 6]
    assert g.by_dst.seg_ptr.tolist() == [0, 2, 5, 6] and g.by_dst.seg_type.tolist() == [1, 0, 1]
    assert g.by_dst.row_seg_ptr.tolist() == [0, 0, 1, 3, 3]
    assert g.by_src.row_ptr.tolist() == [0, 3, 4, 5, 6]
    assert g.by_src.other.tolist() == [2, 1, 1, 2, 2, 2]  # sorted by (source, relation, destination)
    assert g.rel_bounds == (0, 3, 6) and g.rel_seg_bounds == (0, 1, 3)
    assert g.rel_seg_dst.tolist() == [2, 1, 2]
    none = RelationalGraph.build(src, dst, typ, w, 4, 2, normalize="none")
    torch.testing.assert_close(none.norm, torch.tensor([3.0, 3.0, 1.0, 0.5, 1.0, 2.0], dtype=F64))
    assert none.normalize == "none" and g.norm.dtype == F64
    f32 = RelationalGraph.build(src.numpy(), dst.numpy(), typ.numpy(), w.float().numpy(), 4, 2)  # NumPy arrays
    assert f32.norm.dtype == torch.float32 and f32.num_edges == 6 and "num_edges=6" in repr(f32)
    torch.testing.assert_close(RelationalGraph.build(src, dst, typ, None, 4, 2).norm,
                               torch.tensor([0.5, 0.5, 1 / 3, 1 / 3, 1 / 3, 1.0]))  # fmt: skip


def test_graph_to_moves_every_tensor():
    g = RelationalGraph.build(*make_edges(), num_nodes=13, num_relations=4)
    assert g.to("cpu").device == torch.device("cpu")
    meta = g.to("meta")
    tensors = [getattr(meta, f.name) for f in dataclasses.fields(meta)]
    tensors += [getattr(a, f.name) for a in (meta.by_dst, meta.by_src) for f in dataclasses.fields(a)]
    tensors = [t for t in tensors if isinstance(t, torch.Tensor)]
    assert len(tensors) == 23 and all(t.device.type == "meta" for t in tensors)
    assert meta.rel_bounds == g.rel_bounds and meta.num_nodes == 13 and meta.normalize == "mean"
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.num_nodes = 3


# ---------------------------------------------------------------------------------------------------------------------
# (b) the PyTorch forms against the dense float64 formula
# ---------------------------------------------------------------------------------------------------------------------


FORMS = {
    "reference": rgcn_aggregate_reference,
    "segments": rgcn_aggregate_segments,
    "public": lambda x, w, g: rgcn_aggregate(x, w, g, backend="reference"),
}


@pytest.mark.parametrize("blocks", BLOCKS)
@pytest.mark.parametrize("normalize", ["mean", "none"])
def test_reference_matches_dense(normalize, blocks):
    graph, x, w, cot, ref = dense_case(normalize, blocks, seed=sum(blocks))
    for name, fn in FORMS.items():
        got = out_and_grads(lambda a, b, fn=fn: fn(a, b, graph), x, w, cot)
        assert got[0].dtype == F64
        for what, g, r in zip(("out", "dx", "dw"), got, ref):
            assert g.shape == r.shape, (name, what)
            assert_close(g, r, 1e-12, f"{name} {what}")
    assert not ref[0][-2:].any() and not ref[1][-2:].any(), "isolated nodes: no output, no gradient"
    assert not ref[2][-1].any(), "the relation without edges has a zero gradient"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_reference_low_precision(dtype):
    """fp32 accumulation whatever the input dtype; the output and the gradients in the input dtype."""
    graph, x, w, cot, ref = dense_case("mean", (8, 8, 8), dtype=dtype)
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    for name, fn in FORMS.items():
        got = out_and_grads(lambda a, b, fn=fn: fn(a, b, graph), x, w, cot, dtype=dtype)
        for what, g, r in zip(("out", "dx", "dw"), got, ref):
            assert g.dtype == dtype, (name, what)
            assert_close(g, r, tol, f"{name} {what}")


def test_segments_gradcheck():
    """The segment form's custom backward (z = A x: grad x = Aᵀ grad z from the prebuilt transpose)."""
    src, dst, typ, ew = make_edges(9, 3, E=20, seed=3)
    graph = RelationalGraph.build(src, dst, typ, ew, 9, 3)
    x, w, _ = make_inputs(9, 3, (2, 3, 2), seed=3)
    leaves = (x.requires_grad_(), w.requires_grad_())
    assert torch.autograd.gradcheck(lambda a, b: rgcn_aggregate_segments(a, b, graph), leaves)


@pytest.mark.parametrize("backend", ["reference", pytest.param("triton", marks=needs_triton)])
def test_no_edges(backend):
    """E = 0: zeros, and zero gradients (not an error: the output still depends on x and W)."""
    device = DEVICE if backend == "triton" else "cpu"
    empty = torch.zeros(0, dtype=torch.long, device=device)
    graph = RelationalGraph.build(empty, empty, empty, torch.zeros(0, device=device), 5, 2)
    assert graph.num_edges == 0 and graph.by_dst.num_segments == 0
    x = torch.randn(5, 16, device=device, requires_grad=True)
    w = torch.randn(2, 4, 4, 3, device=device, requires_grad=True)
    for fn in (rgcn_aggregate_reference, rgcn_aggregate_segments, lambda *a: rgcn_aggregate(*a, backend=backend)):
        out = fn(x, w, graph)
        assert out.shape == (5, 12) and not out.any()
        dx, dw = torch.autograd.grad((out * 2).sum(), (x, w))
        assert dx.shape == x.shape and dw.shape == w.shape and not dx.any() and not dw.any()


# ---------------------------------------------------------------------------------------------------------------------
# (c) Triton kernels against the dense float64 formula
# ---------------------------------------------------------------------------------------------------------------------


def check_triton(graph, x, w, cot, ref, dtype, tol, poison, grads=(True, True)):
    got = out_and_grads(lambda a, b: rgcn_aggregate(a, b, graph.to(DEVICE), backend="triton"), x, w, cot, dtype,
                        DEVICE, grads)  # fmt: skip
    assert poison, "the kernels' outputs were not allocated through the poisoned allocator"
    for what, g, r, need in zip(("out", "dx", "dw"), got, ref, (True, *grads)):
        if not need:
            assert g is None
            continue
        assert g.shape == r.shape and g.dtype == dtype, what
        assert_close(g.cpu(), r, tol, what)


@needs_triton
@pytest.mark.parametrize("blocks", BLOCKS)
@pytest.mark.parametrize("normalize", ["mean", "none"])
def test_triton_matches_dense(normalize, blocks, poison):
    graph, x, w, cot, ref = dense_case(normalize, blocks, seed=sum(blocks))
    check_triton(graph, x, w, cot, ref, torch.float32, 1e-5, poison)
    if blocks == (8, 8, 8):  # 8 blocks in groups of 4: two groups; relation 0 spans several weight-gradient splits
        assert any(len(s) == 5 and s[1] > 1 for s in poison), poison


@needs_triton
@pytest.mark.parametrize("blocks", [(8, 8, 8), (4, 12, 12)])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_triton_half_precision(dtype, blocks, poison):
    graph, x, w, cot, ref = dense_case("mean", blocks, dtype=dtype)
    check_triton(graph, x, w, cot, ref, dtype, 1e-2, poison)


@needs_triton
@pytest.mark.parametrize("blocks", [(4, 12, 12), (1, 40, 36)])
def test_triton_block_parts(blocks, poison, monkeypatch):
    """A 16-column cap: one block per group, a 40-wide block read in three input chunks and written in three output
    parts; the weight gradient in 3 × 3 parts of [16, 16]."""
    monkeypatch.setattr(lt, "_INTERP_COLS", 16)
    graph, x, w, cot, ref = dense_case("mean", blocks, seed=5)
    check_triton(graph, x, w, cot, ref, torch.float32, 1e-5, poison)


@needs_triton
def test_triton_one_gradient_and_no_grad(poison):
    """Only the requested gradient's kernel runs; without gradients only the output is allocated."""
    graph, x, w, cot, ref = dense_case("mean", (8, 8, 8), seed=6)
    check_triton(graph, x, w, cot, ref, torch.float32, 1e-5, poison, grads=(True, False))
    assert [len(s) for s in poison] == [2, 2]  # out, grad x
    del poison[:]
    check_triton(graph, x, w, cot, ref, torch.float32, 1e-5, poison, grads=(False, True))
    assert [len(s) for s in poison] == [2, 5]  # out, grad W partials
    del poison[:]
    with torch.no_grad():
        rgcn_aggregate(x.float().to(DEVICE), w.float().to(DEVICE), graph.to(DEVICE), backend="triton")
    assert len(poison) == 1


@needs_triton
def test_triton_strided_inputs(poison):
    """A column slice of x and a permuted weight are made contiguous once."""
    graph, x, w, cot, ref = dense_case("mean", (4, 12, 12), seed=7)
    wide = torch.cat([x, x], 1).float().to(DEVICE).requires_grad_()
    wt = w.float().transpose(2, 3).contiguous().to(DEVICE).requires_grad_()  # [R, B, O/B, D/B]
    out = rgcn_aggregate(wide[:, :48], wt.transpose(2, 3), graph.to(DEVICE), backend="triton")
    dwide, dwt = torch.autograd.grad((out.double() * cot.to(DEVICE)).sum(), (wide, wt))
    assert_close(out.cpu(), ref[0], 1e-5, "out")
    assert_close(dwide[:, :48].cpu(), ref[1], 1e-5, "dx")
    assert not dwide[:, 48:].any()
    assert_close(dwt.transpose(2, 3).cpu(), ref[2], 1e-5, "dw")


@pytest.mark.skipif(lt is None, reason="needs triton")
def test_cuda_launch_configuration(monkeypatch):
    monkeypatch.setattr(lt, "_on_cuda", lambda x: True)
    x = torch.empty(0)
    assert lt._gather_tiles(8, 8, 8, x) == (32, 8, 8, 8)  # KCF-PLM: all 8 blocks of 8 in one program
    assert lt._gather_tiles(4, 12, 12, x) == (32, 4, 16, 16)
    assert lt._gather_tiles(1, 512, 512, x) == (32, 1, 64, 64)  # 8 input chunks, 8 output parts
    assert lt._dw_tiles(8, 8, 8, x) == (32, 8, 8, 8, 64, 64)
    assert lt._dw_tiles(2, 2, 2, x) == (32, 2, 2, 2, 16, 16)  # padded to tl.dot's 16


# ---------------------------------------------------------------------------------------------------------------------
# (d) argument checks and backend resolution
# ---------------------------------------------------------------------------------------------------------------------


def test_build_rejects_bad_graphs():
    src, dst, typ, w = make_edges()
    cases = [
        (dict(src=src[:-1]), r"one length.*dst \(80,\).*src \(79,\)"),
        (dict(dst=dst.int()), r"dst must be int64; got torch.int32"),
        (dict(edge_type=typ[None]), r"edge_type \(1, 80\)"),
        (dict(src=src.tolist()), r"src must be a tensor or a NumPy array; got list"),
        (dict(src=torch.cat([src[:-1], torch.tensor([13])])), r"src contains 13, outside \[0, num_nodes=13\)"),
        (dict(dst=torch.cat([dst[:-1], torch.tensor([-1])])), r"dst contains -1, outside \[0, num_nodes=13\)"),
        (dict(edge_type=torch.cat([typ[:-1], torch.tensor([4])])), r"edge_type contains 4, .*num_relations=4"),
        (dict(edge_weight=w[:-1]), r"edge_weight must be \[E\]=\(80,\).*\(79,\)"),
        (dict(edge_weight=torch.ones(80, dtype=torch.long)), r"edge_weight must be a floating tensor.*int64"),
        (dict(edge_weight=torch.cat([w[:-1], torch.tensor([-0.5], dtype=F64)])), r"edge_weight contains -0.5"),
        (dict(edge_weight=torch.cat([w[:-1], torch.tensor([float("nan")], dtype=F64)])), r"edge_weight contains nan"),
        (dict(edge_weight=torch.cat([w[:-1], torch.tensor([float("inf")], dtype=F64)])), r"edge_weight contains inf"),
        (dict(edge_weight=w.clone().requires_grad_()), r"edge_weight requires grad"),
        (dict(edge_weight=w.to("meta")), r"one device.*edge_weight meta"),
        (dict(num_nodes=-1), r"num_nodes=-1 must be an int >= 0"),
        (dict(num_nodes=None), r"num_nodes=None"),
        (dict(num_nodes=True), r"num_nodes=True"),
        (dict(num_relations=0), r"num_relations=0 must be an int >= 1"),
        (dict(num_relations=2), r"edge_type contains 2, outside \[0, num_relations=2\)"),
        (dict(normalize="sum"), r"normalize='sum' is not one of \('mean', 'none'\)"),
    ]
    for change, match in cases:
        kwargs = dict(src=src, dst=dst, edge_type=typ, edge_weight=w, num_nodes=13, num_relations=4) | change
        with pytest.raises(ValueError, match=match):
            RelationalGraph.build(**kwargs)


def test_aggregate_rejects_bad_calls():
    graph = RelationalGraph.build(*make_edges(), num_nodes=13, num_relations=4)
    x, w, _ = make_inputs(13, 4, (4, 12, 12))
    cases = [
        ((x, w, "graph"), r"graph must be a RelationalGraph.*str"),
        ((x.numpy(), w, graph), r"x and weight must be tensors.*ndarray"),
        ((x, w[0], graph), r"weight must be \[R, B, D/B, O/B\].*\(4, 12, 12\)"),
        ((x, w[:, :, :, :0], graph), r"weight must be .*>= 1.*\(4, 4, 12, 0\)"),
        ((x, w[:3], graph), r"weight has R=3 relations.*num_relations=4"),
        ((x[0], w, graph), r"x must be \[N, D\]; got x \(48,\)"),
        ((x[:12], w, graph), r"x has 12 rows.*num_nodes=13"),
        ((x[:, :40], w, graph), r"x's D=40 must be B·D/B = 4·12 = 48.*D % B = 0"),
        ((x[:, :47], w, graph), r"D=47 .*D % B = 3"),
        ((x.float(), w, graph), r"x and weight must share.*x torch.float32, weight torch.float64"),
        ((x.long(), w.long(), graph), r"x and weight must share.*torch.int64"),
        ((x, w.to("meta"), graph), r"one device.*weight meta.*graph cpu"),
        ((x.to("meta"), w.to("meta"), graph), r"one device.*x meta.*graph cpu"),
    ]
    for args, match in cases:
        with pytest.raises(ValueError, match=match):
            rgcn_aggregate(*args, backend="reference")
    trained = dataclasses.replace(graph, by_dst=dataclasses.replace(graph.by_dst,
                                                                    norm=graph.norm.clone().requires_grad_()))
    with pytest.raises(ValueError, match="graph.norm requires grad"):
        rgcn_aggregate(x, w, trained, backend="reference")


def no_interpreter(monkeypatch):
    """Pretend TRITON_INTERPRET is unset, wherever the reader was imported (by module or by name)."""
    monkeypatch.setattr(paperzoo._env, "triton_interpret", lambda: False)
    for module in (registry, lt):
        if module is not None and hasattr(module, "triton_interpret"):
            monkeypatch.setattr(module, "triton_interpret", lambda: False)


def test_triton_backend_on_cpu_without_interpreter_raises(monkeypatch):
    no_interpreter(monkeypatch)
    graph = RelationalGraph.build(*make_edges(), num_nodes=13, num_relations=4)
    x, w, _ = make_inputs(13, 4, (8, 8, 8))
    with pytest.raises(RuntimeError, match="rgcn_aggregate: the triton backend .*CPU"):
        rgcn_aggregate(x.float(), w.float(), graph, backend="triton")


@pytest.mark.skipif(lt is None, reason="needs triton")
def test_triton_backend_rejects_float64():
    graph = RelationalGraph.build(*make_edges(), num_nodes=13, num_relations=4)
    x, w, _ = make_inputs(13, 4, (8, 8, 8))
    with pytest.raises(RuntimeError, match="float64"):
        rgcn_aggregate(x, w, graph, backend="triton")


def test_auto_uses_the_reference_on_cpu(monkeypatch):
    """auto, None and PAPERZOO_KERNEL_BACKEND=reference run the PyTorch form on CPU tensors (with or without the
    interpreter: auto never picks it); the Triton function is never called."""
    graph, x, w, _, ref = dense_case("mean", (8, 8, 8))

    def fail(*args):
        raise AssertionError("triton called")

    monkeypatch.setattr(rgcn_pkg, "rgcn_aggregate_triton", fail)
    for interpreter in (True, False):
        if not interpreter:
            no_interpreter(monkeypatch)
        for backend in ("auto", "reference", None):
            assert_close(rgcn_aggregate(x.float(), w.float(), graph, backend=backend), ref[0], 1e-5, str(backend))
    monkeypatch.setenv("PAPERZOO_KERNEL_BACKEND", "reference")
    assert_close(rgcn_aggregate(x, w, graph), ref[0], 1e-12, "env")
    with pytest.raises(ValueError, match="kernel_backend"):
        rgcn_aggregate(x, w, graph, backend="cuda")


# ---------------------------------------------------------------------------------------------------------------------
# (e) a GPU at the ml-100k graph's size: Triton against the float64 segment form, from the same inputs
# ---------------------------------------------------------------------------------------------------------------------


def skewed_graph(N=35_673, R=34, E=310_862, seed=0):
    """A random graph of the ml-100k knowledge graph's size with skewed in-degrees (a few hubs of ~1000 edges)."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, N, (E,), generator=g)
    dst = (torch.rand(E, generator=g) ** 3 * N).long()
    typ = torch.randint(0, R, (E,), generator=g)
    return RelationalGraph.build(src, dst, typ, torch.rand(E, generator=g), N, R)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
class TestRGCNGPU:
    @pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
    def test_matches_reference(self, dtype, poison):
        graph = skewed_graph().to("cuda")
        x, w, cot = make_inputs(graph.num_nodes, graph.num_relations, (8, 8, 8))
        got = out_and_grads(lambda a, b: rgcn_aggregate(a, b, graph, backend="triton"), x, w, cot, dtype, "cuda")
        ref = out_and_grads(lambda a, b: rgcn_aggregate_segments(a, b, graph), x.to(dtype).double(),
                            w.to(dtype).double(), cot, device="cuda")  # fmt: skip
        tol = 1e-2 if dtype == torch.bfloat16 else 1e-5
        for what, g, r in zip(("out", "dx", "dw"), got, ref):
            assert g.dtype == dtype and torch.isfinite(g).all(), what
            assert rel_err(g, r) < tol, (what, rel_err(g, r))


def test_numpy_edges_like_kg_ratings():
    """The kg_ratings layout (edges [E, 3] int64 src, dst, relation; float32 weights) builds directly."""
    src, dst, typ, w = make_edges()
    edges = np.stack([src.numpy(), dst.numpy(), typ.numpy()], 1)
    graph = RelationalGraph.build(edges[:, 0], edges[:, 1], edges[:, 2], w.float().numpy(), 13, 4)
    assert graph.num_edges == 80 and graph.norm.dtype == torch.float32
