"""HR@k, NDCG@k, MRR@k: pessimistic ties, seen removal, the padding column, the sampled-100 protocol, the evaluate
modules against the plain functions, and everything against a brute-force Python loop."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import paperzoo
from paperzoo import metrics
from paperzoo.losses import seen_mask
from paperzoo.metrics.ranking import (
    metrics_from_ranks,
    ranking_metrics,
    sample_ranking_negatives,
    sampled_ranking_metrics,
    target_ranks,
)


@pytest.fixture(scope="module")
def full():
    return metrics.load("full_ranking", keep_in_memory=True)


@pytest.fixture(scope="module")
def sampled():
    return metrics.load("sampled_ranking", keep_in_memory=True)


def brute_force(scores, targets, candidates_of, ks):
    """The definition, one row at a time: r = 1 + #{candidates j ≠ target with s_j ≥ s_target}."""
    out = {f"{name}@{k}": 0.0 for name in ("hr", "ndcg", "mrr") for k in ks}
    for i, (row, target) in enumerate(zip(scores.tolist(), targets.tolist())):
        rank = 1 + sum(1 for j in candidates_of(i) if j != target and row[j] >= row[target])
        for k in ks:
            if rank <= k:
                out[f"hr@{k}"] += 1 / len(targets)
                out[f"ndcg@{k}"] += 1 / math.log2(1 + rank) / len(targets)
                out[f"mrr@{k}"] += 1 / rank / len(targets)
    return out


def assert_metrics_close(ours, expected):
    assert set(ours) == set(expected)
    for key in expected:
        assert ours[key] == pytest.approx(expected[key], abs=1e-12), key


# ----------------------------------------------------------------------------------------------------------------------
# full ranking, by hand


#                     pad   1    2    3    4    5
TIED = torch.tensor([[99.0, 0.5, 0.9, 0.5, 0.5, 0.1]])


def test_ties_count_against_the_target():
    assert target_ranks(TIED, torch.tensor([1])).tolist() == [4]  # item 2 above, items 3 and 4 tied: rank 4
    assert target_ranks(TIED, torch.tensor([3])).tolist() == [4]  # the same for every tied item
    assert target_ranks(TIED, torch.tensor([2])).tolist() == [1]
    assert target_ranks(TIED, torch.tensor([5])).tolist() == [5]
    result = ranking_metrics(TIED, torch.tensor([1]), ks=(1, 3, 5))
    assert result == {"hr@1": 0.0, "hr@3": 0.0, "hr@5": 1.0, "ndcg@1": 0.0, "ndcg@3": 0.0,
                      "ndcg@5": pytest.approx(1 / math.log2(5)), "mrr@1": 0.0, "mrr@3": 0.0, "mrr@5": 0.25}


def test_a_constant_model_ranks_last():
    num_items = 50
    scores = torch.zeros(4, num_items + 1)
    assert target_ranks(scores, torch.tensor([1, 7, 30, 50])).tolist() == [num_items] * 4
    assert all(v == 0.0 for v in ranking_metrics(scores, torch.tensor([1, 7, 30, 50])).values())


def test_padding_column_is_never_ranked():
    scores = TIED.clone()
    scores[0, 0] = float("inf")
    assert target_ranks(scores, torch.tensor([2])).tolist() == [1]
    scores[0, 0] = -float("inf")
    assert target_ranks(scores, torch.tensor([5])).tolist() == [5]  # nor counted below
    with pytest.raises(ValueError, match=r"item ids in 1\.\.5 \(0 is padding\).*\[0, 0\]"):
        target_ranks(TIED, torch.tensor([0]))


def test_seen_items_are_removed_and_the_target_is_kept():
    assert target_ranks(TIED, torch.tensor([1]), seen=[[2, 3]]).tolist() == [2]  # only item 4 left to tie
    assert target_ranks(TIED, torch.tensor([1]), seen=[[1, 2]]).tolist() == [3]  # a seen target stays rankable
    mask = seen_mask([[2, 3]], 1, 5)
    assert target_ranks(TIED, torch.tensor([1]), seen=mask).tolist() == [2]
    # -inf scores do not make removed items count: ranking uses the candidate set, not score masking
    scores = torch.tensor([[0.0, -float("inf"), -float("inf"), 1.0]])
    assert target_ranks(scores, torch.tensor([1]), seen=[[2]]).tolist() == [2]
    assert target_ranks(scores, torch.tensor([1])).tolist() == [3]


