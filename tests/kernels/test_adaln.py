"""LatentLM diffusion-head modulation: reference vs naive float64 formulas and gradchecks; Triton vs the reference
forward and backward; dispatch and argument checks; GPU at real sizes.

The Triton tests run on CPU under TRITON_INTERPRET=1 (`make test` sets it) or on CUDA; with neither they skip.
Every kernel output buffer is allocated NaN-filled during these tests (`poison`), so an unwritten element fails.
"""

from __future__ import annotations

import math

import pytest
import torch

import paperzoo._env
from paperzoo.kernels import _registry as registry
from paperzoo.kernels.adaln import adaln_modulate, gated_residual
from paperzoo.kernels.adaln.reference import (
    adaln_modulate_grads,
    adaln_modulate_reference,
    gated_residual_grads,
    gated_residual_reference,
)

from .triton_support import DEVICE, assert_close, poison_outputs, rel_err, triton_module
from .triton_support import needs_triton as _needs_triton

at = triton_module("paperzoo.kernels.adaln.triton")
needs_triton = _needs_triton(at)

F64 = torch.float64
EPS = 1e-6
ROWS = [1, 7, 130]  # one row, a partial row block, many blocks (interpreter blocks are 4 rows)
OPS = [adaln_modulate, gated_residual]
DIMS = [16, 24, 96]  # D a power of two, and not (24, 96: masked feature tails; 16-wide blocks in the two-pass path)


def make_inputs(*shape, seed=0):
    """x, shift, scale (small: 1 + scale stays near 1, as after the adaLN zero init), and an upstream gradient; all
    float64 on the CPU. x rows have varied RMS (a row of zeros included when there are several)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=F64) * torch.rand(*shape[:-1], 1, generator=g, dtype=F64).mul(3.0)
    if x.shape[0] > 1:
        x[0] = 0.0
    shift, scale = (0.5 * torch.randn(*shape, generator=g, dtype=F64) for _ in range(2))
    return x, shift, scale, torch.randn(*shape, generator=g, dtype=F64)


def forward_backward(fn, inputs, gy, dtypes, device="cpu"):
    """fn's output and the grads (torch.autograd.grad) of its three inputs for loss = Σ out·gy, on leaf copies cast
    to `dtypes` (one per input) on `device`."""
    leaves = [t.to(device=device, dtype=dt).detach().requires_grad_() for t, dt in zip(inputs, dtypes)]
    out = fn(*leaves)
    grads = torch.autograd.grad(out, leaves, gy.to(device=device, dtype=out.dtype))
    return out.detach(), *grads


@pytest.fixture
def poison(monkeypatch):
    return poison_outputs(monkeypatch, at)


# ---------------------------------------------------------------------------------------------------------------------
# naive float64 formulas, independent of reference.py
# ---------------------------------------------------------------------------------------------------------------------


def naive_modulate(x, shift, scale, eps):
    """RMS through the L2 norm: x · √D / √(‖x‖² + D·eps), written differently from the reference's rsqrt(mean)."""
    D = x.shape[-1]
    norm2 = torch.linalg.vector_norm(x, dim=-1, keepdim=True) ** 2
    return x * math.sqrt(D) / torch.sqrt(norm2 + D * eps) * (1.0 + scale) + shift


def naive_modulate_grads(x, scale, dy, eps):
    """dx by the explicit Jacobian of n = x · r: ∂n_i/∂x_j = r δ_ij − r³ x_i x_j / D, per row."""
    D = x.shape[-1]
    r = 1.0 / torch.sqrt((x * x).sum(-1, keepdim=True) / D + eps)
    jac = r[..., None] * torch.eye(D, dtype=x.dtype) - (r**3)[..., None] * x[..., :, None] * x[..., None, :] / D
    gn = dy * (1.0 + scale)
    return torch.einsum("...i,...ij->...j", gn, jac), dy, dy * x * r


def loop_modulate(x, shift, scale, eps):
    """Scalar loops (math module only), for a tiny [N, D]."""
    out = torch.zeros_like(x)
    N, D = x.shape
    for i in range(N):
        ms = sum(x[i, j].item() ** 2 for j in range(D)) / D
        r = 1.0 / math.sqrt(ms + eps)
        for j in range(D):
            out[i, j] = x[i, j].item() * r * (1.0 + scale[i, j].item()) + shift[i, j].item()
    return out


