"""Gated retention in pure PyTorch: the parallel, recurrent and chunkwise forms (YOCO's self-decoder, arXiv 2405.05254).

The executable specification of the op, the CPU path and the fallback of the Triton kernels. Every form computes

    S_t = exp(g_t) S_{t-1} + k_tᵀ v_t,          o_t = q_t S_t,          S_{-1} = state (zeros if None)

per batch b and head h, i.e. with b_n = Σ_{i≤n} g_i:  o_n = Σ_{m≤n} exp(b_n − b_m) (q_n·k_m) v_m + exp(b_n) q_n S_{-1}.
Layout: q, k [B, T, H, K], v [B, T, H, V], log_decay g [B, T, H] (data-dependent, per token and head; the model passes
g ≤ 0), state [B, H, K, V]. Computation runs in fp32 (float64 stays float64) whatever q's dtype, g included: in bf16
a decay 1 − 2^-10 rounds to 1. The output has q's dtype, the state is fp32/float64. Every form is differentiable in
q, k, v, log_decay and state through autograd. Scaling and normalisation are the model's business, not the op's.
"""

from __future__ import annotations

import torch


def _acc_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _prepare(q, k, v, log_decay, state):
    acc = _acc_dtype(q)
    B, _, H, K = q.shape
    V = v.shape[-1]
    q, k, v = (x.to(acc).transpose(1, 2) for x in (q, k, v))  # [B, H, T, ·]
    g = log_decay.to(acc).transpose(1, 2)  # [B, H, T]
    if state is None:
        state = q.new_zeros(B, H, K, V)
    return q, k, v, g, state.to(acc)


def _decay_matrix(b: torch.Tensor, causal: torch.Tensor | None = None) -> torch.Tensor:
    """[..., L] cumulative log decays -> [..., L, L] with exp(b_n − b_m) for n ≥ m, 0 above the diagonal.

    The upper triangle is set to −inf before exp: b_n − b_m > 0 there and its exp may overflow (inf · 0 = NaN).
    `causal`: a lower-triangular bool matrix of at least L × L, built once by callers that loop over chunks."""
    L = b.shape[-1]
    causal = torch.ones(L, L, dtype=torch.bool, device=b.device).tril() if causal is None else causal[:L, :L]
    return torch.exp((b[..., :, None] - b[..., None, :]).masked_fill(~causal, float("-inf")))


def gated_retention_parallel(q, k, v, log_decay, state=None, output_final_state=False):
    """O(T²) form: (Q Kᵀ ⊙ D) V with D_nm = exp(b_n − b_m) (n ≥ m), plus exp(b_n) q_n S_{-1}."""
    out_dtype = q.dtype
    q, k, v, g, state = _prepare(q, k, v, log_decay, state)
    b = g.cumsum(-1)  # [B, H, T]
    o = ((q @ k.transpose(-1, -2)) * _decay_matrix(b)) @ v  # [B, H, T, V]
    o = o + (q * torch.exp(b)[..., None]) @ state
    final = None
    if output_final_state:
        if q.shape[2] == 0:
            final = state
        else:
            b_last = b[..., -1:]  # [B, H, 1]
            to_end = torch.exp(b_last - b)  # [B, H, T]: exp(b_{T-1} − b_m)
            final = torch.exp(b_last)[..., None] * state + (k * to_end[..., None]).transpose(-1, -2) @ v
    return o.transpose(1, 2).to(out_dtype), final


def gated_retention_recurrent(q, k, v, log_decay, state=None, output_final_state=False):
    """O(T) token-by-token form: S_t = exp(g_t) S_{t-1} + k_tᵀ v_t, o_t = q_t S_t (what decoding runs)."""
    out_dtype, T = q.dtype, q.shape[1]
    q, k, v, g, state = _prepare(q, k, v, log_decay, state)
    gamma = torch.exp(g)  # [B, H, T]
    outs = []
    for t in range(T):
        state = gamma[:, :, t, None, None] * state + k[:, :, t, :, None] * v[:, :, t, None, :]  # [B, H, K, V]
        outs.append((q[:, :, t, None, :] @ state).squeeze(-2))  # [B, H, V]
    o = torch.stack(outs, dim=1) if outs else q.new_zeros(q.shape[0], 0, q.shape[1], v.shape[-1])
    return o.to(out_dtype), (state if output_final_state else None)


def gated_retention_chunkwise(q, k, v, log_decay, state=None, output_final_state=False, chunk_size=64):
    """Chunkwise form: parallel inside each chunk of C tokens, recurrent across chunks.

    Per chunk, with c the in-chunk cumulative sum of g (c_j = Σ_{i≤j} g_i over the chunk, L its length):
    O = (Q Kᵀ ⊙ D) V + (Q ⊙ exp(c)) S,  D_nm = exp(c_n − c_m) (n ≥ m);  S ← exp(c_{L-1}) S + Kᵀ (V ⊙ exp(c_{L-1} − c)).
    The last chunk may be shorter than C (no padding). In-chunk sums keep the exponents small (|c| ≤ C·|g|).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size} must be >= 1")
    out_dtype, T = q.dtype, q.shape[1]
    q, k, v, g, state = _prepare(q, k, v, log_decay, state)
    outs = []
    causal = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=q.device).tril()
    for start in range(0, T, chunk_size):
        qc, kc, vc = (x[:, :, start : start + chunk_size] for x in (q, k, v))  # [B, H, L, ·]
        c = g[:, :, start : start + chunk_size].cumsum(-1)  # [B, H, L]
        inner = ((qc @ kc.transpose(-1, -2)) * _decay_matrix(c, causal)) @ vc
        outs.append(inner + (qc * torch.exp(c)[..., None]) @ state)
        c_last = c[..., -1:]  # [B, H, 1]
        state = torch.exp(c_last)[..., None] * state + kc.transpose(-1, -2) @ (vc * torch.exp(c_last - c)[..., None])
    o = torch.cat(outs, dim=2) if outs else q.new_zeros(q.shape[0], q.shape[1], 0, v.shape[-1])
    return o.transpose(1, 2).to(out_dtype), (state if output_final_state else None)
