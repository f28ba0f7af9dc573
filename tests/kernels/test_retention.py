"""Retention: reference forms agree (float64); Triton kernels match the reference forward and backward; dispatch.

The Triton tests run on CPU under TRITON_INTERPRET=1 (`make test` sets it) or on CUDA; with neither they skip.
Every kernel output buffer is allocated NaN-filled during these tests (`poison`), so an unwritten tile fails.
"""

from __future__ import annotations

import math
import types

import pytest
import torch

import paperzoo._env
from paperzoo.kernels import _registry as registry
from paperzoo.kernels import retention as retention_pkg
from paperzoo.kernels.retention import retention
from paperzoo.kernels.retention.reference import retention_chunkwise, retention_parallel, retention_recurrent

from .triton_support import DEVICE, assert_close, poison_outputs, rel_err, triton_module
from .triton_support import forward_backward as _forward_backward
from .triton_support import needs_triton as _needs_triton

rt = triton_module("paperzoo.kernels.retention.triton")
needs_triton = _needs_triton(rt)

# log γ per head: e^-3 (γ^-C overflows fp32: checks the masking of padded rows), 1 - 2^-20 (rounds to 1 in bf16:
# checks the fp32 decay math), 1 - 2^-5 (RetNet's first head)
LOG_DECAYS = (-3.0, math.log1p(-(2.0**-20)), math.log1p(-(2.0**-5)))


def make_inputs(B, T, H, K, V, seed=0, dtype=torch.float64, device="cpu", log_decay=None):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=g, dtype=torch.float64) * K**-0.5
    k = torch.randn(B, T, H, K, generator=g, dtype=torch.float64) * K**-0.5
    v = torch.randn(B, T, H, V, generator=g, dtype=torch.float64)
    state = torch.randn(B, H, K, V, generator=g, dtype=torch.float64) * 0.5
    if log_decay is None:
        log_decay = torch.tensor([LOG_DECAYS[h % len(LOG_DECAYS)] for h in range(H)], dtype=torch.float64)
    do = torch.randn(B, T, H, V, generator=g, dtype=torch.float64)
    dstate = torch.randn(B, H, K, V, generator=g, dtype=torch.float64)
    cast = lambda x: x.to(device=device, dtype=dtype)  # noqa: E731
    return dict(
        q=cast(q), k=cast(k), v=cast(v), state=state.to(device), log_decay=log_decay.float().to(device),
        do=do.to(device), dstate=dstate.to(device),
    )  # fmt: skip


def forward_backward(fn, x, **kwargs):
    """Outputs and grads of q, k, v (and state) of a retention form; the decay is a constant (no gradient)."""
    return _forward_backward(fn, x, "log_decay", False, **kwargs)


@pytest.fixture
def poison(monkeypatch):
    return poison_outputs(monkeypatch, rt)


# ---------------------------------------------------------------------------------------------------------------------
# (a) the reference forms agree with each other in float64
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("T", [1, 7, 63, 130])
@pytest.mark.parametrize("with_state", [False, True])
def test_reference_forms_agree(T, with_state):
    x = make_inputs(2, T, 3, 5, 7, seed=T)
    state = x["state"] if with_state else None
    args = (x["q"], x["k"], x["v"], x["log_decay"].double(), state, True)
    o_par, h_par = retention_parallel(*args)
    o_rec, h_rec = retention_recurrent(*args)
    assert o_par.dtype == torch.float64 and h_par.dtype == torch.float64
    assert_close(o_rec, o_par, 1e-12, "recurrent o")
    assert_close(h_rec, h_par, 1e-12, "recurrent state")
    for chunk in (1, 10, 16, 64):
        o_chk, h_chk = retention_chunkwise(*args, chunk_size=chunk)
        assert_close(o_chk, o_par, 1e-12, f"chunkwise(C={chunk}) o")
        assert_close(h_chk, h_par, 1e-12, f"chunkwise(C={chunk}) state")
    assert retention_parallel(*args[:-1], False)[1] is None
    assert retention_recurrent(*args[:-1], False)[1] is None
    assert retention_chunkwise(*args[:-1], False)[1] is None


