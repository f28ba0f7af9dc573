"""`retention(q, k, v, log_decay, ...)`: RetNet's retention, dispatched to Triton or the PyTorch reference."""

from __future__ import annotations

import torch

from .._registry import check_linear_attention, linear_attention_form
from .reference import retention_chunkwise, retention_parallel, retention_recurrent

try:
    from .triton import retention_chunkwise_triton, retention_step_triton
except ImportError:  # triton missing: the reference serves every call
    retention_chunkwise_triton = retention_step_triton = None

__all__ = ["retention", "retention_chunkwise", "retention_parallel", "retention_recurrent"]


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
    check_linear_attention(q, k, v, log_decay, state, chunk_size, per_token_decay=False)

    imported = retention_chunkwise_triton is not None
    triton_forms = (retention_step_triton, retention_chunkwise_triton) if imported else None
    form = linear_attention_form("retention", backend, q, k, v, log_decay, state, chunk_size, triton_forms,
                                 (retention_recurrent, retention_parallel, retention_chunkwise))
    return form(q, k, v, log_decay, state, output_final_state)
