"""RRL's logical layers in pure PyTorch (NeurIPS'21 arXiv 2109.15103, TPAMI'24 arXiv 2310.14336).

The executable specification of the op, the CPU path and the fallback of the Triton kernels. A layer holds n_out
logical nodes over n_in inputs x ∈ [0, 1] with weights W ∈ [0, 1]^{n_in × n_out} (the official layout); `kind` is
"conjunction" (AND) or "disjunction" (OR). Three forms, as in the official `rrl/components.py`:

* `logical_nlaf_matmul`: the TPAMI novel logical activation functions, a matmul of transformed operands,
      G(t) = 1 − 1/(1 − (α t)^β),    AND: (1 + G(1 − x) @ G(W))^(−γ),    OR: 1 − (1 + G(x) @ G(W))^(−γ)
* `logical_product_materialized`: the NeurIPS activation with the log projection P(v) = −1/(−1 + log v),
      AND: P(∏_i (1 − W_ij (1 − x_i))),    OR: 1 − P(∏_i (1 − W_ij x_i)),
  computed as Σ_i log a_ij over the materialised a [B, n_in, n_out] with the official custom backward.
* `logical_binarized_matmul`: the discrete layer, W̄ = 1[W > threshold],
      AND: 1[(1 − x) @ W̄ ≤ 0] (= 1[... == 0] for x ∈ [0, 1]),    OR: 1[x @ W̄ > 0]

Computation runs in fp32 (float64 stays float64, fp16/bf16 are upcast); outputs have x's dtype.
"""

from __future__ import annotations

import torch

EPSILON = 1e-10  # the official `EPSILON` of Product / EstimatedProduct's backward


def _acc_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _g(t: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """G(t) = 1 − 1/(1 − (α t)^β), written as the official continuous_forward writes it (≤ 0, G(0) = 0)."""
    return 1.0 - 1.0 / (1.0 - (t * alpha) ** beta)


def logical_nlaf_matmul(
    x: torch.Tensor, w: torch.Tensor, kind: str, alpha: float = 0.999, beta: float = 8.0, gamma: float = 1.0
) -> torch.Tensor:
    """NLAF layer y [B, n_out] = (1 + G(u) @ G(W))^(−γ) with u = 1 − x (AND), or 1 − that with u = x (OR).

    Differentiable by autograd (G(X) and G(W) are materialised: O(B·n_in + n_in·n_out) memory).
    """
    acc = _acc_dtype(x)
    xa, wa = x.to(acc), w.to(acc)
    u = 1.0 - xa if kind == "conjunction" else xa
    s = _g(u, alpha, beta) @ _g(wa, alpha, beta)
    y = 1.0 / (1.0 + s) ** gamma
    if kind != "conjunction":
        y = 1.0 - y
    return y.to(x.dtype)


class _Product(torch.autograd.Function):
    """P_bj = −1/(−1 + Σ_i log a_bij) over a [B, n_in, n_out], with the official custom backward:
    ∂P/∂a = P² / (a + ε) (the exact derivative up to ε), or with `estimated` (EstimatedProduct)
    (−1/(−1 + log P²)) / (a + ε)."""

    @staticmethod
    def forward(ctx, a, estimated):
        p = -1.0 / (-1.0 + torch.sum(torch.log(a), dim=1))
        ctx.save_for_backward(a, p)
        ctx.estimated = estimated
        return p

    @staticmethod
    def backward(ctx, grad_p):
        a, p = ctx.saved_tensors
        if ctx.estimated:
            f = -1.0 / (-1.0 + torch.log(p.unsqueeze(1) ** 2))
        else:
            f = p.unsqueeze(1) ** 2
        return grad_p.unsqueeze(1) * f / (a + EPSILON), None


def logical_product_materialized(
    x: torch.Tensor, w: torch.Tensor, kind: str, estimated_grad: bool = False
) -> torch.Tensor:
    """NeurIPS LAF layer: AND P(∏_i (1 − W_ij (1 − x_i))), OR 1 − P(∏_i (1 − W_ij x_i)), P(v) = −1/(−1 + log v).

    Differentiable in x and W: autograd chains the custom ∂P/∂a through a's own derivative. Memory O(B·n_in·n_out)
    in both passes (a [B, n_in, n_out] is saved for the backward), as in the official code.
    """
    acc = _acc_dtype(x)
    xa, wa = x.to(acc), w.to(acc)
    u = 1.0 - xa if kind == "conjunction" else xa
    a = 1.0 - u.unsqueeze(-1) * wa  # [B, n_in, n_out]
    p = _Product.apply(a, bool(estimated_grad))
    y = p if kind == "conjunction" else 1.0 - p
    return y.to(x.dtype)


@torch.no_grad()
def logical_binarized_matmul(x: torch.Tensor, w: torch.Tensor, kind: str, threshold: float = 0.5) -> torch.Tensor:
    """Discrete layer in {0, 1} (x's dtype, no gradient): W̄ = 1[W > threshold] (compared exactly, in float64),
    AND 1[(1 − x) @ W̄ ≤ 0] (the official `where(res > 0, 0, 1)`; an empty conjunction is 1), OR 1[x @ W̄ > 0].

    For x ∈ [0, 1] the AND fires iff every selected input is exactly 1 and the OR iff some selected input is > 0:
    a fractional input counts as false for AND and as true for OR.
    """
    acc = _acc_dtype(x)
    xa = x.to(acc)
    w_bar = (w.to(torch.float64) > threshold).to(acc)
    if kind == "conjunction":
        y = ~((1.0 - xa) @ w_bar > 0)
    else:
        y = xa @ w_bar > 0
    return y.to(x.dtype)
