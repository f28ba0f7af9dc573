"""RRL's logical layers: reference vs naive float64 formulas and gradchecks; Triton vs the reference; dispatch; GPU.

The Triton tests run on CPU under TRITON_INTERPRET=1 (`make test` sets it) or on CUDA; with neither they skip.
Every kernel output buffer is allocated NaN-filled during these tests (`poison`), so an unwritten tile fails.
"""

from __future__ import annotations

import math

import pytest
import torch

import paperzoo._env
from paperzoo.kernels import _registry as registry
from paperzoo.kernels.logical import KINDS, logical_binarized, logical_nlaf, logical_product
from paperzoo.kernels.logical.reference import (
    EPSILON,
    logical_binarized_matmul,
    logical_nlaf_matmul,
    logical_product_materialized,
)

from .triton_support import DEVICE, needs_triton as _needs_triton, poison_outputs, triton_module

lt = triton_module("paperzoo.kernels.logical.triton")
needs_triton = _needs_triton(lt)

# The interpreter evaluates both sides of tl.where with numpy: log2(0) and 0·inf there are expected and masked out.
pytestmark = pytest.mark.filterwarnings(
    "ignore:divide by zero encountered:RuntimeWarning", "ignore:invalid value encountered:RuntimeWarning"
)

F64 = torch.float64
# (B, n_in, n_out): one row, partial tiles, several tiles along each dimension (interpreter tiles are 16 and 32)
SHAPES = [(1, 5, 3), (7, 70, 40), (33, 5, 40), (33, 70, 3)]
# (alpha, beta, gamma): the official defaults and the README's other recommendation; beta = 1 (G'(0) = -alpha)
NLAF_PARAMS = [(0.999, 8.0, 1.0), (0.9, 3.0, 3.0), (0.99, 1.0, 0.5)]
DIFFERENTIABLE = [(logical_nlaf, logical_nlaf_matmul), (logical_product, logical_product_materialized)]


def make_inputs(B, n_in, n_out, seed=0, w_high=1.0, exact=True):
    """x uniform in [0.05, 0.95], W in [0, w_high], with exact 0s and 1s mixed in (RRL's inputs are mostly binary;
    they hit G(0) = 0, a = 0 and P = 0), and an upstream gradient gy; all float64 on the CPU.

    Fractional x stays 0.05 away from 0 and 1: the product's gradient goes as 1/a, a = 1 − W u, and fp32 computes a
    to ~2^-24 absolute, so x → 0 with W → 1 (a → 0 but not 0) loses all relative accuracy in fp32, inherently."""
    g = torch.Generator().manual_seed(seed)
    x = 0.05 + 0.9 * torch.rand(B, n_in, generator=g, dtype=F64)
    w = torch.rand(n_in, n_out, generator=g, dtype=F64) * w_high
    if exact:
        r = torch.rand(B, n_in, generator=g, dtype=F64)
        x[r < 0.25] = 0.0
        x[r > 0.75] = 1.0
        r = torch.rand(n_in, n_out, generator=g, dtype=F64)
        w[r < 0.1] = 0.0
        w[r > 0.95] = 1.0
    gy = torch.randn(B, n_out, generator=g, dtype=F64)
    return x, w, gy


def forward_backward(fn, x, w, gy, dtype=F64, device="cpu", grad_x=True, grad_w=True):
    """y and the grads of x and W for loss = Σ y·gy, on leaf copies of x, W cast to `dtype` (on `device`)."""
    xl = x.to(device=device, dtype=dtype).detach().requires_grad_(grad_x)
    wl = w.to(device=device, dtype=dtype).detach().requires_grad_(grad_w)
    y = fn(xl, wl)
    (y.double() * gy.to(device)).sum().backward()
    return y.detach(), xl.grad, wl.grad


def rounded(t, dtype):
    """t rounded to `dtype` and back to float64 (the reference then sees exactly the kernel's inputs)."""
    return t.to(dtype).double()


