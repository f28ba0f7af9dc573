"""R-GCN aggregation on one GPU: Triton vs the index_add_ reference vs the aggregate-first segment form (run by
benchmarks/gpu/rgcn.sh).

Graphs: KCF-PLM's ml-100k graph (paperzoo.data.kg_ratings, 35,673 nodes, 34 relations, 310,862 edges, "mean" norm)
and the 10x graph of benchmarks/rgcn.py (ten copies, sources shuffled within each relation: the same degree
distribution); where the ml-100k files are missing, a random graph of the same size with skewed in-degrees (said in
the output). D = O = 64 in B = 8 blocks of 8 (KCF-PLM's layer), fp32 and bf16. Per graph, dtype and implementation:
the relative error against the float64 segment form on the same (rounded) inputs (max |got − ref| / max |ref| for
out, grad x, grad W); forward without gradients and forward + backward (both gradients) in ms (torch.cuda.Event, the
median of 20 calls after 3 warm-up calls); the peak CUDA memory above the inputs during forward + backward
(torch.cuda.max_memory_allocated) and the bytes autograd saves for the backward beyond x, W and the graph. Prints a
markdown table with the device.

`--smoke` runs the same code on the CPU under TRITON_INTERPRET=1 on a toy graph, to check the script itself where
there is no GPU; its timings mean nothing.
"""

from __future__ import annotations

import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/: the graphs of benchmarks/rgcn.py
from rgcn import BLOCKS, DIM, max_rel, ml100k_edges, saved_bytes, scaled_edges  # noqa: E402

DTYPES = (torch.float32, torch.bfloat16)
IMPLS = ("triton", "index_add_", "segments")


