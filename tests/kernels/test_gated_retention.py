"""Gated retention: reference forms agree (float64) and pass gradcheck; the dg derivation; Triton kernels match the
reference forward and backward (dq, dk, dv, dg, d state); decay stays fp32 in half precision; dispatch and checks.

The Triton tests run on CPU under TRITON_INTERPRET=1 (`make test` sets it) or on CUDA; with neither they skip.
Every kernel output buffer is allocated NaN-filled during these tests (`poison`), so an unwritten tile fails.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import paperzoo._env
from paperzoo.kernels import _registry as registry
from paperzoo.kernels import gated_retention as gr_pkg
from paperzoo.kernels.gated_retention import gated_retention
from paperzoo.kernels.gated_retention.reference import (
    gated_retention_chunkwise,
    gated_retention_parallel,
    gated_retention_recurrent,
)

from .triton_support import DEVICE, assert_close, poison_outputs, rel_err, triton_module
from .triton_support import forward_backward as _forward_backward
from .triton_support import needs_triton as _needs_triton

gt = triton_module("paperzoo.kernels.gated_retention.triton")
needs_triton = _needs_triton(gt)

# g = log γ_t: YOCO's gate logsigmoid(x) / 16 (γ ≈ 0.96..1), and logsigmoid(x) itself (γ ≈ 0.5 on average: over a
# 64-chunk exp(−c) would overflow fp32, which checks that no positive exponent is ever formed)
GATES = {"mild": lambda x: F.logsigmoid(x) / 16, "strong": F.logsigmoid}


def make_inputs(B, T, H, K, V, seed=0, dtype=torch.float64, device="cpu", gate="mild"):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=gen, dtype=torch.float64) * K**-0.5
    k = torch.randn(B, T, H, K, generator=gen, dtype=torch.float64) * K**-0.5
    v = torch.randn(B, T, H, V, generator=gen, dtype=torch.float64)
    g = GATES[gate](torch.randn(B, T, H, generator=gen, dtype=torch.float64) + 1.0)
    state = torch.randn(B, H, K, V, generator=gen, dtype=torch.float64) * 0.5
    do = torch.randn(B, T, H, V, generator=gen, dtype=torch.float64)
    dstate = torch.randn(B, H, K, V, generator=gen, dtype=torch.float64)
    cast = lambda x: x.to(device=device, dtype=dtype)  # noqa: E731
    return dict(
        q=cast(q), k=cast(k), v=cast(v), g=g.float().to(device), state=state.to(device), do=do.to(device),
        dstate=dstate.to(device),
    )  # fmt: skip


def forward_backward(fn, x, **kwargs):
    """Outputs and grads of q, k, v, g (and state) of a gated retention form."""
    return _forward_backward(fn, x, "g", True, **kwargs)


@pytest.fixture
def poison(monkeypatch):
    return poison_outputs(monkeypatch, gt)


# ---------------------------------------------------------------------------------------------------------------------
# (a) the reference forms agree with each other in float64; gradients; the dg derivation
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("T", [1, 7, 63, 130])
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("gate", ["mild", "strong"])
def test_reference_forms_agree(T, with_state, gate):
    x = make_inputs(2, T, 3, 24, 40, seed=T, gate=gate)
    args = (x["q"], x["k"], x["v"], x["g"].double(), x["state"] if with_state else None, True)
    o_par, h_par = gated_retention_parallel(*args)
    o_rec, h_rec = gated_retention_recurrent(*args)
    assert o_par.dtype == torch.float64 and h_par.dtype == torch.float64
    assert_close(o_rec, o_par, 1e-12, "recurrent o")
    assert_close(h_rec, h_par, 1e-12, "recurrent state")
    for chunk in (1, 10, 16, 64):
        o_chk, h_chk = gated_retention_chunkwise(*args, chunk_size=chunk)
        assert_close(o_chk, o_par, 1e-12, f"chunkwise(C={chunk}) o")
        assert_close(h_chk, h_par, 1e-12, f"chunkwise(C={chunk}) state")
    assert gated_retention_parallel(*args[:-1], False)[1] is None
    assert gated_retention_recurrent(*args[:-1], False)[1] is None
    assert gated_retention_chunkwise(*args[:-1], False)[1] is None


def test_reference_constant_gate_is_retention():
    """With g_t = log γ_h for every t, gated retention is RetNet's retention."""
    from paperzoo.kernels.retention.reference import retention_parallel

    x = make_inputs(1, 40, 3, 5, 6, seed=3)
    log_gamma = torch.tensor([-0.01, -0.3, -2.0], dtype=torch.float64)
    g = log_gamma.expand(1, 40, 3)
    o, h = gated_retention_chunkwise(x["q"], x["k"], x["v"], g, x["state"], True, chunk_size=16)
    o_ref, h_ref = retention_parallel(x["q"], x["k"], x["v"], log_gamma, x["state"], True)
    assert_close(o, o_ref, 1e-12, "o")
    assert_close(h, h_ref, 1e-12, "state")


