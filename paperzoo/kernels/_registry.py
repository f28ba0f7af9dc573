"""Backend resolution for every kernel op (DESIGN §3).

Order: the explicit request (`config.kernel_backend` "reference" or "triton", passed down as `backend=`), else
`PAPERZOO_KERNEL_BACKEND`, else "auto". Auto picks Triton when Triton imports, the tensors are on CUDA and the op
supports the call, otherwise the PyTorch reference, and logs the reason once. An explicit "triton" also runs on CPU
tensors under TRITON_INTERPRET=1 (how CI checks the kernels). An explicit request that cannot be honoured raises:
nothing downgrades silently.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

import torch

from .._env import kernel_backend, triton_interpret

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "reference", "triton")
_logged: set[tuple[str, str]] = set()


def check_backend_name(value: str, field: str = "kernel_backend") -> str:
    if value not in BACKENDS:
        raise ValueError(f"{field}={value!r} is not one of {BACKENDS}")
    return value


def triton_unavailable_reason(*tensors: torch.Tensor) -> str | None:
    """Why Triton cannot run on these tensors, or None if it can."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return "triton is not installed"
    devices = {t.device.type for t in tensors}
    if devices == {"cuda"}:
        return None
    if devices == {"cpu"} and triton_interpret():
        return None
    if devices == {"cpu"}:
        return "tensors are on CPU and TRITON_INTERPRET=1 is not set"
    return f"tensors are on {sorted(devices)}"


def resolve(op: str, requested: str | None, unsupported: Callable[[], str | None]) -> str:
    """Return "reference" or "triton" for `op`. `unsupported()` gives the reason Triton can't take this call.

    `requested` "reference" or "triton" is explicit; None or "auto" (every config's default) defers to
    PAPERZOO_KERNEL_BACKEND, else to auto. Auto never picks Triton's CPU interpreter: TRITON_INTERPRET=1 is a
    checking tool, used when "triton" is asked for explicitly.
    """
    source = "argument"
    if requested in (None, "auto") and kernel_backend() is not None:
        requested, source = kernel_backend(), "PAPERZOO_KERNEL_BACKEND"
    requested = requested or "auto"
    check_backend_name(requested, "PAPERZOO_KERNEL_BACKEND" if source == "PAPERZOO_KERNEL_BACKEND" else "kernel_backend")
    if requested == "reference":
        return "reference"
    reason = unsupported()
    if requested == "triton":
        if reason is not None:
            raise RuntimeError(f"{op}: the triton backend was requested ({source}) but cannot run: {reason}")
        return "triton"
    if reason is None and triton_interpret() and not torch.cuda.is_available():
        reason = "auto does not run the Triton CPU interpreter (ask for backend 'triton' to use it)"
    if reason is None:
        return "triton"
    if (op, reason) not in _logged:
        _logged.add((op, reason))
        logger.info("%s: using the PyTorch reference because %s", op, reason)
    return "reference"


def linear_attention_form(op: str, backend: str | None, q, k, v, decay, state, chunk_size: int,
                          triton_forms: tuple | None, reference_forms: tuple) -> Callable:
    """The form that computes a chunked linear-attention op (retention, gated retention) for this call, as
    f(q, k, v, decay, state, output_final_state): Triton (`triton_forms` = (step, chunkwise), None when they failed to
    import) or the reference (`reference_forms` = (recurrent, parallel, chunkwise)). One token without gradients is
    a recurrent step; up to `chunk_size` tokens the reference's parallel form; longer, the chunkwise form."""

    def unsupported():
        if triton_forms is None:
            return "paperzoo's triton kernels failed to import"
        if q.dtype == torch.float64:
            return "float64 runs on the reference (the kernels accumulate in fp32)"
        return triton_unavailable_reason(q, k, v, decay, *([] if state is None else [state]))

    T = q.shape[1]
    if resolve(op, backend, unsupported) == "triton":
        step, chunkwise = triton_forms
        return step if T == 1 and not torch.is_grad_enabled() else partial(chunkwise, chunk_size=chunk_size)
    recurrent, parallel, chunkwise = reference_forms
    if T == 1:
        return recurrent
    return parallel if T <= chunk_size else partial(chunkwise, chunk_size=chunk_size)


def check_linear_attention(q, k, v, log_decay, state, chunk_size: int, per_token_decay: bool) -> None:
    """ValueError naming the argument whose shape or dtype a chunked linear-attention op cannot take: q, k
    [B, T, H, K], v [B, T, H, V], log_decay [H] (one decay per head) or [B, T, H] (per token), state [B, H, K, V]."""
    if q.dim() != 4 or k.shape != q.shape:
        raise ValueError(f"q and k must both be [B, T, H, K]; got q {tuple(q.shape)}, k {tuple(k.shape)}")
    if v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"v must be [B, T, H, V] matching q's [B, T, H]; got v {tuple(v.shape)}, q {tuple(q.shape)}")
    B, T, H, K = q.shape
    if per_token_decay and log_decay.shape != (B, T, H):
        raise ValueError(f"log_decay must be [B, T, H]={(B, T, H)} matching q; got {tuple(log_decay.shape)}")
    if not per_token_decay and log_decay.shape != (H,):
        raise ValueError(f"log_decay must be [H]={H}; got {tuple(log_decay.shape)}")
    if not log_decay.is_floating_point():
        raise ValueError(f"log_decay must be a floating tensor; got {log_decay.dtype}")
    if state is not None and state.shape != (B, H, K, v.shape[-1]):
        raise ValueError(f"state must be [B, H, K, V]={(B, H, K, v.shape[-1])}; got {tuple(state.shape)}")
    if not (q.dtype == k.dtype == v.dtype) or not q.is_floating_point():
        raise ValueError(f"q, k, v must share one floating dtype; got {q.dtype}, {k.dtype}, {v.dtype}")
    if chunk_size < 1 or chunk_size & (chunk_size - 1):
        raise ValueError(f"chunk_size={chunk_size} must be a power of two")
