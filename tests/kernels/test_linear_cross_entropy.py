"""Linear cross-entropy: the naive and chunked references vs float64 F.cross_entropy; Triton vs the reference forward
and backward; argument and backend checks; GPU at real sizes.

The Triton tests run on CPU under TRITON_INTERPRET=1 (`make test` sets it) or on CUDA; with neither they skip.
Every kernel output buffer is allocated NaN-filled during these tests (`poison`), so an unwritten element fails.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import paperzoo._env
from paperzoo.kernels import _registry as registry
from paperzoo.kernels.linear_cross_entropy import linear_cross_entropy
from paperzoo.kernels.linear_cross_entropy.reference import (
    default_chunk_size,
    linear_cross_entropy_naive,
    linear_cross_entropy_reference,
)

from .triton_support import DEVICE, assert_close, poison_outputs, rel_err, triton_module
from .triton_support import needs_triton as _needs_triton

lt = triton_module("paperzoo.kernels.linear_cross_entropy.triton")
needs_triton = _needs_triton(lt)

F64 = torch.float64
IGNORE = -100
# (N, V, d): one row / five items; a partial row block with V not a multiple of the chunk or the item tile; many row
# blocks with V = 1037 (prime: every chunk and tile size leaves a tail); odd pairings of the three
SHAPES = [(1, 5, 16), (7, 1000, 24), (130, 1037, 64), (130, 5, 24), (7, 1037, 16)]


def make_inputs(N, V, d, seed=0, ignore_every=3, spread=3.0):
    """hidden [N, d], weight [V, d] float64 (logits of a few units: a peaked but not saturated softmax), labels [N]
    with every `ignore_every`-th row (from row 1) set to IGNORE."""
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(N, d, generator=g, dtype=F64) * spread / d**0.5
    w = torch.randn(V, d, generator=g, dtype=F64)
    y = torch.randint(0, V, (N,), generator=g)
    if ignore_every:
        y[1::ignore_every] = IGNORE
    return h, w, y


def loss_and_grads(fn, h, w, y, dtype=None, device="cpu"):
    """fn(h, w, y) and (dh, dw) by torch.autograd.grad, on leaf copies in `dtype` on `device`."""
    hl = h.to(device=device, dtype=dtype or h.dtype).detach().requires_grad_()
    wl = w.to(device=device, dtype=dtype or w.dtype).detach().requires_grad_()
    loss = fn(hl, wl, y.to(device))
    dh, dw = torch.autograd.grad(loss, (hl, wl))
    return loss.detach(), dh, dw


def torch_ce(reduction="mean", ignore_index=IGNORE):
    return lambda h, w, y: F.cross_entropy(h @ w.T, y, ignore_index=ignore_index, reduction=reduction)


@pytest.fixture
def poison(monkeypatch):
    return poison_outputs(monkeypatch, lt)


# ---------------------------------------------------------------------------------------------------------------------
# (a) the references against float64 F.cross_entropy
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [None, 100, 7])
@pytest.mark.parametrize("N, V, d", SHAPES)
def test_reference_matches_torch(N, V, d, chunk_size):
    h, w, y = make_inputs(N, V, d, seed=N + V + d, ignore_every=3 if N > 1 else 0)
    ref = loss_and_grads(torch_ce(), h, w, y)
    for name, fn in (("chunked", lambda *a: linear_cross_entropy_reference(*a, chunk_size=chunk_size)),
                     ("naive", linear_cross_entropy_naive)):  # fmt: skip
        got = loss_and_grads(fn, h, w, y)
        assert got[0].dtype == F64 and got[0].shape == ()
        for what, g, r in zip(("loss", "dh", "dw"), got, ref):
            assert_close(g, r, 1e-12, f"{name} {what}")


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_reference_ignore_index_and_reduction(reduction):
    """A class index as ignore_index (rows with label 3 are ignored, class 3 still scores the others), both
    reductions, and a partial last chunk."""
    h, w, y = make_inputs(130, 37, 24, seed=1, ignore_every=0)
    y[::4] = 3
    ref = loss_and_grads(torch_ce(reduction, ignore_index=3), h, w, y)
    for fn in (linear_cross_entropy_reference, linear_cross_entropy_naive):
        got = loss_and_grads(lambda *a: fn(*a, ignore_index=3, reduction=reduction), h, w, y)
        for what, g, r in zip(("loss", "dh", "dw"), got, ref):
            assert_close(g, r, 1e-12, f"{fn.__name__} {what}")
    got = loss_and_grads(lambda *a: linear_cross_entropy(*a, ignore_index=3, reduction=reduction,
                                                         backend="reference"), h, w, y)  # fmt: skip
    assert_close(got[1], ref[1], 1e-12, "public dh")


def test_reference_all_ignored_is_zero_not_nan():
    """The deliberate difference from PyTorch: no valid row → loss 0 and zero gradients (PyTorch: NaN)."""
    h, w, y = make_inputs(7, 1000, 24, seed=2)
    y[:] = IGNORE
    assert torch.isnan(torch_ce()(h, w, y))
    for fn in (linear_cross_entropy_reference, linear_cross_entropy_naive):
        loss, dh, dw = loss_and_grads(fn, h, w, y)
        assert loss.item() == 0.0 and not dh.any() and not dw.any(), fn.__name__
    loss, dh, dw = loss_and_grads(lambda *a: linear_cross_entropy_reference(*a, reduction="sum"), h, w, y)
    assert loss.item() == 0.0 and not dh.any() and not dw.any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_reference_low_precision(dtype):
    """fp32 statistics whatever the input dtype: an fp32 loss, gradients in the input dtype, within that dtype's
    rounding of the float64 result on the same (rounded) inputs."""
    h, w, y = make_inputs(130, 1037, 24, seed=3)
    got = loss_and_grads(lambda *a: linear_cross_entropy_reference(*a, chunk_size=100), h, w, y, dtype=dtype)
    ref = loss_and_grads(torch_ce(), h.to(dtype).double(), w.to(dtype).double(), y)
    assert got[0].dtype == torch.float32 and got[1].dtype == dtype and got[2].dtype == dtype
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    for what, g, r in zip(("loss", "dh", "dw"), got, ref):
        assert_close(g, r, tol, what)


def test_reference_one_gradient_and_gradcheck():
    h, w, y = make_inputs(7, 11, 8, seed=4)
    wl = w.clone()  # frozen weight: only dh is computed
    hl = h.clone().requires_grad_()
    (dh,) = torch.autograd.grad(linear_cross_entropy_reference(hl, wl, y, chunk_size=4), hl)
    assert_close(dh, loss_and_grads(torch_ce(), h, w, y)[1], 1e-12, "dh")
    leaves = (h[:5, :6].clone().requires_grad_(), w[:, :6].clone().requires_grad_())
    assert torch.autograd.gradcheck(lambda a, b: linear_cross_entropy_reference(a, b, y[:5], chunk_size=3), leaves)


def test_default_chunk_size():
    assert default_chunk_size(4096) == 256  # a 4 MiB fp32 chunk at 4096 rows
    assert default_chunk_size(1) == 8192 and default_chunk_size(0) == 8192 and default_chunk_size(10**6) == 128


@pytest.mark.parametrize("backend", ["reference", pytest.param("triton", marks=needs_triton)])
def test_empty_batch(backend):
    device = DEVICE if backend == "triton" else "cpu"
    h = torch.zeros(0, 8, device=device, requires_grad=True)
    w = torch.randn(5, 8, device=device, requires_grad=True)
    loss = linear_cross_entropy(h, w, torch.zeros(0, dtype=torch.long, device=device), backend=backend)
    loss.backward()
    assert loss.item() == 0.0 and h.grad.shape == (0, 8) and not w.grad.any()


# ---------------------------------------------------------------------------------------------------------------------
# (b) Triton kernels vs the float64 reference
# ---------------------------------------------------------------------------------------------------------------------


def check_triton(h, w, y, dtype, tol, poison, reduction="mean", ignore_index=IGNORE):
    got = loss_and_grads(lambda *a: linear_cross_entropy(*a, ignore_index=ignore_index, reduction=reduction,
                                                         backend="triton"), h, w, y, dtype, DEVICE)  # fmt: skip
    ref = loss_and_grads(torch_ce(reduction, ignore_index), h.to(dtype).double(), w.to(dtype).double(), y)
    assert poison, "the kernels' outputs were not allocated through the poisoned allocator"
    assert got[0].dtype == torch.float32 and got[1].dtype == dtype and got[2].dtype == dtype
    for what, g, r in zip(("loss", "dh", "dw"), got, ref):
        assert g.shape == r.shape, what
        assert_close(g.cpu(), r, tol, what)


@needs_triton
@pytest.mark.parametrize("N, V, d", SHAPES)
def test_triton_matches_reference(N, V, d, poison):
    h, w, y = make_inputs(N, V, d, seed=N + V + d + 1, ignore_every=3 if N > 1 else 0)
    check_triton(h, w, y, torch.float32, 1e-5, poison)
    if V > 64:  # V cut into several splits: lse / target partials [S, N] with S > 1
        assert any(len(s) == 2 and s[0] > 1 and s[1] == N for s in poison), poison


@needs_triton
@pytest.mark.parametrize("d", [24, 64])
def test_triton_feature_parts(d, poison, monkeypatch):
    """d wider than the accumulator: dh and dW in 16-wide d-parts, each recomputing the logits."""
    monkeypatch.setattr(lt, "_MAX_BDO", 16)
    check_triton(*make_inputs(7, 130, d, seed=d), torch.float32, 1e-5, poison)


@needs_triton
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_triton_half_precision(dtype, poison):
    check_triton(*make_inputs(7, 1000, 24, seed=5), dtype, 1e-2, poison)


@needs_triton
def test_triton_sum_class_ignore_index_and_all_ignored(poison):
    h, w, y = make_inputs(7, 100, 16, seed=6, ignore_every=0)
    y[::2] = 3
    check_triton(h, w, y, torch.float32, 1e-5, poison, reduction="sum", ignore_index=3)
    y[:] = IGNORE
    loss, dh, dw = loss_and_grads(lambda *a: linear_cross_entropy(*a, backend="triton"), h, w, y, torch.float32,
                                  DEVICE)  # fmt: skip
    assert loss.item() == 0.0 and not dh.any() and not dw.any()


@needs_triton
def test_triton_one_gradient_and_no_grad(poison):
    """Only the requested gradient's kernel runs; without gradients only the forward partials are allocated."""
    h, w, y = make_inputs(7, 100, 16, seed=7)
    hl, wl = h.float().requires_grad_(), w.float()
    loss = linear_cross_entropy(hl, wl, y, backend="triton")
    n_fwd = len(poison)
    (dh,) = torch.autograd.grad(loss, hl)
    assert poison[n_fwd:] == [(poison[0][0], 7, 16)], poison  # dh partials only
    assert_close(dh, loss_and_grads(torch_ce(), h.float().double(), w.float().double(), y)[1], 1e-5, "dh")
    del poison[:]
    with torch.no_grad():
        linear_cross_entropy(hl, w.float().requires_grad_(), y, backend="triton")
    assert len(poison) == 2