def assert_close(got, ref, tol, name=""):
    got, ref = got.double().cpu(), ref.double().cpu()
    assert got.shape == ref.shape, f"{name}: shape {tuple(got.shape)} != {tuple(ref.shape)}"
    assert torch.isfinite(got).all(), f"{name}: non-finite values (unwritten tile?)"
    scale = max(1.0, ref.abs().max().item())
    err = (got - ref).abs().max().item()
    assert err <= tol * scale, f"{name}: max abs error {err:.3e} > {tol:.1e} * {scale:.3g}"


@pytest.fixture
def poison(monkeypatch):
    return poison_outputs(monkeypatch, lt)


# ---------------------------------------------------------------------------------------------------------------------
# naive float64 formulas, independent of reference.py: explicit [B, n_in, n_out] products, boolean logic, loops
# ---------------------------------------------------------------------------------------------------------------------


def naive_g(t, alpha, beta):
    p = (alpha * t) ** beta
    return -p / (1.0 - p)  # = 1 - 1/(1 - p), written differently from the reference


def naive_nlaf(x, w, kind, alpha, beta, gamma):
    u = 1.0 - x if kind == "conjunction" else x
    s = (naive_g(u, alpha, beta)[:, :, None] * naive_g(w, alpha, beta)[None, :, :]).sum(1)
    y = torch.pow(1.0 + s, -gamma)
    return y if kind == "conjunction" else 1.0 - y


def naive_product(x, w, kind):
    u = 1.0 - x if kind == "conjunction" else x
    v = torch.prod(1.0 - u[:, :, None] * w[None, :, :], dim=1)  # the product itself, not a sum of logs
    p = -1.0 / (-1.0 + torch.log(v))
    return p if kind == "conjunction" else 1.0 - p


def naive_binarized(x, w, kind, threshold):
    """Boolean logic for x ∈ [0, 1]: AND fires iff every selected input is exactly 1, OR iff one is > 0."""
    sel = (w > threshold)[None, :, :]
    if kind == "conjunction":
        return (~sel | (x[:, :, None] == 1.0)).all(1).to(x.dtype)
    return (sel & (x[:, :, None] > 0.0)).any(1).to(x.dtype)


def loop_forms(x, w, kind, alpha, beta, gamma, threshold):
    """The three forms with Python loops over scalars (math module only), for tiny shapes."""
    B, n_in = x.shape
    n_out = w.shape[1]
    conj = kind == "conjunction"
    G = lambda t: 1.0 - 1.0 / (1.0 - (alpha * t) ** beta)  # noqa: E731
    nlaf, prod, binar = (torch.zeros(B, n_out, dtype=F64) for _ in range(3))
    for b in range(B):
        for j in range(n_out):
            s, logsum, hits = 0.0, 0.0, 0
            for i in range(n_in):
                xi, wij = x[b, i].item(), w[i, j].item()
                ui = 1.0 - xi if conj else xi
                s += G(ui) * G(wij)
                a = 1.0 - wij * ui
                logsum += math.log(a) if a > 0 else -math.inf
                hits += int(wij > threshold and ((xi != 1.0) if conj else (xi > 0.0)))
            y = (1.0 + s) ** -gamma
            p = 1.0 / (1.0 - logsum)
            nlaf[b, j] = y if conj else 1.0 - y
            prod[b, j] = p if conj else 1.0 - p
            binar[b, j] = float(hits == 0) if conj else float(hits > 0)
    return nlaf, prod, binar


# ---------------------------------------------------------------------------------------------------------------------
# (a) the reference against the naive formulas, and its gradients (float64)
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_reference_nlaf_matches_naive(kind, shape):
    x, w, _ = make_inputs(*shape, seed=sum(shape))
    for alpha, beta, gamma in NLAF_PARAMS:
        y = logical_nlaf_matmul(x, w, kind, alpha, beta, gamma)
        assert y.dtype == F64 and y.shape == (shape[0], shape[2])
        assert_close(y, naive_nlaf(x, w, kind, alpha, beta, gamma), 1e-12, f"nlaf {alpha, beta, gamma}")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_reference_product_matches_naive(kind, shape):
    x, w, _ = make_inputs(*shape, seed=sum(shape))
    for estimated in (False, True):  # estimated_grad changes the backward only
        y = logical_product_materialized(x, w, kind, estimated)
        assert y.dtype == F64
        assert_close(y, naive_product(x, w, kind), 1e-12, "product")
    assert ((y == 0) | (y == 1)).any() or shape[1] == 5, "the exact corners (a = 0) were not reached"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_reference_binarized_matches_logic(kind, shape, threshold):
    x, w, _ = make_inputs(*shape, seed=sum(shape), w_high=0.6)  # sparse W̄: both outputs occur
    w[0, :] = threshold  # exactly at the threshold: not selected
    y = logical_binarized_matmul(x, w, kind, threshold)
    assert y.dtype == F64 and not y.requires_grad
    assert torch.equal(y, naive_binarized(x, w, kind, threshold))


