"""LatentLM's diffusion-head modulation in pure PyTorch (arXiv 2412.08635; official code microsoft/unilm
`LatentLM/models/Transformer.py`, `MLPBlock`).

The executable specification of the ops, the CPU path and the fallback of the Triton kernels. One diffusion-head block
is, with shift, scale, gate = Linear(SiLU(c)).chunk(3, dim=-1) (each [..., D], like x),

    x ← x + gate ⊙ SwiGLU(RMSNorm(x) ⊙ (1 + scale) + shift),    RMSNorm(x) = x · rsqrt(mean(x², −1) + eps)

(RMSNorm without affine weight, eps = 1e-6). Two ops around the SwiGLU:

* `adaln_modulate_reference`: y = x · r · (1 + scale) + shift, r = rsqrt(mean(x², −1) + eps) per row;
  `adaln_modulate_grads`: its backward in closed form (README.md), what the Triton backward computes.
* `gated_residual_reference`: out = residual + gate ⊙ y; `gated_residual_grads`: its backward.

Computation runs in fp32 (float64 when any input is float64; fp16/bf16 are upcast) and is rounded once at the end:
the output has x's (residual's) dtype, each gradient its input's dtype.
"""

from __future__ import annotations

import torch


def _acc_dtype(*tensors: torch.Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def adaln_modulate_reference(
    x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """y [..., D] = x · rsqrt(mean(x², −1) + eps) · (1 + scale) + shift in x's dtype; x, shift, scale [..., D].

    Differentiable by autograd in x, shift and scale. The statistics are fp32 (float64 stays float64) whatever the
    input dtype, and the official `RMSNorm(x.float()).type_as(x)` rounding of the normalised x is not repeated: y is
    rounded once.
    """
    acc = _acc_dtype(x, shift, scale)
    xa = x.to(acc)
    r = torch.rsqrt(xa.square().mean(-1, keepdim=True) + eps)
    y = xa * r * (1.0 + scale.to(acc)) + shift.to(acc)
    return y.to(x.dtype)


def adaln_modulate_grads(
    x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, dy: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dshift, dscale) of `adaln_modulate_reference` for the upstream gradient dy, in closed form (no autograd):

        n = x · r,   g' = dy · (1 + scale),   dx = r · (g' − n · mean(g' · n, −1)),   dscale = dy · n,   dshift = dy

    computed like the forward (fp32, float64 if any input is), each returned in its input's dtype.
    """
    acc = _acc_dtype(x, shift, scale, dy)
    xa, dya = x.to(acc), dy.to(acc)
    r = torch.rsqrt(xa.square().mean(-1, keepdim=True) + eps)
    n = xa * r
    gp = dya * (1.0 + scale.to(acc))
    dx = r * (gp - n * (gp * n).mean(-1, keepdim=True))
    return dx.to(x.dtype), dya.to(shift.dtype), (dya * n).to(scale.dtype)


def gated_residual_reference(residual: torch.Tensor, gate: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """out = residual + gate ⊙ y in residual's dtype (all three the same shape), computed in fp32 (float64 stays
    float64). Differentiable by autograd."""
    acc = _acc_dtype(residual, gate, y)
    return (residual.to(acc) + gate.to(acc) * y.to(acc)).to(residual.dtype)


def gated_residual_grads(
    residual: torch.Tensor, gate: torch.Tensor, y: torch.Tensor, dout: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dresidual, dgate, dy) = (dout, dout ⊙ y, dout ⊙ gate) of `gated_residual_reference`, each in its input's
    dtype (products in fp32, float64 if any input is)."""
    acc = _acc_dtype(residual, gate, y, dout)
    da = dout.to(acc)
    return da.to(residual.dtype), (da * y.to(acc)).to(gate.dtype), (da * gate.to(acc)).to(y.dtype)
