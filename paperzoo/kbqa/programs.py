"""Programs: SPARQL in the compact form the stages share, its parts, and its surface form for language models.

A program is a SELECT or ASK query over one group of triple patterns and FILTERs, written with the backend's
prefixes (`e:virus`, `r:causes`), optionally with a solution modifier (ORDER BY, LIMIT):

    SELECT DISTINCT ?x WHERE { e:virus r:causes ?y . ?y r:affects ?x . }

Its *surface form* replaces each entity and relation by its label, `e[virus]` / `r[causes]`: the LLM translates that
form, and the semantic parser reads questions and writes that form, so copying "virus" from a question is copying
text. `ProgramFormat` turns one into the other with the backend's labels (a label shared by two IRIs is not used:
those IRIs keep their compact name, so the mapping is always exact).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .backends import KBBackend, QueryError, check_read_only

_COMPACT = re.compile(r"(?<![\w?$])([er]):([A-Za-z0-9_][A-Za-z0-9_.\-]*[A-Za-z0-9_\-]|[A-Za-z0-9_])")
_SURFACE = re.compile(r"\b([er])\[([^\[\]]+)\]")
_FILTER = re.compile(r"FILTER\s*\((?:[^()]|\((?:[^()]|\([^()]*\))*\))*\)", re.IGNORECASE)
_VARIABLE = re.compile(r"\?[A-Za-z_][A-Za-z0-9_]*")


def normalize(program: str) -> str:
    """One space between tokens, so that equal programs compare equal as text."""
    return re.sub(r"\s+", " ", program).strip()


@dataclass
class Parts:
    """A program cut into head (`SELECT ... WHERE {` or `ASK {`), triple patterns, FILTERs and tail (`}` and what
    follows)."""

    head: str
    patterns: list[tuple[str, str, str]]
    filters: list[str]
    tail: str

    def text(self, patterns=None, filters=None, head=None, tail=None) -> str:
        patterns = self.patterns if patterns is None else patterns
        filters = self.filters if filters is None else filters
        body = " ".join(f"{s} {p} {o} ." for s, p, o in patterns)
        return normalize(f"{self.head if head is None else head} {body} {' '.join(filters)} "
                         f"{self.tail if tail is None else tail}")


def split(program: str) -> Parts:
    """The parts of a program with one group of triple patterns; ValueError naming the program when it has another
    shape (nested groups, OPTIONAL, UNION, property paths), which step-wise grounding cannot walk."""
    program = normalize(program)
    check_read_only(program)
    match = re.fullmatch(r"(?P<head>[^{}]*\{)(?P<body>[^{}]*)(?P<tail>\}[^{}]*)", program)
    if not match:
        raise ValueError(f"program {program!r}: not one group of triple patterns (nested groups, OPTIONAL and "
                         "UNION cannot be grounded step by step)")
    body = match["body"]
    filters = [normalize(f) for f in _FILTER.findall(body)]
    rest = _FILTER.sub(" ", body)
    patterns = []
    for statement in (s.strip() for s in re.split(r"\s\.(?:\s|$)", f" {rest} ")):
        if not statement:
            continue
        terms = statement.split()
        if len(terms) != 3:
            raise ValueError(f"program {program!r}: {statement!r} is not a triple pattern of three terms "
                             "(';' and ',' lists and property paths are not supported)")
        patterns.append(tuple(terms))
    if not patterns:
        raise ValueError(f"program {program!r} has no triple pattern")
    return Parts(match["head"], patterns, filters, match["tail"])


def variables(text: str) -> list[str]:
    """Variables of a text in order of first appearance."""
    return list(dict.fromkeys(_VARIABLE.findall(text)))


class ProgramFormat:
    """Compact programs ⇄ surface form, with the labels of `backend`."""

    def __init__(self, backend: KBBackend):
        self.backend = backend
        owners: dict[tuple[str, str], list[str]] = {}
        for iri, label in backend.labels().items():
            compact = backend.compact(iri)
            kind = compact.split(":", 1)[0]
            if kind in ("e", "r") and not compact.startswith("<"):
                owners.setdefault((kind, label.strip()), []).append(compact)
        self._from_label = {key: names[0] for key, names in owners.items() if len(names) == 1 and "]" not in key[1]}
        self._to_label = {name: key[1] for key, name in self._from_label.items()}

    def to_surface(self, program: str) -> str:
        def label(match):
            name = match.group(0)
            return f"{match.group(1)}[{self._to_label[name]}]" if name in self._to_label else name
        return _COMPACT.sub(label, normalize(program))

    def from_surface(self, text: str) -> str:
        """The compact program of a surface form; QueryError naming the first label the KB does not have."""
        def name(match):
            key = (match.group(1), match.group(2).strip())
            if key not in self._from_label:
                kind = "entity" if key[0] == "e" else "relation"
                raise QueryError(f"no {kind} labelled {key[1]!r} in the knowledge base")
            return self._from_label[key]
        return _SURFACE.sub(name, normalize(text))


__all__ = ["Parts", "ProgramFormat", "normalize", "split", "variables"]
