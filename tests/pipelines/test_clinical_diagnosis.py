"""pipeline("clinical-diagnosis"): one record or many through the registered task, the same answers as the
diagnoser it wraps, clear errors."""

from __future__ import annotations

import pytest
from transformers import pipeline

import paperzoo  # noqa: F401 -- registers the task
from paperzoo.diagnosis import DiagnosisTask, LLMDiagnoser

from ..diagnosis.test_llm_diagnoser import cohort, task
from ..tiny_llm import tiny_causal_lm


@pytest.fixture(scope="module")
def llm():
    model, tokenizer = tiny_causal_lm()
    return model.double(), tokenizer


def test_records_in_results_out(llm, tmp_path):
    model, tokenizer = llm
    frame = cohort()
    train, test = frame.iloc[:30], frame.iloc[30:35]
    t = task()
    t.save(tmp_path / "task.json")
    diagnose = pipeline("clinical-diagnosis", model=model, tokenizer=tokenizer, description=str(tmp_path / "task.json"),
                        examples=train, shots=2, explain=False)
    one = diagnose(test.iloc[0].to_dict())
    assert one["label"] in t.classes and sum(one["probabilities"].values()) == pytest.approx(1.0)
    many = diagnose(test)
    assert len(many) == len(test) and many[0] == one
    assert diagnose([r for _, r in test.iterrows()]) == many
    expected = LLMDiagnoser(t, model, tokenizer, shots=2, explain=False).fit(train).diagnose(test)
    assert [r["option_scores"] for r in many] == [e["option_scores"] for e in expected]


def test_bad_construction_and_input(llm):
    model, tokenizer = llm
    with pytest.raises(ValueError, match="needs description="):
        pipeline("clinical-diagnosis", model=model, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="no built-in task 'adni'"):
        pipeline("clinical-diagnosis", model=model, tokenizer=tokenizer, description="adni")
    with pytest.raises(ValueError, match="need training rows"):
        pipeline("clinical-diagnosis", model=model, tokenizer=tokenizer, description=task(), shots=2)
    diagnose = pipeline("clinical-diagnosis", model=model, tokenizer=tokenizer, description=task(), explain=False)
    assert diagnose.diagnoser.shown_features_ == list(task().features)  # no examples: every feature, zero-shot
    with pytest.raises(ValueError, match="expected a record"):
        diagnose("tau is high")
    with pytest.raises(ValueError, match="no value for feature 'tau'"):
        diagnose({"age": 70, "Genotype": "E3E3"})
    with pytest.raises(ValueError, match=r"unexpected argument\(s\) \['shots'\]"):
        diagnose({"tau": 5.0, "age": 70, "Genotype": "E3E3"}, shots=3)
    assert isinstance(DiagnosisTask.builtin("ad_data"), DiagnosisTask)