# ---------------------------------------------------------------------------------------------------------------------
# (a) the reference against the naive formulas, and its gradients (float64)
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 16), (7, 24), (2, 65, 96)])
@pytest.mark.parametrize("eps", [EPS, 0.1])
def test_reference_modulate_matches_naive(shape, eps):
    x, shift, scale, dy = make_inputs(*shape, seed=sum(shape))
    y = adaln_modulate_reference(x, shift, scale, eps)
    assert y.dtype == F64 and y.shape == x.shape
    assert_close(y, naive_modulate(x, shift, scale, eps), 1e-12, "y")
    for name, got, ref in zip(("dx", "dshift", "dscale"), adaln_modulate_grads(x, shift, scale, dy, eps),
                              naive_modulate_grads(x, scale, dy, eps)):  # fmt: skip
        assert_close(got, ref, 1e-12, name)


def test_reference_modulate_matches_scalar_loops():
    x, shift, scale, _ = make_inputs(3, 5, seed=1)
    assert_close(adaln_modulate_reference(x, shift, scale, EPS), loop_modulate(x, shift, scale, EPS), 1e-12, "y")


def test_reference_grads_match_autograd_and_gradcheck():
    x, shift, scale, dy = make_inputs(7, 24, seed=2)
    got = forward_backward(lambda *a: adaln_modulate_reference(*a, EPS), (x, shift, scale), dy, [F64] * 3)
    for name, auto, closed in zip(("dx", "dshift", "dscale"), got[1:], adaln_modulate_grads(x, shift, scale, dy)):
        assert_close(auto, closed, 1e-12, name)
    got = forward_backward(gated_residual_reference, (x, shift, scale), dy, [F64] * 3)
    for name, auto, closed in zip(("dres", "dgate", "dy"), got[1:], gated_residual_grads(x, shift, scale, dy)):
        assert_close(auto, closed, 1e-12, name)
    assert_close(got[0], x + shift * scale, 1e-12, "gated_residual")
    leaves = [t[:3, :5].clone().requires_grad_() for t in (x, shift, scale)]
    assert torch.autograd.gradcheck(lambda *a: adaln_modulate_reference(*a, 0.1), leaves)
    assert torch.autograd.gradcheck(gated_residual_reference, leaves)


def test_reference_half_inputs_round_once():
    """bf16 inputs: statistics and products in fp32, one rounding. Closer to float64 than the official
    `RMSNorm(x.float()).type_as(x) * (1 + scale) + shift` (bf16 after the norm: four roundings)."""
    x, shift, scale, _ = (t.to(torch.bfloat16) for t in make_inputs(130, 96, seed=3))
    exact = adaln_modulate_reference(x.double(), shift.double(), scale.double(), EPS)
    y = adaln_modulate_reference(x, shift, scale, EPS)
    xf = x.float()
    official = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + EPS)).type_as(x) * (1 + scale) + shift
    assert y.dtype == torch.bfloat16
    assert (y.double() - exact).abs().mean() < (official.double() - exact).abs().mean()
    assert_close(y, exact, 1e-2, "y")
    out = gated_residual_reference(x, shift, scale)
    assert out.dtype == torch.bfloat16 and torch.equal(out, (xf + shift.float() * scale.float()).to(torch.bfloat16))


@pytest.mark.parametrize("backend", ["reference", pytest.param("triton", marks=needs_triton)])
def test_empty_rows(backend):
    device = DEVICE if backend == "triton" else "cpu"
    x, shift, scale = (torch.randn(0, 3, 8, device=device, requires_grad=True) for _ in range(3))
    for op in OPS:
        y = op(x, shift, scale, backend=backend)
        assert y.shape == (0, 3, 8)
        y.sum().backward()
        assert x.grad.shape == x.shape


# ---------------------------------------------------------------------------------------------------------------------
# (b) Triton kernels vs the float64 reference (fp32 inputs)
# ---------------------------------------------------------------------------------------------------------------------


