"""Stages 2 and 5 and the LLM baseline: prompts, answer reading, and the cached batched generator (against plain
one-prompt `generate` as the reference)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from paperzoo.kbqa import seeds_path
from paperzoo.kbqa.llm import CachedGenerator
from paperzoo.kbqa.llm_stages import (PROMPTS, AnswerReader, InContextParser, InherentReasoner,
                                      ProgramTranslator)
from paperzoo.kbqa.programs import ProgramFormat
from paperzoo.kbqa.system import read_pairs

from ..tiny_llm import tiny_causal_lm


class FakeLLM:
    """Returns canned completions and records the prompts."""

    def __init__(self, answers):
        self.answers, self.prompts = list(answers), []

    def __call__(self, prompts, max_new_tokens=48, desc=""):
        self.prompts += prompts
        return [self.answers[i % len(self.answers)] for i in range(len(prompts))]


@pytest.fixture(scope="module")
def umls(umls_embedded):
    return umls_embedded


@pytest.fixture(scope="module")
def seeds():
    return read_pairs(seeds_path("umls"))


def test_translator_prompt_is_the_few_shot_format_with_labels(umls, seeds):
    fake = FakeLLM([" What can viruses cause?\n"])
    translator = ProgramTranslator(fake, ProgramFormat(umls), seeds[:2])
    assert translator(["SELECT DISTINCT ?x WHERE { e:virus r:causes ?x . }"]) == ["What can viruses cause?"]
    prompt = fake.prompts[0]
    assert prompt.startswith(PROMPTS["translate"]["instruction"] + "\n\n")
    assert f"question: {seeds[0][0]}" in prompt and f"question: {seeds[1][0]}" in prompt
    assert prompt.endswith("sparql: SELECT DISTINCT ?x WHERE { e[virus] r[causes] ?x . }\nquestion:")
    zero = ProgramTranslator(fake, ProgramFormat(umls), [])
    assert zero.prompt("ASK { e:virus r:causes e:virus . }").startswith(
        PROMPTS["translate"]["instruction_zero_shot"])


@pytest.mark.parametrize("text,kept", [
    (" What does a virus cause?", "What does a virus cause?"),
    ("which diseases are caused by viruses\nsparql: ...", "which diseases are caused by viruses"),
    (" SELECT DISTINCT ?x WHERE { e[virus] }", None),
    (" What is ?x here", None),
    (" yes", None),
    ("", None),
])
def test_translations_that_leak_sparql_or_are_too_short_are_dropped(text, kept):
    assert ProgramTranslator.clean(text) == kept


def test_answer_reader_maps_labels_yes_no_and_numbers(umls):
    read = AnswerReader(umls)
    e = umls.prefixes["e"]
    assert read(" Disease or Syndrome, viruses and the Neoplastic_Process.\nquestion: x") == [
        e + "disease_or_syndrome", e + "virus", e + "neoplastic_process"]
    assert read("Yes") == ["true"] and read(" no.") == ["false"]
    assert read(" 1,234") == ["1", "234"]  # a list separator, not a thousands separator
    assert read(" 12") == ["12"]
    assert read(" unicorns") == ["unicorns"]  # not in the KB: kept as text, so it matches no gold answer
    assert read("") == []


def test_reasoner_shows_executed_seed_answers_and_reads_the_reply(umls, seeds):
    fake = FakeLLM([" virus, bacterium"])
    reasoner = InherentReasoner(fake, umls, seeds[:3])
    assert reasoner(["What causes disease?"]) == [[umls.prefixes["e"] + "virus", umls.prefixes["e"] + "bacterium"]]
    prompt = fake.prompts[0]
    first_answer = ", ".join(umls.label(a) for a in umls.answers(seeds[0][1])[:5])
    assert f"question: {seeds[0][0]}\nanswer: {first_answer}" in prompt
    assert prompt.endswith("question: What causes disease?\nanswer:")
    with pytest.raises(ValueError, match="does not execute"):
        InherentReasoner(fake, umls, [("bad?", "SELECT ?x WHERE { ?x ")])


def test_in_context_parser_turns_labels_back_into_names(umls, seeds):
    fake = FakeLLM([" SELECT DISTINCT ?x WHERE { e[virus] r[causes] ?x . }",
                    " ASK { e[unicorn] r[causes] e[virus] . }"])
    parser = InContextParser(fake, ProgramFormat(umls), seeds)
    assert parser(["q1", "q2"]) == ["SELECT DISTINCT ?x WHERE { e:virus r:causes ?x . }", None]


@pytest.fixture(scope="module")
def tiny():
    return tiny_causal_lm()


def _reference(model, tokenizer, prompt, max_new_tokens):
    """One prompt alone through plain `generate`, cut at its first newline."""
    ids = tokenizer(prompt, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).split("\n", 1)[0]


def test_batched_prefix_cached_generation_equals_one_prompt_generate(tiny, tmp_path):
    model, tokenizer = tiny
    shared = "Answer the following questions:\n\n" + "question: What can viruses cause?\nanswer: disease\n\n" * 6
    prompts = [shared + f"question: {q}\nanswer:" for q in ("what?", "what does it cause now?", "virus", "x")]
    prompts.append("sparql: SELECT\nquestion:")  # no shared prefix with the others
    generator = CachedGenerator(model, tokenizer, batch_size=3, cache=tmp_path, progress=False)
    batched = generator(prompts, max_new_tokens=6)
    assert generator._prefixes  # the shared prefix was read once and cached
    assert batched == [_reference(model, tokenizer, p, 6) for p in prompts]


def test_disk_cache_is_reused_keyed_by_model_and_survives_a_cut_line(tiny, tmp_path):
    model, tokenizer = tiny
    prompts = ["question: what?\nanswer:", "question: virus\nanswer:"]
    first = CachedGenerator(model, tokenizer, cache=tmp_path, progress=False)(prompts, max_new_tokens=5)
    files = list(tmp_path.glob("*.jsonl"))
    assert len(files) == 1 and len(files[0].read_text().splitlines()) == 2
    with files[0].open("a") as handle:
        handle.write('{"key": "abc", "te')  # a line cut by a crash
    again = CachedGenerator(model, tokenizer, cache=tmp_path, progress=False)
    again.model.generate = lambda *a, **k: (_ for _ in ()).throw(AssertionError("the model ran"))
    assert again(prompts, max_new_tokens=5) == first
    other, other_tokenizer = tiny_causal_lm(seed=1)  # other weights: another cache file
    CachedGenerator(other, other_tokenizer, cache=tmp_path, progress=False)(prompts[:1], max_new_tokens=5)
    assert len(list(tmp_path.glob("*.jsonl"))) == 2


def test_generator_arguments_are_checked(tiny):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="batch_size=0"):
        CachedGenerator(model, tokenizer, batch_size=0)
    with pytest.raises(ValueError, match="tokenizer"):
        CachedGenerator(model)


def test_prompts_are_data():
    path = Path(__file__).resolve().parents[2] / "paperzoo" / "kbqa" / "prompts.json"
    assert json.loads(path.read_text()) == PROMPTS and {"translate", "answer", "parse"} <= set(PROMPTS)


def test_translations_must_name_every_entity_of_their_program(umls, seeds):
    program = "SELECT DISTINCT ?x WHERE { ?x r:interconnects e:body_space_or_junction . ?x r:surrounds e:cell . }"
    translator = ProgramTranslator(FakeLLM([" What interconnects body spaces and surrounds cells?",
                                            " What surrounds cells?", " How many kinds of organisms are there?"]),
                                   ProgramFormat(umls), seeds[:1])
    assert translator([program] * 3) == ["What interconnects body spaces and surrounds cells?", None, None]
    lenient = ProgramTranslator(translator.generator, ProgramFormat(umls), seeds[:1], require_entities=False)
    assert lenient([program] * 3)[1] == "What surrounds cells?"