def test_reference_state_carries_across_calls():
    """Running [0, 50) then [50, 130) from the carried state equals running [0, 130) at once."""
    x = make_inputs(1, 130, 2, 6, 9, seed=1)
    ld = x["log_decay"].double()
    o, h = retention_parallel(x["q"], x["k"], x["v"], ld, x["state"], True)
    o1, h1 = retention_chunkwise(x["q"][:, :50], x["k"][:, :50], x["v"][:, :50], ld, x["state"], True, chunk_size=16)
    o2, h2 = retention_recurrent(x["q"][:, 50:], x["k"][:, 50:], x["v"][:, 50:], ld, h1, True)
    assert_close(torch.cat([o1, o2], dim=1), o, 1e-12, "o")
    assert_close(h2, h, 1e-12, "state")


def test_reference_gradients_agree():
    x = make_inputs(1, 37, 2, 5, 6, seed=2)
    par = forward_backward(retention_parallel, x)
    rec = forward_backward(retention_recurrent, x)
    chk = forward_backward(lambda *a: retention_chunkwise(*a, chunk_size=8), x)
    for name in par:
        assert_close(rec[name], par[name], 1e-11, f"recurrent {name}")
        assert_close(chk[name], par[name], 1e-11, f"chunkwise {name}")


# ---------------------------------------------------------------------------------------------------------------------
# (b) Triton kernels vs the float64 reference (fp32 inputs: tight tolerances)
# ---------------------------------------------------------------------------------------------------------------------


def triton_form(chunk_size):
    return lambda q, k, v, ld, s, final: retention(q, k, v, ld, s, final, chunk_size=chunk_size, backend="triton")


@needs_triton
@pytest.mark.parametrize("chunk_size", [16, 64])
@pytest.mark.parametrize("T", [1, 7, 63, 130])
def test_triton_chunkwise_matches_reference(T, chunk_size, poison):
    x = make_inputs(2, T, 2, 24, 40, seed=T + chunk_size, dtype=torch.float32, device=DEVICE)
    got = forward_backward(triton_form(chunk_size), x)
    ref = forward_backward(retention_parallel, x, dtype=torch.float64)
    assert poison, "the kernels' outputs were not allocated through the poisoned allocator"
    assert got["o"].dtype == torch.float32 and got["ht"].dtype == torch.float32
    assert set(got) == {"o", "ht", "dq", "dk", "dv", "dstate"}
    for name in got:
        assert_close(got[name], ref[name], 2e-5, name)


@needs_triton
@pytest.mark.parametrize(
    "B, T, H, K, V, chunk_size, with_state, final",
    [
        (1, 63, 2, 24, 257, 16, True, True),  # V > 256: two V-parts in dq / dk (partial sums), several V-blocks
        (1, 37, 1, 72, 130, 16, True, True),  # several K-blocks and V-blocks, both with a partial last block
        (1, 20, 3, 5, 3, 16, True, True),  # K, V below the 16-wide tiles
        (2, 45, 2, 24, 40, 16, False, False),  # no initial state, no final state
        (1, 33, 2, 24, 40, 32, False, True),
        (1, 50, 1, 24, 40, 256, True, True),  # chunk_size above the 64 cap
        (1, 9, 2, 24, 40, 4, True, True),  # chunk_size below tl.dot's 16
    ],
)
def test_triton_chunkwise_shapes(B, T, H, K, V, chunk_size, with_state, final, poison):
    x = make_inputs(B, T, H, K, V, seed=K + V, dtype=torch.float32, device=DEVICE)
    got = forward_backward(triton_form(chunk_size), x, with_state=with_state, final=final)
    ref = forward_backward(retention_parallel, x, with_state=with_state, final=final, dtype=torch.float64)
    assert poison
    assert set(got) == set(ref)
    for name in got:
        assert_close(got[name], ref[name], 2e-5, name)