def test_streaming_ranks_equal_one_shot():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 8, (40, 31), generator=g).float()
    targets = torch.randint(1, 31, (40,), generator=g)
    ranks = torch.cat([target_ranks(scores[i:i + 7], targets[i:i + 7]) for i in range(0, 40, 7)])
    assert metrics_from_ranks(ranks) == ranking_metrics(scores, targets)
    assert list(metrics_from_ranks(ranks)) == ["hr@1", "hr@5", "hr@10", "ndcg@1", "ndcg@5", "ndcg@10",
                                               "mrr@1", "mrr@5", "mrr@10"]


@pytest.mark.parametrize("seed", range(5))
def test_full_ranking_matches_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    batch, num_items = 25, 40
    scores = torch.randint(0, 6, (batch, num_items + 1), generator=g).double()  # few levels: many ties
    scores[:, 0] = torch.randint(-10, 10, (batch,), generator=g).double()  # padding scores anything
    targets = torch.randint(1, num_items + 1, (batch,), generator=g)
    seen = [torch.randperm(num_items, generator=g)[: int(torch.randint(0, 30, (1,), generator=g))].add(1).tolist()
            for _ in range(batch)]
    ks = (1, 3, 10, 20)
    expected = brute_force(scores, targets, lambda i: set(range(1, num_items + 1)) - set(seen[i]) | {targets[i].item()},
                           ks)
    assert_metrics_close(ranking_metrics(scores, targets, seen=seen, ks=ks), expected)
    assert_metrics_close(ranking_metrics(scores, targets, ks=ks),
                         brute_force(scores, targets, lambda i: range(1, num_items + 1), ks))


# ----------------------------------------------------------------------------------------------------------------------
# sampled ranking


def test_sampled_negatives_are_distinct_unseen_and_reproducible():
    num_items, batch = 150, 30
    g = torch.Generator().manual_seed(1)
    targets = torch.randint(1, num_items + 1, (batch,), generator=g)
    seen = [torch.randperm(num_items, generator=g)[:40].add(1).tolist() for _ in range(batch)]
    negatives = sample_ranking_negatives(targets, num_items, seen, 100, torch.Generator().manual_seed(5))
    assert negatives.shape == (batch, 100)
    for i in range(batch):
        row = negatives[i].tolist()
        assert len(set(row)) == 100  # without replacement
        assert not set(row) & (set(seen[i]) | {targets[i].item(), 0}) and max(row) <= num_items
    again = sample_ranking_negatives(targets, num_items, seen, 100, torch.Generator().manual_seed(5))
    assert torch.equal(negatives, again)


def test_sampled_negatives_are_uniform():
    """Every allowed item equally likely: 2000 rows drawing 5 of the 9 items left after the target and 10 seen."""
    num_items, batch = 20, 2000
    targets = torch.full((batch,), 4)
    seen = [list(range(10, 20))] * batch
    negatives = sample_ranking_negatives(targets, num_items, seen, 5, torch.Generator().manual_seed(0))
    counts = torch.bincount(negatives.flatten(), minlength=num_items + 1).double()
    allowed = [1, 2, 3, 5, 6, 7, 8, 9, 20]
    assert counts.sum() == counts[allowed].sum()
    assert ((counts[allowed] - batch * 5 / 9).abs() < 4 * math.sqrt(batch * 5 / 9)).all(), counts[allowed]


def test_sampled_ranking_is_pessimistic_and_matches_brute_force():
    g = torch.Generator().manual_seed(2)
    batch, num_items = 30, 200
    scores = torch.randint(0, 5, (batch, num_items + 1), generator=g).double()
    targets = torch.randint(1, num_items + 1, (batch,), generator=g)
    seen = [torch.randperm(num_items, generator=g)[:50].add(1).tolist() for _ in range(batch)]
    negatives = sample_ranking_negatives(targets, num_items, seen, 100, torch.Generator().manual_seed(0))
    expected = brute_force(scores, targets, lambda i: negatives[i].tolist(), (1, 5, 10))
    assert_metrics_close(sampled_ranking_metrics(scores, targets, negatives=negatives), expected)
    assert_metrics_close(sampled_ranking_metrics(scores, targets, seen=seen, seed=0), expected)  # same draws
    constant = sampled_ranking_metrics(torch.zeros(batch, num_items + 1), targets, seen=seen)
    assert all(v == 0.0 for v in constant.values())  # rank 101 everywhere


# ----------------------------------------------------------------------------------------------------------------------
# the evaluate modules


