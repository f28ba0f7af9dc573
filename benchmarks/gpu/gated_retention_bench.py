"""Gated retention forward / forward+backward timings on one GPU (run by benchmarks/gpu/gated_retention.sh).

Shapes: B=4, T=4096 in bf16, chunk 64, at H=8, K=128, V=256 (retention's benchmark shape) and YOCO-like H=4,
K=V=256; the gate is YOCO's g = logsigmoid(x) / 16 in fp32 and needs a gradient, q is pre-scaled by K^-0.5.
Implementations: paperzoo's Triton kernels, the PyTorch reference chunkwise form, and flash-linear-attention's
`chunk_simple_gla` / `fused_recurrent_simple_gla` when importable: [B, T, H, ·] layout, g [B, T, H] the log decay
(S_t = exp(g_t) S_{t-1} + k_tᵀ v_t, as here), scale=1.0 so that all compute the same function. Prints agreement with
the reference, markdown tables (ms, speedup over the reference) and the device; a one-token decoding step as well.
"""

from __future__ import annotations

import inspect
import math
import sys
import traceback

import torch
import torch.nn.functional as F

B, T, C = 4, 4096, 64
SHAPES = ((8, 128, 256), (4, 256, 256))  # (H, K, V)
DTYPE = torch.bfloat16
DEVICE = "cuda"  # a CPU smoke run of the code paths: DEVICE = "cpu" with TRITON_INTERPRET=1 and small B, T


def fla_ops() -> tuple[dict, str]:
    """fla's simple GLA ops as fn(q, k, v, g, state, output_final_state) -> (o, final state), and a version note."""
    try:
        import fla
        from fla.ops.simple_gla import chunk_simple_gla, fused_recurrent_simple_gla
    except Exception as exc:  # noqa: BLE001
        return {}, f"fla not available ({type(exc).__name__}: {exc})"
    ops = {}
    for name, op in (
        ("fla chunk_simple_gla", chunk_simple_gla),
        ("fla fused_recurrent_simple_gla", fused_recurrent_simple_gla),
    ):
        # older releases take head_first (True by default in some); newer ones reject it: pass it only where declared
        extra = {"head_first": False} if "head_first" in inspect.signature(op).parameters else {}
        ops[name] = lambda q, k, v, g, s, final, op=op, extra=extra: op(
            q, k, v, g, scale=1.0, initial_state=s, output_final_state=final, **extra
        )  # fmt: skip
    return ops, f"fla {getattr(fla, '__version__', '?')}"


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


