"""paperzoo.diagnosis.compare and `paperzoo diagnose compare`: the same folds for every method, nothing from a test
fold in any fit or prompt example, faithfulness against RRL's exact rules, the written table and plot."""

from __future__ import annotations

import importlib
import json
import math

import numpy as np
import pandas as pd
import pytest

from paperzoo.diagnosis import DiagnosisTask, compare, load_ad_data, stratified_folds
from paperzoo.diagnosis.faithfulness import overlap, rule_features

from ..tiny_llm import tiny_causal_lm

compare_module = importlib.import_module("paperzoo.diagnosis.comparison")
llm_module = importlib.import_module("paperzoo.diagnosis.llm")
FAST_RRL = {"max_epochs": 3, "lr_decay_epochs": 3, "layer_widths": (8,), "num_thresholds": 3}


@pytest.fixture(scope="module")
def ad():
    """60 subjects of ad_data (stratified: 44 Control, 16 Impaired) and five of its features."""
    frame = load_ad_data()
    rows = np.concatenate([np.flatnonzero(frame.Class == c)[:n] for c, n in (("Control", 44), ("Impaired", 16))])
    columns = ["tau", "p_tau", "Ab_42", "male", "Genotype", "Class"]
    full = DiagnosisTask.builtin("ad_data")
    task = DiagnosisTask(full.target, full.classes, {c: full.features[c] for c in columns[:-1]}, full.question,
                         full.context, "ad_data_5")
    return frame.iloc[np.sort(rows)][columns], task


def test_stratified_folds_partition_the_rows_and_are_seeded():
    y = np.array(["a"] * 12 + ["b"] * 6)
    folds = stratified_folds(y, 3, seed=1)
    assert sorted(np.concatenate(folds).tolist()) == list(range(18))
    assert all(sorted(y[f].tolist()) == ["a"] * 4 + ["b"] * 2 for f in folds)
    assert [f.tolist() for f in folds] == [f.tolist() for f in stratified_folds(y, 3, seed=1)]
    with pytest.raises(ValueError, match="smallest class has 6 rows"):
        stratified_folds(y, 7)


def test_every_method_trains_on_the_same_training_folds_and_predicts_the_same_test_folds(ad, monkeypatch):
    frame, task = ad
    seen: dict[str, list[set]] = {}

    real_model = compare_module.traditional_model

    def spying_model(name, *args, **kwargs):
        estimator = real_model(name, *args, **kwargs)
        fit = estimator.fit

        def recording_fit(X, y):
            seen.setdefault(name, []).append(set(X.index))
            return fit(X, y)

        estimator.fit = recording_fit
        return estimator

    real_fit = llm_module.LLMDiagnoser.fit

    def recording_llm_fit(self, rows=None, y=None):
        seen.setdefault(f"llm-{self.shots}", []).append(set(rows.index))
        return real_fit(self, rows, y)

    monkeypatch.setattr(compare_module, "traditional_model", spying_model)
    monkeypatch.setattr(llm_module.LLMDiagnoser, "fit", recording_llm_fit)
    model, tokenizer = tiny_causal_lm()
    result = compare(frame, task=task, shots=(0, 3), llm=model, tokenizer=tokenizer, n_folds=4, seed=3,
                     progress=False, rrl_params=FAST_RRL, llm_options={"explain": False})
    assert result.methods == ["rrl", "lr", "cart", "rf", "gb", "llm-0", "llm-3"]
    expected_folds = [frame.index[f].tolist() for f in stratified_folds(frame.Class, 4, seed=3)]
    assert result.folds == expected_folds
    everything = set(frame.index)
    for method in result.methods:
        assert seen[method] == [everything - set(f) for f in expected_folds], method  # fitted on the rest only
        for fold, test in enumerate(expected_folds):  # predicted on exactly this fold's rows
            rows = [r for r in result.per_fold if r["method"] == method and r["fold"] == fold]
            assert len(rows) == 1 and rows[0]["records"] == len(test)
        assert sorted(result.predictions[method]) == sorted(everything)
    for row in result.per_fold:
        if row["method"].startswith("llm-"):  # no test-fold row is ever a prompt example
            test = set(expected_folds[row["fold"]])
            assert not set(row["examples"]) & test
            assert len(row["examples"]) == int(row["method"].split("-")[1])
    # accuracy recomputed from the predictions, fold by fold
    for row in result.per_fold:
        test = expected_folds[row["fold"]]
        predicted = [result.predictions[row["method"]][i] for i in test]
        assert row["accuracy"] == pytest.approx(np.mean(np.array(predicted) == frame.loc[test, "Class"].to_numpy()))


def test_invalid_generated_answers_count_as_wrong(ad, monkeypatch):
    frame, task = ad
    monkeypatch.setattr(llm_module.LLMDiagnoser, "_generate", lambda self, texts: ["no idea"] * len(texts))
    model, tokenizer = tiny_causal_lm()
    result = compare(frame, task=task, methods=(), shots=(0,), llm=model, tokenizer=tokenizer, n_folds=2,
                     progress=False, llm_options={"scoring": "generate"})
    table = result.table
    assert table.accuracy_mean[0] == 0.0 and table.invalid[0] == len(frame)
    assert result.methods == ["llm-0-gen"] and result.table.name[0] == "LLM zero-shot, generated"
    assert set(result.predictions["llm-0-gen"].values()) == {compare_module.INVALID}