def check_against_reference(op, ref_op, inputs, gy, dtypes, tol, poison, names):
    got = forward_backward(lambda *a: op(*a, backend="triton"), inputs, gy, dtypes, DEVICE)
    rounded = [t.to(dt).double() for t, dt in zip(inputs, dtypes)]  # the reference sees the kernels' inputs
    ref = forward_backward(ref_op, rounded, gy, [F64] * 3)
    assert poison, "the kernels' outputs were not allocated through the poisoned allocator"
    assert got[0].dtype == dtypes[0] and [g.dtype for g in got[1:]] == list(dtypes)
    for name, g, r in zip(names, got, ref):
        assert g.shape == r.shape, name
        assert_close(g.cpu(), r, tol, name)


@needs_triton
@pytest.mark.parametrize("two_pass", [False, True])
@pytest.mark.parametrize("D", DIMS)
@pytest.mark.parametrize("N", ROWS)
def test_triton_modulate_matches_reference(N, D, two_pass, poison, monkeypatch):
    """two_pass: 16-wide feature blocks, so D = 24, 96 sweep D twice (D = 16 stays one pass)."""
    if two_pass:
        monkeypatch.setattr(at, "_MAX_BD", 16)
    x, shift, scale, gy = make_inputs(N, D, seed=N + D)
    check_against_reference(adaln_modulate, lambda *a: adaln_modulate_reference(*a, EPS), (x, shift, scale), gy,
                            [torch.float32] * 3, 1e-5, poison, ("y", "dx", "dshift", "dscale"))  # fmt: skip
    assert (N,) in poison, "r was not stored for the backward"


@needs_triton
@pytest.mark.parametrize("D", DIMS)
@pytest.mark.parametrize("N", ROWS)
def test_triton_gated_residual_matches_reference(N, D, poison):
    inputs = make_inputs(N, D, seed=2 * N + D)
    check_against_reference(gated_residual, gated_residual_reference, inputs[:3], inputs[3], [torch.float32] * 3,
                            1e-6, poison, ("out", "dresidual", "dgate", "dy"))  # fmt: skip


@needs_triton
@pytest.mark.parametrize("dtypes", [(torch.bfloat16,) * 3, (torch.float16,) * 3,
                                    (torch.float32, torch.bfloat16, torch.bfloat16)])  # fmt: skip
def test_triton_half_and_mixed_precision(dtypes, poison):
    """Output in the first input's dtype, each gradient in its input's dtype; fp32 math, one rounding."""
    x, shift, scale, gy = make_inputs(7, 96, seed=4)
    check_against_reference(adaln_modulate, lambda *a: adaln_modulate_reference(*a, EPS), (x, shift, scale), gy,
                            dtypes, 1e-2, poison, ("y", "dx", "dshift", "dscale"))  # fmt: skip
    check_against_reference(gated_residual, gated_residual_reference, (x, shift, scale), gy, dtypes, 1e-2, poison,
                            ("out", "dresidual", "dgate", "dy"))  # fmt: skip


@needs_triton
@pytest.mark.parametrize("two_pass", [False, True])
def test_triton_chunk_views_leading_dims_and_expanded_grad(two_pass, poison, monkeypatch):
    """The official call: shift, scale, gate = chunk(3, -1) of one [B, T, 3D] tensor (rows 3D apart, read in place),
    x [B, T, D]; then loss = out.sum() (a stride-0 upstream gradient)."""
    if two_pass:
        monkeypatch.setattr(at, "_MAX_BD", 16)
    B, T, D = 2, 65, 24
    x, _, _, _ = make_inputs(B, T, D, seed=5)
    mod = 0.5 * torch.randn(B, T, 3 * D, generator=torch.Generator().manual_seed(6), dtype=F64)
    assert at._rows(mod.float().chunk(3, -1)[1], D).stride() == (3 * D, 1)

    def run(backend, dtype, device):
        xl = x.to(device=device, dtype=dtype).requires_grad_()
        ml = mod.to(device=device, dtype=dtype).requires_grad_()
        shift, scale, gate = ml.chunk(3, dim=-1)
        out = gated_residual(xl, gate, torch.tanh(adaln_modulate(xl, shift, scale, backend=backend)), backend=backend)
        out.sum().backward()
        return out.detach().cpu(), xl.grad.cpu(), ml.grad.cpu()

    for name, g, r in zip(("out", "dx", "dmod"), run("triton", torch.float32, DEVICE), run("reference", F64, "cpu")):
        assert g.shape == r.shape
        assert_close(g, r, 1e-5, name)


