"""`retention(q, k, v, log_decay, ...)`: RetNet's retention, dispatched to Triton or the PyTorch reference."""

from __future__ import annotations

import torch

from .._registry import linear_attention_form
from .reference import retention_chunkwise, retention_parallel, retention_recurrent

try:
    from .triton import retention_chunkwise_triton, retention_step_triton
except ImportError:  # triton missing: the reference serves every call
    retention_chunkwise_triton = retention_step_triton = None

__all__ = ["retention", "retention_chunkwise", "retention_parallel", "retention_recurrent"]


def _check(q, k, v, log_decay, state, chunk_size):
    if q.dim() != 4 or k.shape != q.shape:
        raise ValueError(f"q and k must both be [B, T, H, K]; got q {tuple(q.shape)}, k {tuple(k.shape)}")
    if v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"v must be [B, T, H, V] matching q's [B, T, H]; got v {tuple(v.shape)}, q {tuple(q.shape)}")
    B, _, H, K = q.shape
    if log_decay.shape != (H,):
        raise ValueError(f"log_decay must be [H]={H}; got {tuple(log_decay.shape)}")
    if state is not None and state.shape != (B, H, K, v.shape[-1]):
        raise ValueError(f"state must be [B, H, K, V]={(B, H, K, v.shape[-1])}; got {tuple(state.shape)}")
    if not (q.dtype == k.dtype == v.dtype) or not q.is_floating_point():
        raise ValueError(f"q, k, v must share one floating dtype; got {q.dtype}, {k.dtype}, {v.dtype}")
    if chunk_size < 1 or chunk_size & (chunk_size - 1):
        raise ValueError(f"chunk_size={chunk_size} must be a power of two")


def retention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor,
    state: torch.Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int = 64,
    backend: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """o_n = Σ_{m≤n} γ^{n-m} (q_n·k_m) v_m + γ^{n+1} q_n state; returns (o [B,T,H,V], final state [B,H,K,V] or None).

    Forms: one token → recurrent step; T ≤ chunk_size → parallel (reference); longer → chunkwise.
    `backend` is "auto" | "reference" | "triton" (None: PAPERZOO_KERNEL_BACKEND, else auto).
    """
    _check(q, k, v, log_decay, state, chunk_size)

    imported = retention_chunkwise_triton is not None
    triton_forms = (retention_step_triton, retention_chunkwise_triton) if imported else None
    form = linear_attention_form("retention", backend, q, k, v, log_decay, state, chunk_size, triton_forms,
                                 (retention_recurrent, retention_parallel, retention_chunkwise))
    return form(q, k, v, log_decay, state, output_final_state)
