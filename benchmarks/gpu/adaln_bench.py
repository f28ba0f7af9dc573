"""LatentLM diffusion-head modulation on one GPU: Triton vs the eager PyTorch reference vs torch.compile of the
reference (run by benchmarks/gpu/adaln.sh).

Rows N = 256 latents x 4 noise copies x 2 CFG halves = 2048 (one denoising step of a 256-image batch; the head runs
20-250 such steps per latent) and 4096 x 4 = 16384 (training, batch_mul 4); hidden D in 768, 1024, 1536 (LatentLM
B / L / Large); bf16 and fp32. First the agreement of Triton with the float64 reference (forward and every gradient),
then per op: forward without gradients (the sampling path) and forward+backward, in µs (triton.testing.do_bench:
launch overhead included), the forward also inside a CUDA graph (kernel time only), and the forward's effective
bandwidth (bytes read + written / time). Prints a markdown table with the device.

torch.compile compiles once per op, dtype and gradient mode (dynamic shapes); rows whose compile would start after
`COMPILE_BUDGET_S` seconds are reported as skipped. `--smoke` runs the same code on the CPU under TRITON_INTERPRET=1
at a toy size (no torch.compile, no CUDA graphs), to check the script itself where there is no GPU; its timings mean
nothing.
"""

from __future__ import annotations

import math
import os
import sys
import time
import traceback

import torch

from _bench_common import cpu_bench, rel_err

ROWS = (256 * 4 * 2, 4096 * 4)
DIMS = (768, 1024, 1536)
DTYPES = (torch.bfloat16, torch.float32)
EPS = 1e-6
COMPILE_BUDGET_S = 150.0
IMPLS = ("triton", "eager", "compile")


def make_inputs(n, d, dtype, dev, seed=0):
    """x with varied row RMS, shift / scale / gate of adaLN size, y (a SwiGLU output stand-in), upstream gradient."""
    g = torch.Generator(device=dev).manual_seed(seed)
    x = torch.randn(n, d, device=dev, generator=g) * (0.5 + 2 * torch.rand(n, 1, device=dev, generator=g))
    mod = 0.3 * torch.randn(n, 3 * d, device=dev, generator=g)  # one Linear output, chunked as the model does
    y = torch.randn(n, d, device=dev, generator=g)
    gy = torch.randn(n, d, device=dev, generator=g)
    return x.to(dtype), mod.to(dtype), y.to(dtype), gy.to(dtype)


