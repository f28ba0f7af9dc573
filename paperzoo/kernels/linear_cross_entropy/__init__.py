"""`linear_cross_entropy(hidden, weight, labels)`: softmax cross-entropy of hidden @ weight.T over all V classes
(vocabulary tokens, catalogue items) without the [N, V] logits, dispatched to Triton or the PyTorch reference.

The loss of an LM head or of a sequential recommender's full-softmax CE over its item table: at N = 4096 rows and
V = 1M items the fp32 logits alone are 16 GiB, their gradient as much again. The math is in `reference.py` and
README.md.
"""

from __future__ import annotations

import torch

from .._registry import resolve, triton_unavailable_reason
from .reference import linear_cross_entropy_naive, linear_cross_entropy_reference

try:
    from .triton import linear_cross_entropy_triton
except ImportError:  # triton missing: the reference serves every call
    linear_cross_entropy_triton = None

__all__ = ["linear_cross_entropy", "linear_cross_entropy_naive", "linear_cross_entropy_reference"]

_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
REDUCTIONS = ("mean", "sum")


def _check(hidden, weight, labels, ignore_index, reduction) -> None:
    """ValueError naming the argument whose type, shape, dtype, device or value the op cannot take."""
    if not all(isinstance(t, torch.Tensor) for t in (hidden, weight, labels)):
        raise ValueError("hidden, weight, labels must be tensors; got "
                         + ", ".join(type(t).__name__ for t in (hidden, weight, labels)))  # fmt: skip
    if hidden.dim() != 2 or hidden.shape[1] == 0:
        raise ValueError(f"hidden must be [N, d] with d >= 1; got hidden {tuple(hidden.shape)}")
    N, d = hidden.shape
    if weight.dim() != 2 or weight.shape[1] != d or weight.shape[0] == 0:
        raise ValueError(f"weight must be [V, d] with V >= 1 and hidden's d={d}; got weight {tuple(weight.shape)}, "
                         f"hidden {tuple(hidden.shape)}")  # fmt: skip
    if labels.shape != (N,):
        raise ValueError(f"labels must be [N]={(N,)} matching hidden {tuple(hidden.shape)}; got labels "
                         f"{tuple(labels.shape)}")  # fmt: skip
    if labels.dtype != torch.int64:
        raise ValueError(f"labels must be int64 class indices; got {labels.dtype}")
    if hidden.dtype != weight.dtype or hidden.dtype not in _DTYPES:
        raise ValueError(f"hidden and weight must share one of {[str(t) for t in _DTYPES]}; got hidden "
                         f"{hidden.dtype}, weight {weight.dtype}")  # fmt: skip
    if len({hidden.device, weight.device, labels.device}) != 1:
        raise ValueError(f"hidden, weight, labels must be on one device; got {hidden.device}, {weight.device}, "
                         f"{labels.device}")  # fmt: skip
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise ValueError(f"ignore_index={ignore_index!r} must be an int")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction={reduction!r} is not one of {REDUCTIONS}")
    # the value check is data-dependent (a device sync on CUDA): eager mode only, as for token ids
    if torch.compiler.is_compiling() or N == 0:
        return
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= weight.shape[0]))
    if bad.any():
        raise ValueError(f"labels contains {labels[bad][0].item()}, neither ignore_index={ignore_index} nor a class "
                         f"in [0, V={weight.shape[0]})")  # fmt: skip


def _unsupported(hidden, weight, labels):
    def reason():
        if linear_cross_entropy_triton is None:
            return "paperzoo's triton kernels failed to import"
        if hidden.dtype == torch.float64:
            return "float64 runs on the reference (the kernels accumulate in fp32)"
        return triton_unavailable_reason(hidden, weight, labels)

    return reason


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = -100,
    backend: str | None = None,
    *,
    reduction: str = "mean",
) -> torch.Tensor:
    """F.cross_entropy(hidden @ weight.T, labels, ignore_index=ignore_index, reduction=reduction) without the
    [N, V] logits: a scalar, differentiable in hidden and weight.

    hidden [N, d] and weight [V, d] (output embedding, item table) of one dtype: fp32, fp16, bf16 (Triton or the
    reference) or float64 (the reference); labels [N] int64, each in [0, V) or ignore_index, on the same device.
    reduction "mean" averages over the rows whose label is not ignore_index, "sum" adds them (to divide by a count
    of your own, such as Trainer's num_items_in_batch). Deliberate difference from PyTorch: a "mean" with no valid
    row is 0 with zero gradients, where F.cross_entropy gives NaN. The loss is fp32 (float64 for float64 inputs)
    whatever the input dtype, computed with an fp32 logsumexp; the gradients have the inputs' dtype.
    `backend` is "auto" | "reference" | "triton" (None: PAPERZOO_KERNEL_BACKEND, else auto).
    """
    _check(hidden, weight, labels, ignore_index, reduction)
    if resolve("linear_cross_entropy", backend, _unsupported(hidden, weight, labels)) == "triton":
        return linear_cross_entropy_triton(hidden, weight, labels, ignore_index, reduction)
    return linear_cross_entropy_reference(hidden, weight, labels, ignore_index, reduction)
