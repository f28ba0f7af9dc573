"""RRL's logical layers (`logical_nlaf`, `logical_product`, `logical_binarized`, and `logical_grafted`: one layer of
both kinds under Gradient Grafting), dispatched to Triton or the reference.

A layer of n_out conjunction or disjunction nodes over n_in inputs: x [B, n_in] and W [n_in, n_out] (the official
layout), both meant to lie in [0, 1] (RRL clips W after every step; values are not checked here: that would cost a
device sync). The math is in `reference.py` and README.md.
"""

from __future__ import annotations

import math

import torch

from .._registry import resolve, triton_unavailable_reason
from .grafted import ACTIVATIONS, GradGraft, logical_layer_grafted
from .reference import logical_binarized_matmul, logical_nlaf_matmul, logical_product_materialized

try:
    from .triton import logical_binarized_triton, logical_nlaf_triton, logical_product_triton
except ImportError:  # triton missing: the reference serves every call
    logical_binarized_triton = logical_nlaf_triton = logical_product_triton = None

__all__ = [
    "ACTIVATIONS",
    "KINDS",
    "GradGraft",
    "logical_binarized",
    "logical_binarized_matmul",
    "logical_grafted",
    "logical_layer_grafted",
    "logical_nlaf",
    "logical_nlaf_matmul",
    "logical_product",
    "logical_product_materialized",
]

KINDS = ("conjunction", "disjunction")


def _check(x: torch.Tensor, w: torch.Tensor, kind: str) -> None:
    if not isinstance(x, torch.Tensor) or not isinstance(w, torch.Tensor):
        raise ValueError(f"x and w must be tensors; got {type(x).__name__}, {type(w).__name__}")
    if x.dim() != 2 or w.dim() != 2 or x.shape[1] != w.shape[0]:
        raise ValueError(
            f"x must be [B, n_in] and w [n_in, n_out] with the same n_in; got x {tuple(x.shape)}, w {tuple(w.shape)}"
        )
    if x.dtype != w.dtype or not x.is_floating_point():
        raise ValueError(f"x and w must share one floating dtype; got x {x.dtype}, w {w.dtype}")
    if x.device != w.device:
        raise ValueError(f"x and w must be on one device; got x on {x.device}, w on {w.device}")
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not one of {KINDS}")


def _real(name: str, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} must be a real number") from None
    if not math.isfinite(value):
        raise ValueError(f"{name}={value!r} must be finite")
    return value


def _check_nlaf(alpha, beta, gamma) -> tuple[float, float, float]:
    alpha, beta, gamma = _real("alpha", alpha), _real("beta", beta), _real("gamma", gamma)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha={alpha} must satisfy 0 < alpha < 1 (G(t) = 1 - 1/(1 - (alpha t)^beta) has a pole at "
                         f"t = 1/alpha, inside [0, 1] for alpha >= 1)")  # fmt: skip
    if beta < 1.0:
        raise ValueError(f"beta={beta} must be >= 1 (for beta < 1, G'(0) is infinite: every input at exactly 0 or 1 "
                         f"would get an infinite gradient)")  # fmt: skip
    if gamma <= 0.0:
        raise ValueError(f"gamma={gamma} must be > 0")
    return alpha, beta, gamma


def _check_bool(name: str, value) -> bool:
    if isinstance(value, str) or value not in (True, False):
        raise ValueError(f"{name}={value!r} must be a bool")
    return bool(value)


def _unsupported(x: torch.Tensor, w: torch.Tensor):
    def reason():
        if logical_nlaf_triton is None:
            return "paperzoo's triton kernels failed to import"
        if x.dtype == torch.float64:
            return "float64 runs on the reference (the kernels accumulate in fp32)"
        return triton_unavailable_reason(x, w)

    return reason


def logical_nlaf(
    x: torch.Tensor,
    w: torch.Tensor,
    kind: str,
    alpha: float = 0.999,
    beta: float = 8.0,
    gamma: float = 1.0,
    backend: str | None = None,
) -> torch.Tensor:
    """TPAMI NLAF layer, y [B, n_out] in x's dtype, differentiable in x and w:

        G(t) = 1 − 1/(1 − (α t)^β),   conjunction (1 + G(1 − x) @ G(W))^(−γ),   disjunction 1 − (1 + G(x) @ G(W))^(−γ)

    0 < alpha < 1, beta >= 1, gamma > 0. `backend` is "auto" | "reference" | "triton" (None: PAPERZOO_KERNEL_BACKEND,
    else auto).
    """
    _check(x, w, kind)
    alpha, beta, gamma = _check_nlaf(alpha, beta, gamma)
    if resolve("logical", backend, _unsupported(x, w)) == "triton":
        return logical_nlaf_triton(x, w, kind, alpha, beta, gamma)
    return logical_nlaf_matmul(x, w, kind, alpha, beta, gamma)


