"""Retention forward / forward+backward timings on one GPU (run by benchmarks/gpu/retention.sh).

Shape B=4, T=4096, H=8, K=128, V=256, bf16, chunk 64, RetNet's decays γ_h = 1 - 2^(-5-h) (those flash-linear-
attention's `chunk_retention` hard-codes), q pre-scaled by K^-0.5 (fla gets scale=1.0, so all three compute the same
function). Implementations: paperzoo's Triton kernel, the PyTorch reference chunkwise form, and fla when importable.
Prints a markdown table (ms, speedup over the reference) and the device.
"""

from __future__ import annotations

import inspect
import math
import sys
import traceback

import torch

B, T, H, K, V, C = 4, 4096, 8, 128, 256, 64
DTYPE = torch.bfloat16


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to benchmark")
        return 1
    import triton
    from triton.testing import do_bench

    from paperzoo.kernels.retention import retention
    from paperzoo.kernels.retention.reference import retention_chunkwise

    dev = "cuda"
    torch.manual_seed(0)
    q = (torch.randn(B, T, H, K, device=dev) * K**-0.5).to(DTYPE).requires_grad_()
    k = (torch.randn(B, T, H, K, device=dev) * K**-0.5).to(DTYPE).requires_grad_()
    v = torch.randn(B, T, H, V, device=dev).to(DTYPE).requires_grad_()
    log_decay = torch.log1p(-torch.pow(2.0, -5.0 - torch.arange(H, dtype=torch.float64))).float().to(dev)
    do = torch.randn(B, T, H, V, device=dev).to(DTYPE)

    impls = {
        "paperzoo triton": lambda: retention(q, k, v, log_decay, None, False, chunk_size=C, backend="triton")[0],
        "pytorch reference (chunkwise)": lambda: retention_chunkwise(q, k, v, log_decay, None, False, chunk_size=C)[0],
    }
    fla_note = ""
    try:
        from fla.ops.retention import chunk_retention

        params = inspect.signature(chunk_retention).parameters
        extra = {"head_first": False} if "head_first" in params else {}  # [B, T, H, K] layout
        impls["fla chunk_retention"] = lambda: chunk_retention(q, k, v, scale=1.0, **extra)[0]
        try:
            import fla

            fla_note = f"fla {getattr(fla, '__version__', '?')}"
        except Exception:  # noqa: BLE001
            pass
    except Exception as exc:  # noqa: BLE001
        fla_note = f"fla not available ({type(exc).__name__}: {exc})"

    # agreement with the reference before timing
    with torch.no_grad():
        ref = impls["pytorch reference (chunkwise)"]().float()
        for name, fn in impls.items():
            try:
                out = fn().float()
                err = ((out - ref).norm() / ref.norm()).item()
                print(f"{name}: relative L2 error vs reference {err:.2e}")
            except Exception:  # noqa: BLE001
                print(f"{name}: forward failed\n{traceback.format_exc()}")

    def fwd_bwd(fn):
        def run():
            fn().backward(do)

        return run

    rows = []
    for name, fn in impls.items():
        try:
            with torch.no_grad():
                t_fwd = do_bench(fn, warmup=25, rep=100)
            t_fb = do_bench(fwd_bwd(fn), warmup=25, rep=200, grad_to_none=[q, k, v])
            rows.append((name, t_fwd, t_fb))
        except Exception:  # noqa: BLE001
            print(f"{name}: timing failed\n{traceback.format_exc()}")
            rows.append((name, math.nan, math.nan))
        torch.cuda.empty_cache()

    # decoding: one token with a state
    dec_rows = []
    try:
        from paperzoo.kernels.retention.reference import retention_recurrent

        s0 = torch.randn(B, H, K, V, device=dev)
        q1, k1, v1 = (x[:, :1].detach() for x in (q, k, v))
        with torch.no_grad():
            step = lambda: retention(q1, k1, v1, log_decay, s0, True, backend="triton")  # noqa: E731
            dec_rows.append(("paperzoo triton step", do_bench(step, warmup=25, rep=100)))
            rec = lambda: retention_recurrent(q1, k1, v1, log_decay, s0, True)  # noqa: E731
            dec_rows.append(("pytorch reference (recurrent)", do_bench(rec, warmup=25, rep=100)))
    except Exception:  # noqa: BLE001
        print(f"decoding timing failed\n{traceback.format_exc()}")

    ref_fwd, ref_fb = next(((f, fb) for n, f, fb in rows if n.startswith("pytorch")), (math.nan, math.nan))
    print()
    print(f"device: {torch.cuda.get_device_name()} | torch {torch.__version__} | triton {triton.__version__}"
          f"{' | ' + fla_note if fla_note else ''}")
    print(f"retention B={B} T={T} H={H} K={K} V={V} {str(DTYPE).replace('torch.', '')}, chunk {C}, no initial state")
    print()
    print("| implementation | forward ms | speedup | forward+backward ms | speedup |")
    print("|---|---:|---:|---:|---:|")
    for name, t_fwd, t_fb in rows:
        print(f"| {name} | {t_fwd:.3f} | {ref_fwd / t_fwd:.1f}x | {t_fb:.3f} | {ref_fb / t_fb:.1f}x |")
    if dec_rows:
        print()
        print(f"| decoding step (T=1, B={B}, H={H}) | ms |")
        print("|---|---:|")
        for name, t in dec_rows:
            print(f"| {name} | {t:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
