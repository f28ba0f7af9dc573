"""One RRL logical layer under hierarchical Gradient Grafting (TPAMI'24 arXiv 2310.14336), fused, in PyTorch.

A layer of w conjunction and w disjunction nodes over x [B, n] returns y = [AND ‖ OR] [B, 2w] whose *value* is the
discrete layer's (W̄ = 1[W > 0.5], AND 1[(1 − x) @ W̄ ≤ 0], OR 1[x @ W̄ > 0]) and whose *gradient* is that of the
continuous surrogate ỹ (official `GradGraft.apply(ȳ, ỹ)`). Composed per kind from `reference.py` (NLAF) a layer
issues ~60 ops in the forward and ~40 in the backward over 27 autograd nodes; on CPU at batch 32 that per-op cost,
not arithmetic, is the layer's time. Here both kinds run as one `torch.autograd.Function` (~40 ops forward, ~10
backward): the kinds are stacked on a leading axis, k = 0 (AND, u = 1 − x) and k = 1 (OR, u = x), so each matmul is
one `bmm`, and the backward is written out by hand.

NLAF (G(t) = 1 − 1/(1 − p), p = (α t)^β): y_k = (1 + s_k)^−γ (AND) or 1 − (1 + s_k)^−γ (OR), s_k = G(u_k) @ G(W_k).

    G'(t) = −β α q / (1 − p)²,  q = (α t)^(β−1)          (so p = q · α t, and q = 1 at t = 0 when β = 1)
    ∂L/∂s_k = σ_k c_k ⊙ ∂L/∂y_k,   c = γ (1 + s)^(−γ−1),   σ = −1 (AND), +1 (OR)
    ∂L/∂W_k = σ_k G'(W_k) ⊙ (G(u_k)ᵀ @ r_k),   r = c ⊙ ∂L/∂y
    ∂L/∂x   = Σ_k G'(u_k) ⊙ (r_k @ G(W_k)ᵀ)                (σ_k · ∂u_k/∂x = +1 for both kinds)

Product LAF (NeurIPS'21), P = 1/(1 − S), S_bj = Σ_i log a_bij, a_bij = 1 − u_bi W_ij, with the official custom
backward ∂L/∂a = h/(a + ε), h = ∂L/∂P ⊙ f(P), f = P² or (estimated_grad) 1/(1 − log P²), ∂L/∂P = ±∂L/∂y.
For binary x (every layer input of the model is binary) a_bij is 1 where u_bi = 0 and 1 − W_ij where u_bi = 1, so

    S = u @ log(1 − W)                                    (W = 1 gives log 0 = −inf: counted apart, P = 0 there)
    ∂L/∂W = −(uᵀ @ h) ⊙ 1/(1 − W + ε)
    ∂L/∂u = −[u ⊙ (h @ (W ⊙ 1/(1 − W + ε))ᵀ) + (1 − u) ⊙ (h @ Wᵀ)/(1 + ε)]

and nothing of size B·n·w exists. Fractional x falls back to the materialised reference.

Exactness: the forward value equals `logical_binarized_matmul`'s for x ∈ [0, 1] (same counts, same `> 0` test); the
gradients equal autograd through `logical_nlaf_matmul` / `logical_product_materialized` up to rounding (sums in
another order; (α t)^k by repeated squaring). Computation runs in fp32 (float64 stays float64, fp16 and bf16 are
upcast); y has x's dtype, the gradients their inputs' dtypes.
"""

from __future__ import annotations

import functools

import torch
from torch.autograd.function import once_differentiable

from .reference import EPSILON, logical_binarized_matmul, logical_product_materialized

ACTIVATIONS = ("nlaf", "laf")
_MAX_SQUARING_EXPONENT = 64  # integer powers up to this by repeated squaring: ≤ 12 muls cost less than one pow


@functools.cache
def _const(value: float, dtype: torch.dtype) -> torch.Tensor:
    """A cached 0-d CPU tensor for a scalar operand: an op with it costs about half as much as with a Python float,
    which the op wraps in a new tensor every call (a 0-d CPU tensor also serves CUDA operands)."""
    with torch.inference_mode(False):  # a normal tensor even when first asked for under inference mode
        return torch.tensor(value, dtype=dtype, device="cpu")


class GradGraft(torch.autograd.Function):
    """Forward: the discrete value ȳ. Backward: the whole gradient goes to the continuous surrogate ỹ."""

    @staticmethod
    def forward(ctx, discrete, continuous):
        return discrete.clone()

    @staticmethod
    def backward(ctx, grad):
        return None, grad


def _power(t: torch.Tensor, e: float, out: torch.Tensor) -> torch.Tensor:
    """out = t^e; a small integer e by binary exponentiation (`pow` costs ~20 muls an element)."""
    if e != int(e) or not 0 <= e <= _MAX_SQUARING_EXPONENT:
        return torch.pow(t, e, out=out)
    if e == 0:
        return out.fill_(1.0)  # pow's 0^0 = 1
    bits = bin(int(e))[3:]  # the bits after the leading one, most significant first
    if not bits:
        return out.copy_(t)
    torch.mul(t, t, out=out)
    for i, bit in enumerate(bits):
        if i:
            out.mul_(out)
        if bit == "1":
            out.mul_(t)
    return out