@needs_triton
def test_triton_strided_rows(poison):
    """hidden rows with a row stride larger than d (a column slice) are read in place; a weight whose feature stride
    is not 1 (a transpose) is copied once."""
    h, w, y = make_inputs(7, 100, 48, seed=8)
    wide = torch.cat([h, h], dim=1).float().detach().requires_grad_()
    wt = w.float().T.contiguous().detach().requires_grad_()  # [d, V]; wt.T is [V, d] with feature stride V
    loss = linear_cross_entropy(wide[:, :48], wt.T, y, backend="triton")
    dwide, dwt = torch.autograd.grad(loss, (wide, wt))
    ref = loss_and_grads(torch_ce(), h, w, y)
    assert_close(loss.detach(), ref[0], 1e-5, "loss")
    assert_close(dwide[:, :48], ref[1], 1e-5, "dh")
    assert not dwide[:, 48:].any()
    assert_close(dwt.T, ref[2], 1e-5, "dw")


@pytest.mark.skipif(lt is None, reason="needs triton")
def test_cuda_launch_configuration(monkeypatch):
    monkeypatch.setattr(lt, "_on_cuda", lambda x: True)
    x = torch.empty(0)
    assert lt._tiles(512, x.bfloat16()) == (32, 32, 64, 512)  # 32 x 512 fp32 accumulators
    assert lt._tiles(64, x) == (64, 64, 32, 64)
    assert lt._tiles(512, x) == (16, 16, 32, 512)  # fp32: half the accumulator budget
    assert lt._tiles(24, x.half()) == (64, 64, 64, 32)
    assert lt._tiles(4096, x.half()) == (32, 32, 64, 512)  # 8 d-parts


