"""The recommendation losses against their written formulas, SCE's limit (full CE), gradients, and the samplers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import chi2

from paperzoo.losses import (
    binary_cross_entropy,
    bpr,
    full_cross_entropy,
    negative_sampling,
    noise_contrastive_estimation,
    sample_negatives,
    sampled_softmax,
    scaled_cross_entropy,
    seen_mask,
)

PAIRWISE = {
    "sce": lambda p, n, **kw: scaled_cross_entropy(p, n, alpha=7.0, **kw),
    "ssm": sampled_softmax,
    "nce": lambda p, n, **kw: noise_contrastive_estimation(p, n, num_items=50, c=3.0, **kw),
    "neg": negative_sampling,
    "bce": binary_cross_entropy,
    "bpr": bpr,
}


def scores(m=9, k=5, dtype=torch.float32, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(m, 1, generator=g, dtype=dtype) * scale,  # pos [M, 1]
            torch.randn(m, k, generator=g, dtype=dtype) * scale)  # neg [M, K]


def log_sigmoid(x):  # written out: log σ(x) = log(1 / (1 + e^{−x})), in float64
    return -torch.log1p(torch.exp(-x.double()))


# ----------------------------------------------------------------------------------------------------------------------
# the written formulas


def test_sce_is_the_written_formula():
    pos, neg = scores()
    alpha = 7.0
    expected = (-pos.squeeze(-1).double()
                + torch.log(torch.exp(pos.squeeze(-1).double()) + alpha * torch.exp(neg.double()).sum(-1))).mean()
    assert scaled_cross_entropy(pos, neg, alpha).item() == pytest.approx(expected.item(), rel=1e-5)


def test_ssm_equals_sce_with_alpha_one_exactly():
    pos, neg = scores(m=33, k=17)
    for reduction in ("mean", "sum", "none"):
        assert torch.equal(sampled_softmax(pos, neg, reduction=reduction),
                           scaled_cross_entropy(pos, neg, 1.0, reduction=reduction))
    # and SSM is the (K + 1)-way cross-entropy with target 0, as the official "CE-Sampled"
    official = F.cross_entropy(torch.cat([pos, neg], -1), torch.zeros(33, dtype=torch.long))
    torch.testing.assert_close(sampled_softmax(pos, neg), official)


def test_nce_is_the_written_formula_and_the_official_reduction():
    pos, neg = scores(m=11, k=6)
    num_items, c, k = 40, 10.0, 6
    shift = math.log(num_items / k) - c  # C − c, C = log(N / K)
    per_position = -log_sigmoid(pos.squeeze(-1) + shift) - torch.log1p(-torch.sigmoid((neg + shift).double())).sum(-1)
    ours = noise_contrastive_estimation(pos, neg, num_items=num_items, c=c)
    assert ours.item() == pytest.approx(per_position.mean().item(), rel=1e-5)
    # the official code: BCE_mean(pos) + K · BCE_mean(neg)
    official = (F.binary_cross_entropy_with_logits(pos + shift, torch.ones_like(pos))
                + F.binary_cross_entropy_with_logits(neg + shift, torch.zeros_like(neg)) * k)
    torch.testing.assert_close(ours, official)
    torch.testing.assert_close(noise_contrastive_estimation(pos, neg, num_items, c, reduction="none"),
                               per_position.float())


def test_neg_bce_bpr_are_the_written_formulas():
    pos, neg = scores(m=13, k=4)
    p, n = pos.squeeze(-1).double(), neg.double()
    neg_loss = -log_sigmoid(p) - torch.log(1 - torch.sigmoid(n)).sum(-1)
    bce_loss = -log_sigmoid(p) - torch.log(1 - torch.sigmoid(n)).mean(-1)  # K = 1 in the papers; mean over k
    bpr_loss = -log_sigmoid(p[:, None] - n).mean(-1)
    for fn, expected in ((negative_sampling, neg_loss), (binary_cross_entropy, bce_loss), (bpr, bpr_loss)):
        assert fn(pos, neg).item() == pytest.approx(expected.mean().item(), rel=1e-5), fn.__name__
        assert fn(pos, neg, reduction="sum").item() == pytest.approx(expected.sum().item(), rel=1e-5), fn.__name__
    # the official reductions: BCE_mean(pos) + BCE_mean(neg), NEG with K·BCE_mean(neg), BPR mean over pairs
    ones, zeros = torch.ones_like(pos), torch.zeros_like(neg)
    torch.testing.assert_close(binary_cross_entropy(pos, neg), F.binary_cross_entropy_with_logits(pos, ones)
                               + F.binary_cross_entropy_with_logits(neg, zeros))
    torch.testing.assert_close(negative_sampling(pos, neg), F.binary_cross_entropy_with_logits(pos, ones)
                               + 4 * F.binary_cross_entropy_with_logits(neg, zeros))
    torch.testing.assert_close(bpr(pos, neg), F.softplus(neg - pos).mean())


def test_full_cross_entropy_matches_torch_and_keeps_the_target_in_the_normaliser():
    g = torch.Generator().manual_seed(1)
    logits, targets = torch.randn(10, 30, generator=g), torch.randint(0, 30, (10,), generator=g)
    torch.testing.assert_close(full_cross_entropy(logits, targets), F.cross_entropy(logits, targets))
    row = (torch.logsumexp(logits[3], 0) - logits[3, targets[3]]).item()
    assert full_cross_entropy(logits, targets, reduction="none")[3].item() == pytest.approx(row, rel=1e-6)


def test_sce_tends_to_full_ce_as_k_grows():
    """α = N/K with K uniform draws from all N items: α·Σ_k e^{s⁻_k} is unbiased for Σ_j e^{s_j}, so per position SCE
    differs from CE by a sampling error of order 1/√K (relative variance (e − 1)/K for standard-normal scores) and on
    average by the log's bias, about −(e − 1)/(2K). Fixed seed, M = 512 positions, N = 1000 items; the bounds hold
    with room to spare for every seed in 0..39."""
    num_items, m = 1000, 512
    g = torch.Generator().manual_seed(0)
    item_scores = torch.randn(m, num_items + 1, generator=g, dtype=torch.float64)  # [M, N + 1], column 0 padding
    targets = torch.randint(1, num_items + 1, (m,), generator=g)
    ce = full_cross_entropy(item_scores[:, 1:], targets - 1, reduction="none")  # [M]
    pos = item_scores.gather(1, targets[:, None])
    bias, spread = {}, {}
    for k in (10, 100, 1000, 4000):
        neg = item_scores.gather(1, sample_negatives((m, k), num_items, generator=g))
        gap = scaled_cross_entropy(pos, neg, alpha=num_items / k, reduction="none") - ce  # [M]
        bias[k], spread[k] = gap.mean().item(), gap.abs().mean().item()
    assert spread[4000] < spread[1000] < spread[100] < spread[10], spread
    for k in (100, 1000, 4000):  # the per-position error shrinks like 1/√K
        assert spread[k] < 1.5 * spread[10] * math.sqrt(10 / k), (k, spread)
    assert spread[4000] < 0.025 and abs(bias[4000]) < 0.006 and abs(bias[1000]) < 0.01, (bias, spread)
    assert bias[10] < 0  # Jensen: the log of an unbiased estimate is biased low


def test_low_precision_is_computed_in_float32_and_is_stable():
    pos, neg = scores(dtype=torch.bfloat16, scale=50.0)  # large logits: exp would overflow without logsigmoid
    for name, fn in PAIRWISE.items():
        out = fn(pos, neg)
        assert out.dtype == torch.float32 and torch.isfinite(out), name
        torch.testing.assert_close(out, fn(pos.float(), neg.float()), msg=name)
    huge = torch.tensor([[1e4]]), torch.tensor([[-1e4, 1e4]])
    for name, fn in PAIRWISE.items():
        assert torch.isfinite(fn(*huge)), name


@pytest.mark.parametrize("name", sorted(PAIRWISE))
def test_reductions_and_empty_batch(name):
    fn = PAIRWISE[name]
    pos, neg = scores(m=7, k=3)
    per_position = fn(pos, neg, reduction="none")
    assert per_position.shape == (7,)
    torch.testing.assert_close(fn(pos, neg), per_position.mean())
    torch.testing.assert_close(fn(pos, neg, reduction="sum"), per_position.sum())
    empty_pos = torch.zeros(0, 1, requires_grad=True)
    loss = fn(empty_pos, torch.zeros(0, 3))
    assert loss.item() == 0.0
    loss.backward()  # attached to the graph, zero gradient


@pytest.mark.parametrize("name", sorted(PAIRWISE))
def test_gradcheck_pairwise(name):
    pos, neg = scores(m=4, k=3, dtype=torch.float64, scale=1.5)
    pos.requires_grad_(True)
    neg.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p, n: PAIRWISE[name](p, n), (pos, neg))
    assert torch.autograd.gradcheck(lambda p, n: PAIRWISE[name](p, n, reduction="none"), (pos, neg))


def test_gradcheck_full_cross_entropy():
    logits = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([0, 5, 2, 2])
    assert torch.autograd.gradcheck(lambda x: full_cross_entropy(x, targets), (logits,))
    assert torch.autograd.gradcheck(lambda x: full_cross_entropy(x, targets, reduction="sum"), (logits,))


def test_loss_argument_errors():
    pos, neg = scores(m=3, k=2)
    with pytest.raises(ValueError, match="alpha.*got 0"):
        scaled_cross_entropy(pos, neg, alpha=0)
    with pytest.raises(ValueError, match="alpha.*got -1.0"):
        scaled_cross_entropy(pos, neg, alpha=-1.0)
    with pytest.raises(ValueError, match="alpha.*nan"):
        scaled_cross_entropy(pos, neg, alpha=float("nan"))
    with pytest.raises(ValueError, match=r"K >= 1.*K = 0"):
        bpr(pos, neg[:, :0])
    with pytest.raises(ValueError, match=r"pos_logits.*\[M, 1\].*\(3, 2\)"):
        bpr(neg, neg)
    with pytest.raises(ValueError, match=r"neg_logits.*M = 3.*\(2, 2\)"):
        negative_sampling(pos, neg[:2])
    with pytest.raises(ValueError, match="floating-point.*int64"):
        negative_sampling(pos.long(), neg)
    with pytest.raises(ValueError, match="reduction.*'avg'"):
        sampled_softmax(pos, neg, reduction="avg")
    with pytest.raises(ValueError, match="num_items.*got 0"):
        noise_contrastive_estimation(pos, neg, num_items=0)
    with pytest.raises(ValueError, match="c must be.*inf"):
        noise_contrastive_estimation(pos, neg, num_items=10, c=float("inf"))
    logits = torch.randn(3, 5)
    with pytest.raises(ValueError, match=r"targets.*\[0, 5\]"):
        full_cross_entropy(logits, torch.tensor([0, 1, 5]))
    with pytest.raises(ValueError, match=r"targets must have shape \[M\] = \[3\]"):
        full_cross_entropy(logits, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="targets must be an integer tensor"):
        full_cross_entropy(logits, torch.tensor([0.0, 1.0, 2.0]))


# ----------------------------------------------------------------------------------------------------------------------
# samplers


def chi_square(counts: torch.Tensor) -> float:
    expected = counts.sum() / counts.numel()
    return float(((counts - expected) ** 2 / expected).sum())


def test_sample_all_covers_one_to_n_uniformly():
    num_items = 20
    g = torch.Generator().manual_seed(0)
    draws = sample_negatives((50, 40, 100), num_items, generator=g)  # 200k draws
    assert draws.shape == (50, 40, 100) and draws.dtype == torch.long
    assert int(draws.min()) == 1 and int(draws.max()) == num_items  # never 0 (padding), never above N
    counts = torch.bincount(draws.flatten(), minlength=num_items + 1)[1:].double()
    assert chi_square(counts) < chi2.ppf(0.999, num_items - 1)
    again = sample_negatives((50, 40, 100), num_items, generator=torch.Generator().manual_seed(0))
    assert torch.equal(draws, again)  # reproducible from the generator


@pytest.mark.parametrize("as_mask", [False, True])
def test_sample_unseen_never_returns_seen_items_or_padding(as_mask):
    num_items, batch = 30, 6
    g = torch.Generator().manual_seed(3)
    seen = [set(torch.randperm(num_items, generator=g)[: 5 * b].add(1).tolist()) for b in range(batch)]
    seen[-1] = set(range(1, num_items + 1)) - {17}  # one unseen item left: the exact fallback must find it
    given = seen_mask([sorted(s) for s in seen], batch, num_items) if as_mask else [sorted(s) for s in seen]
    draws = sample_negatives((batch, 20, 50), num_items, generator=g, pool="unseen", seen=given)
    assert draws.shape == (batch, 20, 50)
    for b in range(batch):
        got = set(draws[b].flatten().tolist())
        assert not got & seen[b] and 0 not in got and max(got) <= num_items, b
    assert set(draws[-1].flatten().tolist()) == {17}
    # uniform over row 2's unseen items
    allowed = sorted(set(range(1, num_items + 1)) - seen[2])
    counts = torch.bincount(draws[2].flatten(), minlength=num_items + 1)[allowed].double()
    assert chi_square(counts) < chi2.ppf(0.999, len(allowed) - 1)


def test_sample_unseen_exact_fallback_is_uniform():
    num_items = 200
    mask = torch.ones(2, num_items + 1, dtype=torch.bool)
    mask[:, [3, 50, 199]] = False  # three unseen items of 200: rejection alone rarely finishes
    draws = sample_negatives((2, 3000), num_items, generator=torch.Generator().manual_seed(0), pool="unseen",
                             seen=mask, max_rounds=2)
    assert set(draws.flatten().tolist()) == {3, 50, 199}
    counts = torch.bincount(draws.flatten(), minlength=num_items + 1)[[3, 50, 199]].double()
    assert chi_square(counts) < chi2.ppf(0.999, 2)


def test_sampler_errors():
    with pytest.raises(ValueError, match="pool.*'popular'"):
        sample_negatives((2, 3), 10, pool="popular")
    with pytest.raises(ValueError, match="pool='unseen' needs seen"):
        sample_negatives((2, 3), 10, pool="unseen")
    with pytest.raises(ValueError, match="only used with pool='unseen'"):
        sample_negatives((2, 3), 10, seen=[[1], [2]])
    with pytest.raises(ValueError, match=r"must be >= 1.*\(2, 0\)"):
        sample_negatives((2, 0), 10)
    with pytest.raises(ValueError, match="num_items.*got 0"):
        sample_negatives((2, 3), 0)
    with pytest.raises(ValueError, match="shape.*-1"):
        sample_negatives((-1, 3), 10)
    with pytest.raises(ValueError, match="row 1 of seen covers all 3 items"):
        sample_negatives((2, 4), 3, pool="unseen", seen=[[1], [1, 2, 3]])
    with pytest.raises(ValueError, match=r"seen\[0\] holds 11.*1\.\.10"):
        sample_negatives((2, 4), 10, pool="unseen", seen=[[11], []])
    with pytest.raises(ValueError, match=r"sequence of 2 iterables.*length 1"):
        sample_negatives((2, 4), 10, pool="unseen", seen=[[1]])
    with pytest.raises(ValueError, match=r"boolean mask of shape \[2, 11\].*\(2, 10\)"):
        sample_negatives((2, 4), 10, pool="unseen", seen=torch.zeros(2, 10, dtype=torch.bool))