@needs_triton
@pytest.mark.parametrize("tiles", [(64, 16), (16, 32)])
def test_triton_backward_tile_differs_from_forward(tiles, poison, monkeypatch):
    """On CUDA the backward tiles with a smaller C than the forward (`_CUDA_MAX_C`); the result must not change."""
    monkeypatch.setattr(rt, "_tiles", lambda x, chunk_size: tiles)
    x = make_inputs(1, 100, 2, 24, 40, seed=11, dtype=torch.float32, device=DEVICE)
    got = forward_backward(triton_form(64), x)
    ref = forward_backward(retention_parallel, x, dtype=torch.float64)
    for name in got:
        assert_close(got[name], ref[name], 2e-5, name)


@pytest.mark.skipif(rt is None, reason="needs triton")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("K, V", [(24, 40), (128, 256), (256, 512), (64, 1024)])
def test_launch_configuration(K, V, dtype):
    """The CUDA tiles and the autotuning spaces stay within the register budget and never come out empty."""
    x = torch.empty(1, 1000, 1, K, dtype=dtype)
    assert rt._tiles(x, 64) == (64, 64) and rt._tiles(x, 4) == (16, 16) and rt._tiles(x[:, :20], 256) == (32, 32)
    on_cuda = types.SimpleNamespace(is_cuda=True, dtype=dtype, shape=x.shape)
    cap_fwd, cap_bwd = rt._CUDA_MAX_C[dtype]
    assert rt._tiles(on_cuda, 64) == (min(64, cap_fwd), min(64, cap_bwd)) and rt._tiles(on_cuda, 16) == (16, 16)
    mix = dtype == torch.bfloat16
    budget = 8192 if mix else 4096
    BK = rt._pow2(K)
    kw = dict(C=64, BK=BK, MIX_BF16=mix)
    fwd = rt._prune_fwd(rt._fwd_tuned.configs, {"V": V}, **kw)
    assert fwd and all(c.kwargs["BV"] <= max(16, rt._pow2(V)) for c in fwd)
    assert all(BK * c.kwargs["BV"] <= budget for c in fwd) or len(fwd) == 1
    BKF, BVB, BKB, BVP = rt._bwd_blocks(K, V, mix)
    assert BKF >= K and BKB <= BKF and min(BKB, BVB) >= 16 and 16 <= BVP <= 256 and BVB <= rt._pow2(V)
    assert (BVP >= V) == (V <= 256)  # V-parts (and dq / dk partial sums) only above 256
    assert BKF * BVB <= max(budget, 16 * BKF) and BKB * BVP <= budget
    assert rt._prune_bwd(rt._bwd_tuned.configs, {}, BKF=BKF, BVB=BVB, BKB=BKB, BVP=BVP)


@needs_triton
def test_triton_noncontiguous_inputs(poison):
    x = make_inputs(1, 40, 2, 24, 40, seed=5, dtype=torch.float32, device=DEVICE)
    q, k, v = (x[n].transpose(1, 2).contiguous().transpose(1, 2) for n in ("q", "k", "v"))  # [B, T, H, ·] views
    state = x["state"].float().transpose(-1, -2).contiguous().transpose(-1, -2)
    assert not q.is_contiguous() and not state.is_contiguous()
    o, h = retention(q, k, v, x["log_decay"], state, True, chunk_size=16, backend="triton")
    o_ref, h_ref = retention_parallel(q.double(), k.double(), v.double(), x["log_decay"].double(), x["state"], True)
    assert_close(o, o_ref, 2e-5, "o")
    assert_close(h, h_ref, 2e-5, "state")


@needs_triton
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_triton_half_precision(dtype, poison):
    x = make_inputs(1, 70, 2, 24, 40, seed=7, dtype=dtype, device=DEVICE)
    got = forward_backward(triton_form(16), x)
    # reference on the same rounded inputs, in float64
    ref = forward_backward(retention_parallel, {**x, **{n: x[n].double() for n in ("q", "k", "v")}})
    assert got["o"].dtype == dtype and got["dq"].dtype == dtype and got["ht"].dtype == torch.float32
    for name in got:
        assert_close(got[name], ref[name], 2e-2 if dtype == torch.bfloat16 else 3e-3, name)