@pytest.mark.parametrize("kind", KINDS)
def test_reference_forms_match_scalar_loops(kind):
    x, w, _ = make_inputs(4, 6, 5, seed=3, w_high=0.8)
    alpha, beta, gamma = 0.9, 3.0, 2.0
    nlaf, prod, binar = loop_forms(x, w, kind, alpha, beta, gamma, 0.5)
    assert_close(logical_nlaf_matmul(x, w, kind, alpha, beta, gamma), nlaf, 1e-12, "nlaf")
    assert_close(logical_product_materialized(x, w, kind), prod, 1e-12, "product")
    assert torch.equal(logical_binarized_matmul(x, w, kind, 0.5), binar)


def interior_inputs(B, n_in, n_out, seed):
    """x, W in [0.05, 0.9]: away from the kinks (t = 0) and from a = 1 − W u = 0 (a ≥ 0.145)."""
    g = torch.Generator().manual_seed(seed)
    x = 0.05 + 0.85 * torch.rand(B, n_in, generator=g, dtype=F64)
    w = 0.05 + 0.85 * torch.rand(n_in, n_out, generator=g, dtype=F64)
    return x.requires_grad_(), w.requires_grad_()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("params", NLAF_PARAMS)
def test_reference_nlaf_gradcheck(kind, params):
    x, w = interior_inputs(3, 4, 2, seed=1)
    assert torch.autograd.gradcheck(lambda x, w: logical_nlaf_matmul(x, w, kind, *params), (x, w))


@pytest.mark.parametrize("kind", KINDS)
def test_reference_product_gradcheck(kind):
    """The official custom backward P²/(a + ε) is the exact derivative up to ε (relative 1e-10/a ≤ 7e-10 here)."""
    x, w = interior_inputs(3, 4, 2, seed=2)
    assert torch.autograd.gradcheck(lambda x, w: logical_product_materialized(x, w, kind), (x, w))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("estimated", [False, True])
def test_reference_product_backward_formula(kind, estimated):
    """Autograd through the custom Function equals ∂L/∂a = ∂L/∂P · f(P)/(a + ε) chained by hand, with f = P² or
    (EstimatedProduct) −1/(−1 + log P²); it includes a = 0 entries (exact zeros of x and W = 1)."""
    x, w, gy = make_inputs(5, 9, 4, seed=4)
    y, dx, dw = forward_backward(lambda x, w: logical_product_materialized(x, w, kind, estimated), x, w, gy)
    conj = kind == "conjunction"
    u = 1.0 - x if conj else x
    a = 1.0 - u[:, :, None] * w[None]
    p = y if conj else 1.0 - y
    f = -1.0 / (-1.0 + torch.log(p**2)) if estimated else p**2
    dp = gy if conj else -gy
    da = (dp * f)[:, None, :] / (a + EPSILON)
    dx_ref = (da * w[None]).sum(2) * (1.0 if conj else -1.0)  # ∂a/∂x = W (AND) or −W (OR)
    dw_ref = -(da * u[:, :, None]).sum(0)  # ∂a/∂W = −u
    assert (a == 0).any(), "no a = 0 entry: the corner is not exercised"
    assert_close(dx, dx_ref, 1e-12, "dx")
    assert_close(dw, dw_ref, 1e-12, "dW")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("beta", [1.0, 8.0])
