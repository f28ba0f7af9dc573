"""The tabular-classification pipeline in process (paperzoo imported): every row's explanation is exact
(z = b + Σ w over the rules that fired), agrees with the estimator, and the inputs are validated with precise messages.
Tiny RRL models trained on tic-tac-toe (discrete) and wine (continuous)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from transformers import AutoFeatureExtractor, AutoModel, pipeline
from transformers.pipelines import PIPELINE_REGISTRY

import paperzoo
from paperzoo import RRLForTabularClassification, RRLProcessor
from paperzoo.pipelines import TabularClassificationPipeline

from . import records, train

TASK = "tabular-classification"


@pytest.fixture(scope="module", params=["tic-tac-toe", "wine"])
def trained(request, tmp_path_factory):
    """(classifier, X, pipeline loaded by task name from the estimator's Hub folder, without trust_remote_code)."""
    clf, X, _ = train(request.param)
    folder = tmp_path_factory.mktemp(request.param) / "hub"
    clf.save_pretrained(folder)
    pipe = pipeline(TASK, model=str(folder), device="cpu")
    return clf, X, pipe, folder


def softmax(z: dict) -> dict:
    top = max(z.values())
    e = {c: math.exp(v - top) for c, v in z.items()}
    return {c: v / sum(e.values()) for c, v in e.items()}


def test_task_is_registered_with_an_auto_class():
    info = PIPELINE_REGISTRY.supported_tasks[TASK]
    assert info["impl"] is TabularClassificationPipeline and info["pt"] == (AutoModel,)
    assert paperzoo.TabularClassificationPipeline is TabularClassificationPipeline
    paperzoo.pipelines.register_pipelines()  # a re-import registers again without changing anything
    assert PIPELINE_REGISTRY.supported_tasks[TASK]["impl"] is TabularClassificationPipeline


def test_loads_model_and_feature_extractor_from_folder(trained):
    clf, _, pipe, folder = trained
    assert type(pipe) is TabularClassificationPipeline and pipe.task == TASK
    assert type(pipe.model) is RRLForTabularClassification and not pipe.model.training
    assert type(pipe.feature_extractor) is RRLProcessor
    assert pipe.tokenizer is None and pipe.image_processor is None
    processor = AutoFeatureExtractor.from_pretrained(folder)
    assert type(processor) is RRLProcessor and processor.schema() == clf.processor_.schema()


def test_every_row_is_explained_exactly(trained):
    clf, X, pipe, _ = trained
    results = pipe(X)
    assert isinstance(results, list) and len(results) == len(X)
    proba, logits, predicted = clf.predict_proba(X), clf.decision_function(X), clf.predict(X)
    labels = [str(c) for c in clf.classes_]
    texts = {r.text for r in clf.rule_set_.rules}
    fired_any = 0
    for i, result in enumerate(results):
        assert set(result) == {"label", "probabilities", "logits", "bias", "rules"}
        z, b = result["logits"], result["bias"]
        assert list(z) == list(b) == list(result["probabilities"]) == labels
        for c in labels:
            assert z[c] == pytest.approx(b[c] + sum(r["weights"][c] for r in result["rules"]), abs=1e-5)
        assert result["label"] == max(labels, key=z.get) == str(predicted[i])
        assert result["probabilities"] == pytest.approx(softmax(z), abs=1e-12)
        np.testing.assert_allclose([result["probabilities"][c] for c in labels], proba[i], atol=1e-5, rtol=0)
        np.testing.assert_allclose([z[c] for c in labels], logits[i], atol=1e-5, rtol=0)
        assert all(set(r) == {"rule", "weights"} and r["rule"] in texts for r in result["rules"])
        fired_any += bool(result["rules"])
    assert fired_any > len(X) // 2  # the explanations are not empty: rules do fire


def test_rule_set_is_the_models_and_cached(trained):
    clf, X, pipe, _ = trained
    rule_set = pipe.rule_set
    assert pipe.rule_set is rule_set
    pipe(X.iloc[:3])
    assert pipe.rule_set is rule_set
    assert [r.text for r in rule_set.rules] == [r.text for r in clf.rule_set_.rules]
    assert rule_set.bias == pytest.approx(clf.rule_set_.bias)


def test_dataframe_dict_and_list_inputs_agree(trained):
    _, X, pipe, _ = trained
    frame = X.iloc[:6]
    rows = records(frame)
    by_frame = pipe(frame)
    assert pipe(rows) == by_frame
    assert pipe(rows[2]) == by_frame[2]  # a dict is one row: one result, not a list
    assert pipe(tuple(rows[:2])) == by_frame[:2]
    shuffled = {k: rows[3][k] for k in reversed(list(rows[3]))}  # column order does not matter
    assert pipe(shuffled) == by_frame[3]
    assert pipe([shuffled, rows[4]]) == by_frame[3:5]
    assert pipe(frame[list(reversed(frame.columns))]) == by_frame


def test_pipeline_from_objects_matches_the_folder(trained):
    clf, X, pipe, _ = trained
    direct = pipeline(TASK, model=clf.model_, feature_extractor=clf.processor_, device="cpu")
    assert direct(X.iloc[:8]) == pipe(X.iloc[:8])


def test_missing_and_unexpected_columns_are_named(trained):
    _, X, pipe, _ = trained
    first, last = X.columns[0], X.columns[-1]
    row = records(X.iloc[:1])[0]
    with pytest.raises(ValueError, match=rf"the DataFrame: missing column\(s\) \['{last}'\]"):
        pipe(X.iloc[:3].drop(columns=[last]))
    with pytest.raises(ValueError, match=rf"the row: missing column\(s\) \['{first}'\]"):
        pipe({k: v for k, v in row.items() if k != first})
    with pytest.raises(ValueError, match=r"row 1: unexpected column\(s\) \['extra'\]"):
        pipe([row, {**row, "extra": 1}])
    with pytest.raises(ValueError, match=r"row 1: missing column\(s\) .*, unexpected column\(s\) \['EXTRA'\]"):
        pipe([row, {("EXTRA" if k == first else k): v for k, v in row.items()}])


@pytest.mark.parametrize("bad, message", [
    ([], "the list holds no rows"),
    ("a,b,c", "expected a pandas DataFrame, a dict .* got str"),
    (np.zeros((2, 3)), "expected a pandas DataFrame, a dict .* got ndarray"),
    ([{"a": 1}, 3], "row 1 is a int"),
])
def test_bad_inputs_are_refused(trained, bad, message):
    _, _, pipe, _ = trained
    with pytest.raises(ValueError, match=message):
        pipe(bad)


def test_values_must_be_scalars_and_frames_non_empty(trained):
    _, X, pipe, _ = trained
    row = records(X.iloc[:1])[0]
    column = X.columns[1]
    with pytest.raises(ValueError, match=rf"column '{column}' holds a list, not a single value"):
        pipe({**row, column: [row[column], row[column]]})
    with pytest.raises(ValueError, match="the DataFrame has no rows"):
        pipe(X.iloc[:0])
    with pytest.raises(ValueError, match=r"unexpected argument\(s\) \['top_k'\]"):
        pipe(row, top_k=2)


def test_stale_rule_set_is_rebuilt(trained):
    clf, X, _, _ = trained
    model = copy.deepcopy(clf.model_)
    pipe = pipeline(TASK, model=model, feature_extractor=clf.processor_, device="cpu")
    before = pipe(X.iloc[:4])
    with torch.no_grad():
        model.classifier.bias.add_(1.0)  # changes every logit by exp(-log T) · 1
    after = pipe(X.iloc[:4])
    with torch.no_grad():
        expected = model(torch.as_tensor(clf.processor_(X.iloc[:4])["input_features"])).logits
    for i, result in enumerate(after):
        assert [result["logits"][c] for c in result["logits"]] == pytest.approx(expected[i].tolist(), abs=1e-5)
        assert result["rules"] == before[i]["rules"]  # the rules and their weights stay; the bias moved
        assert all(result["bias"][c] > before[i]["bias"][c] for c in result["bias"])