def _g_and_slope_(t: torch.Tensor, alpha: float, beta: float, scratch: torch.Tensor):
    """In place: t becomes G(t) = 1 − 1/(1 − p), scratch G'(t) = −β α q / (1 − p)², q = (α t)^(β−1), p = q · α t.
    Nothing is allocated: at large sizes a fresh tensor costs more in page faults than the op itself."""
    one = _const(1.0, t.dtype)
    z = t.mul_(_const(alpha, t.dtype))
    q = _power(z, beta - 1.0, out=scratch)
    neg_d = z.mul_(q).sub_(one).reciprocal_()  # −1/(1 − p)
    slope = q.mul_(neg_d).mul_(neg_d).mul_(_const(-beta * alpha, t.dtype))
    return neg_d.add_(one), slope


def _discrete(u: torch.Tensor, w: torch.Tensor, dtype: torch.dtype, w_bar: torch.Tensor) -> torch.Tensor:
    """[B, 2m] in `dtype`: AND 1[(1 − x) @ W̄ ≤ 0] ‖ OR 1[x @ W̄ > 0], from u [2, B, n] = (1 − x, x), w [2, n, m];
    W̄ = 1[W > 0.5] is written to `w_bar` (exact; a float out is ~8x faster than a bool tensor)."""
    torch.gt(w, _const(0.5, w.dtype), out=w_bar)
    count = torch.bmm(u, w_bar)  # [2, B, m]
    _, B, m = count.shape
    y = torch.empty(B, 2 * m, dtype=dtype, device=u.device)
    fired = y.view(B, 2, m).transpose(0, 1)  # [2, B, m] view of y
    torch.gt(count, _const(0.0, count.dtype), out=fired)
    fired[0].logical_not_()  # AND: no selected input is false (as the reference: ~(count > 0))
    return y