# ---------------------------------------------------------------------------------------------------------------------
# (c) backend resolution and argument checks
# ---------------------------------------------------------------------------------------------------------------------


def no_interpreter(monkeypatch):
    """Pretend TRITON_INTERPRET is unset, wherever the reader was imported (by module or by name)."""
    monkeypatch.setattr(paperzoo._env, "triton_interpret", lambda: False)
    for module in (registry, lt):
        if module is not None and hasattr(module, "triton_interpret"):
            monkeypatch.setattr(module, "triton_interpret", lambda: False)


def small(dtype=torch.float32):
    h, w, y = make_inputs(3, 10, 8, seed=0)
    return h.to(dtype), w.to(dtype), y


def test_triton_backend_on_cpu_without_interpreter_raises(monkeypatch):
    no_interpreter(monkeypatch)
    with pytest.raises(RuntimeError, match="triton"):
        linear_cross_entropy(*small(), backend="triton")


@pytest.mark.skipif(lt is None, reason="needs triton")
def test_triton_backend_rejects_float64():
    with pytest.raises(RuntimeError, match="float64"):
        linear_cross_entropy(*small(F64), backend="triton")


def test_auto_and_reference_backends(monkeypatch):
    no_interpreter(monkeypatch)
    h, w, y = small()
    ref = torch_ce()(h.double(), w.double(), y)
    for backend in ("auto", "reference", None):
        assert_close(linear_cross_entropy(h, w, y, backend=backend), ref, 1e-6, str(backend))
    monkeypatch.setenv("PAPERZOO_KERNEL_BACKEND", "reference")
    assert_close(linear_cross_entropy(h, w, y), ref, 1e-6, "env")
    with pytest.raises(ValueError, match="kernel_backend"):
        linear_cross_entropy(h, w, y, backend="cuda")


