"""Linear cross-entropy on one GPU: Triton vs the naive logits (eager and torch.compile) vs the chunked PyTorch
reference (run by benchmarks/gpu/linear_cross_entropy.sh).

N = 4096 positions, V = 100k and 1M classes (a large vocabulary; a recommender's item catalogue), d = 64 (SASRec-size
item embeddings) and 512, bf16 inputs. First the agreement of Triton with the chunked reference computed in fp32 on
the same bf16 inputs (loss, dh, dW), then per implementation: forward without gradients and forward+backward (both
gradients) in ms (triton.testing.do_bench, launch overhead included) and the peak CUDA memory above the inputs
(torch.cuda.max_memory_allocated). The naive form `F.cross_entropy((h @ W.T).float(), y)` materialises the [N, V]
logits (8 GiB in bf16 plus 16 GiB in fp32 at V = 1M); where it runs out of memory the row says so. Prints a markdown
table with the device.

torch.compile compiles the naive form once per shape and gradient mode; rows whose compile would start after
`COMPILE_BUDGET_S` seconds are reported as skipped. `--smoke` runs the same code on the CPU under TRITON_INTERPRET=1
at a toy size (no torch.compile), to check the script itself where there is no GPU; its timings mean nothing.
"""

from __future__ import annotations

import sys
import time
import traceback

import torch
import torch.nn.functional as F

from _bench_common import cpu_bench, rel_err

N = 4096
VOCABS = (100_000, 1_000_000)
DIMS = (64, 512)
DTYPE = torch.bfloat16
COMPILE_BUDGET_S = 150.0
IMPLS = ("triton", "naive", "compile", "chunked")


def make_inputs(n, v, d, dev, seed=0):
    """hidden (logits of a few units), weight, labels with every 7th row ignored (-100)."""
    g = torch.Generator(device=dev).manual_seed(seed)
    h = torch.randn(n, d, device=dev, generator=g) * (3.0 / d**0.5)
    w = torch.randn(v, d, device=dev, generator=g)
    y = torch.randint(0, v, (n,), device=dev, generator=g)
    y[::7] = -100
    return h.to(DTYPE), w.to(DTYPE), y


def naive(h, w, y):
    return F.cross_entropy((h @ w.T).float(), y, ignore_index=-100)