@needs_triton
@pytest.mark.parametrize("wanted", [0, 1, 2])
def test_triton_one_gradient(wanted, poison):
    """Only the requested gradient is computed: dshift (adaln_modulate) and dresidual (gated_residual) are the
    upstream gradient itself, so asking for it alone launches no backward kernel; the others allocate one buffer."""
    x, shift, scale, gy = make_inputs(7, 24, seed=7)
    for op, ref_op, passthrough in ((adaln_modulate, adaln_modulate_reference, 1),
                                    (gated_residual, gated_residual_reference, 0)):  # fmt: skip
        leaves = [t.float().requires_grad_(i == wanted) for i, t in enumerate((x, shift, scale))]
        out = op(*leaves, backend="triton")
        n_fwd = len(poison)
        (grad,) = torch.autograd.grad(out, leaves[wanted], gy.float())
        assert len(poison) - n_fwd == (0 if wanted == passthrough else 1), op.__name__
        refs = [t.detach().double().requires_grad_(i == wanted) for i, t in enumerate(leaves)]
        (ref,) = torch.autograd.grad(ref_op(*refs), refs[wanted], gy)
        assert grad.dtype == torch.float32
        assert_close(grad, ref, 1e-5, f"{op.__name__} input {wanted}")


@needs_triton
def test_triton_no_grad_allocates_the_output_only(poison):
    """Sampling path: one kernel, no r buffer, no autograd node."""
    x, shift, scale, _ = (t.float().requires_grad_() for t in make_inputs(7, 24, seed=8))
    with torch.no_grad():
        y = adaln_modulate(x, shift, scale, backend="triton")
        out = gated_residual(x, shift, y, backend="triton")
    assert poison == [(7, 24), (7, 24)] and y.grad_fn is None and out.grad_fn is None
    assert_close(y, adaln_modulate_reference(x.double(), shift.double(), scale.double(), EPS), 1e-5, "y")


@pytest.mark.skipif(at is None, reason="needs triton")
def test_cuda_launch_configuration():
    for D in (768, 1024, 1536, 5120, 16384):
        BM, BD, warps = at._row_launch(D, cuda=True)
        assert BD >= min(D, at._MAX_BD) and BM * BD <= max(at._TILE, BD) and warps in (4, 8, 16)
        BM, BD, warps = at._ew_launch(D, cuda=True)
        assert BM * BD == at._TILE and BD <= at._MAX_BD_EW
    assert at._row_launch(1024, cuda=True) == (4, 1024, 8)
    assert at._row_launch(24, cuda=False) == (at._ROWS, 32, 4)


# ---------------------------------------------------------------------------------------------------------------------
# (c) backend resolution and argument checks
# ---------------------------------------------------------------------------------------------------------------------


def no_interpreter(monkeypatch):
    """Pretend TRITON_INTERPRET is unset, wherever the reader was imported (by module or by name)."""
    monkeypatch.setattr(paperzoo._env, "triton_interpret", lambda: False)
    for module in (registry, at):
        if module is not None and hasattr(module, "triton_interpret"):
            monkeypatch.setattr(module, "triton_interpret", lambda: False)


def small(dtype=torch.float32):
    return [t.to(dtype) for t in make_inputs(3, 8, seed=0)[:3]]


@pytest.mark.parametrize("op", OPS)
def test_triton_backend_on_cpu_without_interpreter_raises(op, monkeypatch):
    no_interpreter(monkeypatch)
    with pytest.raises(RuntimeError, match="triton"):
        op(*small(), backend="triton")


@pytest.mark.skipif(at is None, reason="needs triton")
@pytest.mark.parametrize("op", OPS)
def test_triton_backend_rejects_float64(op):
    with pytest.raises(RuntimeError, match="float64"):
        op(*small(F64), backend="triton")


