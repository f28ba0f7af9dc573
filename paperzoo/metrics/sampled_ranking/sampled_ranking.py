"""HR@k, NDCG@k and MRR@k of next-item recommendation by sampled ranking, as an `evaluate` module loaded by path.

Load it with `paperzoo.metrics.load("sampled_ranking")` (no network). The "sampled-100" protocol, reported by Xu et al.
(arXiv 2402.06216) only for comparison with full ranking: each row ranks the target against `num_negatives` (100)
items drawn uniformly without replacement from the items the user has not seen (neither the target nor `seen`),
from a generator seeded with `seed`, so that runs agree. Ties count against the target (pessimistic rank
r = 1 + #{negatives with a score ≥ the target's}); HR@k = 1[r ≤ k], NDCG@k = 1[r ≤ k] / log2(1 + r),
MRR@k = 1[r ≤ k] / r, averaged over rows. The math is `paperzoo.metrics.ranking` (paperzoo must be installed).
"""

import datasets
import evaluate
import torch

from paperzoo.metrics.ranking import DEFAULT_KS, as_rows, sampled_ranking_metrics

_DESCRIPTION = """\
Sampled-ranking hit ratio (HR@k), NDCG@k and MRR@k for next-item recommendation: the rank of the target among itself
and uniformly sampled unseen items, with ties counted pessimistically.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): per row, the score of every item id 0..N ([B, N + 1]); column 0 is
        padding and is never sampled. NaN is not allowed.
    references (`list` of `int`): the target item id of each row, in 1..N.
    seen (`list` of `list` of `int`, optional): per row, the item ids never drawn as negatives (the user's items).
        Passed to `compute`, covering every row added so far.
    num_negatives (`int`, optional): negatives per row, default 100; every row needs that many unseen items.
    seed (`int`, optional): the seed of the negative sampler, default 0 (`None`: fresh entropy).
    k (`int` or `list` of `int`, optional): the cut-offs, default (1, 5, 10).
Returns:
    hr@k, ndcg@k, mrr@k (`float`) for every k: the means over rows, in [0, 1].
Examples:
    >>> metric = paperzoo.metrics.load("sampled_ranking")
    >>> metric.compute(predictions=[[0.0, 0.1, 0.9, 0.3, 0.2]], references=[2], num_negatives=3, k=[1])
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


class SampledRanking(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("float64")),
                                        "references": datasets.Value("int64")}),
            reference_urls=["https://arxiv.org/abs/2402.06216", "https://github.com/MTandHJ/CE-SCE-LLMRec"],
        )

    def _compute(self, predictions, references, seen=None, num_negatives=100, seed=0, k=DEFAULT_KS):
        if len(predictions) == 0:
            raise ValueError("no predictions to score")
        if len({len(row) for row in predictions}) != 1:
            raise ValueError("every row of predictions must score the same N + 1 item ids, got rows of lengths "
                             f"{sorted({len(row) for row in predictions})}")
        scores = torch.as_tensor(predictions, dtype=torch.float64)  # [B, N + 1]
        return sampled_ranking_metrics(scores, torch.as_tensor(references), seen=as_rows(seen),
                                       num_negatives=num_negatives, seed=seed, ks=k)
