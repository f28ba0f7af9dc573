"""The LLM stages: Stage 2 program translation, Stage 5 inherent reasoning, and the LLM in-context parser baseline.

Each builds a plain few-shot prompt from `prompts.json` (instruction, examples, query; data, not code) and calls a
CachedGenerator (any causal LM; the offline SmolLM2-135M-Instruct by default). Programs are shown to the LLM in surface
form (`e[virus] r[causes]`, paperzoo.kbqa.programs), with entity names as the paper's s-expressions had them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .backends import KBBackend, QueryError
from .llm import CachedGenerator
from .programs import ProgramFormat

PROMPTS = json.loads((Path(__file__).with_name("prompts.json")).read_text(encoding="utf-8"))


def _first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0].strip()


def _prompt(kind: str, examples: list[dict], query: dict, zero_shot: bool = False) -> str:
    spec = PROMPTS[kind]
    instruction = spec["instruction_zero_shot"] if zero_shot and "instruction_zero_shot" in spec \
        else spec["instruction"]
    shots = [spec["example"].format(**example) for example in examples]
    return "\n\n".join([instruction, *shots, spec["query"].format(**query)])


class ProgramTranslator:
    """Stage 2: sampled programs → natural questions, q = LLM(instruction; (p_1, q_1) ... (p_N, q_N); p).

    seeds: (question, program) pairs, the few-shot examples (none: the zero-shot instruction). max_new_tokens: the
    longest question. A generation is kept when its first line reads as a question: at least three words and no
    SPARQL left in it (the paper drops placeholder leaks in the same way), and, with `require_entities`, when it
    names every entity of the program (a word of each entity's label, plurals allowed): a question about something
    else would teach the parser to invent its topic entity.
    """

    def __init__(self, generator: CachedGenerator, program_format: ProgramFormat,
                 seeds: list[tuple[str, str]] = (), max_new_tokens: int = 40, require_entities: bool = True):
        self.generator, self.format, self.max_new_tokens = generator, program_format, max_new_tokens
        self.require_entities = require_entities
        self.examples = [{"program": program_format.to_surface(p), "question": q} for q, p in seeds]

    def prompt(self, program: str) -> str:
        return _prompt("translate", self.examples, {"program": self.format.to_surface(program)},
                       zero_shot=not self.examples)

    def __call__(self, programs: list[str]) -> list[str | None]:
        """A question per program, None where the generation is not a usable question."""
        texts = self.generator([self.prompt(p) for p in programs], self.max_new_tokens, desc="translating programs")
        questions = [self.clean(t) for t in texts]
        if self.require_entities:
            questions = [q if q and self.names_entities(q, p) else None for q, p in zip(questions, programs)]
        return questions

    def names_entities(self, question: str, program: str) -> bool:
        """Whether the question names each entity of the program: some word of its label (4+ letters, or the
        whole label), matched on its first four letters so that plurals and other endings pass."""
        words = {w[:4] for w in re.findall(r"[a-z0-9]+", question.lower())}
        for label in re.findall(r"\be\[([^\]]+)\]", self.format.to_surface(program)):
            parts = [w for w in re.findall(r"[a-z0-9]+", label.lower()) if len(w) >= 4] or [label.lower()]
            if not any(part[:4] in words for part in parts):
                return False
        return True

    @staticmethod
    def clean(text: str) -> str | None:
        question = _first_line(text)
        if len(question.split()) < 3 or re.search(r"\?[a-z]\b|[{}]|\b[er]\[|\bSELECT\b|\bASK\b|sparql", question):
            return None
        return question


class AnswerReader:
    """Reads an LLM's answer text as KB values: entity labels (case, '_' and a plural 's' ignored) become IRIs,
    yes/no become "true"/"false", numbers stay; other names are kept as text (they match no gold answer)."""

    def __init__(self, backend: KBBackend):
        self._by_label = {}
        for iri, label in backend.labels().items():
            if iri.startswith(backend.prefixes.get("e", "\0")):
                self._by_label.setdefault(self.key(label), iri)

    @staticmethod
    def key(text: str) -> str:
        text = re.sub(r"[\s_]+", " ", text.lower()).strip(" .\"'")
        return re.sub(r"^(the|a|an) ", "", text)

    def _entity(self, text: str) -> str:
        key = self.key(text)
        for candidate in (key, key[:-1] if key.endswith("s") else None, key[:-2] if key.endswith("es") else None):
            if candidate in self._by_label:
                return self._by_label[candidate]
        return text

    def __call__(self, text: str) -> list[str]:
        line = _first_line(text).strip(" .")
        if re.fullmatch(r"(?i)yes|true", line):
            return ["true"]
        if re.fullmatch(r"(?i)no|false", line):
            return ["false"]
        values = []
        for part in re.split(r",|;|\band\b", line):
            part = part.strip(" .\"'")
            if not part:
                continue
            number = part.replace(",", "")
            values.append(number if re.fullmatch(r"-?\d+(\.\d+)?", number) else self._entity(part))
        return list(dict.fromkeys(values))


class InherentReasoner:
    """Stage 5: the LLM answers questions directly from few-shot (question, answer) examples; used as a filter in
    self-training and as the fallback when no parsed program executes to an answer (answers then have source "llm").

    seeds: (question, program) pairs; their answers are found by executing the programs (at most `shown_answers`
    labels each, so the examples stay short).
    """

    def __init__(self, generator: CachedGenerator, backend: KBBackend, seeds: list[tuple[str, str]] = (),
                 max_new_tokens: int = 32, shown_answers: int = 5):
        self.generator, self.backend, self.max_new_tokens = generator, backend, max_new_tokens
        self.reader = AnswerReader(backend)
        self.examples = []
        for question, program in seeds:
            try:
                answers = backend.answers(program)[:shown_answers]
            except QueryError as err:
                raise ValueError(f"seed {question!r}: its program does not execute: {err}") from None
            shown = {"true": "yes", "false": "no"}
            self.examples.append({"question": question,
                                  "answer": ", ".join(shown.get(a, backend.label(a)) for a in answers)})

    def prompt(self, question: str) -> str:
        return _prompt("answer", self.examples, {"question": question})

    def __call__(self, questions: list[str]) -> list[list[str]]:
        texts = self.generator([self.prompt(q) for q in questions], self.max_new_tokens, desc="answering directly")
        return [self.reader(t) for t in texts]


class InContextParser:
    """The LLM in-context baseline: the LLM writes the program from the few-shot (question, program) examples, with
    no sampling, no parser and no self-training. Returns surface-form programs turned compact (None where a label is
    not in the KB)."""

    def __init__(self, generator: CachedGenerator, program_format: ProgramFormat,
                 seeds: list[tuple[str, str]] = (), max_new_tokens: int = 64):
        self.generator, self.format, self.max_new_tokens = generator, program_format, max_new_tokens
        self.examples = [{"question": q, "program": program_format.to_surface(p)} for q, p in seeds]

    def prompt(self, question: str) -> str:
        return _prompt("parse", self.examples, {"question": question})

    def __call__(self, questions: list[str]) -> list[str | None]:
        texts = self.generator([self.prompt(q) for q in questions], self.max_new_tokens, desc="writing SPARQL")
        programs = []
        for text in texts:
            try:
                programs.append(self.format.from_surface(_first_line(text)))
            except QueryError:
                programs.append(None)
        return programs


__all__ = ["AnswerReader", "InContextParser", "InherentReasoner", "PROMPTS", "ProgramTranslator"]
