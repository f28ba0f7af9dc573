"""KBQA answer metrics as an `evaluate` module loaded by path (`paperzoo.metrics.load("kbqa")`).

Per question, with P the predicted answer set and G the gold set (IRIs, literal values, "true"/"false"):
- exact_match: P == G;
- f1: 2·|P∩G| / (|P| + |G|) (0 when P is empty and G is not; 1 when both are empty);
- hits@1: the first predicted answer is in G (0 when P is empty);
and over the data set their means, plus executable_rate, the mean of `executable` when given (the share of questions
whose program executed). Answers are compared as strings; duplicates in a list count once.
"""

import datasets
import evaluate

_DESCRIPTION = "Exact match of answer sets, answer F1, Hits@1 and the executable rate of KBQA predictions."

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `str`): the predicted answers per question, best first.
    references (`list` of `list` of `str`): the gold answers per question.
    executable (`list` of `bool`, optional): whether each question's program executed.
Returns:
    exact_match, f1, hits@1 (`float`, in [0, 1]): means over the questions; executable_rate when `executable` is given.
Examples:
    >>> metric = paperzoo.metrics.load("kbqa")
    >>> metric.compute(predictions=[["a", "b"], []], references=[["a"], ["c"]])
    {'exact_match': 0.0, 'f1': 0.3333333333333333, 'hits@1': 0.5}
"""


class KBQA(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("string")),
                                        "references": datasets.Sequence(datasets.Value("string"))}),
            reference_urls=["https://arxiv.org/abs/2308.12060"],
        )

    def _compute(self, predictions, references, executable=None):
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
        if not references:
            raise ValueError("no predictions to score")
        em = f1 = hits = 0.0
        for predicted, gold in zip(predictions, references):
            p, g = set(predicted), set(gold)
            em += p == g
            f1 += 1.0 if not p and not g else 2 * len(p & g) / (len(p) + len(g))
            hits += bool(predicted) and predicted[0] in g
        n = len(references)
        scores = {"exact_match": em / n, "f1": f1 / n, "hits@1": hits / n}
        if executable is not None:
            if len(executable) != n:
                raise ValueError(f"executable has {len(executable)} values for {n} questions")
            scores["executable_rate"] = sum(bool(e) for e in executable) / n
        return scores
