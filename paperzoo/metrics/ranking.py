"""Top-k ranking metrics of next-item recommendation: HR@k, NDCG@k and MRR@k (DESIGN §6).

The tensor math behind the `full_ranking` and `sampled_ranking` evaluate modules, importable on its own for
evaluation loops that should not store every score (accumulate `target_ranks` per batch, then `metrics_from_ranks`).

Notation. Items are 1..N and id 0 is padding, so scores are [B, N + 1] with column 0 never ranked. For each row the
target's rank counts ties PESSIMISTICALLY, so that a constant model cannot score well:

    r = 1 + #{ candidate items j ≠ target : s_j ≥ s_target }

    HR@k   = 1[r ≤ k]              (hit ratio, recall with one relevant item)
    NDCG@k = 1[r ≤ k] / log2(1 + r)
    MRR@k  = 1[r ≤ k] / r

each averaged over rows. (The official code of Xu et al., freerec's metrics, orders by `topk` and so breaks ties by
position instead; with real-valued scores ties are rare and both agree.)

Full ranking (the papers' protocol): every item 1..N is a candidate except the user's seen items, removed as the
official code does when a dataset has no repeated interactions. The target is never removed: if it is among the seen
items (a re-consumed item) it stays rankable. Sampled ranking ("sampled-100"): the target against `num_negatives`
items drawn uniformly without replacement from the items the user has not seen (neither the target nor `seen`).
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import torch

from paperzoo.losses.recommendation import seen_mask

DEFAULT_KS = (1, 5, 10)


def _check(scores: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scores = torch.as_tensor(scores)
    targets = torch.as_tensor(targets, device=scores.device)
    if scores.dim() != 2 or scores.shape[1] < 2:
        raise ValueError(f"scores must have shape [B, N + 1] (column 0 = padding, N >= 1 items), "
                         f"got {tuple(scores.shape)}")
    if not scores.is_floating_point():
        scores = scores.double()
    if targets.dim() != 1 or targets.shape[0] != scores.shape[0]:
        raise ValueError(f"targets must have shape [B] = [{scores.shape[0]}], got {tuple(targets.shape)}")
    if targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise ValueError(f"targets must be integer item ids, got dtype {targets.dtype}")
    num_items = scores.shape[1] - 1
    if targets.numel() and (int(targets.min()) < 1 or int(targets.max()) > num_items):
        raise ValueError(f"targets must be item ids in 1..{num_items} (0 is padding), got values in "
                         f"[{int(targets.min())}, {int(targets.max())}]")
    if bool(torch.isnan(scores).any()):
        raise ValueError("scores contain NaN: a NaN score cannot be ranked")
    return scores, targets.long()


def _check_ks(ks) -> tuple[int, ...]:
    ks = (ks,) if isinstance(ks, Integral) else tuple(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, Integral) or k < 1 for k in ks):
        raise ValueError(f"k must be a positive integer or a non-empty sequence of them, got {ks!r}")
    return tuple(sorted({int(k) for k in ks}))


def target_ranks(scores: torch.Tensor, targets: torch.Tensor, seen=None) -> torch.Tensor:
    """The pessimistic rank r ≥ 1 of each target under full ranking, a long tensor [B].

    scores [B, N + 1]: the score of every item id (column 0, padding, is never a candidate). targets [B]: item ids.
    seen: optional, a boolean mask [B, N + 1] or B iterables of item ids removed from the candidates (the target
    itself never is).
    """
    scores, targets = _check(scores, targets)
    batch, width = scores.shape
    candidate = torch.ones(batch, width, dtype=torch.bool, device=scores.device)  # [B, N + 1]
    if seen is not None:
        candidate &= ~seen_mask(seen, batch, width - 1, device=scores.device)
    candidate[:, 0] = False
    rows = torch.arange(batch, device=scores.device)
    candidate[rows, targets] = False  # the other candidates
    target_score = scores[rows, targets].unsqueeze(-1)  # [B, 1]
    return 1 + ((scores >= target_score) & candidate).sum(-1)


def metrics_from_ranks(ranks: torch.Tensor, ks=DEFAULT_KS) -> dict[str, float]:
    """HR@k, NDCG@k and MRR@k averaged over rows, from the ranks [B] (r ≥ 1) of the targets: keys `hr@k`,
    `ndcg@k`, `mrr@k` for every k, in that order."""
    ks = _check_ks(ks)
    ranks = torch.as_tensor(ranks).double().reshape(-1)
    if ranks.numel() == 0:
        raise ValueError("no rows to score")
    if bool((ranks < 1).any()):
        raise ValueError(f"ranks must be >= 1, got a minimum of {float(ranks.min())}")
    out = {}
    for name, gain in (("hr", torch.ones_like(ranks)), ("ndcg", 1.0 / torch.log2(1.0 + ranks)),
                       ("mrr", 1.0 / ranks)):
        for k in ks:
            out[f"{name}@{k}"] = float(torch.where(ranks <= k, gain, torch.zeros_like(gain)).mean())
    return out


def ranking_metrics(scores: torch.Tensor, targets: torch.Tensor, seen=None, ks=DEFAULT_KS) -> dict[str, float]:
    """Full-ranking HR@k, NDCG@k, MRR@k: the target against every item 1..N not in `seen` (see `target_ranks`)."""
    return metrics_from_ranks(target_ranks(scores, targets, seen), ks)


def sample_ranking_negatives(targets: torch.Tensor, num_items: int, seen=None, num_negatives: int = 100,
                             generator: torch.Generator | None = None) -> torch.Tensor:
    """`num_negatives` distinct item ids per row [B, num_negatives], uniform without replacement over the items the
    user has not seen: 1..N minus the target and `seen` (a boolean mask [B, N + 1] or B iterables of item ids).

    Uniform subsets come from iid uniform keys: the items with the `num_negatives` largest keys among the allowed ones.
    A row with fewer allowed items than `num_negatives` raises ValueError.
    """
    targets = torch.as_tensor(targets)
    for name, value in (("num_negatives", num_negatives), ("num_items", num_items)):
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    num_negatives, num_items = int(num_negatives), int(num_items)
    if targets.dim() != 1 or targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise ValueError(f"targets must be a 1-D tensor of item ids, got dtype {targets.dtype} and shape "
                         f"{tuple(targets.shape)}")
    if targets.numel() and (int(targets.min()) < 1 or int(targets.max()) > num_items):
        raise ValueError(f"targets must be item ids in 1..{num_items}, got values in "
                         f"[{int(targets.min())}, {int(targets.max())}]")
    device = generator.device if generator is not None else targets.device
    batch = targets.shape[0]
    excluded = torch.zeros(batch, num_items + 1, dtype=torch.bool, device=device)  # [B, N + 1]
    if seen is not None:
        excluded |= seen_mask(seen, batch, num_items, device=device)
    excluded[:, 0] = True
    excluded[torch.arange(batch, device=device), targets.to(device).long()] = True
    short = (~excluded).sum(-1) < num_negatives  # [B]
    if bool(short.any()):
        row = int(short.nonzero()[0])
        raise ValueError(f"row {row} has {int((~excluded[row]).sum())} unseen items, fewer than "
                         f"num_negatives = {num_negatives}")
    keys = torch.rand(batch, num_items + 1, generator=generator, device=device, dtype=torch.float64)
    keys = keys.masked_fill(excluded, -1.0)  # [B, N + 1]; float64 keys: ties are negligible
    return keys.topk(num_negatives, dim=-1).indices  # [B, num_negatives]


def sampled_ranking_metrics(scores: torch.Tensor, targets: torch.Tensor, seen=None, num_negatives: int = 100,
                            seed: int | None = 0, generator: torch.Generator | None = None,
                            negatives: torch.Tensor | None = None, ks=DEFAULT_KS) -> dict[str, float]:
    """Sampled-ranking HR@k, NDCG@k, MRR@k: the target against `num_negatives` unseen items per row.

    scores [B, N + 1]: every item's score (column 0, padding, unused). The negatives are `negatives` [B, K] when
    given, else drawn by `sample_ranking_negatives` from `generator`, else from a generator seeded with `seed`.
    The target's rank among its 1 + K candidates is pessimistic: 1 + #{negatives with s ≥ s_target}.
    """
    scores, targets = _check(scores, targets)
    if negatives is None:
        if generator is None:
            generator = torch.Generator(device=scores.device)
            if seed is None:
                generator.seed()  # fresh entropy: a new Generator would otherwise start from one fixed seed
            else:
                generator.manual_seed(int(seed))
        negatives = sample_ranking_negatives(targets, scores.shape[1] - 1, seen, num_negatives, generator)
    negatives = torch.as_tensor(negatives, device=scores.device).long()
    if negatives.dim() != 2 or negatives.shape[0] != scores.shape[0] or negatives.shape[1] < 1:
        raise ValueError(f"negatives must have shape [B, K] with B = {scores.shape[0]} and K >= 1, "
                         f"got {tuple(negatives.shape)}")
    if int(negatives.min()) < 1 or int(negatives.max()) >= scores.shape[1]:
        raise ValueError(f"negatives must be item ids in 1..{scores.shape[1] - 1}, got values in "
                         f"[{int(negatives.min())}, {int(negatives.max())}]")
    target_score = scores.gather(1, targets.unsqueeze(-1))  # [B, 1]
    ranks = 1 + (scores.gather(1, negatives) >= target_score).sum(-1)  # [B]
    return metrics_from_ranks(ranks, ks)


def as_rows(seen) -> list | None:
    """`seen` as evaluate hands it over (lists, arrays or None) in the form `seen_mask` takes."""
    if seen is None or isinstance(seen, torch.Tensor):
        return seen
    if not isinstance(seen, Sequence) and hasattr(seen, "__len__"):  # numpy object arrays, arrow lists
        seen = list(seen)
    return [[] if row is None else list(row) for row in seen]


__all__ = [
    "DEFAULT_KS",
    "metrics_from_ranks",
    "ranking_metrics",
    "sample_ranking_negatives",
    "sampled_ranking_metrics",
    "target_ranks",
]