def test_invalid_arguments():
    h, w, y = small()
    cases = [
        ((h[0], w, y), r"hidden must be \[N, d\].*\(8,\)"),
        ((h[:, :0], w[:, :0], y), r"hidden .*d >= 1.*\(3, 0\)"),
        ((h, w[:, :5], y), r"weight must be \[V, d\].*\(10, 5\).*\(3, 8\)"),
        ((h, w[:0], y), r"weight .*V >= 1.*\(0, 8\)"),
        ((h, w, y[:2]), r"labels must be \[N\].*\(2,\)"),
        ((h, w, y.int()), r"labels must be int64.*int32"),
        ((h, w.double(), y), r"hidden and weight .*float32.*float64"),
        ((h.long(), w.long(), y), r"hidden and weight .*int64"),
        ((h, w.to("meta"), y), r"one device.*meta"),
        ((h, 1.0, y), r"tensors"),
    ]
    for args, match in cases:
        with pytest.raises(ValueError, match=match):
            linear_cross_entropy(*args, backend="reference")
    with pytest.raises(ValueError, match="labels contains 10.*V=10"):
        linear_cross_entropy(h, w, torch.tensor([0, 10, IGNORE]), backend="reference")
    with pytest.raises(ValueError, match="labels contains -1"):
        linear_cross_entropy(h, w, torch.tensor([0, -1, 2]), backend="reference")
    with pytest.raises(ValueError, match="ignore_index"):
        linear_cross_entropy(h, w, y, ignore_index=True, backend="reference")
    with pytest.raises(ValueError, match="reduction"):
        linear_cross_entropy(h, w, y, reduction="none", backend="reference")


# ---------------------------------------------------------------------------------------------------------------------
# (d) real sizes on a GPU: the kernels against the chunked reference in float64, from the same bf16 inputs
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
class TestLinearCrossEntropyGPU:
    N, V = 4096, 100_000  # a batch of 4096 positions against a 100k-item catalogue

    @pytest.mark.parametrize("d", [64, 512])
    @pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
    def test_matches_reference(self, d, dtype, poison):
        h, w, y = make_inputs(self.N, self.V, d, seed=d)
        got = loss_and_grads(lambda *a: linear_cross_entropy(*a, backend="triton"), h, w, y, dtype, "cuda")
        ref = loss_and_grads(linear_cross_entropy_reference, h.to(dtype).double(), w.to(dtype).double(), y,
                             device="cuda")  # fmt: skip
        tol = 1e-2 if dtype == torch.bfloat16 else 1e-4
        assert abs(got[0].item() - ref[0].item()) < tol * max(1.0, abs(ref[0].item()))
        for what, g, r in zip(("dh", "dw"), got[1:], ref[1:]):
            assert g.dtype == dtype and torch.isfinite(g).all(), what
            assert rel_err(g, r) < tol, (what, rel_err(g, r))

    def test_no_logits_memory(self):
        """Forward + backward at V = 100k, d = 512, bf16 allocate far less than the 1.6 GB fp32 [N, V] logits."""
        h, w, y = make_inputs(self.N, self.V, 512, seed=1)
        hl = h.to("cuda", torch.bfloat16).requires_grad_()
        wl = w.to("cuda", torch.bfloat16).requires_grad_()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        linear_cross_entropy(hl, wl, y.cuda(), backend="triton").backward()
        torch.cuda.synchronize()
        extra = torch.cuda.max_memory_allocated() - base
        assert extra < 0.25 * self.N * self.V * 4, extra  # dW (bf16, 100 MB) and small partials only
