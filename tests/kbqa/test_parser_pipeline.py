"""Stage 3 and the `kbqa` pipeline: a parser that learns, the first executable non-empty beam wins, atomic saving,
LLM fallback."""

from __future__ import annotations

import os

import pytest
from transformers import pipeline

import paperzoo  # noqa: F401  (registers the kbqa task)
from paperzoo.kbqa.backends import OxigraphBackend, QueryError
from paperzoo.kbqa.kb import load_kb
from paperzoo.kbqa.parser import SemanticParser
from paperzoo.kbqa.programs import ProgramFormat

RELATIONS = ("embassy", "treaties", "tourism", "students", "exports3")
COUNTRIES = ("usa", "uk", "china", "india", "egypt", "brazil")


def _pairs(fmt):
    """One-hop questions made from a pattern (the parser's job is to copy the country and map the relation)."""
    words = {"embassy": "embassies in", "treaties": "treaties with", "tourism": "tourists to",
             "students": "students in", "exports3": "exports to"}
    return [(f"who has {words[r]} {c}?", fmt.to_surface(f"SELECT DISTINCT ?x WHERE {{ ?x r:{r} e:{c} . }}"))
            for r in RELATIONS for c in COUNTRIES]


@pytest.fixture(scope="module")
def trained(nations, tmp_path_factory):
    fmt = ProgramFormat(nations)
    pairs = _pairs(fmt)
    parser = SemanticParser.build([t for p in pairs for t in p], vocab_size=300, d_model=64, layers=2, heads=4)
    parser.fit(pairs, epochs=60, batch_size=10, learning_rate=3e-3, progress=False)
    folder = tmp_path_factory.mktemp("parser") / "nations-parser"
    parser.save_pretrained(folder)
    return parser, pairs, folder


def test_the_parser_learns_its_training_pairs(trained):
    parser, pairs, _ = trained
    best = [beams[0] for beams in parser.generate([q for q, _ in pairs], num_beams=2)]
    assert sum(b == p for b, (_, p) in zip(best, pairs)) >= 0.9 * len(pairs)


class FixedBeams(SemanticParser):
    def __init__(self, beams):
        self.beams = beams

    def generate(self, questions, num_beams=4, batch_size=32):
        return [self.beams for _ in questions]


def test_first_beam_that_executes_to_an_answer_wins(nations):
    fmt = ProgramFormat(nations)
    beams = ["SELECT ?x WHERE { ?x",  # a syntax error
             "SELECT DISTINCT ?x WHERE { ?x r[embassy] e[atlantis] . }",  # no such entity
             "SELECT DISTINCT ?x WHERE { e[usa] r[timesincewar] e[usa] . }",  # executes, empty
             "SELECT DISTINCT ?x WHERE { ?x r[embassy] e[cuba] . }",
             "SELECT DISTINCT ?x WHERE { ?x r[treaties] e[cuba] . }"]
    parse, = FixedBeams(beams).answer(["q"], nations, fmt)
    assert parse.program == "SELECT DISTINCT ?x WHERE { ?x r:embassy e:cuba . }"
    assert parse.answers == nations.answers(parse.program) and parse.executable
    nothing, = FixedBeams(beams[:3]).answer(["q"], nations, fmt)
    assert nothing.program is None and nothing.answers == [] and nothing.executable  # the third one ran
    broken, = FixedBeams(beams[:2]).answer(["q"], nations, fmt)
    assert not broken.executable


def test_saving_replaces_a_folder_only_when_complete(trained, tmp_path, monkeypatch):
    parser, _, _ = trained
    folder = tmp_path / "p"
    parser.save_pretrained(folder, extra_files={"note.json": "{}"})
    before = sorted(os.listdir(folder))
    assert "note.json" in before and "config.json" in before

    def broken(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(parser.tokenizer, "save_pretrained", broken)
    with pytest.raises(OSError, match="disk full"):
        parser.save_pretrained(folder)
    assert sorted(os.listdir(folder)) == before  # the old parser is intact
    assert sorted(os.listdir(tmp_path)) == ["p"]  # no temporary folder left


def test_pipeline_answers_from_the_kb(trained, nations):
    _, pairs, folder = trained
    qa = pipeline("kbqa", model=str(folder), backend=nations)
    question, surface = pairs[0]
    program = ProgramFormat(nations).from_surface(surface)
    result = qa(question)
    assert result["source"] == "kb" and result["program"] == program
    assert result["answer"] == nations.answers(program)
    assert result["labels"] == [nations.label(a) for a in result["answer"]]
    many = qa([q for q, _ in pairs[:3]], num_beams=2)
    assert [r["program"] for r in many][:1] == [program] and len(many) == 3


class Broken(OxigraphBackend):
    """Labels load, then every query fails (as a store that went away)."""

    def _run(self, query, timeout, row_limit):
        if "label" in query:
            return super()._run(query, timeout, row_limit)
        raise QueryError("the store went away")


class FakeReasoner:
    def __init__(self):
        self.asked = []

    def __call__(self, questions):
        self.asked += questions
        return [["https://paperzoo.dev/kb/nations/entity/usa"] for _ in questions]


def test_pipeline_falls_back_to_the_llm_only_when_no_beam_answers(trained):
    _, pairs, folder = trained
    backend = Broken.from_kb(load_kb("nations"))
    reasoner = FakeReasoner()
    qa = pipeline("kbqa", model=str(folder), backend=backend, reasoner=reasoner)
    result = qa(pairs[0][0])
    assert result == {"answer": ["https://paperzoo.dev/kb/nations/entity/usa"], "labels": ["usa"], "program": None,
                      "source": "llm"}
    assert reasoner.asked == [pairs[0][0]]
    bare = pipeline("kbqa", model=str(folder), backend=backend)
    assert bare(pairs[0][0]) == {"answer": [], "labels": [], "program": None, "source": None}
    backend.close()


def test_pipeline_input_errors(trained, nations):
    _, _, folder = trained
    with pytest.raises(ValueError, match="needs backend="):
        pipeline("kbqa", model=str(folder))
    qa = pipeline("kbqa", model=str(folder), backend=nations)
    for bad in ("", [], ["ok?", "  "], [3]):
        with pytest.raises(ValueError, match="question"):
            qa(bad)
    with pytest.raises(ValueError, match="num_beams=0"):
        qa("who?", num_beams=0)
    with pytest.raises(ValueError, match="unexpected argument"):
        qa("who?", temperature=0.3)
