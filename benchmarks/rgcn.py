"""R-GCN aggregation (paperzoo.kernels.rgcn, KCF-PLM's weighted relational graph convolution) on CPU: the index_add_
reference vs the aggregate-first segment form, on the ml-100k knowledge graph and a 10x synthetic graph.

    nice .venv/bin/python benchmarks/rgcn.py            # ml-100k and 10x (~3 min, 1 thread)
    nice .venv/bin/python benchmarks/rgcn.py --quick    # ml-100k only

The graph is KCF-PLM's: `paperzoo.data.kg_ratings.build_kg_rating_data("ml-100k", seed=0)` (users, items, genres and
Freebase entities; the KG triples, item -> genre and the train split's user -> item "rated" edges, each relation with
its inverse; "rated" edges weigh rating / 5), normalised "mean" (edge weight / edges of the same destination and
relation). The 10x graph: ten copies of it (node ids offset per copy), then within each relation the source column
shuffled across all the copies' edges: every node keeps its in- and out-degree per relation (the same degree
distribution, 10x the nodes and edges) but the edges are random (no copy-local structure a cache would like).
D = O = 64 in B = 8 blocks of 8 (KCF-PLM's layer), fp32, `--threads` intra-op threads (default 1: on this shared 2-core
machine a second thread mostly measures the neighbour).

Per graph and form, interleaved over `--repeats` rounds (medians reported, and the median of the per-round ratios):
forward without gradients, and forward + backward (gradients of x and W, out.backward(random cotangent)). Also: each
form's relative error against the float64 segment form (max |got − ref| / max |ref| over out, grad x, grad W), the
tensors autograd saves for the backward (beyond x, W and the graph's own index tensors, which outlive the call), the
graph's preprocessed size and build time, and the layer's parameters. The Triton kernels run on a GPU only:
benchmarks/gpu/rgcn.sh.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

DIM = 64  # D = O: the layer maps 64 features to 64
BLOCKS = 8


# --------------------------------------------------------------------------------------------------- graphs


def ml100k_edges():
    """(src, dst, edge_type, edge_weight float32, num_nodes, num_relations, description) of KCF-PLM's ml-100k graph."""
    from paperzoo.data.kg_ratings import build_kg_rating_data

    data = build_kg_rating_data("ml-100k", seed=0)
    e = torch.from_numpy(np.ascontiguousarray(data.edges))
    desc = (f"ml-100k (paperzoo.data.kg_ratings, seed 0): {len(data.entities):,} nodes, {len(data.relations)} "
            f"relations, {len(e):,} edges")  # fmt: skip
    return e[:, 0], e[:, 1], e[:, 2], torch.from_numpy(data.edge_weights), len(data.entities), len(data.relations), desc


def scaled_edges(src, dst, typ, weight, num_nodes, factor=10, seed=0):
    """`factor` copies of the graph (ids offset by num_nodes per copy), then each relation's sources shuffled across
    all its edges: every node's in- and out-degree per relation is kept, the pairing is random."""
    g = torch.Generator().manual_seed(seed)
    offset = torch.arange(factor).repeat_interleave(src.numel()) * num_nodes
    src, dst = src.repeat(factor) + offset, dst.repeat(factor) + offset
    typ, weight = typ.repeat(factor), weight.repeat(factor)
    for r in typ.unique():
        idx = (typ == r).nonzero().squeeze(1)
        src[idx] = src[idx[torch.randperm(idx.numel(), generator=g)]]
    return src, dst, typ, weight, num_nodes * factor


def graph_bytes(graph) -> int:
    from dataclasses import fields

    total = 0
    for holder in (graph, graph.by_dst, graph.by_src):
        for f in fields(holder):
            value = getattr(holder, f.name)
            if isinstance(value, torch.Tensor):
                total += value.nbytes
    return total


def graph_tensors(graph) -> list[torch.Tensor]:
    from dataclasses import fields

    out = []
    for holder in (graph, graph.by_dst, graph.by_src):
        out += [getattr(holder, f.name) for f in fields(holder) if isinstance(getattr(holder, f.name), torch.Tensor)]
    return out


def saved_bytes(fn, x, w, graph) -> int:
    """Bytes of the tensors autograd saves in fn(x, w, graph)'s forward, not counting storage shared with x, W or the
    graph (each storage once)."""
    known = {t.untyped_storage().data_ptr() for t in (x, w, *graph_tensors(graph))}
    seen = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in known:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(x, w, graph)
    del out
    return sum(seen.values())


