"""LatentLM's diffusion-head modulation (`adaln_modulate`, `gated_residual`), dispatched to Triton or the reference.

One block of the diffusion head (arXiv 2412.08635, microsoft/unilm `LatentLM/models/Transformer.py` `MLPBlock`) is

    shift, scale, gate = Linear(SiLU(c)).chunk(3, dim=-1)
    x = gated_residual(x, gate, SwiGLU(adaln_modulate(x, shift, scale, eps=1e-6)))

with every tensor [..., D]. The head runs once per denoising step (20-250 per generated latent), so these two
memory-bound ops are on the sampling path. The math is in `reference.py` and README.md.
"""

from __future__ import annotations

import math

import torch

from .._registry import resolve, triton_unavailable_reason
from .reference import (
    adaln_modulate_grads,
    adaln_modulate_reference,
    gated_residual_grads,
    gated_residual_reference,
)

try:
    from .triton import adaln_modulate_triton, gated_residual_triton
except ImportError:  # triton missing: the reference serves every call
    adaln_modulate_triton = gated_residual_triton = None

__all__ = [
    "adaln_modulate",
    "adaln_modulate_grads",
    "adaln_modulate_reference",
    "gated_residual",
    "gated_residual_grads",
    "gated_residual_reference",
]


def _check(names: tuple[str, str, str], tensors: tuple) -> None:
    """ValueError unless the three are floating tensors of one shape [..., D] (D ≥ 1) on one device."""
    a, b, c = names
    if not all(isinstance(t, torch.Tensor) for t in tensors):
        raise ValueError(f"{a}, {b}, {c} must be tensors; got {', '.join(type(t).__name__ for t in tensors)}")
    first = tensors[0]
    if first.dim() < 1 or first.shape[-1] == 0:
        raise ValueError(f"{a} must be [..., D] with D >= 1; got {a} {tuple(first.shape)}")
    for name, t in zip(names[1:], tensors[1:]):
        if t.shape != first.shape:
            raise ValueError(f"{name} must have {a}'s shape [..., D]={tuple(first.shape)}; got {name} {tuple(t.shape)}")
    if not all(t.is_floating_point() for t in tensors):
        raise ValueError(f"{a}, {b}, {c} must be floating tensors; got {', '.join(str(t.dtype) for t in tensors)}")
    if len({t.device for t in tensors}) != 1:
        raise ValueError(f"{a}, {b}, {c} must be on one device; got {', '.join(str(t.device) for t in tensors)}")


def _check_eps(eps) -> float:
    try:
        value = float(eps)
    except (TypeError, ValueError):
        raise ValueError(f"eps={eps!r} must be a real number") from None
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"eps={eps!r} must be finite and > 0 (a row of zeros would give 0 · inf = NaN)")
    return value


def _unsupported(*tensors: torch.Tensor):
    def reason():
        if adaln_modulate_triton is None:
            return "paperzoo's triton kernels failed to import"
        if any(t.dtype == torch.float64 for t in tensors):
            return "float64 runs on the reference (the kernels compute in fp32)"
        return triton_unavailable_reason(*tensors)

    return reason


def adaln_modulate(
    x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float = 1e-6, backend: str | None = None
) -> torch.Tensor:
    """y = RMSNorm(x) ⊙ (1 + scale) + shift = x · rsqrt(mean(x², −1) + eps) · (1 + scale) + shift, y [..., D] in x's
    dtype, differentiable in x, shift and scale.

    x, shift, scale [..., D] of one shape (leading dims are flattened into rows; any row stride, e.g. the chunks of
    the adaLN Linear output, is read in place), floating (dtypes may differ: fp32, fp16, bf16 on Triton; any float64
    runs on the reference), on one device. The RMS statistic is fp32 whatever the dtype; eps > 0 (LatentLM: 1e-6).
    `backend` is "auto" | "reference" | "triton" (None: PAPERZOO_KERNEL_BACKEND, else auto).
    """
    _check(("x", "shift", "scale"), (x, shift, scale))
    eps = _check_eps(eps)
    if resolve("adaln", backend, _unsupported(x, shift, scale)) == "triton":
        return adaln_modulate_triton(x, shift, scale, eps)
    return adaln_modulate_reference(x, shift, scale, eps)


def gated_residual(
    residual: torch.Tensor, gate: torch.Tensor, y: torch.Tensor, backend: str | None = None
) -> torch.Tensor:
    """out = residual + gate ⊙ y [..., D] in residual's dtype (computed in fp32), differentiable in all three.

    residual, gate, y of one shape [..., D], floating, on one device (as for `adaln_modulate`). `backend` as there.
    """
    _check(("residual", "gate", "y"), (residual, gate, y))
    if resolve("adaln", backend, _unsupported(residual, gate, y)) == "triton":
        return gated_residual_triton(residual, gate, y)
    return gated_residual_reference(residual, gate, y)
