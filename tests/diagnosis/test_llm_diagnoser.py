"""LLMDiagnoser: prompts from the task description (every shown feature with its unit), examples from the training
rows only, option scores against a plain forward, answer parsing, bad input."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from paperzoo.diagnosis import DiagnosisTask, LLMDiagnoser, cited_features, parse_answer

from ..llm.test_scoring import reference
from ..tiny_llm import tiny_causal_lm

CLASSES = ["Control", "Impaired"]


@pytest.fixture(scope="module")
def llm():
    model, tokenizer = tiny_causal_lm()
    return model.double(), tokenizer


def cohort(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.RandomState(seed)
    y = np.array(["Control", "Impaired"] * (n // 2))
    return pd.DataFrame({"tau": rng.normal(5.5, 0.5, n) + (y == "Impaired"), "age": rng.randint(60, 90, n),
                         "Genotype": rng.choice(["E3E3", "E3E4", "E4E4"], n), "Class": y},
                        index=[f"s{i}" for i in range(n)])


def task() -> DiagnosisTask:
    return DiagnosisTask.from_frame(cohort(), "Class", descriptions={"tau": "total tau (CSF)", "age": "age"},
                                    units={"tau": "pg/mL", "age": "years"}, question="Which diagnosis?")


def test_from_frame_reads_kinds_and_refuses_a_single_class():
    t = task()
    assert t.classes == CLASSES
    assert {k: f.kind for k, f in t.features.items()} == {"tau": "number", "age": "number", "Genotype": "category"}
    frame = cohort().assign(Class="Control")
    with pytest.raises(ValueError, match="single class"):
        DiagnosisTask.from_frame(frame, "Class")
    with pytest.raises(ValueError, match="'nope' is not a column"):
        DiagnosisTask.from_frame(frame, "nope")
    with pytest.raises(ValueError, match=r"\['weight'\]"):
        DiagnosisTask.from_frame(cohort(), "Class", units={"weight": "kg"})


def test_the_prompt_renders_every_shown_feature_with_its_unit_and_the_training_range(llm):
    frame = cohort()
    train, test = frame.iloc[:30], frame.iloc[30:]
    diagnoser = LLMDiagnoser(task(), *llm, max_features=None).fit(train)
    row = test.iloc[0]
    prompt = diagnoser.prompt(row)
    q1, q3 = train["tau"].quantile([0.25, 0.75])
    assert f"- total tau (CSF): {row.tau:.4g} pg/mL (cohort middle half: {q1:.4g} to {q3:.4g})" in prompt
    assert f"- age: {row.age:.4g} years" in prompt
    assert f"- Genotype: {row.Genotype}" in prompt
    assert "Which diagnosis?\nA. Control\nB. Impaired" in prompt
    for name in task().features:
        assert task().features[name].description in prompt


def test_max_features_are_chosen_on_the_training_rows_only():
    rng = np.random.RandomState(0)
    frame = pd.DataFrame({f"f{i}": rng.normal(size=60) for i in range(6)})
    frame["Class"] = np.where(frame["f3"] > 0, "Impaired", "Control")
    t = DiagnosisTask.from_frame(frame, "Class")
    shown = LLMDiagnoser(t, llm=object(), tokenizer=object(), max_features=1).fit(frame).shown_features_
    assert shown == ["f3"]
    # relabel the rows the diagnoser is NOT fitted on: its choice cannot change
    other = frame.assign(Class=np.where(frame["f5"] > 0, "Impaired", "Control"))
    assert LLMDiagnoser(t, llm=object(), tokenizer=object(), max_features=1).fit(other).shown_features_ == ["f5"]


@pytest.mark.parametrize("shots", [1, 4, 7])
def test_examples_come_from_the_training_rows_balanced_over_classes(llm, shots):
    frame = cohort()
    train, test = frame.iloc[:30], frame.iloc[30:]
    diagnoser = LLMDiagnoser(task(), *llm, shots=shots).fit(train)
    assert len(diagnoser.example_index_) == shots
    assert set(diagnoser.example_index_) <= set(train.index)
    assert not set(diagnoser.example_index_) & set(test.index)
    counts = train.loc[diagnoser.example_index_, "Class"].value_counts()
    assert counts.max() - counts.min() <= 1 or len(counts) == 1
    prompt = diagnoser.prompt(test.iloc[0])
    assert prompt.count("Answer:") == shots  # the examples' answers; the case's answer is for the model to give


def test_option_scores_equal_a_plain_forward_and_batching_changes_nothing(llm):
    model, tokenizer = llm
    frame = cohort()
    train, test = frame.iloc[:30], frame.iloc[30:36]
    results = {b: LLMDiagnoser(task(), model, tokenizer, shots=2, batch_size=b, explain=False).fit(train)
               .diagnose(test) for b in (1, 4)}
    diagnoser = LLMDiagnoser(task(), model, tokenizer, shots=2, explain=False).fit(train)
    for (_, row), one, batched in zip(test.iterrows(), results[1], results[4]):
        text = diagnoser.prompt(row) + "\nAnswer:"  # no chat template: the plain form
        expected = {c: reference(model, tokenizer, text, f" {letter}") for c, letter in zip(CLASSES, "AB")}
        for c in CLASSES:
            assert one["option_scores"][c] == pytest.approx(expected[c], abs=1e-9)
            assert batched["option_scores"][c] == pytest.approx(expected[c], abs=1e-9)
        assert sum(one["probabilities"].values()) == pytest.approx(1.0)
        assert one["label"] == max(expected, key=expected.get)
        assert one["prompt_format"] == "plain" and one["valid"]


@pytest.mark.parametrize("text,label", [
    (" B", "Impaired"), ("b", "Impaired"), ("(A)", "Control"), ("Answer: a", "Control"), ("B. Impaired", "Impaired"),
    (" IMPAIRED, because tau is high", "Impaired"), ("the answer is b", "Impaired"), ("Option A.", "Control"),
    ("I think this subject is a Control", "Control"), ("A patient with high tau", None), ("I cannot tell", None),
    ("", None), ("Alzheimer's disease", None)])
def test_parse_answer(text, label):
    assert parse_answer(text, CLASSES) == label


def test_cited_features_by_name_description_or_quoted_value():
    features = task().features
    assert cited_features("high TAU and the genotype", features) == ["tau", "Genotype"]
    assert cited_features("Total tau (CSF) is 6.1", features) == ["tau"]
    assert cited_features("values 6.13 and 77", features, {"tau": ["6.13", "5.2", "5.9"], "age": ["77"]}) == [
        "tau", "age"]
    assert cited_features("6.13", features, {"tau": ["6.13"], "age": ["6.13"]}) == []  # ambiguous: no citation


def test_generation_answers_that_name_no_option_are_invalid_not_a_crash(llm):
    model, tokenizer = llm
    frame = cohort()
    results = LLMDiagnoser(task(), model, tokenizer, scoring="generate", max_new_tokens=4,
                           generation_cache=False).fit(frame.iloc[:30]).diagnose(frame.iloc[30:34])
    for r in results:
        assert r["label"] == parse_answer(r["answer_text"], CLASSES)
        assert r["valid"] == (r["label"] is not None)
        assert (r["probabilities"] is None) == (r["label"] is None)


def test_a_record_missing_a_feature_raises_or_is_imputed_as_stated(llm):
    frame = cohort()
    diagnoser = LLMDiagnoser(task(), *llm, max_features=None).fit(frame.iloc[:30])
    record = frame.iloc[31].drop("tau").to_dict()
    with pytest.raises(ValueError, match="no value for feature 'tau'"):
        diagnoser.prompt(record)
    imputing = LLMDiagnoser(task(), *llm, max_features=None, missing="impute").fit(frame.iloc[:30])
    median = frame.iloc[:30]["tau"].median()
    assert f"- total tau (CSF): {median:.4g} pg/mL" in imputing.prompt(record)
    assert "(imputed)" in imputing.prompt(record)
    omitting = LLMDiagnoser(task(), *llm, max_features=None, missing="omit").fit(frame.iloc[:30])
    assert "- total tau (CSF): not recorded" in omitting.prompt({**record, "tau": float("nan")})
    with pytest.raises(ValueError, match="'tau' holds 'high', not a number"):
        diagnoser.prompt({**record, "tau": "high"})


def test_bad_settings_and_a_single_class_training_fold(llm):
    frame = cohort()
    with pytest.raises(ValueError, match="scoring='vote'"):
        LLMDiagnoser(task(), *llm, scoring="vote")
    with pytest.raises(ValueError, match="shots=-1"):
        LLMDiagnoser(task(), *llm, shots=-1)
    with pytest.raises(ValueError, match="single class"):
        LLMDiagnoser(task(), *llm).fit(frame[frame.Class == "Control"])
    with pytest.raises(ValueError, match="not fitted"):
        LLMDiagnoser(task(), *llm).diagnose(frame.iloc[:2])
    with pytest.raises(ValueError, match=r"holds 'Unknown', not one of the task's classes"):
        LLMDiagnoser(task(), *llm).fit(frame.assign(Class=["Unknown"] + list(frame.Class[1:])))


def test_a_model_without_a_chat_template_reads_a_plain_prompt_and_says_so(llm, caplog):
    model, tokenizer = llm
    frame = cohort()
    diagnoser = LLMDiagnoser(task(), model, tokenizer, explain=False).fit(frame.iloc[:30])
    from paperzoo.diagnosis import llm as module

    module._WARNED.discard(id(tokenizer))
    with caplog.at_level(logging.WARNING):
        result = diagnoser.diagnose(frame.iloc[30])
    assert result[0]["prompt_format"] == "plain"
    assert "no chat template" in caplog.text
    with pytest.raises(ValueError, match="has no chat template"):
        LLMDiagnoser(task(), model, tokenizer, chat_template="always", explain=False).fit(
            frame.iloc[:30]).diagnose(frame.iloc[30])


def test_task_json_round_trip_and_the_builtin_ad_data(tmp_path):
    t = task()
    t.save(tmp_path / "task.json")
    assert DiagnosisTask.load(tmp_path / "task.json") == t
    ad = DiagnosisTask.builtin("ad_data")
    assert ad.classes == CLASSES and len(ad.features) == 130 and ad.features["Genotype"].kind == "category"
    with pytest.raises(ValueError, match="no built-in task 'adni'"):
        DiagnosisTask.builtin("adni")
