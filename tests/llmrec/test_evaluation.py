"""evaluate_reranker on a case computed by hand: a fixed retriever over 6 items, fixed LLM scores for 3 candidates."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from paperzoo.llmrec import evaluate_reranker
from paperzoo.processors.seqrec import EvaluationRows, SequentialRecommendationProcessor

KEYS = [str(i) for i in range(1, 7)]
TITLES = {k: f"Movie {k}" for k in KEYS}


class FixedRetriever(torch.nn.Module):
    """Every user gets the same scores: item j scores 10 - j (item 1 best), padding −inf."""

    def forward(self, input_ids, attention_mask=None):
        scores = torch.tensor([float("-inf"), 9, 8, 7, 6, 5, 4]).expand(input_ids.shape[0], 7)
        return SimpleNamespace(logits=scores)


class FixedReranker:
    """The LLM stage with given scores per user; it records what it was shown."""

    num_candidates, prompt_format = 3, "plain"

    def __init__(self, scores):
        self.scores, self.shown = scores, None

    def score(self, histories, candidates, progress=False):
        self.shown = (histories, candidates)
        return self.scores


def test_metrics_retrieval_recall_and_random_order_by_hand():
    # user 0: history [1], target 4 -> candidates 2, 3, 4 (1 is seen); the LLM puts 4 first  -> final rank 1
    # user 1: history [2], target 6 -> candidates 1, 3, 4: a miss; the retriever ranks 6 after 1, 3, 4, 5 -> rank 5
    # user 2: history [3], target 1 -> candidates 1, 2, 4; the LLM ties 1 with 2, 4 lower -> pessimistic rank 2
    rows = EvaluationRows(histories=[[1], [2], [3]], targets=[4, 6, 1])
    processor = SequentialRecommendationProcessor(KEYS, max_length=4)
    reranker = FixedReranker([[0.1, 0.2, 0.9], [0.0, 0.0, 0.0], [0.5, 0.5, 0.2]])
    result = evaluate_reranker(reranker, FixedRetriever(), processor, rows, TITLES, ks=(1, 3, 10))
    assert reranker.shown == ([["Movie 1"], ["Movie 2"], ["Movie 3"]],
                              [["Movie 2", "Movie 3", "Movie 4"], ["Movie 1", "Movie 3", "Movie 4"],
                               ["Movie 1", "Movie 2", "Movie 4"]])
    assert result.target_ranks == [1, 5, 2]
    assert result.users == 3 and result.num_candidates == 3 and result.prompt_format == "plain"
    assert result.retrieval_recall == pytest.approx(2 / 3)
    ndcg = lambda r: 1 / math.log2(1 + r)
    assert result.reranked["hr@1"] == pytest.approx(1 / 3)
    assert result.reranked["hr@3"] == pytest.approx(2 / 3)
    assert result.reranked["ndcg@10"] == pytest.approx((ndcg(1) + ndcg(5) + ndcg(2)) / 3)
    assert result.reranked["mrr@10"] == pytest.approx((1 + 1 / 5 + 1 / 2) / 3)
    # the retriever alone: ranks 3 (4 after 2 and 3), 5, 1
    assert result.retriever["hr@1"] == pytest.approx(1 / 3)
    assert result.retriever["ndcg@10"] == pytest.approx((ndcg(3) + ndcg(5) + ndcg(1)) / 3)
    # a random order of the 3 candidates: a found target is at 1, 2 or 3 with probability 1/3 each
    found = sum(ndcg(r) for r in (1, 2, 3)) / 3
    assert result.random_order["ndcg@10"] == pytest.approx((found + ndcg(5) + found) / 3)
    assert result.random_order["hr@1"] == pytest.approx((1 / 3 + 0 + 1 / 3) / 3)
    assert result.random_order["hr@3"] == pytest.approx(2 / 3)


def test_a_subset_of_users_and_missing_titles():
    rows = EvaluationRows(histories=[[1], [2], [3]], targets=[4, 6, 1])
    processor = SequentialRecommendationProcessor(KEYS, max_length=4)
    result = evaluate_reranker(FixedReranker([[0.5, 0.5, 0.2]]), FixedRetriever(), processor, rows, TITLES,
                               users=[2])
    assert result.users == 1 and result.target_ranks == [2]
    with pytest.raises(ValueError, match="1 of the 6 items have no title, e.g. item '5'"):
        evaluate_reranker(FixedReranker([[0.0] * 3]), FixedRetriever(), processor, rows,
                          {k: v for k, v in TITLES.items() if k != "5"})
    with pytest.raises(ValueError, match="no users"):
        evaluate_reranker(FixedReranker([]), FixedRetriever(), processor, rows, TITLES, users=[])