def random_case(seed, batch=20, num_items=300):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(batch, num_items + 1, generator=g, dtype=torch.float64)
    scores[:, 1::7] = scores[:, 1::7].round()  # a few ties
    targets = torch.randint(1, num_items + 1, (batch,), generator=g)
    seen = [torch.randperm(num_items, generator=g)[:60].add(1).tolist() for _ in range(batch)]
    return scores, targets, seen


def test_full_ranking_module_equals_the_plain_function(full):
    scores, targets, seen = random_case(0)
    expected = ranking_metrics(scores, targets, seen=seen)
    assert full.compute(predictions=scores.tolist(), references=targets.tolist(), seen=seen) == expected
    for start in range(0, 20, 6):  # batches, then `seen` for all rows at compute time
        full.add_batch(predictions=scores[start:start + 6].numpy(), references=targets[start:start + 6].numpy())
    assert full.compute(seen=seen) == expected
    assert full.compute(predictions=scores.float().tolist(), references=targets.tolist(), k=[2, 50]) == \
        ranking_metrics(scores.float(), targets, ks=(2, 50))


def test_sampled_ranking_module_equals_the_plain_function(sampled):
    scores, targets, seen = random_case(1)
    for seed in (0, 3):
        expected = sampled_ranking_metrics(scores, targets, seen=seen, num_negatives=100, seed=seed)
        assert sampled.compute(predictions=scores.tolist(), references=targets.tolist(), seen=seen,
                               seed=seed) == expected
    assert sampled.compute(predictions=scores.tolist(), references=targets.tolist(), num_negatives=10, k=3) == \
        sampled_ranking_metrics(scores, targets, num_negatives=10, seed=0, ks=(3,))


def test_errors(full, sampled):
    scores, targets, _ = random_case(2, batch=3, num_items=20)
    with pytest.raises(ValueError, match="NaN"):
        ranking_metrics(torch.tensor([[0.0, float("nan"), 1.0]]), torch.tensor([1]))
    with pytest.raises(ValueError, match=r"targets must have shape \[B\] = \[3\]"):
        ranking_metrics(scores, targets[:2])
    with pytest.raises(ValueError, match=r"k must be.*\(0,\)"):
        ranking_metrics(scores, targets, ks=0)
    with pytest.raises(ValueError, match=r"seen\[1\] holds 21"):
        ranking_metrics(scores, targets, seen=[[], [21], []])
    with pytest.raises(ValueError, match="row 0 has 9 unseen items, fewer than num_negatives = 10"):
        sample_ranking_negatives(torch.tensor([1]), 20, [list(range(11, 21))], 10)
    with pytest.raises(ValueError, match=r"negatives must be item ids in 1\.\.20"):
        sampled_ranking_metrics(scores, targets, negatives=torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="same N \\+ 1 item ids"):
        full.compute(predictions=[[0.0, 1.0, 2.0], [0.0, 1.0]], references=[1, 2])
    with pytest.raises(ValueError, match="fewer than num_negatives = 100"):
        sampled.compute(predictions=scores.tolist(), references=targets.tolist())


def test_modules_resolve_inside_the_package_and_load_with_no_network(tmp_path):
    assert {"full_ranking", "sampled_ranking"} <= set(metrics.available())
    assert metrics.path("full_ranking") == Path(paperzoo.__file__).resolve().parent / "metrics" / "full_ranking"
    code = (
        "import json, socket\n"
        "def refuse(*args, **kwargs):\n"
        "    raise OSError('network access attempted')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "from paperzoo import metrics\n"
        "scores = [[9.0, 0.1, 0.5, 0.3, 0.2], [0.0, 0.7, 0.7, 0.1, 0.2]]\n"
        "full = metrics.load('full_ranking').compute(predictions=scores, references=[2, 1], k=1)\n"
        "sampled = metrics.load('sampled_ranking').compute(\n"
        "    predictions=scores, references=[2, 1], num_negatives=2, k=1)\n"
        "print(json.dumps([full, sampled]))\n"
    )
    root = Path(paperzoo.__file__).resolve().parents[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf"),
           "HF_MODULES_CACHE": str(tmp_path / "modules"),
           "PYTHONPATH": os.pathsep.join([str(root), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    full_result, sampled_result = json.loads(done.stdout.strip().splitlines()[-1])
    assert full_result == {"hr@1": 0.5, "ndcg@1": 0.5, "mrr@1": 0.5}  # row 2: item 2 ties the target, rank 2
    assert sampled_result["hr@1"] in (0.5, 1.0)  # row 1 wins; row 2 loses when item 2 is drawn
    assert list((tmp_path / "modules").rglob("full_ranking.py")) and list((tmp_path / "modules").rglob(
        "sampled_ranking.py"))
