"""HR@k, NDCG@k and MRR@k of next-item recommendation by full ranking, as an `evaluate` module loaded by path.

Load it with `paperzoo.metrics.load("full_ranking")` (no network). Each row ranks the target item against every item
1..N except the user's seen items, the protocol of Xu et al. (arXiv 2402.06216, 2408.14238). Ties count against the
target (pessimistic rank r = 1 + #{other candidates with a score ≥ the target's}); HR@k = 1[r ≤ k],
NDCG@k = 1[r ≤ k] / log2(1 + r), MRR@k = 1[r ≤ k] / r, averaged over rows. The math is `paperzoo.metrics.ranking`
(this module imports it, so paperzoo must be installed); for evaluation sets too large to hold every score, call
`paperzoo.metrics.ranking.target_ranks` per batch and `metrics_from_ranks` once.
"""

import datasets
import evaluate
import torch

from paperzoo.metrics.ranking import DEFAULT_KS, as_rows, ranking_metrics

_DESCRIPTION = """\
Full-ranking hit ratio (HR@k), NDCG@k and MRR@k for next-item recommendation: the rank of the target among all items
not yet seen by the user, with ties counted pessimistically. Column 0 of the scores is the padding id, never ranked.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): per row, the score of every item id 0..N ([B, N + 1]); column 0 is
        padding and is never ranked. -inf is allowed, NaN is not.
    references (`list` of `int`): the target item id of each row, in 1..N.
    seen (`list` of `list` of `int`, optional): per row, the item ids to remove from the candidates (the user's
        earlier items). The target is never removed: a seen target stays rankable. Passed to `compute`, covering
        every row added so far.
    k (`int` or `list` of `int`, optional): the cut-offs, default (1, 5, 10).
Returns:
    hr@k, ndcg@k, mrr@k (`float`) for every k: the means over rows, in [0, 1].
Examples:
    >>> metric = paperzoo.metrics.load("full_ranking")
    >>> metric.compute(predictions=[[9.0, 0.1, 0.5, 0.3]], references=[2], k=[1])
    {'hr@1': 1.0, 'ndcg@1': 1.0, 'mrr@1': 1.0}
"""

_CITATION = """\
@article{xu2024understanding,
  title={Understanding the Role of Cross-Entropy Loss in Fairly Evaluating Large Language Model-based Recommendation},
  author={Xu, Cong and Zhu, Zhangchi and Wang, Jun and Wang, Jianyong and Zhang, Wei},
  journal={arXiv preprint arXiv:2402.06216},
  year={2024}
}
"""


class FullRanking(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # float64 keeps float32 and float64 scores exact, so ties survive storage
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("float64")),
                                        "references": datasets.Value("int64")}),
            reference_urls=["https://arxiv.org/abs/2402.06216", "https://github.com/MTandHJ/CE-SCE-LLMRec"],
        )

    def _compute(self, predictions, references, seen=None, k=DEFAULT_KS):
        if len(predictions) == 0:
            raise ValueError("no predictions to score")
        if len({len(row) for row in predictions}) != 1:
            raise ValueError("every row of predictions must score the same N + 1 item ids, got rows of lengths "
                             f"{sorted({len(row) for row in predictions})}")
        scores = torch.as_tensor(predictions, dtype=torch.float64)  # [B, N + 1]
        return ranking_metrics(scores, torch.as_tensor(references), seen=as_rows(seen), ks=k)