def test_reference_positive_gate():
    """g > 0 (a growing state) is not what the model passes, but the forms still compute the same function."""
    x = make_inputs(1, 50, 2, 5, 6, seed=4)
    g = torch.rand(1, 50, 2, dtype=torch.float64) - 0.5
    o, h = gated_retention_parallel(x["q"], x["k"], x["v"], g, x["state"], True)
    for form in (gated_retention_recurrent, lambda *a: gated_retention_chunkwise(*a, chunk_size=16)):
        o2, h2 = form(x["q"], x["k"], x["v"], g, x["state"], True)
        assert_close(o2, o, 1e-12, "o")
        assert_close(h2, h, 1e-12, "state")


def test_reference_state_carries_across_calls():
    """Running [0, 50) then [50, 130) from the carried state equals running [0, 130) at once."""
    x = make_inputs(1, 130, 2, 6, 9, seed=1)
    q, k, v, g = x["q"], x["k"], x["v"], x["g"].double()
    o, h = gated_retention_parallel(q, k, v, g, x["state"], True)
    o1, h1 = gated_retention_chunkwise(q[:, :50], k[:, :50], v[:, :50], g[:, :50], x["state"], True, chunk_size=16)
    o2, h2 = gated_retention_recurrent(q[:, 50:], k[:, 50:], v[:, 50:], g[:, 50:], h1, True)
    assert_close(torch.cat([o1, o2], dim=1), o, 1e-12, "o")
    assert_close(h2, h, 1e-12, "state")


def test_reference_gradients_agree():
    x = make_inputs(1, 37, 2, 5, 6, seed=2, gate="strong")
    par = forward_backward(gated_retention_parallel, x)
    rec = forward_backward(gated_retention_recurrent, x)
    chk = forward_backward(lambda *a: gated_retention_chunkwise(*a, chunk_size=8), x)
    assert set(par) == {"o", "ht", "dq", "dk", "dv", "dg", "dstate"}
    for name in par:
        assert_close(rec[name], par[name], 1e-11, f"recurrent {name}")
        assert_close(chk[name], par[name], 1e-11, f"chunkwise {name}")


@pytest.mark.parametrize(
    "form",
    [gated_retention_parallel, gated_retention_recurrent, lambda *a: gated_retention_chunkwise(*a, chunk_size=2)],
    ids=["parallel", "recurrent", "chunkwise"],
)
def test_reference_gradcheck(form):
    x = make_inputs(1, 5, 2, 3, 4, seed=6, gate="strong")
    inputs = tuple(t.detach().double().requires_grad_() for t in (x["q"], x["k"], x["v"], x["g"], x["state"]))
    assert torch.autograd.gradcheck(lambda *a: form(*a, True), inputs)


@pytest.mark.parametrize("with_state, final", [(True, True), (False, True), (True, False)])
def test_dg_from_dq_dk(with_state, final):
    """The backward's dg: d b_t = q_t·dq_t − k_t·dk_t (+ <dS_final, S_final> at t = T−1), dg = reverse cumsum of db,
    with dq, dk the full gradients (autograd of the float64 reference)."""
    x = make_inputs(2, 45, 3, 5, 7, seed=9, gate="strong")
    ref = forward_backward(gated_retention_parallel, x, with_state=with_state, final=final)
    db = (x["q"] * ref["dq"]).sum(-1) - (x["k"] * ref["dk"]).sum(-1)  # [B, T, H]
    if final:
        db[:, -1] += (x["dstate"] * ref["ht"]).sum((-2, -1))
    assert_close(db.flip(1).cumsum(1).flip(1), ref["dg"], 1e-12, "dg")