def test_reference_nlaf_gradient_at_binary_inputs(kind, beta):
    """x, W exactly 0 / 1: G(0) = 0 and G'(0) = 0 (β > 1) or −α (β = 1); no NaN from 0^(β−1)."""
    x, w, gy = make_inputs(6, 8, 5, seed=5)
    x, w = x.round(), w.round()
    alpha, gamma = 0.9, 2.0
    y, dx, dw = forward_backward(lambda x, w: logical_nlaf_matmul(x, w, kind, alpha, beta, gamma), x, w, gy)
    conj = kind == "conjunction"
    u = 1.0 - x if conj else x

    def G(t):
        p = (alpha * t) ** beta
        return -p / (1.0 - p), -beta * alpha * (alpha * t) ** (beta - 1.0) / (1.0 - p) ** 2

    gu, dgu = G(u)
    gw, dgw = G(w)
    s = gu @ gw
    r = gy * gamma * (1.0 + s) ** (-gamma - 1.0) * (-1.0 if conj else 1.0)  # ∂L/∂s
    assert_close(dx, (r @ gw.T) * dgu * (-1.0 if conj else 1.0), 1e-12, "dx")
    assert_close(dw, (gu.T @ r) * dgw, 1e-12, "dW")


def test_reference_half_inputs_compute_in_fp32():
    x, w, _ = make_inputs(7, 70, 40, seed=6)
    for dtype in (torch.bfloat16, torch.float16):
        xh, wh = x.to(dtype), w.to(dtype)
        y = logical_nlaf_matmul(xh, wh, "conjunction")
        assert y.dtype == dtype
        assert_close(y, logical_nlaf_matmul(xh.double(), wh.double(), "conjunction"), 1e-2, "nlaf")
        y = logical_product_materialized(xh, wh, "disjunction")
        assert_close(y, logical_product_materialized(xh.double(), wh.double(), "disjunction"), 1e-2, "product")


@pytest.mark.parametrize("backend", ["reference", "triton"])
def test_empty_shapes(backend):
    """n_in = 0: the empty conjunction is 1 and the empty disjunction 0 in every form; B = 0 or n_out = 0: empty."""
    device = DEVICE if backend == "triton" else "cpu"
    x, w = torch.rand(4, 0, device=device), torch.rand(0, 3, device=device)
    for kind, value in (("conjunction", 1.0), ("disjunction", 0.0)):
        for op in (logical_nlaf, logical_product, logical_binarized):
            y = op(x, w, kind, backend=backend)
            assert y.shape == (4, 3) and torch.equal(y.cpu(), torch.full((4, 3), value)), op.__name__
    for shape_x, shape_w in (((0, 5), (5, 3)), ((4, 5), (5, 0))):
        x = torch.rand(*shape_x, device=device, requires_grad=True)
        w = torch.rand(*shape_w, device=device, requires_grad=True)
        for op in (logical_nlaf, logical_product):
            y = op(x, w, "conjunction", backend=backend)
            assert y.shape == (shape_x[0], shape_w[1])
            y.sum().backward()
            assert x.grad.shape == x.shape and w.grad.shape == w.shape
        assert logical_binarized(x, w, "disjunction", backend=backend).shape == (shape_x[0], shape_w[1])


# ---------------------------------------------------------------------------------------------------------------------
# (b) Triton kernels vs the float64 reference (fp32 inputs)
# ---------------------------------------------------------------------------------------------------------------------


def check_against_reference(op, ref_op, x, w, gy, fwd_tol, bwd_tol, poison, **kw):
    got = forward_backward(lambda x, w: op(x, w, backend="triton", **kw), x, w, gy, torch.float32, DEVICE)
    ref = forward_backward(lambda x, w: ref_op(x, w, **kw), rounded(x, torch.float32), rounded(w, torch.float32), gy)
    assert poison, "the kernels' outputs were not allocated through the poisoned allocator"
    assert all(len(shape) == 2 for shape in poison), f"a kernel buffer is not 2-D: {poison}"
    assert got[0].dtype == torch.float32 and got[1].dtype == torch.float32 and got[2].dtype == torch.float32
    for name, g, r, tol in zip(("y", "dx", "dW"), got, ref, (fwd_tol, bwd_tol, bwd_tol)):
        assert_close(g, r, tol, name)