def test_faithfulness_is_measured_against_the_rules_that_fired(ad, tmp_path, monkeypatch):
    frame, task = ad
    # the LLM "explains" every answer by naming tau and Genotype
    monkeypatch.setattr(llm_module.LLMDiagnoser, "_generate",
                        lambda self, texts: ["tau is high and the Genotype is E4"] * len(texts))
    model, tokenizer = tiny_causal_lm()
    result = compare(frame, task=task, methods=("rrl",), shots=(0,), llm=model, tokenizer=tokenizer, n_folds=2,
                     progress=False, rrl_params=FAST_RRL, out=tmp_path / "out")
    assert len(result.cases) == len(frame)
    for case in result.cases:
        assert case["cited"] == ["tau", "Genotype"]
        reference = set(case["rule_features"])
        both = {"tau", "Genotype"} & reference
        assert case["precision"] == len(both) / 2
        assert case["recall"] == (len(both) / len(reference) if reference else pytest.approx(math.nan, nan_ok=True))
    summary = result.faithfulness()["llm-0"]
    assert summary["cases"] == len(frame)
    assert summary["precision"] == pytest.approx(np.mean([c["precision"] for c in result.cases]))
    assert [a["explanation"] for a in result.answers] == ["tau is high and the Genotype is E4"] * len(frame)
    for name in ("table.md", "table.csv", "per_fold.csv", "predictions.csv", "faithfulness.csv", "answers.csv",
                 "folds.json", "task.json", "summary.json", "comparison.png"):
        assert (tmp_path / "out" / name).is_file(), name
    assert (tmp_path / "out" / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "out" / "folds.json").read_text()) == result.folds
    assert "| RRL |" in (tmp_path / "out" / "table.md").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the temporary folder was renamed
    # reloaded, and joined with a run on the same folds: one table
    loaded = compare_module.Comparison.load(tmp_path / "out")
    assert loaded.markdown() == result.markdown() and loaded.folds == result.folds
    other = compare(frame, task=task, methods=("majority",), shots=(), n_folds=2, progress=False)
    joined = loaded.join(other)
    assert joined.methods == ["rrl", "llm-0", "majority"]
    assert joined.table.accuracy_mean[2] == pytest.approx(other.table.accuracy_mean[0])
    with pytest.raises(ValueError, match="same folds"):
        loaded.join(compare(frame, task=task, methods=("majority",), shots=(), n_folds=3, progress=False))


def test_rule_features_read_the_fired_rules_exactly(ad):
    """Independent reference: the columns named in the text of each rule the RRL explanation lists."""
    from paperzoo.estimators.rrl import RRLClassifier

    frame, task = ad
    X, y = frame.drop(columns="Class"), frame.Class
    rrl = RRLClassifier(discrete=["Genotype"], random_state=0, **FAST_RRL).fit(X, y)
    features = rule_features(rrl, X)
    for explanation, cited in zip(rrl.explain(X), features):
        named = set()
        for rule in explanation["rules"]:
            text = rule["rule"].replace("p_tau", "")  # "tau" inside "p_tau" is not the column tau
            named |= {c for c in X.columns if c in text} | ({"p_tau"} if "p_tau" in rule["rule"] else set())
        assert set(cited) == named


def test_overlap_by_hand():
    assert overlap(["a", "b"], ["b", "c", "d"], shown=["a", "b", "c", "e"]) == {
        "precision": 0.5, "recall": 1 / 3, "jaccard": 0.25, "chance": 0.5}
    empty = overlap([], ["b"])
    assert math.isnan(empty["precision"]) and empty["recall"] == 0.0


def test_bad_input(ad):
    frame, task = ad
    with pytest.raises(ValueError, match=r"unknown method\(s\) \['svm'\]"):
        compare(frame, task=task, methods=("svm",), shots=())
    with pytest.raises(ValueError, match="single class"):
        compare(frame.assign(Class="Control"), target="Class", shots=())
    with pytest.raises(ValueError, match=r"missing feature column\(s\) \['tau'\]"):
        compare(frame.drop(columns="tau"), task=task, shots=())
    with pytest.raises(ValueError, match="shots="):
        compare(frame, task=task, shots=(-1,))
    with pytest.raises(ValueError, match="index repeats labels"):
        compare(pd.concat([frame, frame.iloc[:5]]), task=task, shots=())


def test_cli_compare_writes_the_table(tmp_path, capsys):
    from paperzoo.cli import main

    rng = np.random.RandomState(0)
    table = pd.DataFrame({"x": rng.normal(size=40), "color": rng.choice(["red", "blue"], 40)})
    table["label"] = np.where(table.x > 0, "yes", "no")
    table.to_csv(tmp_path / "data.csv", index=False)
    code = main(["diagnose", "compare", str(tmp_path / "data.csv"), "--target", "label", "--shots", "",
                 "--methods", "lr,cart,majority", "--folds", "3", "--output", str(tmp_path / "out"), "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "| logistic regression |" in out and "| CART |" in out and "| majority class |" in out
    assert (tmp_path / "out" / "comparison.png").is_file()
    assert main(["diagnose", "compare", str(tmp_path / "data.csv"), "--target", "nope", "--shots", "",
                 "--output", str(tmp_path / "out2")]) == 2
    assert "'nope' is not in the table" in capsys.readouterr().err
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep")
    assert main(["diagnose", "compare", str(tmp_path / "data.csv"), "--target", "label", "--shots", "",
                 "--output", str(tmp_path / "notes")]) == 2
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep"