# ---------------------------------------------------------------------------------------------------------------------
# (b) Triton kernels vs the float64 reference (fp32 inputs: tight tolerances)
# ---------------------------------------------------------------------------------------------------------------------


def triton_form(chunk_size):
    return lambda q, k, v, g, s, final: gated_retention(q, k, v, g, s, final, chunk_size=chunk_size, backend="triton")


@needs_triton
@pytest.mark.parametrize("chunk_size", [16, 64])
@pytest.mark.parametrize("T", [1, 7, 63, 130])
def test_triton_chunkwise_matches_reference(T, chunk_size, poison):
    x = make_inputs(2, T, 2, 24, 40, seed=T + chunk_size, dtype=torch.float32, device=DEVICE)
    got = forward_backward(triton_form(chunk_size), x)
    ref = forward_backward(gated_retention_parallel, x, dtype=torch.float64)
    assert poison, "the kernels' outputs were not allocated through the poisoned allocator"
    assert got["o"].dtype == torch.float32 and got["ht"].dtype == torch.float32 and got["dg"].dtype == torch.float32
    assert set(got) == {"o", "ht", "dq", "dk", "dv", "dg", "dstate"}
    for name in got:
        assert_close(got[name], ref[name], 2e-5, name)


@needs_triton
@pytest.mark.parametrize(
    "B, T, H, K, V, chunk_size, with_state, final, gate",
    [
        (1, 63, 2, 24, 257, 16, True, True, "mild"),  # V > 256: two V-parts in dq / dk (partial sums of dq, db)
        (1, 37, 1, 72, 130, 16, True, True, "mild"),  # several K-blocks and V-blocks, both with a partial last block
        (1, 20, 3, 5, 3, 16, True, True, "mild"),  # K, V below the 16-wide tiles
        (2, 45, 2, 24, 40, 16, False, False, "mild"),  # no initial state, no final state
        (1, 33, 2, 24, 40, 32, False, True, "strong"),
        (1, 130, 2, 24, 40, 64, True, True, "strong"),  # exp(−c) over a 64-chunk would overflow fp32
        (1, 50, 1, 24, 40, 256, True, True, "mild"),  # chunk_size above the 64 cap
        (1, 9, 2, 24, 40, 4, True, True, "mild"),  # chunk_size below tl.dot's 16
    ],
)
def test_triton_chunkwise_shapes(B, T, H, K, V, chunk_size, with_state, final, gate, poison):
    x = make_inputs(B, T, H, K, V, seed=K + V, dtype=torch.float32, device=DEVICE, gate=gate)
    got = forward_backward(triton_form(chunk_size), x, with_state=with_state, final=final)
    ref = forward_backward(gated_retention_parallel, x, with_state=with_state, final=final, dtype=torch.float64)
    assert poison
    assert set(got) == set(ref)
    for name in got:
        assert_close(got[name], ref[name], 2e-5, name)


@needs_triton
@pytest.mark.parametrize("tiles", [(64, 16), (16, 32)])
def test_triton_backward_tile_differs_from_forward(tiles, poison, monkeypatch):
    """On CUDA the backward tiles with a smaller C than the forward (`_CUDA_MAX_C`); the result must not change."""
    monkeypatch.setattr(gt, "_tiles", lambda x, chunk_size: tiles)
    x = make_inputs(1, 100, 2, 24, 40, seed=11, dtype=torch.float32, device=DEVICE)
    got = forward_backward(triton_form(64), x)
    ref = forward_backward(gated_retention_parallel, x, dtype=torch.float64)
    for name in got:
        assert_close(got[name], ref[name], 2e-5, name)


@needs_triton
def test_triton_gradient_subsets(poison):
    """Only q needs a gradient (no db buffer, no d state): the kernels skip those outputs and dq is unchanged."""
    x = make_inputs(1, 40, 2, 24, 40, seed=12, dtype=torch.float32, device=DEVICE)
    q = x["q"].detach().requires_grad_()
    o, _ = gated_retention(q, x["k"], x["v"], x["g"], x["state"].float(), False, chunk_size=16, backend="triton")
    (o.double() * x["do"]).sum().backward()
    assert (2, 1, 40, 2) not in poison, "the db buffer [2·NK·NVP, B, T, H] was allocated"
    ref = forward_backward(gated_retention_parallel, x, final=False, dtype=torch.float64)
    assert_close(q.grad, ref["dq"], 2e-5, "dq")