@needs_triton
@pytest.mark.parametrize("with_state", [False, True])
def test_triton_decoding_step(with_state, poison, monkeypatch):
    """T == 1 without grad goes to the fused recurrent kernel; the caller's state is left as it was."""
    calls = []
    monkeypatch.setattr(
        retention_pkg, "retention_step_triton", lambda *a: calls.append(1) or rt.retention_step_triton(*a)
    )
    x = make_inputs(2, 1, 2, 24, 40, seed=3, dtype=torch.float32, device=DEVICE)
    state = x["state"].float() if with_state else None
    before = None if state is None else state.clone()
    with torch.no_grad():
        o, h = retention(x["q"], x["k"], x["v"], x["log_decay"], state, True, backend="triton")
    assert calls == [1]
    o_ref, h_ref = retention_recurrent(
        x["q"].double(), x["k"].double(), x["v"].double(), x["log_decay"].double(),
        None if state is None else x["state"], True,
    )  # fmt: skip
    assert_close(o, o_ref, 2e-6, "o")
    assert_close(h, h_ref, 2e-6, "state")
    if state is not None:
        assert torch.equal(state, before), "the step kernel modified the caller's state"


@needs_triton
def test_triton_step_several_tokens(poison):
    x = make_inputs(1, 5, 3, 7, 20, seed=4, dtype=torch.float32, device=DEVICE)
    o, h = rt.retention_step_triton(x["q"], x["k"], x["v"], x["log_decay"], x["state"].float(), True)
    o_ref, h_ref = retention_recurrent(
        x["q"].double(), x["k"].double(), x["v"].double(), x["log_decay"].double(), x["state"], True
    )
    assert_close(o, o_ref, 2e-6, "o")
    assert_close(h, h_ref, 2e-6, "state")
    assert rt.retention_step_triton(x["q"], x["k"], x["v"], x["log_decay"], None, False)[1] is None


# ---------------------------------------------------------------------------------------------------------------------
# (c) backend resolution and argument checks
# ---------------------------------------------------------------------------------------------------------------------


def small(T=5, dtype=torch.float32):
    x = make_inputs(1, T, 2, 4, 6, dtype=dtype)
    return x["q"], x["k"], x["v"], x["log_decay"]


def no_interpreter(monkeypatch):
    """Pretend TRITON_INTERPRET is unset, wherever the reader was imported (by module or by name)."""
    monkeypatch.setattr(paperzoo._env, "triton_interpret", lambda: False)
    for module in (registry, rt):
        if module is not None and hasattr(module, "triton_interpret"):
            monkeypatch.setattr(module, "triton_interpret", lambda: False)


def test_triton_backend_on_cpu_without_interpreter_raises(monkeypatch):
    no_interpreter(monkeypatch)
    with pytest.raises(RuntimeError, match="triton"):
        retention(*small(), backend="triton")


@pytest.mark.skipif(rt is None, reason="needs triton")
def test_triton_backend_rejects_float64():
    with pytest.raises(RuntimeError, match="float64"):
        retention(*small(dtype=torch.float64), backend="triton")


def test_reference_backend(monkeypatch):
    no_interpreter(monkeypatch)
    q, k, v, ld = small(T=9)
    for chunk_size in (4, 16):  # chunkwise and parallel forms
        o, h = retention(q, k, v, ld, None, True, chunk_size=chunk_size, backend="reference")
        o_ref, h_ref = retention_recurrent(q.double(), k.double(), v.double(), ld.double(), None, True)
        assert o.dtype == torch.float32
        assert_close(o, o_ref, 1e-5, "o")
        assert_close(h, h_ref, 1e-5, "state")


def test_invalid_backend_name():
    with pytest.raises(ValueError, match="kernel_backend"):
        retention(*small(), backend="cuda")


def test_invalid_shapes_name_the_shapes():
    q, k, v, ld = small()
    with pytest.raises(ValueError, match=r"\(1, 5, 2, 4\).*\(1, 4, 2, 4\)"):
        retention(q, k[:, :4], v, ld, backend="reference")
    with pytest.raises(ValueError, match=r"\(1, 5, 3, 6\)"):
        retention(q, k, torch.randn(1, 5, 3, 6), ld, backend="reference")
    with pytest.raises(ValueError, match=r"\(3,\)"):
        retention(q, k, v, torch.zeros(3), backend="reference")
    with pytest.raises(ValueError, match=r"\(1, 2, 4, 6\).*\(1, 2, 6, 4\)"):
        retention(q, k, v, ld, torch.zeros(1, 2, 6, 4), backend="reference")
    with pytest.raises(ValueError, match="chunk_size"):
        retention(q, k, v, ld, chunk_size=48, backend="reference")