def test_auto_and_reference_backends(monkeypatch):
    """auto on CPU without the interpreter takes the reference; so does backend="reference" (and the env variable)."""
    no_interpreter(monkeypatch)
    x, shift, scale = small()
    ref = adaln_modulate_reference(x.double(), shift.double(), scale.double(), EPS)
    for backend in ("auto", "reference", None):
        assert_close(adaln_modulate(x, shift, scale, backend=backend), ref, 1e-6, str(backend))
    monkeypatch.setenv("PAPERZOO_KERNEL_BACKEND", "reference")
    out = gated_residual(x, shift, scale)
    assert out.dtype == torch.float32 and torch.equal(out, gated_residual_reference(x, shift, scale))


@pytest.mark.parametrize("op", OPS)
def test_invalid_backend(op):
    with pytest.raises(ValueError, match="kernel_backend"):
        op(*small(), backend="cuda")


@pytest.mark.parametrize("op, names", [(adaln_modulate, ("x", "shift", "scale")),
                                       (gated_residual, ("residual", "gate", "y"))])  # fmt: skip
def test_invalid_shapes_and_dtypes(op, names):
    x, b, s = small()
    with pytest.raises(ValueError, match=rf"{names[1]} .*\(3, 8\).*\(3, 9\)"):
        op(x, torch.rand(3, 9), s, backend="reference")
    with pytest.raises(ValueError, match=rf"{names[2]} .*\(3, 8\).*\(8,\)"):
        op(x, b, s[0], backend="reference")
    with pytest.raises(ValueError, match=rf"{names[0]} .*D >= 1.*\(3, 0\)"):
        op(x[:, :0], b[:, :0], s[:, :0], backend="reference")
    with pytest.raises(ValueError, match=r"D >= 1.*\(\)"):
        op(x[0, 0], b[0, 0], s[0, 0], backend="reference")
    with pytest.raises(ValueError, match="floating.*int64"):
        op(x, b.long(), s, backend="reference")
    with pytest.raises(ValueError, match="one device.*meta"):
        op(x, b, s.to("meta"), backend="reference")
    with pytest.raises(ValueError, match="tensors"):
        op(x, 1.0, s, backend="reference")


def test_invalid_eps():
    for bad in (0.0, -1e-6, math.nan, math.inf, "x"):
        with pytest.raises(ValueError, match="eps"):
            adaln_modulate(*small(), eps=bad, backend="reference")


# ---------------------------------------------------------------------------------------------------------------------
# (d) real sizes on a GPU: fp32 and bf16 against the float64 reference
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
class TestAdaLNGPU:
    N, D = 4096 * 4, 1024  # 4096 latents x 4 noise copies (LatentLM's batch_mul) at hidden size 1024

    @pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
    @pytest.mark.parametrize("max_bd", [8192, 256])  # 256: the two-pass path at D = 1024
    def test_modulate(self, dtype, max_bd, poison, monkeypatch):
        monkeypatch.setattr(at, "_MAX_BD", max_bd)
        inputs = [t.cuda() for t in make_inputs(self.N, self.D, seed=9)]
        got = forward_backward(lambda *a: adaln_modulate(*a, backend="triton"), inputs[:3], inputs[3], [dtype] * 3,
                               "cuda")  # fmt: skip
        ref = forward_backward(lambda *a: adaln_modulate_reference(*a, EPS), [t.to(dtype).double() for t in inputs[:3]],
                               inputs[3], [F64] * 3, "cuda")  # fmt: skip
        tol = 1e-5 if dtype == torch.float32 else 1e-2
        for name, g, r in zip(("y", "dx", "dshift", "dscale"), got, ref):
            assert g.dtype == dtype and torch.isfinite(g).all(), name
            assert rel_err(g, r) < tol, (name, rel_err(g, r))

    @pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
    def test_gated_residual(self, dtype, poison):
        inputs = [t.cuda() for t in make_inputs(self.N, self.D, seed=10)]
        got = forward_backward(lambda *a: gated_residual(*a, backend="triton"), inputs[:3], inputs[3], [dtype] * 3,
                               "cuda")  # fmt: skip
        ref = forward_backward(gated_residual_reference, [t.to(dtype).double() for t in inputs[:3]], inputs[3],
                               [F64] * 3, "cuda")  # fmt: skip
        tol = 1e-6 if dtype == torch.float32 else 1e-2
        for name, g, r in zip(("out", "dresidual", "dgate", "dy"), got, ref):
            assert g.dtype == dtype and torch.isfinite(g).all(), name
            assert rel_err(g, r) < tol, (name, rel_err(g, r))
