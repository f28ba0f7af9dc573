"""Next-item losses of sequential recommendation, as in Xu et al., "Understanding the Role of Cross-Entropy Loss in
Fairly Evaluating Large Language Model-based Recommendation" (arXiv 2402.06216) and "Are LLM-based Recommenders
Already the Best? Simple Scaled Cross-entropy Unleashes the Potential of Traditional Sequential Recommenders"
(arXiv 2408.14238), matching the official code (MTandHJ/CE-SCE-LLMRec, `CoachForSASRec.train_per_epoch`).

Notation. Items are 1..N (id 0 is padding). At every valid position of a training sequence the model scores the next
item, s⁺ = ⟨h_t, e_target⟩, and K sampled negatives, s⁻_k = ⟨h_t, e_{neg_k}⟩. The caller drops the padding
positions (`positives != 0`) and passes the M remaining rows, so every function takes already-gathered scores:

    pos_logits  [M, 1]    s⁺
    neg_logits  [M, K]    s⁻_1 .. s⁻_K
    logits      [M, N]    every item's score (full cross-entropy only)

Each function computes a loss ℓ_i per position, in float32 at least (float16/bfloat16 inputs are upcast; float64
stays float64), and reduces it over positions: `reduction="mean"` (the official code) gives (1/M)·Σ_i ℓ_i,
`"sum"` gives Σ_i ℓ_i so that a caller can divide by a global count (Trainer's `num_items_in_batch`), `"none"` gives
ℓ [M]. With M = 0 the mean is 0 (not NaN), still attached to the graph.

How the official code reduces the binary losses over K negatives, and so how these functions do:

    NCE, NEG  BCE_mean(pos) + K·BCE_mean(neg) = (1/M) Σ_i [ −log σ(s⁺_i) − Σ_k log(1 − σ(s⁻_ik)) ]        sum over k
    BCE       BCE_mean(pos) +   BCE_mean(neg) = (1/M) Σ_i [ −log σ(s⁺_i) − (1/K) Σ_k log(1 − σ(s⁻_ik)) ]  mean over k
    BPR       mean over all M·K pairs         = (1/M) Σ_i (1/K) Σ_k −log σ(s⁺_i − s⁻_ik)                 mean over k

BCE and BPR are run with K = 1 in the papers, where both readings agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real

import torch
import torch.nn.functional as F

_REDUCTIONS = ("mean", "sum", "none")
_POOLS = ("all", "unseen")


# ----------------------------------------------------------------------------------------------------------------------
# checks and helpers


def _float(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _pos_neg(pos_logits: torch.Tensor, neg_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pos, neg = _float(pos_logits, "pos_logits"), _float(neg_logits, "neg_logits")
    if pos.dim() != 2 or pos.shape[1] != 1:
        raise ValueError(f"pos_logits must have shape [M, 1], got {tuple(pos.shape)}")
    if neg.dim() != 2 or neg.shape[0] != pos.shape[0]:
        raise ValueError(f"neg_logits must have shape [M, K] with M = {pos.shape[0]} (from pos_logits), "
                         f"got {tuple(neg.shape)}")
    if neg.shape[1] < 1:
        raise ValueError(f"neg_logits must hold K >= 1 negatives per position, got K = {neg.shape[1]}")
    dtype = torch.promote_types(pos.dtype, neg.dtype)
    return pos.to(dtype), neg.to(dtype)


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    # loss: [M]
    if reduction == "none":
        return loss
    if reduction == "sum" or loss.numel() == 0:
        return loss.sum()
    return loss.mean()


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------------------------------------------------
# losses


def full_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """CE: the softmax over all N items, ℓ = −s⁺ + log Σ_{j=1}^{N} exp(s_j); the target stays in the normaliser.

    logits [M, N]: the scores of the candidate items, one column per item. targets [M]: the column of the target.
    The official code scores items 1..N (column j is item j + 1) and passes `targets − 1`; a caller that scores the
    padding row as well must drop it (`logits[:, 1:]`, `targets − 1`), or padding would enter the normaliser.
    """
    _check_reduction(reduction)
    logits = _float(logits, "logits")
    if logits.dim() != 2 or logits.shape[1] < 1:
        raise ValueError(f"logits must have shape [M, N] with N >= 1, got {tuple(logits.shape)}")
    if not isinstance(targets, torch.Tensor) or targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise ValueError(f"targets must be an integer tensor, got {getattr(targets, 'dtype', type(targets))}")
    if targets.shape != logits.shape[:1]:
        raise ValueError(f"targets must have shape [M] = [{logits.shape[0]}], got {tuple(targets.shape)}")
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= logits.shape[1]):
        raise ValueError(f"targets must index the N = {logits.shape[1]} columns of logits, got values in "
                         f"[{int(targets.min())}, {int(targets.max())}]")
    loss = torch.logsumexp(logits, dim=-1) - logits.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)  # [M]
    return _reduce(loss, reduction)


def scaled_cross_entropy(pos_logits: torch.Tensor, neg_logits: torch.Tensor, alpha: float,
                         reduction: str = "mean") -> torch.Tensor:
    """SCE (the papers' proposal): ℓ = −s⁺ + log( exp(s⁺) + α · Σ_{k=1}^{K} exp(s⁻_k) ).

    The sampled normaliser is scaled by α to stand in for the full one: with α = N/K and K uniform samples from all
    items, α·Σ_k exp(s⁻_k) is an unbiased estimate of Σ_j exp(s_j), and SCE tends to CE as K grows. Computed, as in the
    official code, as the cross-entropy of [s⁺, s⁻ + log α] with target 0:
    `logsumexp(cat([pos, neg + log α])) − pos`. The logged runs use α = 100.
    """
    _check_reduction(reduction)
    if isinstance(alpha, bool) or not isinstance(alpha, Real) or not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
    pos, neg = _pos_neg(pos_logits, neg_logits)
    logits = torch.cat([pos, neg + math.log(alpha)], dim=-1)  # [M, 1 + K]
    loss = torch.logsumexp(logits, dim=-1) - pos.squeeze(-1)  # [M]
    return _reduce(loss, reduction)


def sampled_softmax(pos_logits: torch.Tensor, neg_logits: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """SSM ("CE-Sampled"): the softmax over the target and its K sampled negatives, SCE with α = 1,
    ℓ = −s⁺ + log( exp(s⁺) + Σ_k exp(s⁻_k) )."""
    return scaled_cross_entropy(pos_logits, neg_logits, alpha=1.0, reduction=reduction)


def noise_contrastive_estimation(pos_logits: torch.Tensor, neg_logits: torch.Tensor, num_items: int,
                                 c: float = 10.0, reduction: str = "mean") -> torch.Tensor:
    """NCE: ℓ = −log σ(s⁺ + C − c) − Σ_{k=1}^{K} log(1 − σ(s⁻_k + C − c)), with C = log(N/K).

    C is the log-ratio of the uniform noise distribution to the K samples; c is the learned-normaliser constant,
    c = 10 in every logged run. The official reduction BCE_mean(pos) + K·BCE_mean(neg) is exactly the mean over
    positions of this per-position sum (see the module docstring). num_items: N.
    """
    _check_reduction(reduction)
    num_items = _positive_int(num_items, "num_items")
    if isinstance(c, bool) or not isinstance(c, Real) or not math.isfinite(c):
        raise ValueError(f"c must be a finite number, got {c!r}")
    pos, neg = _pos_neg(pos_logits, neg_logits)
    shift = math.log(num_items / neg.shape[1]) - c  # C − c
    # −log σ(x) = softplus(−x),  −log(1 − σ(x)) = softplus(x)
    loss = F.softplus(-(pos.squeeze(-1) + shift)) + F.softplus(neg + shift).sum(-1)  # [M]
    return _reduce(loss, reduction)


def negative_sampling(pos_logits: torch.Tensor, neg_logits: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """NEG (word2vec-style negative sampling): ℓ = −log σ(s⁺) − Σ_{k=1}^{K} log(1 − σ(s⁻_k)), summed over the K
    negatives (the official BCE_mean(pos) + K·BCE_mean(neg))."""
    _check_reduction(reduction)
    pos, neg = _pos_neg(pos_logits, neg_logits)
    loss = F.softplus(-pos.squeeze(-1)) + F.softplus(neg).sum(-1)  # [M]
    return _reduce(loss, reduction)


def binary_cross_entropy(pos_logits: torch.Tensor, neg_logits: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """BCE (the classic SASRec loss): ℓ = −log σ(s⁺) − log(1 − σ(s⁻)), K = 1 negative from the user's unseen items.

    With K > 1 the negatives' term is averaged over k, as the official BCE_mean(pos) + BCE_mean(neg) does:
    ℓ = −log σ(s⁺) − (1/K)·Σ_k log(1 − σ(s⁻_k)).
    """
    _check_reduction(reduction)
    pos, neg = _pos_neg(pos_logits, neg_logits)
    loss = F.softplus(-pos.squeeze(-1)) + F.softplus(neg).mean(-1)  # [M]
    return _reduce(loss, reduction)


def bpr(pos_logits: torch.Tensor, neg_logits: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """BPR (Bayesian personalised ranking): ℓ = −log σ(s⁺ − s⁻), K = 1 negative from the unseen items.

    With K > 1 the pairs are averaged over k, as the official mean over all M·K pairs does:
    ℓ = (1/K)·Σ_k −log σ(s⁺ − s⁻_k).
    """
    _check_reduction(reduction)
    pos, neg = _pos_neg(pos_logits, neg_logits)
    loss = F.softplus(neg - pos).mean(-1)  # [M]
    return _reduce(loss, reduction)


# ----------------------------------------------------------------------------------------------------------------------
# negative samplers


def seen_mask(seen, num_rows: int, num_items: int, device=None) -> torch.Tensor:
    """The seen items as a boolean mask [num_rows, num_items + 1] (column 0 is the padding id).

    seen: a boolean tensor of that shape (returned as is, on `device` when given), or a sequence of `num_rows`
    iterables of item ids in 1..N (lists, sets, 1-D integer tensors; empty rows allowed).
    """
    if isinstance(seen, torch.Tensor):
        if seen.dtype != torch.bool or tuple(seen.shape) != (num_rows, num_items + 1):
            raise ValueError(f"seen as a tensor must be a boolean mask of shape [{num_rows}, {num_items + 1}] "
                             f"(rows, N + 1), got dtype {seen.dtype} and shape {tuple(seen.shape)}")
        return seen if device is None else seen.to(device)
    if not isinstance(seen, Sequence) or isinstance(seen, (str, bytes)) or len(seen) != num_rows:
        raise ValueError(f"seen must be a boolean tensor [{num_rows}, {num_items + 1}] or a sequence of {num_rows} "
                         f"iterables of item ids, got {type(seen).__name__}"
                         + (f" of length {len(seen)}" if isinstance(seen, Sequence) else ""))
    rows, cols = [], []
    for i, items in enumerate(seen):
        ids = items.reshape(-1).tolist() if isinstance(items, torch.Tensor) else list(items)
        for item in ids:
            if isinstance(item, bool) or int(item) != item or not 1 <= item <= num_items:
                raise ValueError(f"seen[{i}] holds {item!r}, not an item id in 1..{num_items}")
        rows.extend([i] * len(ids))
        cols.extend(int(item) for item in ids)
    mask = torch.zeros(num_rows, num_items + 1, dtype=torch.bool, device=device)
    if rows:
        mask[torch.tensor(rows, device=device), torch.tensor(cols, device=device)] = True
    return mask


def sample_negatives(shape: Sequence[int], num_items: int, generator: torch.Generator | None = None,
                     pool: str = "all", seen=None, device=None, max_rounds: int = 16) -> torch.Tensor:
    """Item ids drawn uniformly with replacement, e.g. shape (B, S, K) for K negatives at every position.

    pool="all": uniform over 1..N (0 is padding); a negative may be the target, as `torch.randint` in the official
        code (`--neg-pool all`, used by SCE, SSM, NCE and NEG).
    pool="unseen": uniform over the items that user b (row b of the first dimension) has not seen, 1..N minus
        `seen[b]` (`--neg-pool unseen`, used by BCE and BPR). `seen` is a boolean mask [B, N + 1] or a sequence of B
        iterables of item ids (see `seen_mask`). Vectorised rejection sampling: draw from 1..N, redraw the seen
        ones; after `max_rounds` rounds the few left are drawn exactly from each row's unseen list (inverse CDF), so
        the result is uniform either way. A row with no unseen item raises ValueError.

    Returns a long tensor of `shape` on `device` (default: the generator's device, else `seen`'s, else CPU).
    """
    shape = tuple(shape)
    if not shape or any(isinstance(d, bool) or not isinstance(d, Integral) or d < 0 for d in shape):
        raise ValueError(f"shape must be a non-empty tuple of non-negative integers, got {shape!r}")
    if shape[-1] < 1:
        raise ValueError(f"the last dimension of shape (K, the negatives per position) must be >= 1, got {shape!r}")
    shape = tuple(int(d) for d in shape)
    num_items = _positive_int(num_items, "num_items")
    if pool not in _POOLS:
        raise ValueError(f"pool must be one of {_POOLS}, got {pool!r}")
    if device is None:
        device = generator.device if generator is not None else (
            seen.device if isinstance(seen, torch.Tensor) else torch.device("cpu"))
    if pool == "all":
        if seen is not None:
            raise ValueError("seen is only used with pool='unseen'; got seen with pool='all'")
        return torch.randint(1, num_items + 1, shape, generator=generator, device=device)
    if seen is None:
        raise ValueError("pool='unseen' needs seen (a boolean mask [B, N + 1] or B iterables of item ids)")
    batch = shape[0]
    mask = seen_mask(seen, batch, num_items, device=device).clone()  # [B, N + 1]
    mask[:, 0] = True  # padding is never drawn
    empty = (~mask).sum(-1) == 0  # [B]
    if bool(empty.any()):
        raise ValueError(f"pool='unseen': row {int(empty.nonzero()[0])} of seen covers all {num_items} items, "
                         "so there is no unseen item to sample")
    flat = torch.randint(1, num_items + 1, shape, generator=generator, device=device).reshape(batch, -1)  # [B, P]
    for _ in range(max_rounds):
        bad = mask.gather(1, flat)  # [B, P]
        if not bool(bad.any()):
            return flat.reshape(shape)
        redraw = torch.randint(1, num_items + 1, flat.shape, generator=generator, device=device)
        flat = torch.where(bad, redraw, flat)
    bad = mask.gather(1, flat)
    rows = bad.any(-1).nonzero().squeeze(-1)  # rows still holding seen draws
    allowed = ~mask[rows]  # [R, N + 1]
    count = allowed.sum(-1, keepdim=True)  # [R, 1]
    cum = allowed.long().cumsum(-1)  # [R, N + 1]
    u = torch.rand(rows.numel(), flat.shape[1], generator=generator, device=device, dtype=torch.float64)
    rank = (u * count).long().clamp(max=count - 1) + 1  # [R, P] in 1..count
    exact = torch.searchsorted(cum, rank)  # the rank-th unseen id of each row
    flat[rows] = torch.where(bad[rows], exact, flat[rows])
    return flat.reshape(shape)


__all__ = [
    "binary_cross_entropy",
    "bpr",
    "full_cross_entropy",
    "negative_sampling",
    "noise_contrastive_estimation",
    "sample_negatives",
    "sampled_softmax",
    "scaled_cross_entropy",
    "seen_mask",
]
