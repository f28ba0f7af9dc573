"""Where the kernel tests can run Triton: CUDA, or Triton's CPU interpreter (TRITON_INTERPRET=1, set by
tests/conftest.py on machines without a GPU)."""

import importlib
import os

import pytest
import torch

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
HAS_CUDA = torch.cuda.is_available()
DEVICE = "cpu" if INTERPRET else "cuda" if HAS_CUDA else None


def triton_module(name: str):
    """The op's `triton` module, or None when triton is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def needs_triton(module):
    return pytest.mark.skipif(
        module is None or DEVICE is None,
        reason="Triton kernels need triton and either TRITON_INTERPRET=1 (CPU interpreter) or CUDA",
    )


def poison_outputs(monkeypatch, module) -> list:
    """Make every output the op's Triton module allocates (through its `_empty`) NaN-filled, so a tile the kernel
    never writes shows up; returns the list of allocated shapes (a test asserts it is not empty)."""
    calls = []

    def nan_empty(shape, dtype, device):
        calls.append(tuple(shape))
        return torch.full(shape, float("nan"), dtype=dtype, device=device)

    monkeypatch.setattr(module, "_empty", nan_empty)
    return calls


def assert_close(got, ref, tol, name=""):
    """Max abs error within `tol` times the reference's scale (at least 1); NaN (an unwritten tile) fails."""
    got, ref = got.double(), ref.double().to(got.device)
    assert torch.isfinite(got).all(), f"{name}: non-finite values (unwritten tile?)"
    scale = max(1.0, ref.abs().max().item())
    err = (got - ref).abs().max().item()
    assert err <= tol * scale, f"{name}: max abs error {err:.3e} > {tol:.1e} * {scale:.3g}"


def rel_err(got, ref):
    got, ref = got.float(), ref.float()
    return ((got - ref).norm() / ref.norm().clamp_min(1e-12)).item()


def forward_backward(fn, x, decay: str, decay_grad: bool, with_state=True, final=True, dtype=None):
    """Run `fn` (a form of a linear-attention op: fn(q, k, v, decay, state, output_final_state)) on leaf copies of
    x; returns the outputs and the grads of q, k, v (of the decay x[decay] too when `decay_grad`), and of the state.
    The decay and the state are fp32, or float64 when dtype is float64; the loss weights o by x["do"] and the final
    state by x["dstate"]."""
    dtype = dtype or x["q"].dtype
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    q, k, v = (x[n].to(dtype).detach().requires_grad_() for n in ("q", "k", "v"))
    g = x[decay].to(acc).detach().requires_grad_(decay_grad)
    state = x["state"].to(acc).detach().requires_grad_()
    o, ht = fn(q, k, v, g, state if with_state else None, final)
    loss = (o.double() * x["do"]).sum()
    if final:
        loss = loss + (ht.double() * x["dstate"]).sum()
    loss.backward()
    out = {"o": o.detach(), "dq": q.grad, "dk": k.grad, "dv": v.grad}
    if decay_grad:
        out["dg"] = g.grad
    if final:
        out["ht"] = ht.detach()
    if with_state:
        out["dstate"] = state.grad
    return out
