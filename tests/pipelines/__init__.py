"""Shared by the pipeline and RRL export tests: the tiny RRL models trained on the offline data sets."""

from __future__ import annotations

import pandas as pd

from ..tabular_data import DATASETS


def train(name: str):
    """(classifier, X, y): a tiny RRL fitted on the whole data set (seconds on CPU, reference kernels)."""
    from paperzoo import RRLClassifier

    X, y = DATASETS[name]()
    clf = RRLClassifier(layer_widths=(8,), max_epochs=5, random_state=0, kernel_backend="reference").fit(X, y)
    return clf, X, y


def records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts of plain Python values (JSON round-trips them exactly)."""
    return [{str(k): (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
            for row in frame.to_dict("records")]
