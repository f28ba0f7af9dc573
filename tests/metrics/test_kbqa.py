"""The kbqa metric module against answers scored by hand."""

import pytest

from paperzoo import metrics


@pytest.fixture(scope="module")
def kbqa():
    return metrics.load("kbqa")


def test_scores_by_hand(kbqa):
    predictions = [["a", "b"], [], ["b", "a"], [], ["x", "x"]]
    references = [["a"], ["c"], ["a", "b"], [], ["x"]]
    # per question:  EM 0,0,1,1,1   F1 2/3, 0, 1, 1, 1   Hits@1 1, 0, 1, 0, 1
    scores = kbqa.compute(predictions=predictions, references=references,
                          executable=[True, False, True, True, True])
    assert scores["exact_match"] == pytest.approx(3 / 5)
    assert scores["f1"] == pytest.approx((2 / 3 + 0 + 1 + 1 + 1) / 5)
    assert scores["hits@1"] == pytest.approx(3 / 5)
    assert scores["executable_rate"] == pytest.approx(4 / 5)
    assert "executable_rate" not in kbqa.compute(predictions=[["a"]], references=[["a"]])


def test_bad_inputs(kbqa):
    with pytest.raises(ValueError, match="executable has 1 values for 2 questions"):
        kbqa.compute(predictions=[["a"], ["b"]], references=[["a"], ["b"]], executable=[True])
    with pytest.raises(ValueError):
        kbqa.compute(predictions=[["a"]], references=[["a"], ["b"]])