@needs_triton
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_triton_nlaf_matches_reference(kind, shape, poison):
    """fp32 loses ~1e-5 relative in G'(t) near t = 1: 1 − p (p = (αt)^β ≈ 0.992) keeps ~17 bits, then squared."""
    x, w, gy = make_inputs(*shape, seed=10 + sum(shape))
    check_against_reference(logical_nlaf, logical_nlaf_matmul, x, w, gy, 1e-5, 1e-4, poison, kind=kind)


@needs_triton
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("params", NLAF_PARAMS[1:])
def test_triton_nlaf_params(kind, params, poison):
    x, w, gy = make_inputs(7, 70, 40, seed=11)
    alpha, beta, gamma = params
    check_against_reference(logical_nlaf, logical_nlaf_matmul, x, w, gy, 1e-5, 1e-4, poison, kind=kind,
                            alpha=alpha, beta=beta, gamma=gamma)  # fmt: skip


@needs_triton
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("estimated", [False, True])
def test_triton_product_matches_reference(kind, shape, estimated, poison):
    x, w, gy = make_inputs(*shape, seed=20 + sum(shape))
    check_against_reference(logical_product, logical_product_materialized, x, w, gy, 1e-5, 1e-5, poison, kind=kind,
                            estimated_grad=estimated)  # fmt: skip


@needs_triton
@pytest.mark.parametrize("unroll", [1, 2])
@pytest.mark.parametrize("kind", KINDS)
def test_triton_product_unroll(unroll, kind, poison, monkeypatch):
    """The CUDA autotuning also picks UNROLL = 1 or 2 (the interpreter runs 4): same result, other loop tails."""
    monkeypatch.setattr(lt, "_UNROLL", unroll)
    x, w, gy = make_inputs(33, 70, 40, seed=15)
    check_against_reference(logical_product, logical_product_materialized, x, w, gy, 1e-5, 1e-5, poison, kind=kind,
                            estimated_grad=unroll == 2)  # fmt: skip


@needs_triton
@pytest.mark.parametrize("op, ref_op", DIFFERENTIABLE)
@pytest.mark.parametrize("grad_x, grad_w", [(True, False), (False, True)])
def test_triton_one_gradient(op, ref_op, grad_x, grad_w, poison):
    """Only the requested gradient is computed (the other kind of backward program is not launched)."""
    x, w, gy = make_inputs(7, 70, 40, seed=12)
    got = forward_backward(lambda x, w: op(x, w, "disjunction", backend="triton"), x, w, gy, torch.float32, DEVICE,
                           grad_x, grad_w)  # fmt: skip
    x32, w32 = rounded(x, torch.float32), rounded(w, torch.float32)
    ref = forward_backward(lambda x, w: ref_op(x, w, "disjunction"), x32, w32, gy, F64, "cpu", grad_x, grad_w)
    assert (got[1] is None) == (not grad_x) and (got[2] is None) == (not grad_w)
    for g, r in zip(got, ref):
        if r is not None:
            assert_close(g, r, 1e-4, op.__name__)


@needs_triton
@pytest.mark.parametrize("op, ref_op", DIFFERENTIABLE)
def test_triton_noncontiguous_inputs_and_expanded_grad(op, ref_op, poison):
    """Transposed views as inputs, and y.sum().backward() (an expanded, stride-0 upstream gradient)."""
    x, w, _ = make_inputs(33, 70, 40, seed=13)
    xv = x.float().t().contiguous().t().to(DEVICE).requires_grad_()
    wv = w.float().t().contiguous().t().to(DEVICE).requires_grad_()
    assert not xv.is_contiguous() and not wv.is_contiguous()
    y = op(xv, wv, "conjunction", backend="triton")
    y.sum().backward()
    xr, wr = rounded(x, torch.float32).requires_grad_(), rounded(w, torch.float32).requires_grad_()
    y_ref = ref_op(xr, wr, "conjunction")
    y_ref.sum().backward()
    assert_close(y, y_ref, 1e-5, "y")
    assert_close(xv.grad, xr.grad, 1e-4, "dx")
    assert_close(wv.grad, wr.grad, 1e-4, "dW")


