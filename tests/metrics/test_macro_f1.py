"""The local `macro_f1` evaluate module against scikit-learn, and loading it with no network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

import paperzoo
from paperzoo import metrics


@pytest.fixture(scope="module")
def metric():
    return metrics.load("macro_f1", keep_in_memory=True)


@pytest.fixture(scope="module")
def wine_predictions():
    """Real, imperfect predictions: a logistic regression on two unscaled wine features, trained on 30 rows."""
    X, y = load_wine(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X[:, [0, 1]], y, train_size=30, stratify=y, random_state=0)
    predicted = LogisticRegression(max_iter=2000).fit(X_train, y_train).predict(X_test)
    assert 0.5 < accuracy_score(y_test, predicted) < 1  # errors in every direction make the check meaningful
    return y_test, predicted


def test_matches_sklearn_on_wine(metric, wine_predictions):
    y_true, y_pred = wine_predictions
    result = metric.compute(predictions=y_pred.tolist(), references=y_true.tolist())
    assert set(result) == {"macro_f1", "accuracy"}
    assert result["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"), abs=1e-12)
    assert result["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)


def test_string_labels_and_numpy_inputs(metric, wine_predictions):
    y_true, y_pred = wine_predictions
    names = load_wine().target_names
    result = metric.compute(predictions=names[y_pred], references=names[y_true])  # numpy str arrays
    assert result["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"), abs=1e-12)
    assert result["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)


def test_incremental_batches(metric, wine_predictions):
    y_true, y_pred = wine_predictions
    for start in range(0, len(y_true), 16):
        metric.add_batch(predictions=y_pred[start:start + 16], references=y_true[start:start + 16])
    assert metric.compute()["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"), abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_missing_classes_labels_and_weights_match_sklearn(metric, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 40))
    y_true = rng.integers(0, 4, n)
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, 6, n))  # classes 4, 5 only ever predicted
    weights = rng.random(n) + 0.1
    labels = [0, 2, 5, 7]  # 7 never occurs; rows of classes 1, 3, 4 count only through the classes they miss
    cases = [({}, {}), ({"labels": labels}, {"labels": labels}), ({"sample_weight": weights.tolist()},
                                                                  {"sample_weight": weights})]
    for ours, theirs in cases:
        result = metric.compute(predictions=y_pred.tolist(), references=y_true.tolist(), **ours)
        expected = f1_score(y_true, y_pred, average="macro", zero_division=0, **theirs)
        assert result["macro_f1"] == pytest.approx(expected, abs=1e-12), ours
    weighted = metric.compute(predictions=y_pred.tolist(), references=y_true.tolist(), sample_weight=weights.tolist())
    assert weighted["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred, sample_weight=weights), abs=1e-12)


def test_helper_resolves_inside_the_package():
    assert "macro_f1" in metrics.available()
    assert metrics.path("macro_f1") == Path(paperzoo.__file__).resolve().parent / "metrics" / "macro_f1"
    with pytest.raises(ValueError, match=r"'accuracy'.*macro_f1"):
        metrics.load("accuracy")


def test_loads_with_no_network(tmp_path):
    """Offline flags, an unreachable endpoint, empty caches and every socket connection refused."""
    code = (
        "import json, socket\n"
        "def refuse(*args, **kwargs):\n"
        "    raise OSError('network access attempted')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "from paperzoo import metrics\n"
        "print(json.dumps(metrics.load('macro_f1').compute(predictions=[0, 1, 1, 2], references=[0, 1, 2, 2])))\n"
    )
    root = Path(paperzoo.__file__).resolve().parents[1]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_EVALUATE_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "PYTHONPATH": os.pathsep.join([str(root), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"macro_f1": pytest.approx(f1_score([0, 1, 2, 2], [0, 1, 1, 2], average="macro")),
                      "accuracy": 0.75}
    assert list((tmp_path / "modules").rglob("macro_f1.py"))  # the module went through evaluate's loader