def max_rel(got, ref) -> float:
    return ((got.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


# --------------------------------------------------------------------------------------------------- measurement


def forms():
    from paperzoo.kernels.rgcn import rgcn_aggregate_reference, rgcn_aggregate_segments

    return {"index_add_": rgcn_aggregate_reference, "segments": rgcn_aggregate_segments}


def measure(label, edges, repeats, threads):
    from paperzoo.kernels.rgcn import RelationalGraph, rgcn_aggregate_segments

    src, dst, typ, weight, N, R = edges
    t0 = time.perf_counter()
    graph = RelationalGraph.build(src, dst, typ, weight, N, R, normalize="mean")
    build_s = time.perf_counter() - t0
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, DIM, generator=g).requires_grad_()
    w = (torch.randn(R, BLOCKS, DIM // BLOCKS, DIM // BLOCKS, generator=g) / (DIM // BLOCKS) ** 0.5).requires_grad_()
    cot = torch.randn(N, DIM, generator=g)
    fns = forms()

    # accuracy against the float64 segment form
    x64, w64 = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    ref = rgcn_aggregate_segments(x64, w64, graph)
    ref_grads = torch.autograd.grad(ref, (x64, w64), cot.double())
    errors = {}
    for name, fn in fns.items():
        out = fn(x, w, graph)
        grads = torch.autograd.grad(out, (x, w), cot)
        errors[name] = [max_rel(a, b) for a, b in zip((out, *grads), (ref.detach(), *ref_grads))]
    del x64, w64, ref, ref_grads

    saved = {name: saved_bytes(fn, x, w, graph) for name, fn in fns.items()}
    times = {name: {"fwd": [], "fb": []} for name in fns}
    for fn in fns.values():  # warm-up
        fn(x, w, graph).backward(cot)
    for _ in range(repeats):
        for name, fn in fns.items():
            x.grad = w.grad = None
            t0 = time.perf_counter()
            with torch.no_grad():
                fn(x, w, graph)
            t1 = time.perf_counter()
            fn(x, w, graph).backward(cot)
            t2 = time.perf_counter()
            times[name]["fwd"].append(t1 - t0)
            times[name]["fb"].append(t2 - t1)
    print(f"  {label}: done ({repeats} rounds)", file=sys.stderr, flush=True)
    return dict(label=label, graph=graph, build_s=build_s, errors=errors, saved=saved, times=times, R=R, N=N)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the ml-100k graph only")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--repeats", type=int, default=7,
                        help="timed rounds on ml-100k (2 fewer, at least 3, on the 10x graph)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from _machine import machine_description, read_loadavg  # benchmarks/ is on sys.path
    from retnet import CpuShare

    command = " ".join([".venv/bin/python" if ".venv" in sys.executable else Path(sys.executable).name,
                        os.path.relpath(__file__, Path.cwd()) if Path(__file__).is_relative_to(Path.cwd())
                        else __file__, *sys.argv[1:]])  # fmt: skip
    share, t_start = CpuShare(), time.perf_counter()
    print("## R-GCN aggregation: index_add_ reference vs aggregate-first segments (CPU, fp32, D = O = 64, B = 8)\n")
    print(machine_description(command, f"torch {torch.__version__} ({args.threads} threads)") + "\n")

    src, dst, typ, weight, N, R, desc = ml100k_edges()
    print(f"- graph: {desc}; 10x: {10 * N:,} nodes, {10 * len(src):,} edges (degree-preserving shuffle)\n")
    results = [measure("ml-100k", (src, dst, typ, weight, N, R), args.repeats, args.threads)]
    if not args.quick:
        big = scaled_edges(src, dst, typ, weight, N)
        results.append(measure("ml-100k x10", (*big, R), max(3, args.repeats - 2), args.threads))

    print("| graph | nodes | edges | (dst, relation) segments | form | fwd ms (median) | fwd+bwd ms (median) "
          "| saved for backward | rel. error out / dx / dW vs float64 |")  # fmt: skip
    print("|---|---:|---:|---:|---|---:|---:|---:|---|")
    for r in results:
        graph = r["graph"]
        for name in forms():
            t = r["times"][name]
            errs = " / ".join(f"{e:.1e}" for e in r["errors"][name])
            print(f"| {r['label']} | {graph.num_nodes:,} | {graph.num_edges:,} | {graph.rel_seg_dst.numel():,} "
                  f"| {name} | {1e3 * statistics.median(t['fwd']):.1f} | {1e3 * statistics.median(t['fb']):.1f} "
                  f"| {mib(r['saved'][name])} | {errs} |")  # fmt: skip

    print("\nSegments relative to index_add_ (median over rounds of the per-round ratio, same run):\n")
    print("| graph | fwd time segments / index_add_ | fwd+bwd time segments / index_add_ | saved-for-backward "
          "segments / index_add_ |")  # fmt: skip
    print("|---|---:|---:|---:|")
    for r in results:
        a, b = r["times"]["index_add_"], r["times"]["segments"]
        fwd = statistics.median(s / i for s, i in zip(b["fwd"], a["fwd"]))
        fb = statistics.median(s / i for s, i in zip(b["fb"], a["fb"]))
        print(f"| {r['label']} | {fwd:.2f}x | {fb:.2f}x | {r['saved']['segments'] / r['saved']['index_add_']:.2f}x |")

    print("\nMemory of one R-GCN layer (D = O = 64, B = 8):\n")
    for r in results:
        graph, R = r["graph"], r["R"]
        params = R * BLOCKS * (DIM // BLOCKS) ** 2
        print(f"- {r['label']}: relation weights {R} x 8 x 8 x 8 = {params:,} parameters ({mib(4 * params)} fp32; "
              f"the model's root 64 x 64 and bias add {DIM * DIM + DIM:,}); x and out "
              f"{mib(graph.num_nodes * DIM * 4)} each; "
              f"the preprocessed graph (three sorted copies of the edges, CSR pointers, segments) "
              f"{mib(graph_bytes(graph))}, built in {r['build_s']:.2f} s; saved for backward beyond x, W and the "
              f"graph: index_add_ {mib(r['saved']['index_add_'])} (the gathered rows x[src], E x D, and einsum's "
              f"per-block copy of them), segments {mib(r['saved']['segments'])} (z, S x D, and its per-block copy), "
              f"Triton 0 (it saves x and W only)")  # fmt: skip
    print(f"\nTimes: median of the rounds after one warm-up call, forms interleaved within each round. Wall time "
          f"{time.perf_counter() - t_start:.0f} s; other processes used {share.others()} of the machine's CPU time "
          f"during the run; load average at end: {read_loadavg()}")  # fmt: skip


if __name__ == "__main__":
    main()