@needs_triton
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("op, ref_op", DIFFERENTIABLE)
def test_triton_half_precision(op, ref_op, dtype, poison):
    x, w, gy = make_inputs(33, 70, 40, seed=14, w_high=0.5)
    got = forward_backward(lambda x, w: op(x, w, "conjunction", backend="triton"), x, w, gy, dtype, DEVICE)
    ref = forward_backward(lambda x, w: ref_op(x, w, "conjunction"), rounded(x, dtype), rounded(w, dtype), gy)
    assert got[0].dtype == dtype and got[1].dtype == dtype and got[2].dtype == dtype
    for name, g, r in zip(("y", "dx", "dW"), got, ref):
        assert_close(g, r, 1e-2, name)


def binarized_inputs(shape, seed, threshold, dtype):
    """Fractional x with exact 0s / 1s; a sparse W̄: W below `threshold`, except entries exactly at the threshold
    rounded to dtype (selected iff that rounding went up), at the next representable value above it, and at 1."""
    x, _, _ = make_inputs(*shape, seed=seed)
    g = torch.Generator().manual_seed(seed)
    r = torch.rand(shape[1:], generator=g, dtype=F64)
    w = (torch.rand(shape[1:], generator=g, dtype=F64) * threshold).to(dtype)
    at = torch.tensor(threshold, dtype=dtype)
    above = at + 2**-8 if dtype == torch.bfloat16 else torch.nextafter(at, torch.tensor(1.0, dtype=dtype))
    w[r < 0.3] = at
    w[r > 0.98] = above
    w[(r > 0.96) & (r <= 0.98)] = 1.0
    return x.to(dtype), w


@needs_triton
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_binarized_exact(kind, shape, dtype, poison):
    for threshold in (0.5, 0.3):  # 0.3 is not representable: W̄ compares exactly, not after rounding 0.3
        x, w = binarized_inputs(shape, sum(shape), threshold, dtype)
        y = logical_binarized(x.to(DEVICE), w.to(DEVICE), kind, threshold, backend="triton")
        assert y.dtype == dtype and not y.requires_grad
        ref = logical_binarized_matmul(x, w, kind, threshold)
        assert torch.equal(y.cpu(), ref), f"threshold {threshold}: {(y.cpu() != ref).sum().item()} differ"
        assert torch.equal(ref.double(), naive_binarized(x.double(), w.double(), kind, threshold))
    assert poison


@needs_triton
def test_triton_binarized_outputs_vary():
    """Guard against a vacuous exactness test: the inputs above give both 0 and 1 for both kinds."""
    x, w = binarized_inputs((33, 70, 40), 143, 0.5, torch.float32)
    for kind in KINDS:
        y = logical_binarized(x.to(DEVICE), w.to(DEVICE), kind, backend="triton")
        assert 0.02 < y.float().mean().item() < 0.98, kind


@pytest.mark.skipif(lt is None, reason="needs triton")
def test_threshold_rounding_and_launch_configuration():
    for t in (0.5, 0.3, 1.0 / 3.0, -0.0, 1e-45, 2.0**-149, 3.5e38, -3.5e38):
        t32 = lt._threshold_fp32(t)
        assert t32 <= t and torch.tensor(t32, dtype=torch.float32).item() == t32, t
        above = torch.nextafter(torch.tensor(t32, dtype=torch.float32), torch.tensor(math.inf)).item()
        assert above > t, t  # no fp32 strictly between t32 and t
    for tuned in (lt._nlaf_fwd_tuned, lt._nlaf_bwd_tuned, lt._product_fwd_tuned, lt._product_bwd_tuned):
        assert tuned.configs
        for c in tuned.configs:
            assert all(c.kwargs[t] >= 16 for t in ("BM", "BN", "BK") if t in c.kwargs)  # tl.dot needs 16
            assert c.kwargs.get("UNROLL", 1) in (1, 2, 4)  # 2^-24 ≤ a: a product of ≤ 5 a's stays normal
    assert lt._n_bwd_programs(33, 70, 40, 16, 16, 16, True, True) == 3 * 5 + 5 * 3
    assert lt._n_bwd_programs(33, 70, 40, 16, 16, 16, False, True) == 5 * 3


