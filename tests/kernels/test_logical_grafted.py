"""The fused grafted layer (`logical_grafted` / `logical_layer_grafted`) against the composition of the reference ops:
value = [logical_binarized_matmul AND ‖ OR] exactly, gradient = autograd through [logical_nlaf_matmul ‖ ...] or
[logical_product_materialized ‖ ...] (what `GradGraft.apply(discrete, continuous)` computes), in float64."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from paperzoo.kernels.logical import KINDS, logical_grafted
from paperzoo.kernels.logical.grafted import logical_layer_grafted
from paperzoo.kernels.logical.reference import (
    logical_binarized_matmul,
    logical_nlaf_matmul,
    logical_product_materialized,
)

from .triton_support import DEVICE, needs_triton, triton_module

pytestmark = pytest.mark.filterwarnings(  # the interpreter evaluates both sides of tl.where (test_triton_backend)
    "ignore:divide by zero encountered:RuntimeWarning", "ignore:invalid value encountered:RuntimeWarning"
)

F64 = torch.float64
# (B, n_in, w): one row, one input, one node, odd sizes
SHAPES = [(1, 1, 1), (1, 37, 5), (7, 1, 5), (7, 37, 5), (33, 4, 1), (16, 37, 9)]
# (alpha, beta, gamma): official defaults; γ ≠ 1; β = 1 (G'(0) = −α); β = 2 and 3 (exponents 1 and 2 of the
# squaring path); non-integer β (pow)
NLAF_PARAMS = [(0.999, 8.0, 1.0), (0.9, 3.0, 3.0), (0.99, 1.0, 0.5), (0.95, 2.0, 1.0), (0.8, 2.5, 2.0)]
SURROGATES = [("nlaf", False)] + [("laf", estimated) for estimated in (False, True)]


def make_inputs(B, n, w, binary=True, seed=0, dtype=F64):
    """x binary (the model's case) or fractional with exact 0s and 1s; W in [0, 1] with exact 0, 0.5 and 1
    (W̄ = 1[W > 0.5] is strict; W = 1 makes a = 0 in the product); an upstream gradient gy [B, 2w]."""
    g = torch.Generator().manual_seed(seed)
    if binary:
        x = (torch.rand(B, n, generator=g, dtype=F64) < 0.5).to(F64)
    else:
        x = torch.rand(B, n, generator=g, dtype=F64)
        r = torch.rand(B, n, generator=g, dtype=F64)
        x[r < 0.2] = 0.0
        x[r > 0.8] = 1.0
    ws = []
    for _ in KINDS:
        v = torch.rand(n, w, generator=g, dtype=F64)
        r = torch.rand(n, w, generator=g, dtype=F64)
        v[r < 0.1] = 0.0
        v[(r >= 0.1) & (r < 0.2)] = 0.5
        v[r > 0.85] = 1.0
        ws.append(v)
    gy = torch.randn(B, 2 * w, generator=g, dtype=F64)
    return x.to(dtype), ws[0].to(dtype), ws[1].to(dtype), gy.to(dtype)


def reference_grafted(x, w_conj, w_disj, activation, alpha=0.999, beta=8.0, gamma=1.0, estimated_grad=False):
    """The per-kind composition: discrete value, continuous gradient (ỹ − ỹ.detach() + ȳ carries both)."""
    kinds = tuple(zip(KINDS, (w_conj, w_disj)))
    discrete = torch.cat([logical_binarized_matmul(x, w, kind) for kind, w in kinds], dim=1)
    if activation == "nlaf":
        continuous = torch.cat([logical_nlaf_matmul(x, w, kind, alpha, beta, gamma) for kind, w in kinds], dim=1)
    else:
        continuous = torch.cat([logical_product_materialized(x, w, kind, estimated_grad) for kind, w in kinds], dim=1)
    return discrete, continuous


def run(fn, x, w_conj, w_disj, gy, grad_x=True, grad_w=(True, True)):
    """y and the gradients (x, W_conj, W_disj; None where not asked) of Σ y·gy, on fresh leaves."""
    leaves = [t.detach().clone().requires_grad_(g) for t, g in zip((x, w_conj, w_disj), (grad_x, *grad_w))]
    y = fn(*leaves)
    (y * gy.to(y.dtype)).sum().backward()
    return y.detach(), *(leaf.grad for leaf in leaves)


def check(x, w_conj, w_disj, gy, activation, params=(0.999, 8.0, 1.0), estimated_grad=False, grad_x=True,
          grad_w=(True, True), tol=1e-10):
    alpha, beta, gamma = params

    def fused(x, wc, wd):
        return logical_grafted(x, wc, wd, activation, alpha, beta, gamma, estimated_grad, backend="reference")

    def reference(x, wc, wd):
        discrete, continuous = reference_grafted(x, wc, wd, activation, alpha, beta, gamma, estimated_grad)
        return continuous - continuous.detach() + discrete

    got = run(fused, x, w_conj, w_disj, gy, grad_x, grad_w)
    ref_y = reference_grafted(x, w_conj, w_disj, activation, alpha, beta, gamma, estimated_grad)[0]
    ref = run(reference, x, w_conj, w_disj, gy, grad_x, grad_w)
    assert got[0].dtype == x.dtype and torch.equal(got[0], ref_y), "forward value is not the discrete layer's"
    for name, g, r in zip(("dx", "dW_conj", "dW_disj"), got[1:], ref[1:]):
        if r is None:
            assert g is None, f"{name}: a gradient nobody asked for"
            continue
        assert g.dtype == r.dtype and g.shape == r.shape, name
        assert torch.isfinite(g).all(), name
        torch.testing.assert_close(g, r, rtol=tol, atol=tol, msg=name)
    return got


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("params", NLAF_PARAMS)
def test_nlaf_matches_reference_composition(shape, binary, params):
    x, wc, wd, gy = make_inputs(*shape, binary=binary)
    check(x, wc, wd, gy, "nlaf", params)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("estimated", [False, True])
def test_product_matches_reference_composition(shape, binary, estimated):
    """Binary x: the matmul form; fractional x: the materialised fallback (identical to the reference)."""
    x, wc, wd, gy = make_inputs(*shape, binary=binary, seed=1)
    got = check(x, wc, wd, gy, "laf", estimated_grad=estimated)
    assert any(g.abs().max() > 0 for g in got[1:]), "all gradients are zero: the test would not see a wrong one"


@pytest.mark.parametrize("activation, estimated", SURROGATES)
@pytest.mark.parametrize("grad_x, grad_w", [(False, (True, True)), (True, (False, False)), (True, (True, False)),
                                            (False, (False, True))])
def test_only_the_requested_gradients(activation, estimated, grad_x, grad_w):
    x, wc, wd, gy = make_inputs(9, 13, 6)
    check(x, wc, wd, gy, activation, estimated_grad=estimated, grad_x=grad_x, grad_w=grad_w)


@pytest.mark.parametrize("activation, estimated", SURROGATES)
def test_dead_inputs_and_saturated_weights(activation, estimated):
    """W = 1 exactly on selected inputs (a = 0: P = 0, log a = −inf) and whole columns of W at 0, 0.5 and 1."""
    x, wc, wd, gy = make_inputs(12, 10, 7, seed=3)
    for w in (wc, wd):
        w[:, 0], w[:, 1], w[:, 2] = 1.0, 0.5, 0.0
        w[0, 3] = w[1, 3] = 1.0
    x[0] = 0.0
    x[1] = 1.0
    check(x, wc, wd, gy, activation, estimated_grad=estimated)


@pytest.mark.parametrize("activation, estimated", SURROGATES)
def test_noncontiguous_inputs(activation, estimated):
    x, wc, wd, gy = make_inputs(8, 11, 5, seed=4)
    check(x.t().contiguous().t(), wc.t().contiguous().t(), wd[:, :], gy, activation, estimated_grad=estimated)
    got = run(lambda *a: logical_grafted(*a, activation, estimated_grad=estimated, backend="reference"),
              x, wc, wd, gy.t().contiguous().t())  # a non-contiguous upstream gradient
    ref = run(lambda *a: logical_grafted(*a, activation, estimated_grad=estimated, backend="reference"), x, wc, wd, gy)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation, estimated", SURROGATES)
def test_float32_close_to_float64(activation, estimated):
    """fp32 forward values are exact; fp32 gradients are as close to float64 as the reference's own fp32 ones (G'
    near t = 1 keeps ~17 bits for β = 8, README: single entries can lose more where terms cancel)."""
    x, wc, wd, gy = make_inputs(20, 30, 8, seed=5)
    x32, wc32, wd32, gy32 = (t.float() for t in (x, wc, wd, gy))

    def fused(*a):
        return logical_grafted(*a, activation, estimated_grad=estimated, backend="reference")

    def reference(*a):
        discrete, continuous = reference_grafted(*a, activation, estimated_grad=estimated)
        return continuous - continuous.detach() + discrete

    got = run(fused, x32, wc32, wd32, gy32)
    ref32 = run(reference, x32, wc32, wd32, gy32)
    ref64 = run(reference, x, wc32.double(), wd32.double(), gy32.double())
    assert got[0].dtype == torch.float32 and torch.equal(got[0].double(), ref64[0])
    for name, g, r32, r64 in zip(("dx", "dW_conj", "dW_disj"), got[1:], ref32[1:], ref64[1:]):
        assert g.dtype == torch.float32
        err, ref_err = (g.double() - r64).norm() / r64.norm(), (r32.double() - r64).norm() / r64.norm()
        assert err <= max(2 * ref_err, 1e-6), f"{name}: relative L2 error {err:.1e} (reference fp32: {ref_err:.1e})"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("activation, estimated", SURROGATES)
def test_half_inputs_compute_in_float32(dtype, activation, estimated):
    """fp16 / bf16 are upcast exactly: the result is the fp32 computation on the same values, cast back."""
    x, wc, wd, gy = make_inputs(6, 9, 4, seed=6, dtype=dtype)
    fn = lambda *a: logical_grafted(*a, activation, estimated_grad=estimated, backend="reference")  # noqa: E731
    got = run(fn, x, wc, wd, gy)
    ref = run(fn, x.float(), wc.float(), wd.float(), gy.float())
    assert all(t.dtype == dtype for t in got)
    assert torch.equal(got[0].float(), ref[0])
    for g, r in zip(got[1:], ref[1:]):
        assert torch.equal(g, r.to(dtype))


def test_no_gradient_needed_gives_the_discrete_value():
    x, wc, wd, gy = make_inputs(5, 7, 3)
    ref = reference_grafted(x, wc, wd, "nlaf")[0]
    y = logical_grafted(x, wc, wd, backend="reference")  # no input requires grad
    assert not y.requires_grad and torch.equal(y, ref)
    with torch.no_grad():
        y = logical_grafted(x, wc.requires_grad_(), wd, "laf", backend="reference")
    assert not y.requires_grad and torch.equal(y, ref)


@pytest.mark.parametrize("activation, estimated", SURROGATES)
@pytest.mark.parametrize("shape", [(0, 5, 3), (4, 0, 3), (4, 5, 0)])
def test_empty_shapes(activation, estimated, shape):
    """n_in = 0: the empty AND is 1, the empty OR 0; B = 0 or w = 0: empty outputs, gradients of the right shape."""
    B, n, w = shape
    x, wc, wd = torch.rand(B, n, requires_grad=True), torch.rand(n, w, requires_grad=True), torch.rand(n, w)
    y = logical_grafted(x, wc, wd, activation, estimated_grad=estimated, backend="reference")
    assert y.shape == (B, 2 * w)
    assert n > 0 or torch.equal(y, torch.cat([torch.ones(B, w), torch.zeros(B, w)], 1))
    y.sum().backward()
    assert x.grad.shape == x.shape and wc.grad.shape == wc.shape


class _Sizes(TorchDispatchMode):
    """Records the number of elements of every tensor an aten op returns."""

    def __init__(self):
        super().__init__()
        self.numels = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.numels.append(t.numel())
        return out


@pytest.mark.parametrize("activation, estimated", SURROGATES)
def test_nothing_of_size_batch_inputs_nodes(activation, estimated):
    """Binary x: no [B, n_in, w] tensor in the forward or the backward (the reference's product builds several)."""
    B, n, w = 64, 50, 40
    x, wc, wd, gy = make_inputs(B, n, w, seed=7, dtype=torch.float32)
    x.requires_grad_()
    wc.requires_grad_()
    wd.requires_grad_()
    with _Sizes() as sizes:
        y = logical_layer_grafted(x, wc, wd, activation, estimated_grad=estimated)
        (y * gy).sum().backward()
    assert max(sizes.numels) < B * n * w / 4, max(sizes.numels)


def test_double_backward_is_refused():
    x, wc, wd, gy = make_inputs(3, 4, 2)
    wc.requires_grad_()
    gy.requires_grad_()  # so that the first backward builds a graph to differentiate
    y = logical_grafted(x, wc, wd, backend="reference")
    (g,) = torch.autograd.grad((y * gy).sum(), wc, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|double backward|trying to differentiate twice"):
        g.sum().backward()


lt = triton_module("paperzoo.kernels.logical.triton")


@needs_triton(lt)
@pytest.mark.parametrize("activation, estimated", SURROGATES)
def test_triton_backend_is_the_graft_of_the_triton_ops(activation, estimated):
    x, wc, wd, gy = make_inputs(7, 37, 5, seed=8, dtype=torch.float32)

    def on(backend):
        return lambda *a: logical_grafted(*a, activation, estimated_grad=estimated, backend=backend)

    got = run(on("triton"), *(t.to(DEVICE) for t in (x, wc, wd, gy)))
    ref = run(on("reference"), x, wc, wd, gy)
    assert torch.equal(got[0].cpu(), ref[0])
    for g, r in zip(got[1:], ref[1:]):
        torch.testing.assert_close(g.cpu(), r, rtol=5e-4, atol=1e-5 * r.abs().max().item())


def small():
    return torch.rand(3, 4), torch.rand(4, 2), torch.rand(4, 2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(activation="relu"), "activation='relu'"),
        (dict(activation="nlaf", alpha=1.0), "alpha=1.0"),
        (dict(activation="nlaf", beta=0.5), "beta=0.5"),
        (dict(activation="nlaf", gamma=-1.0), "gamma=-1.0"),
        (dict(activation="nlaf", alpha=math.nan), "alpha=nan"),
        (dict(activation="laf", estimated_grad="yes"), "estimated_grad='yes'"),
        (dict(backend="cuda"), "kernel_backend='cuda'"),
    ],
)
def test_invalid_parameters_name_field_and_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        logical_grafted(*small(), **kwargs)


