"""RRL logical layers on one GPU: Triton vs the PyTorch reference (run by benchmarks/gpu/logical.sh).

Shape: batch 4096, 1024 inputs, 1024 nodes, the official initialisation W ~ U(0, 0.5) and binary-ish inputs.
For nlaf and product: forward (no grad) and forward+backward (gradients of x and W) times, and the peak memory of
forward+backward. The reference product materialises [B, n_in, n_out] tensors (17 GB each in fp32 at batch 4096):
where it runs out of memory the row says OOM, and both implementations are also timed at batch 512. binarized:
forward only. Prints a markdown table with the device.

`--smoke` runs the same code path on the CPU under TRITON_INTERPRET=1 at a toy size (B=64, 32 -> 32), to check the
script itself where there is no GPU; its timings mean nothing.
"""

from __future__ import annotations

import math
import os
import sys
import time
import traceback

import torch

B, N_IN, N_OUT = 4096, 1024, 1024
SMALL_B = 512


def _cpu_bench(fn, warmup=1, rep=None, grad_to_none=None):
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def main(smoke: bool = False) -> int:
    global B, N_IN, N_OUT, SMALL_B
    if smoke:
        if os.environ.get("TRITON_INTERPRET") != "1":
            print("--smoke needs TRITON_INTERPRET=1")
            return 1
        B, N_IN, N_OUT, SMALL_B = 64, 32, 32, 16
        dev, do_bench = "cpu", _cpu_bench
    elif not torch.cuda.is_available():
        print("no CUDA device: nothing to benchmark")
        return 1
    else:
        from triton.testing import do_bench

        dev = "cuda"
    import triton

    from paperzoo.kernels.logical import logical_binarized, logical_nlaf, logical_product
    from paperzoo.kernels.logical.reference import (
        logical_binarized_matmul,
        logical_nlaf_matmul,
        logical_product_materialized,
    )

    g = torch.Generator(device=dev).manual_seed(0)

    def reset_peak():
        if dev == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def peak_mb():
        if dev != "cuda":
            return math.nan
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20

    def empty_cache():
        if dev == "cuda":
            empty_cache()

    def inputs(batch, dtype):
        x = torch.rand(batch, N_IN, device=dev, generator=g)
        x = torch.where(x < 0.3, 0.0, torch.where(x > 0.7, 1.0, x))  # binary-ish, as after RRL's binarization layer
        w = 0.5 * torch.rand(N_IN, N_OUT, device=dev, generator=g)
        return x.to(dtype).requires_grad_(), w.to(dtype).requires_grad_()

    ops = {
        "nlaf": (
            lambda x, w: logical_nlaf(x, w, "conjunction", backend="triton"),
            lambda x, w: logical_nlaf_matmul(x, w, "conjunction"),
        ),
        "product": (
            lambda x, w: logical_product(x, w, "conjunction", backend="triton"),
            lambda x, w: logical_product_materialized(x, w, "conjunction"),
        ),
        "binarized": (
            lambda x, w: logical_binarized(x, w, "conjunction", backend="triton"),
            lambda x, w: logical_binarized_matmul(x, w, "conjunction"),
        ),
    }

    def measure(fn, x, w, backward):
        """(forward ms, forward+backward ms, peak MB of forward+backward) or raises (OOM included)."""
        gy = torch.randn(x.shape[0], N_OUT, device=dev, dtype=x.dtype)
        with torch.no_grad():
            t_fwd = do_bench(lambda: fn(x, w), warmup=5, rep=50)
        if not backward:
            reset_peak()
            with torch.no_grad():
                fn(x, w)
            return t_fwd, math.nan, peak_mb()

        def step():
            fn(x, w).backward(gy)

        t_fb = do_bench(step, warmup=5, rep=50, grad_to_none=[x, w])
        x.grad = w.grad = None
        reset_peak()
        step()
        peak = peak_mb()
        x.grad = w.grad = None
        return t_fwd, t_fb, peak

    # agreement with the reference before timing (product at the small batch: its reference is the big one)
    for name, (tri, ref) in ops.items():
        try:
            batch = SMALL_B if name == "product" else B
            x, w = inputs(batch, torch.float32)
            with torch.no_grad():
                a, b = tri(x, w).double(), ref(x, w).double()
            err = ((a - b).norm() / b.norm().clamp_min(1e-30)).item()
            print(f"{name}: relative L2 error triton vs reference (fp32, batch {batch}) {err:.2e}")
        except Exception:  # noqa: BLE001
            print(f"{name}: agreement check failed\n{traceback.format_exc()}")
        empty_cache()

    rows = []
    plan = [
        ("nlaf", torch.float32, B), ("nlaf", torch.bfloat16, B),
        ("product", torch.float32, B), ("product", torch.float32, SMALL_B), ("product", torch.bfloat16, B),
        ("binarized", torch.float32, B),
    ]  # fmt: skip
    for name, dtype, batch in plan:
        for impl, fn in zip(("triton", "pytorch reference"), ops[name]):
            label = (name, impl, batch, str(dtype).replace("torch.", ""))
            try:
                x, w = inputs(batch, dtype)
                rows.append((*label, *measure(fn, x, w, backward=name != "binarized")))
            except torch.cuda.OutOfMemoryError:
                rows.append((*label, "OOM"))
            except Exception:  # noqa: BLE001
                print(f"{label}: failed\n{traceback.format_exc()}")
                rows.append((*label, "failed"))
            x = w = None
            empty_cache()

    print()
    device_name = torch.cuda.get_device_name() if dev == "cuda" else "CPU (interpreter, --smoke: timings mean nothing)"
    print(f"device: {device_name} | torch {torch.__version__} | triton {triton.__version__} | "
          f"tf32 matmul {torch.backends.cuda.matmul.allow_tf32}")  # fmt: skip
    print(f"RRL logical layer, conjunction, {N_IN} inputs -> {N_OUT} nodes, W ~ U(0, 0.5); peak = max allocated "
          f"during one forward+backward (forward for binarized), inputs included")  # fmt: skip
    print()
    print("| op | implementation | batch | dtype | forward ms | forward+backward ms | peak MB | fwd+bwd speedup |")
    print("|---|---|---:|---|---:|---:|---:|---:|")
    ref_fb = {r[:1] + r[2:4]: r[5] for r in rows if r[1] != "triton" and len(r) == 7}
    ref_f = {r[:1] + r[2:4]: r[4] for r in rows if r[1] != "triton" and len(r) == 7}
    for r in rows:
        if len(r) != 7:
            print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[4]} | {r[4]} | |")
            continue
        name, impl, batch, dt, t_f, t_fb, peak = r
        key = (name, batch, dt)
        if name == "binarized":
            base, mine = ref_f.get(key, math.nan), t_f
        else:
            base, mine = ref_fb.get(key, math.nan), t_fb
        speed = f"{base / mine:.1f}x" if impl == "triton" and math.isfinite(base) else ""
        fb = "" if math.isnan(t_fb) else f"{t_fb:.3f}"
        print(f"| {name} | {impl} | {batch} | {dt} | {t_f:.3f} | {fb} | {peak:.0f} | {speed} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(smoke="--smoke" in sys.argv[1:]))
