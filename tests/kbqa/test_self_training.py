"""Stage 4: the three filters and the teacher → pseudo-labels → student loop with its statistics."""

from __future__ import annotations

import pytest
import torch

from paperzoo.kbqa.parser import Parse, SemanticParser
from paperzoo.kbqa.programs import ProgramFormat
from paperzoo.kbqa.self_training import (AgreementFilter, Candidate, ErrorFilter, ExecutionGuidedSelfTraining,
                                         SemanticFilter, SentenceEncoder)

E = "https://paperzoo.dev/kb/nations/entity/"


def _candidate(question, program, answers):
    return Candidate(question, Parse(program, answers, executable=program is not None))


def test_error_filter_drops_programs_without_an_answer():
    kept = ErrorFilter()([_candidate("a", "ASK { e:usa r:embassy e:uk . }", ["true"]),
                          _candidate("b", None, []),
                          _candidate("c", "SELECT ?x WHERE { e:usa r:embassy ?x . }", [])])
    assert kept == [True, False, False]


class FixedEncoder:
    """Unit vectors by text: the question is [1, 0]; 'embassy' agrees with it, 'treaties' is orthogonal."""

    vectors = {"embassy": [1.0, 0.0], "treaties": [0.0, 1.0], "tourism": [0.6, 0.8]}

    def __call__(self, texts):
        return torch.tensor([self.vectors.get(t, [1.0, 0.0]) for t in texts])


def test_semantic_filter_keeps_a_mean_relation_similarity_at_or_above_the_threshold(nations):
    f = SemanticFilter(nations, FixedEncoder(), threshold=0.5)
    kept = f([_candidate("q", "SELECT ?x WHERE { e:usa r:embassy ?x . }", ["x"]),  # 1.0
              _candidate("q", "SELECT ?x WHERE { e:usa r:treaties ?x . }", ["x"]),  # 0.0
              _candidate("q", "SELECT ?x WHERE { e:usa r:embassy ?y . ?y r:treaties ?x . }", ["x"]),  # 0.5
              _candidate("q", "SELECT ?x WHERE { e:usa r:tourism ?x . }", ["x"]),  # 0.6
              _candidate("q", "SELECT ?x WHERE { ?x ?p e:usa . }", ["x"])])  # no relation: nothing to compare
    assert kept == [True, False, True, True, True]


def test_the_real_sentence_encoder_ranks_the_matching_relation_first():
    encoder = SentenceEncoder()
    q, treats, location = encoder(["Which drugs treat cancer?", "treats", "location of"])
    assert torch.allclose(q.norm(), torch.tensor(1.0), atol=1e-5)
    assert float(q @ treats) > float(q @ location)


def test_agreement_filter_needs_a_shared_answer():
    class Reasoner:
        def __call__(self, questions):
            return [[E + "usa"], ["true"], []]
    kept = AgreementFilter(Reasoner())([_candidate("a", "p", [E + "uk", E + "usa"]),
                                        _candidate("b", "p", ["false"]), _candidate("c", "p", [E + "uk"])])
    assert kept == [True, False, False]


class StubParser(SemanticParser):
    """Records what it is trained on; answers from a table."""

    made = []

    def __init__(self, table):
        self.table, self.trained_on = table, None
        StubParser.made.append(self)

    def fit(self, pairs, **kwargs):
        self.trained_on = list(pairs)
        return self

    def answer(self, questions, backend, program_format, num_beams=4):
        return [self.table[q] for q in questions]


class DropQuestion:
    name = "custom"

    def __init__(self, text):
        self.text = text

    def __call__(self, candidates):
        return [c.question != self.text for c in candidates]


def test_the_loop_trains_students_on_kept_pseudo_labels_and_counts_each_filter(nations):
    fmt = ProgramFormat(nations)
    good = "SELECT DISTINCT ?x WHERE { ?x r:embassy e:cuba . }"
    wrong = "SELECT DISTINCT ?x WHERE { ?x r:treaties e:cuba . }"
    table = {"who has an embassy in cuba?": Parse(good, nations.answers(good), True),
             "who signed treaties with cuba?": Parse(good, nations.answers(good), True),  # a wrong pseudo-label
             "gibberish": Parse(None, [], False),
             "dropped by the custom filter": Parse(wrong, nations.answers(wrong), True)}
    gold = [good, wrong, None, wrong]
    StubParser.made.clear()
    loop = ExecutionGuidedSelfTraining(lambda: StubParser(table), nations, fmt,
                                       filters=[ErrorFilter(), DropQuestion("dropped by the custom filter")],
                                       rounds=2, progress=False)
    labelled = [("seed question?", fmt.to_surface(good))]
    final = loop.run(labelled, list(table), gold)
    assert len(StubParser.made) == 3 and final is StubParser.made[-1] and loop.teacher is StubParser.made[0]
    assert StubParser.made[0].trained_on == labelled
    pseudo = [("who has an embassy in cuba?", fmt.to_surface(good)), ("who signed treaties with cuba?",
                                                                     fmt.to_surface(good))]
    assert StubParser.made[1].trained_on == labelled + pseudo
    stats = loop.history[0]
    assert (stats.round, stats.pool, stats.dropped, stats.kept, stats.kept_correct) == (
        1, 4, {"error": 1, "custom": 1}, 2, 1)
    assert len(loop.history) == 2


def test_loop_arguments(nations):
    fmt = ProgramFormat(nations)
    with pytest.raises(ValueError, match="unlabelled pool is empty"):
        ExecutionGuidedSelfTraining(lambda: StubParser({}), nations, fmt, progress=False).run([("q", "p")], [])
    with pytest.raises(ValueError, match="labelled is empty"):
        ExecutionGuidedSelfTraining(lambda: StubParser({}), nations, fmt, progress=False).run([], ["q"])
    with pytest.raises(ValueError, match="student_init='copy'"):
        ExecutionGuidedSelfTraining(lambda: None, nations, fmt, student_init="copy")
    assert ExecutionGuidedSelfTraining(lambda: StubParser({}), nations, fmt, rounds=0,
                                       progress=False).run([("q", "p")], []) is StubParser.made[-1]