def bench_shape(H: int, K: int, V: int, fla: dict, do_bench) -> tuple[list, list]:
    from paperzoo.kernels.gated_retention import gated_retention
    from paperzoo.kernels.gated_retention.reference import gated_retention_chunkwise, gated_retention_recurrent

    dev = DEVICE
    torch.manual_seed(0)
    q = (torch.randn(B, T, H, K, device=dev) * K**-0.5).to(DTYPE).requires_grad_()  # [B, T, H, K]
    k = (torch.randn(B, T, H, K, device=dev) * K**-0.5).to(DTYPE).requires_grad_()
    v = torch.randn(B, T, H, V, device=dev).to(DTYPE).requires_grad_()  # [B, T, H, V]
    g = (F.logsigmoid(torch.randn(B, T, H, device=dev)) / 16).requires_grad_()  # [B, T, H] fp32
    do = torch.randn(B, T, H, V, device=dev).to(DTYPE)

    impls = {
        "paperzoo triton": lambda *a: gated_retention(*a, chunk_size=C, backend="triton"),
        "pytorch reference (chunkwise)": lambda *a: gated_retention_chunkwise(*a, chunk_size=C),
        **fla,
    }

    def out(fn):
        return lambda: fn(q, k, v, g, None, False)[0]

    # agreement with the reference before timing: o, and the gradients (dg included) for paperzoo
    grads = {}
    for name in ("pytorch reference (chunkwise)", "paperzoo triton"):
        out(impls[name])().backward(do)
        grads[name] = [x.grad.clone() for x in (q, k, v, g)]
        for x in (q, k, v, g):
            x.grad = None
    with torch.no_grad():
        ref = out(impls["pytorch reference (chunkwise)"])()
        for name, fn in impls.items():
            try:
                print(f"H={H} K={K} V={V} {name}: relative L2 error of o vs reference {rel(out(fn)(), ref):.2e}")
            except Exception:  # noqa: BLE001
                print(f"{name}: forward failed\n{traceback.format_exc()}")
    pairs = zip("qkvg", grads["paperzoo triton"], grads["pytorch reference (chunkwise)"])
    errs = ", ".join(f"d{n} {rel(a, b):.2e}" for n, a, b in pairs)
    print(f"H={H} K={K} V={V} paperzoo triton: relative L2 error of the gradients vs reference: {errs}")

    def fwd_bwd(fn):
        def run():
            out(fn)().backward(do)

        return run

    rows = []
    for name, fn in impls.items():
        try:
            with torch.no_grad():
                t_fwd = do_bench(out(fn), warmup=25, rep=100)
            t_fb = do_bench(fwd_bwd(fn), warmup=25, rep=200, grad_to_none=[q, k, v, g])
            rows.append((name, t_fwd, t_fb))
        except Exception:  # noqa: BLE001
            print(f"{name}: timing failed\n{traceback.format_exc()}")
            rows.append((name, math.nan, math.nan))
        torch.cuda.empty_cache()

    # decoding: one token from a state
    dec_rows = []
    s0 = torch.randn(B, H, K, V, device=dev)  # [B, H, K, V] fp32
    q1, k1, v1, g1 = (x[:, :1].detach() for x in (q, k, v, g))
    steps = {
        "paperzoo triton step": lambda: gated_retention(q1, k1, v1, g1, s0, True, backend="triton"),
        "pytorch reference (recurrent)": lambda: gated_retention_recurrent(q1, k1, v1, g1, s0, True),
    }
    if "fla fused_recurrent_simple_gla" in fla:
        fla_step = fla["fla fused_recurrent_simple_gla"]
        steps["fla fused_recurrent_simple_gla"] = lambda: fla_step(q1, k1, v1, g1, s0, True)
    with torch.no_grad():
        for name, fn in steps.items():
            try:
                dec_rows.append((name, do_bench(fn, warmup=25, rep=100)))
            except Exception:  # noqa: BLE001
                print(f"{name}: decoding timing failed\n{traceback.format_exc()}")
    return rows, dec_rows


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to benchmark")
        return 1
    import triton
    from triton.testing import do_bench

    fla, fla_note = fla_ops()
    results = []
    for H, K, V in SHAPES:
        try:
            results.append(((H, K, V), *bench_shape(H, K, V, fla, do_bench)))
        except Exception:  # noqa: BLE001
            print(f"H={H} K={K} V={V}: failed\n{traceback.format_exc()}")
        torch.cuda.empty_cache()

    print()
    device = torch.cuda.get_device_name()
    print(f"device: {device} | torch {torch.__version__} | triton {triton.__version__} | {fla_note}")
    for (H, K, V), rows, dec_rows in results:
        ref_fwd, ref_fb = next(((f, fb) for n, f, fb in rows if n.startswith("pytorch")), (math.nan, math.nan))
        print()
        print(f"gated retention B={B} T={T} H={H} K={K} V={V} bf16 (g fp32, with grad), chunk {C}, no initial state")
        print()
        print("| implementation | forward ms | speedup | forward+backward ms | speedup |")
        print("|---|---:|---:|---:|---:|")
        for name, t_fwd, t_fb in rows:
            print(f"| {name} | {t_fwd:.3f} | {ref_fwd / t_fwd:.1f}x | {t_fb:.3f} | {ref_fb / t_fb:.1f}x |")
        print()
        print(f"| decoding step (T=1, B={B}, H={H}, K={K}, V={V}) | ms |")
        print("|---|---:|")
        for name, t in dec_rows:
            print(f"| {name} | {t:.4f} |")
    return 0 if len(results) == len(SHAPES) else 1


if __name__ == "__main__":
    sys.exit(main())
