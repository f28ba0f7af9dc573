"""The offline tables the RRL tests train on, read in one place: tic-tac-toe from `tests/data` (source and license in
its README), wine from inside scikit-learn's wheel. Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

DATA = Path(__file__).parent / "data"
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