# ---------------------------------------------------------------------------------------------------------------------
# (c) backend resolution and argument checks
# ---------------------------------------------------------------------------------------------------------------------


def small(dtype=torch.float32):
    x, w, _ = make_inputs(3, 4, 2, seed=0)
    return x.to(dtype), w.to(dtype)


def no_interpreter(monkeypatch):
    """Pretend TRITON_INTERPRET is unset, wherever the reader was imported (by module or by name)."""
    monkeypatch.setattr(paperzoo._env, "triton_interpret", lambda: False)
    for module in (registry, lt):
        if module is not None and hasattr(module, "triton_interpret"):
            monkeypatch.setattr(module, "triton_interpret", lambda: False)


OPS = [logical_nlaf, logical_product, logical_binarized]


@pytest.mark.parametrize("op", OPS)
def test_triton_backend_on_cpu_without_interpreter_raises(op, monkeypatch):
    no_interpreter(monkeypatch)
    with pytest.raises(RuntimeError, match="triton"):
        op(*small(), "conjunction", backend="triton")


@pytest.mark.skipif(lt is None, reason="needs triton")
@pytest.mark.parametrize("op", OPS)
def test_triton_backend_rejects_float64(op):
    with pytest.raises(RuntimeError, match="float64"):
        op(*small(F64), "conjunction", backend="triton")


def test_auto_and_reference_backends(monkeypatch):
    """auto on CPU without the interpreter takes the reference; so does backend="reference" (and the env variable)."""
    no_interpreter(monkeypatch)
    x, w = small()
    ref = logical_nlaf_matmul(x.double(), w.double(), "disjunction")
    for backend in ("auto", "reference", None):
        assert_close(logical_nlaf(x, w, "disjunction", backend=backend), ref, 1e-4, str(backend))
    monkeypatch.setenv("PAPERZOO_KERNEL_BACKEND", "reference")
    y = logical_product(x, w, "conjunction")
    assert y.dtype == torch.float32
    assert_close(y, logical_product_materialized(x.double(), w.double(), "conjunction"), 1e-5, "product")
    assert torch.equal(logical_binarized(x, w, "conjunction"), logical_binarized_matmul(x, w, "conjunction"))


@pytest.mark.parametrize("op", OPS)
def test_invalid_backend_and_kind(op):
    with pytest.raises(ValueError, match="kernel_backend"):
        op(*small(), "conjunction", backend="cuda")
    with pytest.raises(ValueError, match="'and'.*conjunction"):
        op(*small(), "and")


@pytest.mark.parametrize("op", OPS)
def test_invalid_shapes_and_dtypes(op):
    x, w = small()
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(5, 2\)"):
        op(x, torch.rand(5, 2), "conjunction", backend="reference")
    with pytest.raises(ValueError, match=r"\(3, 4, 1\)"):
        op(x[..., None], w, "conjunction", backend="reference")
    with pytest.raises(ValueError, match=r"\(4,\)"):
        op(x, w[:, 0], "conjunction", backend="reference")
    with pytest.raises(ValueError, match="float32.*float64"):
        op(x, w.double(), "conjunction", backend="reference")
    with pytest.raises(ValueError, match="floating"):
        op(x.long(), w.long(), "conjunction", backend="reference")


def test_invalid_parameters():
    x, w = small()
    for bad in (0.0, 1.0, 1.5, -0.1, math.nan):
        with pytest.raises(ValueError, match="alpha"):
            logical_nlaf(x, w, "conjunction", alpha=bad, backend="reference")
    for bad in (0.5, 0.0, -1.0, math.inf):
        with pytest.raises(ValueError, match="beta"):
            logical_nlaf(x, w, "conjunction", beta=bad, backend="reference")
    for bad in (0.0, -2.0, "x"):
        with pytest.raises(ValueError, match="gamma"):
            logical_nlaf(x, w, "conjunction", gamma=bad, backend="reference")
    with pytest.raises(ValueError, match="threshold"):
        logical_binarized(x, w, "conjunction", threshold=math.nan, backend="reference")
    with pytest.raises(ValueError, match="estimated_grad"):
        logical_product(x, w, "conjunction", estimated_grad="yes", backend="reference")
    logical_nlaf(x, w, "conjunction", alpha=0.5, beta=1, gamma=0.1, backend="reference")  # boundaries accepted


