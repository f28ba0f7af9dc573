"""RRLClassifier as a scikit-learn estimator on real offline data (sklearn's wine, the RRL authors' tic-tac-toe)."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_wine
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeClassifier

from paperzoo import RRLClassifier

from .. import tabular_data

FAST = dict(layer_widths=(16,), max_epochs=15, batch_size=32, learning_rate=5e-3, random_state=0,
            kernel_backend="reference")


def tic_tac_toe():
    X, y = tabular_data.tic_tac_toe()
    return X, y.to_numpy()


def test_sklearn_protocol_and_cross_validation():
    wine = load_wine(as_frame=True)
    clf = RRLClassifier(**FAST)
    assert clone(clf).get_params() == clf.get_params()
    assert clf.set_params(max_epochs=3).max_epochs == 3 and clf.set_params(max_epochs=15)
    folds = StratifiedKFold(3, shuffle=True, random_state=0)
    rrl = cross_val_score(Pipeline([("rrl", clf)]), wine.data, wine.target, cv=folds, scoring="f1_macro")
    cart = cross_val_score(DecisionTreeClassifier(random_state=0), wine.data, wine.target, cv=folds,
                           scoring="f1_macro")
    assert rrl.mean() >= cart.mean() - 0.03, (rrl, cart)  # a short run already matches CART on wine
    assert rrl.mean() > 0.85


def test_fit_predict_rules_and_determinism():
    X, y = tic_tac_toe()
    settings = dict(FAST, batch_size=64, max_epochs=12)
    a = RRLClassifier(**settings).fit(X, y)
    b = RRLClassifier(**settings).fit(X, y)
    assert list(a.classes_) == ["negative", "positive"] and a.n_features_in_ == 9
    np.testing.assert_array_equal(a.decision_function(X), b.decision_function(X))  # same random_state, same model
    assert [r["rule"] for r in a.rules_] == [r["rule"] for r in b.rules_]
    proba = a.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    np.testing.assert_array_equal(a.predict(X), a.classes_[proba.argmax(1)])
    assert (a.predict(X) == y).mean() > 0.8
    a.measure_support(X)
    assert all(0.0 <= r["support"] <= 1.0 for r in a.rules_)
    for row, z in zip(a.explain(X.iloc[:50]), a.decision_function(X.iloc[:50])):
        expected = [row["bias"][c] + sum(r["weights"][c] for r in row["rules"]) for c in a.classes_]
        np.testing.assert_allclose(expected, z, rtol=0, atol=1e-5)
        assert row["logits"] == {c: pytest.approx(v, abs=1e-5) for c, v in zip(a.classes_, z)}
    assert any(f"{c} = " in a.rules_[0]["rule"] for c in X.columns) and a.complexity()["rules"] == len(a.rules_)
    c = RRLClassifier(**dict(settings, random_state=1)).fit(X, y)
    assert not np.array_equal(c.decision_function(X), a.decision_function(X))


def test_bad_input_is_a_clear_error():
    X, y = tic_tac_toe()
    with pytest.raises(ValueError, match="single class"):
        RRLClassifier(**FAST).fit(X, np.full(len(y), "positive"))
    with pytest.raises(ValueError, match="rows but y has"):
        RRLClassifier(**FAST).fit(X, y[:-1])
    with pytest.raises(ValueError, match="max_epochs=0"):
        RRLClassifier(**dict(FAST, max_epochs=0)).fit(X, y)
    fitted = RRLClassifier(**dict(FAST, max_epochs=1)).fit(X, y)
    with pytest.raises(ValueError, match=r"missing \['middle_left'\]"):
        fitted.predict(X.drop(columns=["middle_left"]))
    with pytest.raises(ValueError, match="empty input"):
        fitted.predict(X.iloc[:0])


def test_tied_columns_get_class_boundary_bounds_not_repeated_quantiles():
    """On a column that is mostly 0 (sklearn's digits pixels) most quantile levels share one value; the spare slots
    must go to the column's own class-boundary cuts, never to a bound that splits the training rows as another does."""
    import torch
    from sklearn.datasets import load_digits

    from paperzoo.estimators.rrl import _quantile_thresholds
    from paperzoo.processors.rrl import RRLProcessor

    digits = load_digits(as_frame=True)
    X, y = digits.data[["pixel_0_2", "pixel_1_1", "pixel_3_4", "pixel_7_0"]], digits.target.to_numpy()
    processor = RRLProcessor().fit(X)
    features = torch.tensor(processor(X)["input_features"]).double()
    n = 10
    bounds = _quantile_thresholds(features, torch.tensor(y), processor, n).double()  # [n, 4]
    assert bounds.shape == (n, 4) and bool((bounds[1:] >= bounds[:-1]).all())
    quantiles = torch.quantile(features, torch.arange(1, n + 1, dtype=torch.float64) / (n + 1), dim=0)
    spare_used = 0
    for j, column in enumerate(features.t()):
        column32 = column.float()  # the model compares float32 features with float32 bounds
        splits = {int((column32 <= b).sum()) for b in bounds[:, j].float()}  # the literals the bounds make
        kept = {int((column32 <= q).sum()) for q in quantiles[:, j].float()} - {len(column)}
        assert kept <= splits  # every quantile kept, but one at the maximum (x > max is never true)
        cuts = len(torch.unique(column)) - 1  # distinct ways to split the rows by one bound on this column
        assert len(splits - {len(column)}) == min(n, cuts), (j, sorted(splits), cuts)  # no slot spent on a copy
        spare_used += len(splits) - len(set(quantiles[:, j].tolist()))
    assert spare_used > 0  # the tied columns did get class-boundary cuts


def test_unfitted_estimator_raises_not_fitted_error(tmp_path):
    from sklearn.exceptions import NotFittedError

    clf, X = RRLClassifier(), load_wine(as_frame=True).data.iloc[:4]
    calls = {
        "predict": lambda: clf.predict(X), "predict_proba": lambda: clf.predict_proba(X),
        "decision_function": lambda: clf.decision_function(X), "score": lambda: clf.score(X, [0, 1, 0, 1]),
        "rules_": lambda: clf.rules_, "print_rules": clf.print_rules, "complexity": clf.complexity,
        "explain": lambda: clf.explain(X), "measure_support": lambda: clf.measure_support(X),
        "save_pretrained": lambda: clf.save_pretrained(tmp_path / "model"),
    }
    for call in calls.values():
        with pytest.raises(NotFittedError):
            call()
    assert not (tmp_path / "model").exists()


def test_a_stray_bad_value_is_an_error_or_a_missing_value():
    wine = load_wine(as_frame=True)
    X = wine.data.astype(object)
    X.loc[17, "alcohol"] = "13,2"  # a decimal comma: the column stays numeric, not 126 categories
    with pytest.raises(ValueError, match=r"column 'alcohol' is continuous but row 17 holds '13,2'"):
        RRLClassifier(**FAST).fit(X, wine.target)
    clf = RRLClassifier(**dict(FAST, max_epochs=1, bad_values="missing")).fit(X, wine.target)
    assert clf.processor_.discrete_columns == [] and clf.processor_.continuous_columns == list(wine.data.columns)
    assert not any(" = " in r["rule"] for r in clf.rules_)  # no column became categories
    assert clf.predict(X.iloc[17:18]).shape == (1,)


@pytest.mark.parametrize("column, reason", [("alcohol", "not integers"), ("proline", "more classes than half")])
def test_continuous_target_is_refused(column, reason):
    """wine's alcohol (fractional) and proline (integer-valued, 121 values in 178 rows) are measurements, not
    classes: one class per distinct value trains to nothing, so fit refuses them, naming the column and the count."""
    wine = load_wine(as_frame=True).frame
    X, y = wine.drop(columns=[column, "target"]), wine[column]
    with pytest.raises(ValueError, match=rf"target '{column}' looks continuous.* {y.nunique()} distinct values in "
                                         rf"{len(y)} rows, .*{reason}.*Did you mean another column\?"):
        RRLClassifier(**FAST).fit(X, y)
    from paperzoo.estimators.rrl import class_labels

    assert list(class_labels(wine["target"].astype(float))) == [0.0, 1.0, 2.0]  # integral floats are labels
