"""Shared by the pipeline and RRL export tests: the offline data sets and the tiny RRL models trained on them.

tic-tac-toe comes from the shared data folder beside the repository (`shared/data`, as CI checks it out); wine ships
inside scikit-learn's wheel. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

DATA = Path(__file__).parents[2].parent / "shared" / "data"
TIC_TAC_TOE_COLUMNS = [f"{row}_{col}" for row in ("top", "middle", "bottom") for col in ("left", "middle", "right")]


def tic_tac_toe() -> tuple[pd.DataFrame, pd.Series]:
    """UCI Tic-Tac-Toe Endgame: 958 boards, 9 discrete squares (x / o / b), class positive / negative."""
    frame = pd.read_csv(DATA / "tic-tac-toe.data", header=None, names=[*TIC_TAC_TOE_COLUMNS, "class"], dtype=str)
    return frame[TIC_TAC_TOE_COLUMNS], frame["class"]


def wine() -> tuple[pd.DataFrame, pd.Series]:
    """scikit-learn's wine: 178 rows, 13 continuous columns, 3 classes (0, 1, 2)."""
    from sklearn.datasets import load_wine

    bunch = load_wine(as_frame=True)
    return bunch.data, bunch.target


DATASETS = {"tic-tac-toe": tic_tac_toe, "wine": wine}


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