@needs_triton
def test_triton_noncontiguous_inputs(poison):
    x = make_inputs(1, 40, 2, 24, 40, seed=5, dtype=torch.float32, device=DEVICE)
    q, k, v = (x[n].transpose(1, 2).contiguous().transpose(1, 2) for n in ("q", "k", "v"))  # [B, T, H, ·] views
    g = x["g"].transpose(1, 2).contiguous().transpose(1, 2)  # [B, T, H] view
    state = x["state"].float().transpose(-1, -2).contiguous().transpose(-1, -2)
    assert not q.is_contiguous() and not g.is_contiguous() and not state.is_contiguous()
    o, h = gated_retention(q, k, v, g, state, True, chunk_size=16, backend="triton")
    o_ref, h_ref = gated_retention_parallel(q.double(), k.double(), v.double(), g.double(), x["state"], True)
    assert_close(o, o_ref, 2e-5, "o")
    assert_close(h, h_ref, 2e-5, "state")


@needs_triton
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_triton_half_precision(dtype, poison):
    x = make_inputs(1, 70, 2, 24, 40, seed=7, dtype=dtype, device=DEVICE)
    got = forward_backward(triton_form(16), x)
    # reference on the same rounded inputs, in float64
    ref = forward_backward(gated_retention_parallel, {**x, **{n: x[n].double() for n in ("q", "k", "v")}})
    assert got["o"].dtype == dtype and got["dq"].dtype == dtype
    assert got["ht"].dtype == torch.float32 and got["dg"].dtype == torch.float32
    for name in got:
        assert_close(got[name], ref[name], 2e-2 if dtype == torch.bfloat16 else 3e-3, name)


@pytest.mark.parametrize("backend", ["reference", pytest.param("triton", marks=needs_triton)])
@pytest.mark.parametrize("dtype, log2_gap", [(torch.bfloat16, -10), (torch.float16, -12)])
def test_half_precision_keeps_decay_fp32(backend, dtype, log2_gap):
    """γ = 1 − 2^-10 is exactly 1 in bf16, 1 − 2^-12 in fp16: the decay must be computed in fp32 whatever q's dtype,
    or over 200 tokens the state would not decay at all (exp(−200 / 1024) ≈ 0.82, exp(−200 / 4096) ≈ 0.95)."""
    assert torch.tensor(1 - 2.0**log2_gap).to(dtype).item() == 1.0
    x = make_inputs(1, 200, 2, 24, 40, seed=8, dtype=dtype, device=DEVICE or "cpu")
    g = torch.full_like(x["g"], torch.log1p(torch.tensor(-(2.0**log2_gap))).item()).requires_grad_()
    o, h = gated_retention(x["q"], x["k"], x["v"], g, x["state"].float(), True, chunk_size=64, backend=backend)
    (o.float().sum() + h.sum()).backward()
    o_ref, h_ref = gated_retention_parallel(*(x[n].double() for n in ("q", "k", "v")), g.double(), x["state"], True)
    assert o.dtype == dtype and h.dtype == torch.float32 and g.grad.dtype == torch.float32
    assert torch.isfinite(g.grad).all() and torch.isfinite(o.float()).all()
    assert rel_err(o, o_ref) < 1e-2 and rel_err(h, h_ref) < 5e-3


@needs_triton
@pytest.mark.parametrize("with_state", [False, True])
def test_triton_decoding_step(with_state, poison, monkeypatch):
    """T == 1 without grad goes to the fused recurrent kernel; the caller's state is left as it was."""
    calls = []
    monkeypatch.setattr(
        gr_pkg, "gated_retention_step_triton", lambda *a: calls.append(1) or gt.gated_retention_step_triton(*a)
    )
    x = make_inputs(2, 1, 2, 24, 40, seed=3, dtype=torch.float32, device=DEVICE, gate="strong")
    state = x["state"].float() if with_state else None
    before = None if state is None else state.clone()
    with torch.no_grad():
        o, h = gated_retention(x["q"], x["k"], x["v"], x["g"], state, True, backend="triton")
    assert calls == [1]
    o_ref, h_ref = gated_retention_recurrent(
        x["q"].double(), x["k"].double(), x["v"].double(), x["g"].double(), None if state is None else x["state"], True
    )
    assert_close(o, o_ref, 2e-6, "o")
    assert_close(h, h_ref, 2e-6, "state")
    if state is not None:
        assert torch.equal(state, before), "the step kernel modified the caller's state"