def logical_product(
    x: torch.Tensor, w: torch.Tensor, kind: str, estimated_grad: bool = False, backend: str | None = None
) -> torch.Tensor:
    """NeurIPS LAF layer, y [B, n_out] in x's dtype, differentiable in x and w, P(v) = −1/(−1 + log v):

        conjunction P(∏_i (1 − W_ij (1 − x_i))),   disjunction 1 − P(∏_i (1 − W_ij x_i))

    with the official custom backward ∂P/∂a = P²/(a + 1e-10), or with `estimated_grad`
    (−1/(−1 + log P²))/(a + 1e-10). The reference materialises a [B, n_in, n_out] tensor; the Triton kernels do not.
    """
    _check(x, w, kind)
    estimated_grad = _check_bool("estimated_grad", estimated_grad)
    if resolve("logical", backend, _unsupported(x, w)) == "triton":
        return logical_product_triton(x, w, kind, estimated_grad)
    return logical_product_materialized(x, w, kind, estimated_grad)


def logical_binarized(
    x: torch.Tensor, w: torch.Tensor, kind: str, threshold: float = 0.5, backend: str | None = None
) -> torch.Tensor:
    """Discrete layer, y [B, n_out] ∈ {0, 1} in x's dtype, no gradient: W̄ = 1[W > threshold] (exact comparison),

        conjunction 1[(1 − x) @ W̄ == 0] (an empty conjunction is 1),   disjunction 1[x @ W̄ > 0]

    Exact for binary x. For fractional x ∈ [0, 1] (the same matmul formula as the official code): a selected input
    counts as true for the conjunction only when it is exactly 1, and as true for the disjunction whenever it is > 0.
    """
    _check(x, w, kind)
    threshold = _real("threshold", threshold)
    if resolve("logical", backend, _unsupported(x, w)) == "triton":
        return logical_binarized_triton(x, w, kind, threshold)
    return logical_binarized_matmul(x, w, kind, threshold)


def logical_grafted(
    x: torch.Tensor,
    w_conj: torch.Tensor,
    w_disj: torch.Tensor,
    activation: str = "nlaf",
    alpha: float = 0.999,
    beta: float = 8.0,
    gamma: float = 1.0,
    estimated_grad: bool = False,
    backend: str | None = None,
) -> torch.Tensor:
    """One RRL logical layer under hierarchical Gradient Grafting, y [B, 2w] = [AND ‖ OR] in x's dtype:

        value     the discrete layer, W̄ = 1[W > 0.5]:  1[(1 − x) @ W̄_conj ≤ 0] ‖ 1[x @ W̄_disj > 0]
        gradient  that of the continuous surrogate [AND ‖ OR] w.r.t. x, w_conj and w_disj ([n_in, w] each):
                  `activation` "nlaf" (`logical_nlaf` with alpha, beta, gamma) or "laf" (`logical_product` with
                  estimated_grad)

    Triton: `GradGraft` of the Triton discrete and continuous ops; reference: the fused `logical_layer_grafted` in
    eager mode, and under torch.compile / torch.export (whose tracing the fused function's in-place, as_strided
    buffers defeat) `GradGraft` of the reference ops, which compute the same values and gradients.
    """
    _check(x, w_conj, "conjunction")
    _check(x, w_disj, "disjunction")
    if w_conj.shape != w_disj.shape:
        raise ValueError(f"w_conj and w_disj must have one shape; got {tuple(w_conj.shape)}, {tuple(w_disj.shape)}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r} is not one of {ACTIVATIONS}")
    if activation == "nlaf":
        alpha, beta, gamma = _check_nlaf(alpha, beta, gamma)
    estimated_grad = _check_bool("estimated_grad", estimated_grad)
    route = resolve("logical", backend, _unsupported(x, w_conj))
    if route == "reference" and not torch.compiler.is_compiling():
        return logical_layer_grafted(x, w_conj, w_disj, activation, alpha, beta, gamma, estimated_grad)
    if route == "triton":
        nlaf, product, binarized = logical_nlaf_triton, logical_product_triton, logical_binarized_triton
    else:
        nlaf, product, binarized = logical_nlaf_matmul, logical_product_materialized, logical_binarized_matmul
    kinds = tuple(zip(KINDS, (w_conj, w_disj)))
    if activation == "nlaf":
        continuous = [nlaf(x, w, kind, alpha, beta, gamma) for kind, w in kinds]
    else:
        continuous = [product(x, w, kind, estimated_grad) for kind, w in kinds]
    discrete = [binarized(x, w, kind, 0.5) for kind, w in kinds]
    return GradGraft.apply(torch.cat(discrete, dim=1), torch.cat(continuous, dim=1))
