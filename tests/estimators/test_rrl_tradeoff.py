"""RRLClassifier(max_rules=N): at most N rules by construction, more rules allowed → more rules kept (within a
tolerance), the setting chosen on the training rows only, and explanations exact at every setting, with the
official pruning by training support (pruning="training") too."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from paperzoo import RRLClassifier

FAST = {"max_epochs": 15, "lr_decay_epochs": 15, "batch_size": 64, "random_state": 0}


@pytest.fixture(scope="module")
def data():
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X = X.iloc[:, :10]  # ten features: fast, and enough for a few dozen rules
    return train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)


def exact(clf, X) -> bool:
    """z = b + Σ weights of the rules that fired, against the model's own logits, on every row."""
    z = clf.decision_function(X)
    explained = np.array([[e["logits"][str(c)] for c in clf.classes_] for e in clf.explain(X)])
    return bool(np.allclose(explained, z, atol=1e-4 * (1 + np.abs(z).max())))


@pytest.fixture(scope="module")
def fitted(data):
    X_train, _, y_train, _ = data
    return {n: RRLClassifier(max_rules=n, **FAST).fit(X_train, y_train) for n in (4, 16, 64)}


def test_the_handle_bounds_and_orders_the_rule_count(fitted, data):
    _, X_test, _, y_test = data
    counts = {n: clf.complexity()["rules"] for n, clf in fitted.items()}
    for n, count in counts.items():
        assert 1 <= count <= n, (n, count)
        assert fitted[n].selected_params_["layer_widths"][-1] <= n // 2
        assert {r["layer_widths"][-1] for r in fitted[n].selection_} <= set(range(1, n // 2 + 1))
    assert counts[4] <= counts[16] <= counts[64] + 2, counts  # monotone within a tolerance of two rules
    assert counts[4] < counts[64]
    for clf in fitted.values():
        assert clf.score(X_test, y_test) > 0.8


def test_every_setting_explains_exactly(fitted, data):
    X_train, X_test, y_train, _ = data
    for clf in fitted.values():
        assert exact(clf, X_test) and exact(clf, X_train)
    for setting in fitted[16].max_rules_candidates():  # every candidate of the search, refitted
        clf = RRLClassifier(**{**FAST, **setting}).fit(X_train, y_train)
        assert exact(clf, X_test)


def test_the_selection_sees_only_the_rows_fit_was_given(data, monkeypatch):
    X_train, X_test, y_train, y_test = data
    seen = []
    real_fit = RRLClassifier.fit

    def recording_fit(self, X, y):
        seen.append(set(X.index))
        return real_fit(self, X, y)

    monkeypatch.setattr(RRLClassifier, "fit", recording_fit)
    clf = RRLClassifier(max_rules=8, **FAST).fit(X_train, y_train)
    assert len(seen) == 1 + len(clf.selection_) + 1  # the call, each candidate, the refit
    assert all(rows <= set(X_train.index) for rows in seen)
    assert not any(rows & set(X_test.index) for rows in seen)
    inner = seen[1]
    assert all(rows == inner for rows in seen[1:-1])  # every candidate on the same inner split
    assert seen[-1] == set(X_train.index)  # the refit on all training rows
    # seeded: the same training rows give the same choice
    again = RRLClassifier(max_rules=8, **FAST).fit(X_train, y_train)
    assert again.selected_params_ == clf.selected_params_


def test_training_pruning_keeps_training_predictions_and_exactness(data, tmp_path):
    """pruning="training" (the official pruning, folded into the model): the same predictions on the training rows
    as the exact fit, no rule left that never or always fires on them, and exact explanations on new rows, also
    through the pipeline of the saved folder."""
    from transformers import pipeline

    X_train, X_test, y_train, _ = data
    plain = RRLClassifier(**FAST).fit(X_train, y_train)
    pruned = RRLClassifier(pruning="training", **FAST).fit(X_train, y_train)
    np.testing.assert_allclose(pruned.decision_function(X_train), plain.decision_function(X_train), atol=1e-5)
    assert pruned.complexity()["rules"] <= plain.complexity()["rules"]
    assert all(0 < rule["support"] < 1 for rule in pruned.rules_)
    assert exact(pruned, X_test)
    # pruned on a few rows, many rules are constant there: fewer rules, still exact on every other row
    few = X_train.iloc[:12]
    removed = plain.prune_by_support(few)
    assert removed["output_nodes_removed"] > 0 and plain.complexity()["rules"] < pruned.complexity()["rules"]
    assert all(0 < rule["support"] < 1 for rule in plain.rules_)  # re-measured on the pruning rows
    assert exact(plain, X_test) and exact(plain, X_train)
    plain.save_pretrained(tmp_path / "pruned")
    pipe = pipeline("tabular-classification", model=str(tmp_path / "pruned"))
    results = pipe(X_test)  # the pipeline checks b + Σ w against the model's logits on every row
    z = plain.decision_function(X_test)
    np.testing.assert_allclose([[r["logits"][str(c)] for c in plain.classes_] for r in results], z, atol=1e-4)


def test_bad_max_rules():
    X = pd.DataFrame({"a": np.arange(20.0)})
    y = np.arange(20) % 2
    for value, match in ((1, "max_rules=1"), (2.5, "max_rules=2.5"), (True, "max_rules=True")):
        with pytest.raises(ValueError, match=match):
            RRLClassifier(max_rules=value).fit(X, y)
    with pytest.raises(ValueError, match="use_skip=False"):
        RRLClassifier(max_rules=8, use_skip=True).fit(X, y)
    with pytest.raises(ValueError, match="validation_fraction=1.5"):
        RRLClassifier(max_rules=8, validation_fraction=1.5).fit(X, y)
    with pytest.raises(ValueError, match="pruning='support'"):
        RRLClassifier(pruning="support").fit(X, y)


def test_an_array_input_names_the_rules_as_a_plain_fit_does(data):
    X_train, _, y_train, _ = data
    X = X_train.to_numpy()
    plain = RRLClassifier(**FAST).fit(X, y_train)
    bounded = RRLClassifier(max_rules=4, **FAST).fit(X, y_train)
    assert list(bounded.feature_names_in_) == list(plain.feature_names_in_)
    assert bounded.predict(X).shape == (len(X),)
