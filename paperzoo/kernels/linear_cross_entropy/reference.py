"""Linear cross-entropy (the LM-head / item-scoring matmul fused with softmax cross-entropy) in pure PyTorch.

The executable specification of the op, the CPU path and the fallback of the Triton kernels. For hidden states
h [N, d], a weight (output embedding, item table) W [V, d] and labels y [N],

    logits = h Wᵀ [N, V],    loss_i = logsumexp_v(logits_iv) − logits_{i, y_i},    loss = Σ_{i valid} loss_i / n_valid

where rows with y_i = ignore_index are not valid (reduction "sum": no division). This is F.cross_entropy(h @ W.T,
y, ignore_index=ignore_index) except that zero valid rows give a loss of 0 with zero gradients, where PyTorch's mean
gives NaN (0 / 0): a batch of padding must not poison the optimiser state.

* `linear_cross_entropy_naive`: the [N, V] logits and F.cross_entropy, differentiable by autograd (the tests' and
  benchmarks' baseline).
* `linear_cross_entropy_reference`: chunks of the V items with an online logsumexp, never more than [N, C] logits at
  once; its autograd Function saves lse [N] and recomputes the logits chunk by chunk in the backward, where
  d loss / d logits = (softmax − onehot(y)) · scale per valid row gives dh = Σ_chunks dlogits W_c and
  dW_c = dlogitsᵀ h (see README.md).

Computation runs in fp32 (float64 for float64 inputs; fp16/bf16 chunks are upcast); the loss is fp32 (float64), the
gradients have their input's dtype, each rounded once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

# Logits elements per chunk: C = _CHUNK_ELEMENTS // N items (4096 rows → 256 items, 4 MiB of fp32 logits, about a
# core's L2), clamped to [_MIN_CHUNK, _MAX_CHUNK]. On CPU 256-1024 items took the same time at N = 4096 (d = 64, 512);
# the chunk and the gathered target rows of W (as large) are the op's working memory.
_CHUNK_ELEMENTS = 1 << 20
_MIN_CHUNK, _MAX_CHUNK = 128, 8192


def _acc_dtype(*tensors: torch.Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def default_chunk_size(n_rows: int) -> int:
    """Items per chunk for n_rows valid rows: the [n_rows, C] fp32 logits chunk holds about 1M elements."""
    return max(_MIN_CHUNK, min(_MAX_CHUNK, _CHUNK_ELEMENTS // max(n_rows, 1)))


def linear_cross_entropy_naive(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    """F.cross_entropy(hidden @ weight.T, labels) through the full [N, V] logits (computed in fp32, float64 for
    float64 inputs), with the op's reduction: "sum", or "mean" over the valid rows with 0 (not NaN) when there are
    none. hidden [N, d], weight [V, d], labels [N] int64. Differentiable by autograd."""
    acc = _acc_dtype(hidden, weight)
    logits = hidden.to(acc) @ weight.to(acc).T  # [N, V]
    total = F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="sum")
    if reduction == "sum":
        return total
    return total / (labels != ignore_index).sum().clamp_min(1)


def _valid_rows(labels: torch.Tensor, ignore_index: int) -> torch.Tensor | None:
    """Indices of the rows whose label is not ignore_index, or None when every row is valid (no gather)."""
    idx = (labels != ignore_index).nonzero().squeeze(1)  # [n]
    return None if idx.numel() == labels.numel() else idx


def _chunk_lse(h: torch.Tensor, weight: torch.Tensor, chunk: int) -> torch.Tensor:
    """lse [n] = logsumexp_v (h Wᵀ)_v over chunks of `chunk` items (online: lse ← logaddexp(lse, lse_chunk));
    h [n, d] in the accumulation dtype, W [V, d] any float dtype."""
    lse = torch.full((h.shape[0],), -torch.inf, dtype=h.dtype, device=h.device)
    for c0 in range(0, weight.shape[0], chunk):
        logits = h @ weight[c0 : c0 + chunk].to(h.dtype).T  # [n, C]
        m = logits.amax(dim=1)  # [n]; in place below: no second [n, C] buffer
        chunk_lse = logits.sub_(m[:, None]).exp_().sum(dim=1).log_().add_(m)
        lse = torch.logaddexp(lse, chunk_lse)
    return lse


def _target_logits(h: torch.Tensor, weight: torch.Tensor, y: torch.Tensor, chunk: int) -> torch.Tensor:
    """[n] logits_{i, y_i} = h_i · w_{y_i}, in blocks of rows so that the gathered rows of W stay about one chunk."""
    rows = max(1, chunk * h.shape[0] // max(h.shape[1], 1))
    return torch.cat([torch.linalg.vecdot(h[r0 : r0 + rows], weight[y[r0 : r0 + rows]].to(h.dtype))
                      for r0 in range(0, h.shape[0], rows)] or [h.new_zeros(0)])  # fmt: skip


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, labels, ignore_index, reduction, chunk):
        acc = _acc_dtype(hidden, weight)
        idx = _valid_rows(labels, ignore_index)
        h = (hidden if idx is None else hidden[idx]).to(acc)  # [n, d] valid rows
        y = labels if idx is None else labels[idx]  # [n]
        n = h.shape[0]
        chunk = chunk or default_chunk_size(n)
        lse = _chunk_lse(h, weight, chunk)  # [n]
        total = lse.sum() - _target_logits(h, weight, y, chunk).sum()
        ctx.save_for_backward(hidden, weight, labels, lse)
        ctx.ignore_index, ctx.chunk = ignore_index, chunk
        ctx.denom = max(n, 1) if reduction == "mean" else 1
        return total / ctx.denom

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        hidden, weight, labels, lse = ctx.saved_tensors
        need_dh, need_dw = ctx.needs_input_grad[:2]
        acc = lse.dtype
        idx = _valid_rows(labels, ctx.ignore_index)
        h = (hidden if idx is None else hidden[idx]).to(acc)  # [n, d]
        y = labels if idx is None else labels[idx]  # [n]
        scale = float(grad) / ctx.denom  # d loss / d loss_i for every valid row (a Python float: matmul alpha)
        order = torch.argsort(y)  # rows by label: the rows whose target lies in a chunk are one slice of `order`
        y_sorted = y[order]
        dh = torch.zeros_like(h) if need_dh else None  # [n, d] fp32 accumulator
        dw = torch.empty_like(weight) if need_dw else None  # [V, d], every chunk writes its rows once
        V, C = weight.shape[0], ctx.chunk
        starts = list(range(0, V, C))
        bounds = torch.searchsorted(y_sorted, torch.tensor(starts + [V], device=y.device)).tolist()  # one sync
        for i, c0 in enumerate(starts):
            c1 = min(V, c0 + C)
            w_c = weight[c0:c1].to(acc)  # [c, d]
            p = (h @ w_c.T).sub_(lse[:, None]).exp_()  # [n, c] softmax
            rows = order[bounds[i] : bounds[i + 1]]
            p[rows, y[rows] - c0] -= 1.0  # − onehot: p is d loss_i / d logits
            if need_dh:
                dh.addmm_(p, w_c, alpha=scale)
            if need_dw and dw.dtype == acc:  # [c, d] written in place
                torch.mm(p.T, h, out=dw[c0:c1]).mul_(scale)
            elif need_dw:
                dw[c0:c1] = torch.mm(p.T, h).mul_(scale).to(dw.dtype)
        if need_dh:
            if idx is None:
                dh = dh.to(hidden.dtype)
            else:
                full = torch.zeros_like(hidden)
                full[idx] = dh.to(hidden.dtype)
                dh = full
        return dh, dw, None, None, None, None


def linear_cross_entropy_reference(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100,
    reduction: str = "mean", chunk_size: int | None = None,
) -> torch.Tensor:
    """Cross-entropy of the logits hidden @ weight.T [N, V] against labels, without the [N, V] logits: chunks of
    `chunk_size` items (None: `default_chunk_size` of the valid rows) with an online logsumexp. hidden [N, d],
    weight [V, d] of one float dtype, labels [N] int64 in [0, V) or ignore_index. reduction "mean" (over the valid
    rows; 0 when there are none) or "sum". Returns an fp32 scalar (float64 for float64 inputs), differentiable in
    hidden and weight: the backward recomputes each chunk's logits (README.md). Only the valid rows are computed."""
    return _ChunkedLinearCrossEntropy.apply(hidden, weight, labels, ignore_index, reduction, chunk_size)