# ---------------------------------------------------------------------------------------------------------------------
# (d) real sizes on a GPU: fp32 and bf16 against the float64 reference
# ---------------------------------------------------------------------------------------------------------------------


def rel_err(got, ref):
    got, ref = got.double(), ref.double()
    return ((got - ref).norm() / ref.norm().clamp_min(1e-30)).item()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
class TestLogicalGPU:
    B, N_IN, N_OUT = 4096, 1024, 1024

    def inputs(self, seed=0):
        # the official initialisation W ~ U(0, 0.5) (then binary-ish inputs): the outputs are neither 0 nor 1
        x, w, gy = make_inputs(self.B, self.N_IN, self.N_OUT, seed=seed, w_high=0.5)
        return x.cuda(), w.cuda(), gy.cuda()

    @staticmethod
    def reference_chunked(ref_op, x, w, gy, chunk, **kw):
        """The float64 reference by batch chunks (the product reference holds [chunk, n_in, n_out] tensors)."""
        wl = w.double().detach().requires_grad_()
        ys, dxs = [], []
        for i in range(0, x.shape[0], chunk):
            xl = x[i : i + chunk].double().detach().requires_grad_()
            y = ref_op(xl, wl, **kw)
            (y * gy[i : i + chunk]).sum().backward()
            ys.append(y.detach())
            dxs.append(xl.grad)
        return torch.cat(ys), torch.cat(dxs), wl.grad

    @pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
    @pytest.mark.parametrize("kind", KINDS)
    @pytest.mark.parametrize(
        "op, ref_op, kw, chunk",
        [
            (logical_nlaf, logical_nlaf_matmul, {}, 4096),
            (logical_nlaf, logical_nlaf_matmul, {"alpha": 0.9, "beta": 3.0, "gamma": 3.0}, 4096),
            (logical_product, logical_product_materialized, {}, 128),
            (logical_product, logical_product_materialized, {"estimated_grad": True}, 128),
        ],
    )
    def test_forward_backward(self, op, ref_op, kw, chunk, kind, dtype, poison):
        x, w, gy = self.inputs()
        xq, wq = x.to(dtype), w.to(dtype)
        got = forward_backward(lambda a, b: op(a, b, kind, backend="triton", **kw), xq, wq, gy, dtype, "cuda")
        ref = self.reference_chunked(ref_op, xq, wq, gy, chunk, kind=kind, **kw)
        # fp32: CUDA's exp2 (ex2.approx, ~2^-22 relative) reaches G' near t = 1 through 1/(1 − p)², p ≈ 0.992:
        # ~6e-5 relative on those entries (the interpreter's numpy exp2 is exact)
        if dtype == torch.bfloat16:
            tol = 2e-2
        elif op is logical_nlaf:
            tol = 2e-3 if torch.backends.cuda.matmul.allow_tf32 else 5e-4
        else:
            tol = 1e-4
        for name, g, r in zip(("y", "dx", "dW"), got, ref):
            assert g.dtype == dtype and torch.isfinite(g).all(), name
            assert rel_err(g, r) < tol, (name, rel_err(g, r))

    @pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
    @pytest.mark.parametrize("kind", KINDS)
    def test_binarized_exact(self, kind, dtype, poison):
        x, w = binarized_inputs((self.B, self.N_IN, self.N_OUT), 7, 0.5, dtype)
        w = (w.float() * (torch.rand(w.shape) < 0.01)).to(dtype)  # ~10 selected inputs per node: both outputs occur
        x, w = x.cuda(), w.cuda()
        y = logical_binarized(x, w, kind, backend="triton")
        assert torch.equal(y, logical_binarized_matmul(x, w, kind))
        assert 0.0 < y.float().mean().item() < 1.0