def skewed_edges(N=35_673, R=34, E=310_862, seed=0):
    """A random graph of the ml-100k graph's size with skewed in-degrees (stand-in when the data is missing)."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, N, (E,), generator=g)
    dst = (torch.rand(E, generator=g) ** 3 * N).long()
    return src, dst, torch.randint(0, R, (E,), generator=g), torch.rand(E, generator=g), N, R


def cuda_ms(fn, warmup=3, rep=20) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    events = []
    for _ in range(rep):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        events.append((start, end))
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in events)


def cpu_ms(fn, warmup=0, rep=1) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def main(smoke: bool = False) -> int:
    import os

    if smoke:
        if os.environ.get("TRITON_INTERPRET") != "1":
            print("--smoke needs TRITON_INTERPRET=1")
            return 1
        dev, timer = "cpu", cpu_ms
    elif not torch.cuda.is_available():
        print("no CUDA device: nothing to benchmark")
        return 1
    else:
        dev, timer = "cuda", cuda_ms
    import triton

    from paperzoo.kernels.rgcn import (
        RelationalGraph,
        rgcn_aggregate,
        rgcn_aggregate_reference,
        rgcn_aggregate_segments,
    )

    fns = {
        "triton": lambda x, w, g: rgcn_aggregate(x, w, g, backend="triton"),
        "index_add_": rgcn_aggregate_reference,
        "segments": rgcn_aggregate_segments,
    }
    t_start = time.perf_counter()
    if smoke:
        graphs = [("toy", skewed_edges(N=41, R=5, E=300))]
    else:
        try:
            src, dst, typ, weight, N, R, desc = ml100k_edges()
            print(f"graph: {desc}")
            graphs = [("ml-100k", (src, dst, typ, weight, N, R)), ("ml-100k x10", (*scaled_edges(src, dst, typ,
                                                                                                  weight, N), R))]
        except Exception as exc:  # noqa: BLE001
            print(f"the ml-100k graph could not be built ({type(exc).__name__}: {exc}); using a random graph of its "
                  f"size with skewed in-degrees instead")  # fmt: skip
            small = skewed_edges()
            big = skewed_edges(N=356_730, E=3_108_620)
            graphs = [("random, ml-100k size", small), ("random, 10x", big)]

    rows = []
    for label, (src, dst, typ, weight, N, R) in graphs:
        graph = RelationalGraph.build(src, dst, typ, weight, N, R).to(dev)
        g = torch.Generator().manual_seed(0)
        x0 = torch.randn(N, DIM, generator=g).to(dev)
        w0 = (torch.randn(R, BLOCKS, DIM // BLOCKS, DIM // BLOCKS, generator=g) / (DIM // BLOCKS) ** 0.5).to(dev)
        cot = torch.randn(N, DIM, generator=g).to(dev)
        for dtype in DTYPES:
            x64 = x0.to(dtype).double().requires_grad_()
            w64 = w0.to(dtype).double().requires_grad_()
            ref = rgcn_aggregate_segments(x64, w64, graph)
            ref_all = (ref.detach(), *torch.autograd.grad(ref, (x64, w64), cot.double()))
            del x64, w64, ref
            for impl in IMPLS:
                fn = fns[impl]
                key = (label, str(dtype).replace("torch.", ""), impl)
                try:
                    x = x0.to(dtype).requires_grad_()
                    w = w0.to(dtype).requires_grad_()
                    out = fn(x, w, graph)
                    grads = torch.autograd.grad(out, (x, w), cot.to(dtype))
                    errs = [max_rel(a, b) for a, b in zip((out, *grads), ref_all)]
                    del out, grads

                    cot_dt = cot.to(dtype)

                    def fwd(fn=fn, x=x, w=w, graph=graph):
                        with torch.no_grad():
                            fn(x, w, graph)

                    def fwd_bwd(fn=fn, x=x, w=w, graph=graph, cot=cot_dt):
                        x.grad = w.grad = None
                        fn(x, w, graph).backward(cot)

                    t_fwd, t_fb = timer(fwd), timer(fwd_bwd)  # (the cotangent is cast before timing)
                    peak = float("nan")
                    if dev == "cuda":
                        x.grad = w.grad = None
                        torch.cuda.synchronize()
                        base = torch.cuda.memory_allocated()
                        torch.cuda.reset_peak_memory_stats()
                        fwd_bwd()
                        torch.cuda.synchronize()
                        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
                    rows.append((*key, graph.num_edges, errs, t_fwd, t_fb, peak, saved_bytes(fn, x, w, graph) / 2**20))
                except torch.cuda.OutOfMemoryError:
                    rows.append((*key, graph.num_edges, "out of memory"))
                except Exception:  # noqa: BLE001
                    print(f"{key}: failed\n{traceback.format_exc()}")
                    rows.append((*key, graph.num_edges, "failed"))
                if dev == "cuda":
                    torch.cuda.empty_cache()

    print()
    device_name = torch.cuda.get_device_name() if dev == "cuda" else "CPU (interpreter, --smoke: timings mean nothing)"
    print(f"device: {device_name} | torch {torch.__version__} | triton {triton.__version__} | "
          f"total {time.perf_counter() - t_start:.0f} s")  # fmt: skip
    print(f"out = Σ_in-edges norm · x[src] · BlockDiag(W[type]), D = O = {DIM}, B = {BLOCKS}; fwd without grad, "
          "fwd+bwd with grad x and grad W; error = max |got − ref| / max |ref| vs float64 on the same inputs; peak = "
          "CUDA memory above the inputs during fwd+bwd; saved = what autograd keeps beyond x, W and the graph")
    print()
    print("| graph | dtype | impl | edges | rel. error out / dx / dW | fwd ms | fwd+bwd ms | fwd+bwd peak MiB "
          "| saved MiB | fwd / fwd+bwd speedup vs index_add_ |")  # fmt: skip
    print("|---|---|---|---:|---|---:|---:|---:|---:|---:|")
    base = {r[:2]: r for r in rows if r[2] == "index_add_" and len(r) > 5}
    for r in rows:
        if len(r) == 5:
            print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:,} | {r[4]} | | | | | |")
            continue
        label, dtype, impl, edges, errs, t_fwd, t_fb, peak, saved = r
        ref = base.get((label, dtype))
        speed = f"{ref[5] / t_fwd:.1f}x / {ref[6] / t_fb:.1f}x" if ref and impl != "index_add_" else ""
        print(f"| {label} | {dtype} | {impl} | {edges:,} | {' / '.join(f'{e:.1e}' for e in errs)} | {t_fwd:.3f} "
              f"| {t_fb:.3f} | {peak:,.1f} | {saved:,.1f} | {speed} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(smoke="--smoke" in sys.argv[1:]))