@needs_triton
def test_triton_step_several_tokens(poison):
    x = make_inputs(2, 5, 3, 7, 20, seed=4, dtype=torch.float32, device=DEVICE)
    o, h = gt.gated_retention_step_triton(x["q"], x["k"], x["v"], x["g"], x["state"].float(), True)
    o_ref, h_ref = gated_retention_recurrent(
        x["q"].double(), x["k"].double(), x["v"].double(), x["g"].double(), x["state"], True
    )
    assert_close(o, o_ref, 2e-6, "o")
    assert_close(h, h_ref, 2e-6, "state")
    assert gt.gated_retention_step_triton(x["q"], x["k"], x["v"], x["g"], None, False)[1] is None


@pytest.mark.parametrize("backend", ["reference", pytest.param("triton", marks=needs_triton)])
def test_empty_sequence(backend):
    x = make_inputs(1, 0, 2, 4, 6, dtype=torch.float32, device=DEVICE or "cpu")
    o, h = gated_retention(x["q"], x["k"], x["v"], x["g"], x["state"].float(), True, backend=backend)
    assert o.shape == (1, 0, 2, 6)
    assert torch.equal(h, x["state"].float())
    if backend == "triton":  # the step kernel with no token: the state comes back unchanged, g is never read
        o, h = gt.gated_retention_step_triton(x["q"], x["k"], x["v"], x["g"], x["state"].float(), True)
        assert o.shape == (1, 0, 2, 6) and torch.equal(h, x["state"].float())


# ---------------------------------------------------------------------------------------------------------------------
# (c) backend resolution and argument checks
# ---------------------------------------------------------------------------------------------------------------------


def small(T=5, dtype=torch.float32):
    x = make_inputs(1, T, 2, 4, 6, dtype=dtype)
    return x["q"], x["k"], x["v"], x["g"]


def no_interpreter(monkeypatch):
    """Pretend TRITON_INTERPRET is unset, wherever the reader was imported (by module or by name)."""
    monkeypatch.setattr(paperzoo._env, "triton_interpret", lambda: False)
    monkeypatch.setattr(registry, "triton_interpret", lambda: False)


def test_triton_backend_on_cpu_without_interpreter_raises(monkeypatch):
    no_interpreter(monkeypatch)
    with pytest.raises(RuntimeError, match="gated_retention.*triton"):
        gated_retention(*small(), backend="triton")


@pytest.mark.skipif(gt is None, reason="needs triton")
def test_triton_backend_rejects_float64():
    with pytest.raises(RuntimeError, match="float64"):
        gated_retention(*small(dtype=torch.float64), backend="triton")


def test_auto_backend_on_cpu_uses_reference(monkeypatch):
    """Auto never runs the CPU interpreter: the reference serves CPU tensors (the Triton entry points must not run)."""
    monkeypatch.setattr(registry, "kernel_backend", lambda: None)
    fail = lambda *a: pytest.fail("auto picked Triton on CPU")  # noqa: E731
    monkeypatch.setattr(gr_pkg, "gated_retention_chunkwise_triton", fail)
    monkeypatch.setattr(gr_pkg, "gated_retention_step_triton", fail)
    q, k, v, g = small(T=9)
    o, _ = gated_retention(q, k, v, g, chunk_size=4)
    assert_close(o, gated_retention_recurrent(q.double(), k.double(), v.double(), g.double())[0], 1e-5, "o")


