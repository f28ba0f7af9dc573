"""Retention in pure PyTorch: the parallel, recurrent and chunkwise forms of RetNet (arXiv 2307.08621, §2.1).

The executable specification of the op, the CPU path and the fallback of the Triton kernels. Every form computes

    S_t = γ_h S_{t-1} + k_tᵀ v_t,          o_t = q_t S_t,          S_{-1} = state (zeros if None)

per head h, i.e. o_n = Σ_{m≤n} γ^{n-m} (q_n·k_m) v_m + γ^{n+1} q_n S_{-1}. Layout: q, k [B, T, H, K], v [B, T, H, V],
log_decay [H] (log γ_h, kept in fp32: in bf16 γ_h ≥ 1 − 2^-9 rounds to 1), state [B, H, K, V].
Computation runs in fp32 (float64 stays float64); the output has q's dtype, the state is fp32/float64.
Normalisations (scaling, D̃, |R|) are the model's business, not the op's.
"""

from __future__ import annotations

import torch


def _acc_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _prepare(q, k, v, log_decay, state):
    acc = _acc_dtype(q)
    B, T, H, K = q.shape
    V = v.shape[-1]
    q, k, v = (x.to(acc).transpose(1, 2) for x in (q, k, v))  # [B, H, T, ·]
    log_decay = log_decay.to(acc)
    if state is None:
        state = q.new_zeros(B, H, K, V)
    return q, k, v, log_decay, state.to(acc)


def retention_parallel(q, k, v, log_decay, state=None, output_final_state=False):
    """O(T²) form: (Q Kᵀ ⊙ D) V with D_nm = γ^{n-m} (n ≥ m), plus the decayed initial state."""
    out_dtype, T = q.dtype, q.shape[1]
    q, k, v, log_decay, state = _prepare(q, k, v, log_decay, state)
    pos = torch.arange(T, device=q.device, dtype=q.dtype)
    diff = pos[:, None] - pos[None, :]  # [T, T]: n - m
    decay = torch.exp(diff * log_decay[:, None, None]).masked_fill(diff < 0, 0.0)  # [H, T, T]
    o = ((q @ k.transpose(-1, -2)) * decay) @ v  # [B, H, T, V]
    o = o + (q * torch.exp((pos + 1)[:, None] * log_decay[:, None, None])) @ state
    final = None
    if output_final_state:
        to_end = torch.exp((T - 1 - pos) * log_decay[:, None])  # [H, T]: γ^{T-1-m}
        final = torch.exp(T * log_decay)[:, None, None] * state + (k * to_end[..., None]).transpose(-1, -2) @ v
    return o.transpose(1, 2).to(out_dtype), final


def retention_recurrent(q, k, v, log_decay, state=None, output_final_state=False):
    """O(T) token-by-token form: S_t = γ S_{t-1} + k_tᵀ v_t, o_t = q_t S_t (what decoding runs)."""
    out_dtype, T = q.dtype, q.shape[1]
    q, k, v, log_decay, state = _prepare(q, k, v, log_decay, state)
    gamma = torch.exp(log_decay)[:, None, None]  # [H, 1, 1]
    outs = []
    for t in range(T):
        state = gamma * state + k[:, :, t, :, None] * v[:, :, t, None, :]  # [B, H, K, V]
        outs.append((q[:, :, t, None, :] @ state).squeeze(-2))  # [B, H, V]
    o = torch.stack(outs, dim=1) if outs else q.new_zeros(q.shape[0], 0, q.shape[1], v.shape[-1])
    return o.to(out_dtype), (state if output_final_state else None)


def retention_chunkwise(q, k, v, log_decay, state=None, output_final_state=False, chunk_size=64):
    """Chunkwise form (paper §2.1): parallel inside each chunk of C tokens, recurrent across chunks.

    Per chunk [i]: O = (Q Kᵀ ⊙ D) V + (Q ⊙ ξ) R,  ξ_j = γ^{j+1};   R ← γ^{len} R + Kᵀ (V ⊙ ζ),  ζ_j = γ^{len-1-j}.
    The last chunk may be shorter than C (no padding).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size} must be >= 1")
    out_dtype, T = q.dtype, q.shape[1]
    q, k, v, log_decay, state = _prepare(q, k, v, log_decay, state)
    outs = []
    for start in range(0, T, chunk_size):
        qc, kc, vc = (x[:, :, start : start + chunk_size] for x in (q, k, v))  # [B, H, L, ·]
        L = qc.shape[2]
        pos = torch.arange(L, device=q.device, dtype=q.dtype)
        diff = pos[:, None] - pos[None, :]
        decay = torch.exp(diff * log_decay[:, None, None]).masked_fill(diff < 0, 0.0)  # [H, L, L]
        inner = ((qc @ kc.transpose(-1, -2)) * decay) @ vc
        cross = (qc * torch.exp((pos + 1)[:, None] * log_decay[:, None, None])) @ state  # ξ
        outs.append(inner + cross)
        zeta = torch.exp((L - 1 - pos)[:, None] * log_decay[:, None, None])  # [H, L, 1]
        state = torch.exp(L * log_decay)[:, None, None] * state + kc.transpose(-1, -2) @ (vc * zeta)
    o = torch.cat(outs, dim=2) if outs else q.new_zeros(q.shape[0], q.shape[1], 0, v.shape[-1])
    return o.transpose(1, 2).to(out_dtype), (state if output_final_state else None)
