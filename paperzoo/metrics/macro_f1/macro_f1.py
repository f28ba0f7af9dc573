"""Macro-F1 and accuracy for single-label classification, as an `evaluate` module loaded by path.

Load it with `paperzoo.metrics.load("macro_f1")` (no network: `evaluate.load("f1")` would fetch a Space from the
Hub). Macro-F1 follows `sklearn.metrics.f1_score(average="macro")`: the classes are the sorted union of the labels
in `references` and `predictions` (or `labels=` when given), each class scores F1 = 2·TP / (2·TP + FP + FN), a class
with no true, no predicted and so no correct row scores 0 (sklearn's `zero_division=0`), and the scores are averaged
without weights. Accuracy is the fraction of rows with `prediction == reference`.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """\
Macro-averaged F1 (the unweighted mean of the per-class F1 scores) and accuracy of class predictions. The classes are
the union of the labels seen in references and predictions, unless `labels` lists them.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int` or `str`): predicted labels.
    references (`list` of `int` or `str`): true labels, of the same type as the predictions.
    labels (`list`, optional): the classes to average over (default: every label seen). Classes that never occur
        score 0; predictions or references outside `labels` count only through the classes they miss.
    sample_weight (`list` of `float`, optional): a weight per row (default: 1).
Returns:
    macro_f1 (`float`): the unweighted mean of the per-class F1 scores, in [0, 1].
    accuracy (`float`): the (weighted) fraction of correct predictions, in [0, 1].
Examples:
    >>> metric = paperzoo.metrics.load("macro_f1")
    >>> metric.compute(predictions=[0, 1, 1, 2], references=[0, 1, 2, 2])
    {'macro_f1': 0.7777777777777777, 'accuracy': 0.75}
"""

_CITATION = ""


class MacroF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # string labels first: evaluate tries the options in order, and the int64 option would accept "3"
            features=[
                datasets.Features({"predictions": datasets.Value("string"),
                                   "references": datasets.Value("string")}),
                datasets.Features({"predictions": datasets.Value("int64"),
                                   "references": datasets.Value("int64")}),
            ],
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.f1_score.html"],
        )

    def _compute(self, predictions, references, labels=None, sample_weight=None):
        predictions, references = list(predictions), list(references)
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
        if not references:
            raise ValueError("no predictions to score")
        weights = np.ones(len(references)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if weights.shape != (len(references),):
            raise ValueError(f"sample_weight has shape {weights.shape}; expected ({len(references)},)")
        classes = sorted(set(references) | set(predictions)) if labels is None else list(labels)
        if not classes:
            raise ValueError("labels is empty: there is no class to average over")
        index = {c: i for i, c in enumerate(classes)}
        k = len(classes)
        # rows whose label is outside `labels` go to an extra index k, which is not averaged
        true = np.array([index.get(r, k) for r in references])
        pred = np.array([index.get(p, k) for p in predictions])
        correct = true == pred
        tp = np.bincount(true[correct], weights=weights[correct], minlength=k + 1)[:k]
        support = np.bincount(true, weights=weights, minlength=k + 1)[:k]  # TP + FN
        predicted = np.bincount(pred, weights=weights, minlength=k + 1)[:k]  # TP + FP
        denominator = support + predicted  # 2·TP + FP + FN
        f1 = np.divide(2 * tp, denominator, out=np.zeros(k), where=denominator > 0)
        if not weights.sum() > 0:
            raise ValueError("sample_weight must have a positive sum")
        matches = np.array([p == r for p, r in zip(predictions, references)])
        accuracy = float(weights[matches].sum() / weights.sum())
        return {"macro_f1": float(f1.mean()), "accuracy": accuracy}
