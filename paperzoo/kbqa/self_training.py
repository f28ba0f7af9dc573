"""Stage 4, execution-guided self-training (EGST; the paper's Algorithm 1, whose code was never released).

A teacher parser trained on synthetic + seed pairs labels the unlabelled real questions; the pseudo-labels pass three
filters; a student trains on synthetic + seed + kept pseudo-labels; the student becomes the teacher; repeat.

- ErrorFilter: the program does not execute, or its answer is empty.
- SemanticFilter: the mean cosine similarity between the question and the labels of the program's relations, under a
  sentence encoder (all-MiniLM-L6-v2, offline, as in the paper's App. C), is below 0.2.
- AgreementFilter: the executed answer shares no value with the LLM's direct answer (InherentReasoner).

Each round records how many pseudo-labels each filter dropped and how many were kept, and, when the pool carries gold
programs (only to measure; never to train), how many kept ones answer as the gold does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from .backends import KBBackend
from .parser import Parse, SemanticParser
from .programs import ProgramFormat


@dataclass
class Candidate:
    question: str
    parse: Parse


class ErrorFilter:
    name = "error"

    def __call__(self, candidates: list[Candidate]) -> list[bool]:
        return [c.parse.program is not None and bool(c.parse.answers) for c in candidates]


class SemanticFilter:
    """Keeps a pseudo-label when mean_r cos(E(question), E(label of r)) ≥ threshold over the program's relations."""

    name = "semantic"

    def __init__(self, backend: KBBackend, encoder=None, threshold: float = 0.2):
        self.backend, self.threshold = backend, threshold
        self.encoder = encoder or SentenceEncoder()

    def __call__(self, candidates: list[Candidate]) -> list[bool]:
        relations = [re.findall(r"(?<![\w?$])r:[\w.\-]+", c.parse.program or "") for c in candidates]
        names = sorted({r for rs in relations for r in rs})
        labels = {r: self.backend.label(self.backend.prefixes["r"] + r[2:]) for r in names}
        vectors = self.encoder([c.question for c in candidates] + [labels[r] for r in names])
        questions, relation_vectors = vectors[: len(candidates)], dict(zip(names, vectors[len(candidates):]))
        keep = []
        for q, rs in zip(questions, relations):
            if not rs:
                keep.append(True)  # nothing to compare (no relation in the program)
                continue
            score = sum(float(q @ relation_vectors[r]) for r in rs) / len(rs)
            keep.append(score >= self.threshold)
        return keep


class SentenceEncoder:
    """Mean-pooled, L2-normalised sentence embeddings of a Hugging Face encoder (default: the offline
    all-MiniLM-L6-v2 of paperzoo.data.sentence_encoder_folder)."""

    def __init__(self, model=None, tokenizer=None, batch_size: int = 64):
        from transformers import AutoModel, AutoTokenizer

        if model is None or isinstance(model, str):
            from ..data import sentence_encoder_folder

            folder = model or sentence_encoder_folder()
            model, tokenizer = AutoModel.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size

    def __call__(self, texts: list[str]):
        import torch

        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(texts[start : start + self.batch_size], padding=True, truncation=True,
                                   max_length=128, return_tensors="pt")
            with torch.no_grad():
                hidden = self.model(**batch).last_hidden_state  # [B, T, D]
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
            out.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1))
        return torch.cat(out) if out else torch.zeros(0)


class AgreementFilter:
    """Keeps a pseudo-label whose executed answer shares a value with the LLM's direct answer."""

    name = "llm_agreement"

    def __init__(self, reasoner):
        self.reasoner = reasoner

    def __call__(self, candidates: list[Candidate]) -> list[bool]:
        direct = self.reasoner([c.question for c in candidates])
        return [bool(set(d) & set(c.parse.answers)) for d, c in zip(direct, candidates)]


@dataclass
class RoundStats:
    round: int
    pool: int
    dropped: dict[str, int] = field(default_factory=dict)
    kept: int = 0
    kept_correct: int | None = None  # kept pseudo-labels whose answers equal the gold program's (pool with gold)
    student_steps: int | None = None  # optimizer steps of the student trained on them


