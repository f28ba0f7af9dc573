"""The test data lives in the repository, as its README describes it: a clone alone runs the tests."""

import re
from pathlib import Path

from .tabular_data import DATA, TIC_TAC_TOE_COLUMNS, tic_tac_toe

REPOSITORY = Path(__file__).resolve().parent.parent


def test_tic_tac_toe_is_in_the_repository_as_its_readme_says():
    assert DATA.resolve().is_relative_to(REPOSITORY)
    readme = (DATA / "README.md").read_text()
    assert "CC BY 4.0" in readme and "UCI Machine Learning Repository" in readme and "12wang3/rrl" in readme
    rows, positive, negative = (int(n) for n in re.search(
        r"(\d+) rows, comma-separated.*?`positive` \((\d+) rows.*?`negative` \((\d+) rows", readme, re.S).groups())
    X, y = tic_tac_toe()
    assert X.shape == (rows, 9) and (positive, negative) == (626, 332) and rows == positive + negative
    assert y.value_counts().to_dict() == {"positive": positive, "negative": negative}
    assert set(X.stack()) == {"x", "o", "b"}  # no missing value, only the three square states


def test_loader_matches_the_info_schema():
    """`.info` (the RRL repository's schema): nine discrete squares, then the label in the last column."""
    lines = [line.split() for line in (DATA / "tic-tac-toe.info").read_text().splitlines() if line.strip()]
    columns = [(name, kind) for name, kind in lines if kind in ("discrete", "continuous")]
    assert [kind for _, kind in columns] == ["discrete"] * 10 and len(columns) == len(TIC_TAC_TOE_COLUMNS) + 1
    assert ["LABEL_POS", "-1"] in lines and columns[-1][0] == "class"
