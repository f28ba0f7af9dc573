"""`gated_retention(q, k, v, log_decay, ...)`: YOCO's gated retention, dispatched to Triton or the PyTorch reference."""

from __future__ import annotations

import torch

from .._registry import check_linear_attention, linear_attention_form
from .reference import gated_retention_chunkwise, gated_retention_parallel, gated_retention_recurrent

try:
    from .triton import gated_retention_chunkwise_triton, gated_retention_step_triton
except ImportError:  # triton missing: the reference serves every call
    gated_retention_chunkwise_triton = gated_retention_step_triton = None

__all__ = ["gated_retention", "gated_retention_chunkwise", "gated_retention_parallel", "gated_retention_recurrent"]


def gated_retention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor,
    state: torch.Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int = 64,
    backend: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """S_t = exp(g_t) S_{t-1} + k_tᵀ v_t, o_t = q_t S_t; returns (o [B,T,H,V], final state [B,H,K,V] or None).

    q, k [B, T, H, K], v [B, T, H, V] (one floating dtype); log_decay g [B, T, H] (log of the per-token, per-head
    decay; the model passes g ≤ 0, positive values are computed exactly but let the state grow), computed in fp32
    (float64 stays float64) whatever q's dtype; state [B, H, K, V] fp32. o has q's dtype, the final state is fp32
    (float64 for float64 inputs). Differentiable in q, k, v, log_decay and state.
    Forms: one token → recurrent step; T ≤ chunk_size → parallel (reference); longer → chunkwise.
    `backend` is "auto" | "reference" | "triton" (None: PAPERZOO_KERNEL_BACKEND, else auto).
    """
    check_linear_attention(q, k, v, log_decay, state, chunk_size, per_token_decay=True)

    imported = gated_retention_chunkwise_triton is not None
    triton_forms = (gated_retention_step_triton, gated_retention_chunkwise_triton) if imported else None
    form = linear_attention_form("gated_retention", backend, q, k, v, log_decay, state, chunk_size, triton_forms,
                                 (gated_retention_recurrent, gated_retention_parallel, gated_retention_chunkwise))
    return form(q, k, v, log_decay, state, output_final_state)