def main(smoke: bool = False) -> int:
    global N, VOCABS, DIMS
    if smoke:
        import os

        if os.environ.get("TRITON_INTERPRET") != "1":
            print("--smoke needs TRITON_INTERPRET=1")
            return 1
        N, VOCABS, DIMS = 33, (130,), (24, 64)
        dev, do_bench = "cpu", cpu_bench
    elif not torch.cuda.is_available():
        print("no CUDA device: nothing to benchmark")
        return 1
    else:
        from triton.testing import do_bench

        dev = "cuda"
    import triton

    from paperzoo.kernels.linear_cross_entropy import linear_cross_entropy
    from paperzoo.kernels.linear_cross_entropy.reference import linear_cross_entropy_reference

    t_start = time.perf_counter()
    compiled = {}

    def compiled_fn(grad):
        if grad not in compiled:
            if time.perf_counter() - t_start > COMPILE_BUDGET_S:
                return None
            compiled[grad] = torch.compile(naive, dynamic=False)
        return compiled[grad]

    fns = {
        "triton": lambda h, w, y: linear_cross_entropy(h, w, y, backend="triton"),
        "naive": naive,
        "chunked": lambda h, w, y: linear_cross_entropy_reference(h, w, y),
    }

    # agreement with the chunked reference (fp32 on the same bf16 inputs) before timing
    for v in VOCABS:
        for d in DIMS:
            try:
                h, w, y = make_inputs(N, v, d, dev)
                leaves = [t.detach().requires_grad_() for t in (h, w)]
                loss = fns["triton"](*leaves, y)
                grads = torch.autograd.grad(loss, leaves)
                ref_leaves = [t.detach().float().requires_grad_() for t in (h, w)]
                ref = linear_cross_entropy_reference(*ref_leaves, y)
                ref_grads = torch.autograd.grad(ref, ref_leaves)
                errs = [abs(loss.item() - ref.item()) / abs(ref.item())] + [
                    rel_err(a, b) for a, b in zip(grads, ref_grads)]  # fmt: skip
                print(f"N={N} V={v} d={d} bf16: relative error vs the fp32 chunked reference (loss, dh, dW) "
                      + " ".join(f"{e:.1e}" for e in errs) + f"; loss {loss.item():.4f}")  # fmt: skip
                del leaves, loss, grads, ref_leaves, ref, ref_grads
            except Exception:  # noqa: BLE001
                print(f"V={v} d={d}: agreement check failed\n{traceback.format_exc()}")
            if dev == "cuda":
                torch.cuda.empty_cache()

    def peak_mib(fn):
        """Peak CUDA memory above what was allocated before `fn` (MiB); nan off CUDA."""
        if dev != "cuda":
            return float("nan")
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20

    def measure(impl, v, d):
        """(fwd ms, fwd+bwd ms, fwd+bwd peak MiB) or a reason string."""
        h, w, y = make_inputs(N, v, d, dev)
        if impl == "compile":
            f_fwd, f_bwd = compiled_fn(False), compiled_fn(True)
            if f_fwd is None or f_bwd is None:
                return "skipped (compile time budget)"
        else:
            f_fwd = f_bwd = fns[impl]
        with torch.no_grad():
            t_fwd = do_bench(lambda: f_fwd(h, w, y), warmup=3, rep=20)
        leaves = [t.detach().requires_grad_() for t in (h, w)]

        def step():
            f_bwd(*leaves, y).backward()

        t_fb = do_bench(step, warmup=3, rep=20, grad_to_none=leaves)
        for t in leaves:
            t.grad = None
        return t_fwd, t_fb, peak_mib(step)

    rows = []
    for v in VOCABS:
        for d in DIMS:
            for impl in IMPLS:
                if impl == "compile" and smoke:
                    continue
                label = (impl, v, d)
                try:
                    rows.append((*label, measure(impl, v, d)))
                except torch.cuda.OutOfMemoryError:
                    rows.append((*label, "out of memory"))
                except Exception:  # noqa: BLE001
                    print(f"{label}: failed\n{traceback.format_exc()}")
                    rows.append((*label, "failed"))
                if dev == "cuda":
                    torch.cuda.empty_cache()

    print()
    device_name = torch.cuda.get_device_name() if dev == "cuda" else "CPU (interpreter, --smoke: timings mean nothing)"
    print(f"device: {device_name} | torch {torch.__version__} | triton {triton.__version__} | "
          f"total {time.perf_counter() - t_start:.0f} s")  # fmt: skip
    print(f"loss = cross-entropy of hidden @ weight.T over V classes, N = {N}, bf16 inputs, 1/7 of the labels -100; "
          "forward without grad, forward+backward both gradients; peak = CUDA memory above the inputs")
    print()
    print("| impl | V | d | fwd ms | fwd+bwd ms | fwd+bwd peak MiB | fwd / fwd+bwd speedup vs naive |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    base = {r[1:3]: r[3] for r in rows if r[0] == "naive" and isinstance(r[3], tuple)}
    for impl, v, d, res in rows:
        if not isinstance(res, tuple):
            print(f"| {impl} | {v:,} | {d} | {res} | | | |")
            continue
        t_fwd, t_fb, peak = res
        ref = base.get((v, d))
        speed = f"{ref[0] / t_fwd:.1f}x / {ref[1] / t_fb:.1f}x" if ref and impl != "naive" else ""
        print(f"| {impl} | {v:,} | {d} | {t_fwd:.2f} | {t_fb:.2f} | {peak:,.0f} | {speed} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(smoke="--smoke" in sys.argv[1:]))