def _split(t: torch.Tensor, B: int, n: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The flat [u_AND, u_OR, W_AND, W_OR] layout (of values, G or G') as u [2, B, n] and W [2, n, m] views (one
    `as_strided` each: half the cost of slice + view)."""
    offset = t.storage_offset()
    return (t.as_strided((2, B, n), (B * n, n, 1), offset),
            t.as_strided((2, n, m), (n * m, m, 1), offset + 2 * B * n))


class _GraftedLayer(torch.autograd.Function):
    """y = [AND ‖ OR] discrete; backward of the continuous surrogate (module docstring). The product form assumes
    binary x (`logical_layer_grafted` checks). Few large tensors, reused in place: the flat buffer and a scratch of
    its size (W̄, then G'(·) or the dead-input mask), 1 − W for the product, the W gradient in the backward."""

    @staticmethod
    def forward(ctx, x, w_conj, w_disj, activation, alpha, beta, gamma, estimated_grad):
        acc = torch.float64 if x.dtype == torch.float64 else torch.float32
        xa = x.to(acc)
        (B, n), m = xa.shape, w_conj.shape[1]
        one, zero = _const(1.0, acc), _const(0.0, acc)
        # u_k and W_k of both kinds in one flat buffer (cat upcasts fp16/bf16 weights exactly): one op of each
        # elementwise transform below serves all four operands
        buf = torch.cat(((one - xa).flatten(), xa.flatten(), w_conj.flatten(), w_disj.flatten()))
        scratch = torch.empty_like(buf)
        u, w = _split(buf, B, n, m)  # [2, B, n], [2, n, m]
        w_bar = _split(scratch, B, n, m)[1]
        y = _discrete(u, w, x.dtype, w_bar)
        ctx.activation, ctx.dtypes = activation, (x.dtype, w_conj.dtype)
        ctx.need_x, ctx.need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        if not (ctx.need_x or ctx.need_w):
            return y
        if activation == "nlaf":
            g, slope = _g_and_slope_(buf, alpha, beta, scratch)  # u, W and W̄ are spent
            g_u, g_w = _split(g, B, n, m)
            slope_u, slope_w = _split(slope, B, n, m)
            slope_w[0].neg_()  # σ_AND = −1: (1 + s)^−γ decreases in s
            c = torch.bmm(g_u, g_w).add_(one).pow_(-gamma - 1.0)  # [2, B, m]
            if gamma != 1.0:
                c.mul_(_const(gamma, acc))
            ctx.save_for_backward(c, g_u, g_w, slope_u, slope_w)
            return y
        one_minus_w = one - w  # a where u = 1
        dead = torch.eq(one_minus_w, zero, out=w_bar)  # a = 0 (W = 1): log a = −inf, kept out of the matmul
        p = torch.eq(torch.bmm(u, dead), zero, out=torch.empty(2, B, m, dtype=acc, device=x.device))  # no dead input
        log_a = dead.add_(one_minus_w).log_()  # log(1 − W), 0 where W = 1
        p.div_(one - torch.bmm(u, log_a))  # [2, B, m]: P = 1/(1 − S), 0 where S = −inf
        f = (one - torch.log(p * p)).reciprocal_() if estimated_grad else p * p
        f[1].neg_()  # ∂L/∂P = ∂L/∂y (AND), −∂L/∂y (OR)
        inv = one_minus_w.add_(_const(EPSILON, acc)).reciprocal_()  # 1/(1 − W + ε), the official ε
        w_inv = None
        if ctx.need_x:  # the right-hand sides of ∂L/∂u for u = 1 and u = 0, side by side: one bmm in the backward
            w_inv = w.new_empty(2, 2 * n, m)
            torch.mul(w, inv, out=w_inv[:, :n])
            torch.div(w, _const(1.0 + EPSILON, acc), out=w_inv[:, n:])
        ctx.save_for_backward(f, u, inv.neg_(), w_inv)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        m = grad_y.shape[1] // 2
        gy = grad_y.unflatten(1, (2, m)).transpose(0, 1)  # [2, B, m]
        dx = dw = None
        if ctx.activation == "nlaf":
            c, g_u, g_w, slope_u, slope_w = ctx.saved_tensors
            r = c * gy
            if ctx.need_x:
                dx = torch.bmm(r, g_w.transpose(1, 2)).mul_(slope_u).sum(0)
            if ctx.need_w:
                dw = torch.bmm(g_u.transpose(1, 2), r).mul_(slope_w)
        else:
            f, u, neg_inv, w_inv = ctx.saved_tensors
            h = f * gy  # [2, B, m]
            if ctx.need_x:
                d = torch.bmm(h, w_inv.transpose(1, 2))  # [2, B, 2n]
                n = u.shape[2]
                neg_du = torch.mul(u, d[..., :n]).addcmul_(u.flip(0), d[..., n:])  # −∂L/∂u; 1 − u = u.flip(0)
                dx = neg_du[0] - neg_du[1]  # ∂u/∂x = −1 (AND), +1 (OR)
            if ctx.need_w:
                dw = torch.bmm(u.transpose(1, 2), h).mul_(neg_inv)
        x_dtype, w_dtype = ctx.dtypes
        dx = None if dx is None else dx.to(x_dtype)
        dw = (None, None) if dw is None else dw.to(w_dtype).unbind(0)
        return dx, *dw, None, None, None, None, None


def is_binary(x: torch.Tensor) -> bool:
    """Every entry exactly 0 or 1 (NaN and ±inf are not): x (1 − x) = 0 exactly there and only there."""
    x = x.detach()
    return not (_const(1.0, x.dtype) - x).mul_(x).any()


class GraftedState:
    """What one fused layer keeps from its forward for its backward when it runs outside autograd (RRL's closed-form
    training step): the part of the autograd ctx interface that `_GraftedLayer` uses."""

    def __init__(self, need_x: bool, need_w: bool = True):
        self.needs_input_grad = (need_x, need_w, need_w)

    def save_for_backward(self, *tensors):
        self.saved_tensors = tensors


def grafted_forward(x, w_conj, w_disj, activation, alpha, beta, gamma, estimated_grad, need_x: bool):
    """`_GraftedLayer`'s forward outside autograd: (y [B, 2w], state for `grafted_backward`). For "laf", x must be
    binary (the caller checks once: `is_binary`); unvalidated, like `logical_layer_grafted`."""
    state = GraftedState(need_x)
    with torch.no_grad():
        y = _GraftedLayer.forward(state, x, w_conj, w_disj, activation, alpha, beta, gamma, estimated_grad)
    return y, state


def grafted_backward(state: GraftedState, grad_y: torch.Tensor):
    """(∂L/∂x or None, ∂L/∂w_conj, ∂L/∂w_disj) of the continuous surrogate, given ∂L/∂y [B, 2w]."""
    dx, dw_conj, dw_disj, *_ = _GraftedLayer.backward(state, grad_y)
    return dx, dw_conj, dw_disj


def logical_layer_grafted(
    x: torch.Tensor,
    w_conj: torch.Tensor,
    w_disj: torch.Tensor,
    activation: str = "nlaf",
    alpha: float = 0.999,
    beta: float = 8.0,
    gamma: float = 1.0,
    estimated_grad: bool = False,
) -> torch.Tensor:
    """y [B, 2w] = [AND ‖ OR] of the discrete layer, with the gradient of the continuous surrogate (`activation`
    "nlaf": TPAMI's NLAF with alpha, beta, gamma; "laf": NeurIPS' log-product, with estimated_grad), w.r.t. x,
    w_conj and w_disj ([n, w] each). Unvalidated, like `reference.py`: `kernels.logical.logical_grafted` checks."""
    if activation == "laf" and not is_binary(x):  # the matmul form of the product needs binary x
        kinds = (("conjunction", w_conj), ("disjunction", w_disj))
        return GradGraft.apply(torch.cat([logical_binarized_matmul(x, w, kind) for kind, w in kinds], dim=1),
                               torch.cat([logical_product_materialized(x, w, kind, estimated_grad)
                                          for kind, w in kinds], dim=1))
    return _GraftedLayer.apply(x, w_conj, w_disj, activation, alpha, beta, gamma, estimated_grad)