class ExecutionGuidedSelfTraining:
    """The EGST loop.

    make_parser: () → a fresh SemanticParser (used for the teacher; students too when student_init="scratch", as in
    the paper; "teacher" fine-tunes a copy of the teacher instead, cheaper on a CPU). filters: applied in order, each
    seeing only what the previous kept (default: error, semantic, LLM agreement). rounds: student generations.
    fit_kwargs / student_fit_kwargs: passed to SemanticParser.fit.
    """

    def __init__(self, make_parser, backend: KBBackend, program_format: ProgramFormat, filters: list | None = None,
                 rounds: int = 2, num_beams: int = 4, student_init: str = "scratch", fit_kwargs: dict | None = None,
                 student_fit_kwargs: dict | None = None, progress: bool = True):
        if student_init not in ("scratch", "teacher"):
            raise ValueError(f"student_init={student_init!r} must be 'scratch' or 'teacher'")
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
            raise ValueError(f"rounds={rounds!r} must be a non-negative integer")
        self.make_parser, self.backend, self.format = make_parser, backend, program_format
        self.filters = [ErrorFilter()] if filters is None else filters
        self.rounds, self.num_beams, self.student_init, self.progress = rounds, num_beams, student_init, progress
        self.fit_kwargs = dict(fit_kwargs or {})
        self.student_fit_kwargs = dict(student_fit_kwargs or self.fit_kwargs)
        self.history: list[RoundStats] = []
        self.teacher: SemanticParser | None = None

    def pseudo_label(self, parser: SemanticParser, questions: list[str], gold: list[str | None] | None = None,
                     round_index: int = 0) -> tuple[list[tuple[str, str]], RoundStats]:
        """(question, surface program) pairs that pass every filter, and the round's statistics."""
        parses = parser.answer(questions, self.backend, self.format, self.num_beams)
        candidates = [Candidate(q, p) for q, p in zip(questions, parses)]
        stats = RoundStats(round_index, len(candidates))
        kept_index = list(range(len(candidates)))
        for f in self.filters:
            if not kept_index:
                stats.dropped[f.name] = 0
                continue
            verdict = f([candidates[i] for i in kept_index])
            stats.dropped[f.name] = sum(not v for v in verdict)
            kept_index = [i for i, v in zip(kept_index, verdict) if v]
        stats.kept = len(kept_index)
        if gold is not None:
            stats.kept_correct = sum(self._same_answers(candidates[i].parse.answers, gold[i]) for i in kept_index)
        return [(candidates[i].question, self.format.to_surface(candidates[i].parse.program))
                for i in kept_index], stats

    def _same_answers(self, answers: list[str], gold_program: str | None) -> bool:
        if gold_program is None:
            return False
        return set(answers) == set(self.backend.answers(gold_program))

    def run(self, labelled: list[tuple[str, str]], unlabelled: list[str],
            gold: list[str | None] | None = None, teacher: SemanticParser | None = None) -> SemanticParser:
        """Teacher on `labelled` (synthetic + seed pairs, surface programs), then `rounds` students; returns the
        last parser. `gold`: the pool's programs (compact), only to measure the pseudo-labels' precision.
        `teacher`: a parser already trained on `labelled` (e.g. to compare filter sets from one teacher)."""
        if not labelled:
            raise ValueError("labelled is empty: the teacher needs synthetic or seed (question, program) pairs")
        if self.rounds and not unlabelled:
            raise ValueError("the unlabelled pool is empty: self-training needs real questions without labels "
                             "(or rounds=0)")
        parser = teacher or self.make_parser().fit(labelled, progress=self.progress, **self.fit_kwargs)
        self.teacher = parser
        for r in tqdm(range(self.rounds), desc="self-training rounds", disable=not self.progress):
            pseudo, stats = self.pseudo_label(parser, unlabelled, gold, r + 1)
            self.history.append(stats)
            if self.student_init == "teacher":
                import copy

                student = SemanticParser(copy.deepcopy(parser.model), parser.tokenizer,
                                         parser.max_source_length, parser.max_target_length)
            else:
                student = self.make_parser()
            parser = student.fit(labelled + pseudo, progress=self.progress, **self.student_fit_kwargs)
            stats.student_steps = getattr(parser, "trained_steps", None)
        return parser


__all__ = ["AgreementFilter", "Candidate", "ErrorFilter", "ExecutionGuidedSelfTraining", "RoundStats",
           "SemanticFilter", "SentenceEncoder"]