def main(smoke: bool = False) -> int:
    global ROWS, DIMS
    if smoke:
        if os.environ.get("TRITON_INTERPRET") != "1":
            print("--smoke needs TRITON_INTERPRET=1")
            return 1
        ROWS, DIMS = (8,), (24, 64)
        dev, do_bench = "cpu", cpu_bench
    elif not torch.cuda.is_available():
        print("no CUDA device: nothing to benchmark")
        return 1
    else:
        from triton.testing import do_bench

        dev = "cuda"
    import triton

    from paperzoo.kernels.adaln import adaln_modulate, gated_residual
    from paperzoo.kernels.adaln.reference import (
        adaln_modulate_reference,
        gated_residual_reference,
    )

    t_start = time.perf_counter()
    compiled = {}

    def compiled_fn(name, ref, grad, dtype):
        key = (name, grad, dtype)
        if key not in compiled:
            if time.perf_counter() - t_start > COMPILE_BUDGET_S:
                return None
            compiled[key] = torch.compile(ref, dynamic=True)
        return compiled[key]

    ops = {
        "adaln_modulate": (
            lambda x, b, s: adaln_modulate(x, b, s, EPS, backend="triton"),
            lambda x, b, s: adaln_modulate_reference(x, b, s, EPS),
        ),
        "gated_residual": (lambda r, g, y: gated_residual(r, g, y, backend="triton"), gated_residual_reference),
    }

    def op_inputs(name, x, mod, y):
        shift, scale, gate = mod.chunk(3, dim=-1)  # row stride 3D: read in place by the kernels
        return (x, shift, scale) if name == "adaln_modulate" else (x, gate, y)

    # agreement with the float64 reference before timing
    for name, (tri, ref) in ops.items():
        for d, dtype in ((d, dt) for d in DIMS for dt in DTYPES):
            try:
                x, mod, y, gy = make_inputs(ROWS[0], d, dtype, dev)
                args = [t.detach().requires_grad_() for t in op_inputs(name, x, mod, y)]
                out = tri(*args)
                grads = torch.autograd.grad(out, args, gy)
                args64 = [t.detach().double().requires_grad_() for t in args]
                out64 = ref(*args64)
                grads64 = torch.autograd.grad(out64, args64, gy.double())
                errs = [rel_err(out, out64)] + [rel_err(a, b) for a, b in zip(grads, grads64)]
                dt = str(dtype).replace("torch.", "")
                print(f"{name} N={ROWS[0]} D={d} {dt}: relative L2 error vs float64 (out, grads) "
                      + " ".join(f"{e:.1e}" for e in errs))  # fmt: skip
            except Exception:  # noqa: BLE001
                print(f"{name} D={d} {dtype}: agreement check failed\n{traceback.format_exc()}")

    def graph_us(fn):
        """The forward inside a CUDA graph (kernel time, no launch overhead), µs; nan where unavailable."""
        if dev != "cuda":
            return math.nan
        from triton.testing import do_bench_cudagraph

        try:
            with torch.no_grad():
                fn()
                return do_bench_cudagraph(fn, rep=20) * 1e3
        except Exception as exc:  # noqa: BLE001
            print(f"CUDA graph timing failed: {type(exc).__name__}: {exc}")
            return math.nan

    def measure(name, impl, n, d, dtype):
        """(forward µs, forward µs in a CUDA graph, forward+backward µs, forward GB/s) or a reason string."""
        tri, ref = ops[name]
        x, mod, y, gy = make_inputs(n, d, dtype, dev)
        args = op_inputs(name, x, mod, y)
        if impl == "triton":
            f_fwd = f_bwd = tri
        elif impl == "eager":
            f_fwd = f_bwd = ref
        else:
            f_fwd, f_bwd = compiled_fn(name, ref, False, dtype), compiled_fn(name, ref, True, dtype)
            if f_fwd is None or f_bwd is None:
                return "skipped (compile time budget)"
        with torch.no_grad():
            t_fwd = do_bench(lambda: f_fwd(*args), warmup=5, rep=30) * 1e3
        t_graph = graph_us(lambda: f_fwd(*args))
        leaves = [t.detach().requires_grad_() for t in args]
        t_fb = do_bench(lambda: f_bwd(*leaves).backward(gy), warmup=5, rep=30, grad_to_none=leaves) * 1e3
        bytes_fwd = 4 * n * d * x.element_size()  # three inputs read, one output written
        return t_fwd, t_graph, t_fb, bytes_fwd / (t_fwd * 1e-6) / 1e9

    rows = []
    for name in ops:
        for n in ROWS:
            for d in DIMS:
                for dtype in DTYPES:
                    for impl in IMPLS:
                        if impl == "compile" and smoke:
                            continue
                        label = (name, impl, n, d, str(dtype).replace("torch.", ""))
                        try:
                            rows.append((*label, measure(name, impl, n, d, dtype)))
                        except Exception:  # noqa: BLE001
                            print(f"{label}: failed\n{traceback.format_exc()}")
                            rows.append((*label, "failed"))
                        if dev == "cuda":
                            torch.cuda.empty_cache()

    print()
    device_name = torch.cuda.get_device_name() if dev == "cuda" else "CPU (interpreter, --smoke: timings mean nothing)"
    print(f"device: {device_name} | torch {torch.__version__} | triton {triton.__version__} | "
          f"total {time.perf_counter() - t_start:.0f} s")  # fmt: skip
    print("LatentLM diffusion head: adaln_modulate y = RMSNorm(x)(1 + scale) + shift (shift / scale chunks of one "
          "[N, 3D] Linear output), gated_residual x + gate * y; forward without grad, forward+backward all grads")
    print()
    print("| op | impl | N | D | dtype | fwd µs | fwd µs (CUDA graph) | fwd+bwd µs | fwd GB/s | fwd / fwd+bwd speedup "
          "vs eager |")  # fmt: skip
    print("|---|---|---:|---:|---|---:|---:|---:|---:|---:|")
    eager = {r[:1] + r[2:5]: r[5] for r in rows if r[1] == "eager" and isinstance(r[5], tuple)}
    for name, impl, n, d, dt, res in rows:
        if not isinstance(res, tuple):
            print(f"| {name} | {impl} | {n} | {d} | {dt} | {res} | | | | |")
            continue
        t_fwd, t_graph, t_fb, gbs = res
        base = eager.get((name, n, d, dt))
        speed = f"{base[0] / t_fwd:.1f}x / {base[2] / t_fb:.1f}x" if base and impl != "eager" else ""
        graph = "" if math.isnan(t_graph) else f"{t_graph:.1f}"
        print(f"| {name} | {impl} | {n} | {d} | {dt} | {t_fwd:.1f} | {graph} | {t_fb:.1f} | {gbs:.0f} | {speed} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(smoke="--smoke" in sys.argv[1:]))