def test_reference_backend(monkeypatch):
    no_interpreter(monkeypatch)
    q, k, v, g = small(T=9)
    for chunk_size in (4, 16):  # chunkwise and parallel forms
        o, h = gated_retention(q, k, v, g, None, True, chunk_size=chunk_size, backend="reference")
        o_ref, h_ref = gated_retention_recurrent(q.double(), k.double(), v.double(), g.double(), None, True)
        assert o.dtype == torch.float32 and h.dtype == torch.float32
        assert_close(o, o_ref, 1e-5, "o")
        assert_close(h, h_ref, 1e-5, "state")


def test_invalid_backend_name():
    with pytest.raises(ValueError, match="kernel_backend"):
        gated_retention(*small(), backend="cuda")


def test_invalid_arguments_name_the_shapes():
    q, k, v, g = small()
    with pytest.raises(ValueError, match=r"\(1, 5, 2, 4\).*\(1, 4, 2, 4\)"):
        gated_retention(q, k[:, :4], v, g, backend="reference")
    with pytest.raises(ValueError, match=r"\(1, 5, 3, 6\)"):
        gated_retention(q, k, torch.randn(1, 5, 3, 6), g, backend="reference")
    with pytest.raises(ValueError, match=r"log_decay.*\(1, 5, 2\).*\(2,\)"):
        gated_retention(q, k, v, torch.zeros(2), backend="reference")  # a per-head decay is retention's, not ours
    with pytest.raises(ValueError, match=r"log_decay.*\(1, 5, 2\).*\(1, 2, 5\)"):
        gated_retention(q, k, v, g.transpose(1, 2), backend="reference")
    with pytest.raises(ValueError, match="log_decay.*floating"):
        gated_retention(q, k, v, torch.zeros(1, 5, 2, dtype=torch.long), backend="reference")
    with pytest.raises(ValueError, match=r"state.*\(1, 2, 4, 6\).*\(1, 2, 6, 4\)"):
        gated_retention(q, k, v, g, torch.zeros(1, 2, 6, 4), backend="reference")
    with pytest.raises(ValueError, match="one floating dtype"):
        gated_retention(q, k.double(), v, g, backend="reference")
    with pytest.raises(ValueError, match="chunk_size"):
        gated_retention(q, k, v, g, chunk_size=48, backend="reference")


# ---------------------------------------------------------------------------------------------------------------------
# (d) real sizes on a GPU, bf16 against the fp32 reference
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
class TestGatedRetentionGPU:
    B, T, H, V = 2, 2048, 4, 256

    def fp32_reference(self, x):
        return forward_backward(
            lambda *a: gated_retention_chunkwise(*a, chunk_size=64), {**x, **{n: x[n].float() for n in ("q", "k", "v")}}
        )

    @pytest.mark.parametrize("K", [128, 256])
    @pytest.mark.parametrize("gate", ["mild", "strong"])
    def test_chunkwise_forward_backward_bf16(self, K, gate, poison):
        x = make_inputs(self.B, self.T, self.H, K, self.V, dtype=torch.bfloat16, device="cuda", gate=gate)
        got = forward_backward(triton_form(64), x)
        ref = self.fp32_reference(x)  # on the same rounded inputs
        for name in got:
            assert torch.isfinite(got[name]).all(), name
            assert rel_err(got[name], ref[name]) < 1e-2, (name, rel_err(got[name], ref[name]))

    def test_chunkwise_fp32(self, poison):
        x = make_inputs(self.B, 1000, self.H, 128, self.V, dtype=torch.float32, device="cuda")
        got = forward_backward(triton_form(64), x)
        ref = self.fp32_reference(x)
        tol = 2e-3 if torch.backends.cuda.matmul.allow_tf32 else 1e-4
        for name in got:
            assert rel_err(got[name], ref[name]) < tol, (name, rel_err(got[name], ref[name]))

    def test_decoding_step(self, poison):
        x = make_inputs(self.B, 1, self.H, 128, self.V, dtype=torch.bfloat16, device="cuda")
        state = x["state"].float()
        before = state.clone()
        with torch.no_grad():
            o, h = gated_retention(x["q"], x["k"], x["v"], x["g"], state, True, backend="triton")
        o_ref, h_ref = gated_retention_recurrent(x["q"].float(), x["k"].float(), x["v"].float(), x["g"], state, True)
        assert torch.equal(state, before)
        assert rel_err(o, o_ref) < 1e-2 and rel_err(h, h_ref) < 1e-5