# ---------------------------------------------------------------------------------------------------------------------
# (d) real sizes on a GPU, bf16/fp16 against the fp32 reference
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
class TestRetentionGPU:
    B, H, K, V = 2, 4, 128, 256

    def inputs(self, T, dtype, seed=0):
        # RetNet's decays: γ_h = 1 - 2^(-5-h)
        ld = torch.log1p(-torch.pow(2.0, -5.0 - torch.arange(self.H, dtype=torch.float64)))
        return make_inputs(self.B, T, self.H, self.K, self.V, seed=seed, dtype=dtype, device="cuda", log_decay=ld)

    @pytest.mark.parametrize(
        "dtype, T, chunk_size",
        [(torch.bfloat16, 2048, 64), (torch.bfloat16, 1000, 64), (torch.bfloat16, 2048, 32), (torch.float16, 1000, 64)],
    )
    def test_chunkwise_forward_backward(self, dtype, T, chunk_size, poison):
        x = self.inputs(T, dtype)
        got = forward_backward(triton_form(chunk_size), x)
        # the fp32 reference on the same rounded inputs
        ref = forward_backward(
            lambda *a: retention_chunkwise(*a, chunk_size=64), {**x, **{n: x[n].float() for n in ("q", "k", "v")}}
        )
        for name in got:
            assert torch.isfinite(got[name]).all(), name
            assert rel_err(got[name], ref[name]) < 1e-2, (name, rel_err(got[name], ref[name]))

    def test_chunkwise_fp32(self, poison):
        x = self.inputs(1000, torch.float32)
        got = forward_backward(triton_form(64), x)
        ref = forward_backward(lambda *a: retention_chunkwise(*a, chunk_size=64), x)
        tol = 2e-3 if torch.backends.cuda.matmul.allow_tf32 else 1e-4
        for name in got:
            assert rel_err(got[name], ref[name]) < tol, (name, rel_err(got[name], ref[name]))

    def test_decoding_step(self, poison):
        x = self.inputs(1, torch.bfloat16)
        state = x["state"].float()
        before = state.clone()
        with torch.no_grad():
            o, h = retention(x["q"], x["k"], x["v"], x["log_decay"], state, True, backend="triton")
        o_ref, h_ref = retention_recurrent(x["q"].float(), x["k"].float(), x["v"].float(), x["log_decay"], state, True)
        assert torch.equal(state, before)
        assert rel_err(o, o_ref) < 1e-2 and rel_err(h, h_ref) < 1e-5


def test_backend_resolution_order(monkeypatch):
    """Explicit reference/triton > PAPERZOO_KERNEL_BACKEND > auto; "auto" in a config defers to the variable; auto
    never picks the CPU interpreter."""
    from paperzoo.kernels import _registry

    supported = lambda: None  # noqa: E731  (Triton could run this call)
    monkeypatch.setattr(_registry, "triton_interpret", lambda: True)
    monkeypatch.setattr(_registry.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(_registry, "kernel_backend", lambda: None)
    assert _registry.resolve("op", None, supported) == "reference"
    assert _registry.resolve("op", "auto", supported) == "reference"
    assert _registry.resolve("op", "triton", supported) == "triton"
    monkeypatch.setattr(_registry, "kernel_backend", lambda: "triton")
    assert _registry.resolve("op", "auto", supported) == "triton"
    assert _registry.resolve("op", "reference", supported) == "reference"
    with pytest.raises(RuntimeError, match="PAPERZOO_KERNEL_BACKEND"):
        _registry.resolve("op", None, lambda: "no GPU")
    monkeypatch.setattr(_registry, "kernel_backend", lambda: "fast")
    with pytest.raises(ValueError, match="PAPERZOO_KERNEL_BACKEND='fast'"):
        _registry.resolve("op", None, supported)