def test_invalid_tensors_name_shapes_and_dtypes():
    x, wc, wd = small()
    with pytest.raises(ValueError, match=r"w_conj and w_disj.*\(4, 2\), \(4, 3\)"):
        logical_grafted(x, wc, torch.rand(4, 3))
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(5, 2\)"):
        logical_grafted(x, torch.rand(5, 2), wd)
    with pytest.raises(ValueError, match=r"\(3, 4, 1\)"):
        logical_grafted(x[..., None], wc, wd)
    with pytest.raises(ValueError, match="float32.*float64"):
        logical_grafted(x, wc, wd.double())
    with pytest.raises(ValueError, match="tensors"):
        logical_grafted(x.tolist(), wc, wd)


@pytest.mark.parametrize("activation, estimated", SURROGATES)
def test_traced_by_torch_compile_matches_the_fused_layer(activation, estimated):
    """Under torch.compile (full graph) the dispatcher composes the reference ops, which trace; values and gradients
    equal the eager fused layer's."""
    x, wc, wd, gy = make_inputs(7, 37, 5, seed=4)

    def layer(x, wc, wd):
        return logical_grafted(x, wc, wd, activation, 0.9, 3.0, 2.0, estimated, backend="reference")

    torch._dynamo.reset()
    traced = run(torch.compile(layer, fullgraph=True, backend="aot_eager"), x, wc, wd, gy)
    eager = run(layer, x, wc, wd, gy)
    assert torch.equal(traced[0], eager[0])
    for name, t, e in zip(("dx", "dW_conj", "dW_disj"), traced[1:], eager[1:]):
        torch.testing.assert_close(t, e, rtol=1e-10, atol=1e-10, msg=name)
