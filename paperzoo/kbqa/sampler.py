"""Stage 1, automatic program sampling: templates from the seed programs, grounded step by step against the KB.

FlexKBQA masks the entities and relations of each seed program (`?ent0`, `?rel0`, ...), then grounds the template one
variable at a time: bind `?ent0` to a topic entity, run a small query for the next variable given what is bound,
pick one of its results at random, substitute it, and go on (one big query would be too slow on a full KB). Relations
must be KB relations (not rdfs:label and friends), entities must be entities; a step that returns nothing drops the
attempt; the filled program must execute to a non-empty answer set of bounded size; programs are de-duplicated and
each value is used a bounded number of times per template, for diversity.

The step queries are derived from the template itself (the official code needs them written by hand for each seed,
and has them for 6 of 25 GrailQA seeds): the patterns that mention only bound variables and the next one. Where the
seed compares or orders a variable (a literal: `?v` in `ORDER BY DESC(?v)`, `FILTER(?v > 10)`), steps require it to
be a literal, elsewhere an IRI, so a superlative template is never grounded with a relation to entities.

The zero-shot mode (N = 0 in the paper) starts from structural templates instead of seeds (`STRUCTURAL_TEMPLATES`).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from .backends import KBBackend, QueryError
from .programs import _COMPACT, normalize, split, variables

# the shapes of the paper's zero-shot templates, over this library's program language
STRUCTURAL_TEMPLATES = (
    "SELECT DISTINCT ?x WHERE { ?ent0 ?rel0 ?x . }",
    "SELECT DISTINCT ?x WHERE { ?x ?rel0 ?ent0 . }",
    "SELECT DISTINCT ?x WHERE { ?ent0 ?rel0 ?y . ?y ?rel1 ?x . FILTER(?x != ?ent0) }",
    "SELECT DISTINCT ?x WHERE { ?x ?rel0 ?ent0 . ?x ?rel1 ?ent1 . }",
    "SELECT (COUNT(DISTINCT ?x) AS ?count) WHERE { ?ent0 ?rel0 ?x . }",
    "ASK { ?ent0 ?rel0 ?ent1 . }",
)
_PLACEHOLDER = re.compile(r"\?(ent|rel)\d+\b")
_LITERAL_USE = re.compile(r"(?:ORDER\s+BY\s+(?:ASC|DESC)?\s*\(?\s*|[<>]=?\s*)(\?[A-Za-z_]\w*)"
                          r"|(\?[A-Za-z_]\w*)\s*[<>]=?\s*[-+]?\d", re.IGNORECASE)


@dataclass
class Template:
    """A masked seed program: `text` with `?entN` / `?relN`, and the seed it came from (None when structural)."""

    text: str
    seed: int | None = None

    @property
    def placeholders(self) -> list[str]:
        return [v for v in variables(self.text) if _PLACEHOLDER.fullmatch(v)]

    @property
    def literal_variables(self) -> set[str]:
        """Variables the template compares or orders: they hold literals."""
        return {a or b for a, b in _LITERAL_USE.findall(self.text)}


@dataclass
class SampledProgram:
    program: str  # compact SPARQL
    template: int  # index into the sampler's templates
    answers: list[str] = field(default_factory=list)


def mask(program: str) -> Template:
    """The template of a program: each distinct entity becomes ?ent0, ?ent1, ... and each relation ?rel0, ... in order
    of first appearance."""
    names: dict[str, str] = {}
    counts = Counter()

    def variable(match):
        name = match.group(0)
        if name not in names:
            kind = "ent" if match.group(1) == "e" else "rel"
            names[name] = f"?{kind}{counts[kind]}"
            counts[kind] += 1
        return names[name]
    return Template(_COMPACT.sub(variable, normalize(program)))


class ProgramSampler:
    """Sample executable programs from seed programs (or structural templates) on `backend`.

    seeds: compact SPARQL programs (the few-shot set's); None or [] for the zero-shot mode.
    per_template: programs wanted per template. max_answers: the largest answer set kept (huge answer sets make
    poor questions). max_value_uses: how many programs of one template may share a value at one position.
    attempts: grounding attempts per wanted program before giving up on a template.
    relation_filter / entity_filter: predicates on IRIs (default: IRIs of the backend's `r:` / `e:` namespaces).
    """

    def __init__(self, backend: KBBackend, seeds: list[str] | None = None, per_template: int = 40,
                 max_answers: int = 25, max_value_uses: int = 3, attempts: int = 8, step_limit: int = 500,
                 relation_filter=None, entity_filter=None, seed: int = 0):
        for name, value in (("per_template", per_template), ("max_answers", max_answers),
                            ("max_value_uses", max_value_uses), ("attempts", attempts), ("step_limit", step_limit)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        self.backend = backend
        self.per_template, self.max_answers = per_template, max_answers
        self.max_value_uses, self.attempts, self.step_limit = max_value_uses, attempts, step_limit
        namespaces = backend.prefixes
        self.relation_filter = relation_filter or (lambda iri: "r" in namespaces and iri.startswith(namespaces["r"]))
        self.entity_filter = entity_filter or (lambda iri: "e" in namespaces and iri.startswith(namespaces["e"]))
        self.rng = random.Random(seed)
        self.templates = self._templates(seeds)

    def _templates(self, seeds) -> list[Template]:
        if not seeds:
            return [Template(t) for t in STRUCTURAL_TEMPLATES]
        templates, seen = [], set()
        for index, program in enumerate(seeds):
            try:
                split(program)  # the shape must be walkable; ValueError naming the program otherwise
            except ValueError as err:
                raise ValueError(f"seed {index}: {err}") from None
            template = mask(program)
            template.seed = index
            if not template.placeholders:
                raise ValueError(f"seed {index}: program {program!r} names no entity or relation to ground")
            if template.text not in seen:
                seen.add(template.text)
                templates.append(template)
        return templates

    # --- one step: candidates for the next placeholder ----------------------------------------------------------
    def _step_query(self, template: Template, bound: dict[str, str], target: str) -> str:
        parts = split(self._filled(template, bound))
        known = set(bound) | {target}
        with_target = [p for p in parts.patterns if target in p]
        chosen = [p for p in parts.patterns if {v for v in p if _PLACEHOLDER.fullmatch(v)} <= known]
        if not any(target in p for p in chosen):
            chosen += [p for p in with_target if p not in chosen]
        seen_vars = {v for p in chosen for v in p if v.startswith("?")}
        filters = [f for f in parts.filters if set(variables(f)) <= seen_vars]
        kinds = [f"FILTER(isLiteral({v}))" if v in template.literal_variables else f"FILTER(isIRI({v}))"
                 for v in sorted(seen_vars) if not _PLACEHOLDER.fullmatch(v) and any(p[2] == v for p in chosen)]
        return parts.text(patterns=chosen, filters=filters + kinds, head=f"SELECT DISTINCT {target} WHERE {{",
                          tail=f"}} LIMIT {self.step_limit}")

    def _candidates(self, template: Template, bound: dict[str, str], target: str) -> list[str]:
        try:
            values = self.backend.answers(self._step_query(template, bound, target))
        except QueryError:
            return []
        keep = self.relation_filter if target.startswith("?rel") else self.entity_filter
        return [v for v in values if keep(v)]

    def ground(self, index: int, uses: Counter) -> SampledProgram | None:
        """One grounding attempt of template `index`: a filled program that executes to a usable answer, or None."""
        template = self.templates[index]
        bound: dict[str, str] = {}
        for target in template.placeholders:
            candidates = sorted(self._candidates(template, bound, target))  # any store's order: the same draws
            self.rng.shuffle(candidates)
            candidates.sort(key=lambda v: uses[index, target, v])  # least-used values first (stable: random ties)
            candidates = [v for v in candidates if uses[index, target, v] < self.max_value_uses]
            if not candidates:
                return None
            bound[target] = candidates[0]
        program = self._filled(template, bound)
        patterns = split(program).patterns
        if len(set(patterns)) < len(patterns):  # a conjunction grounded twice with the same constraint
            return None
        if program.startswith("ASK") and self.rng.random() < 0.5:
            program = self._falsified(template, bound) or program  # half the yes/no programs answer "no"
        try:
            answers = self.backend.answers(program)
        except QueryError:
            return None
        if not answers or len(answers) > self.max_answers or answers == ["0"]:
            return None
        for target, value in bound.items():
            uses[index, target, value] += 1
        return SampledProgram(program, index, answers)

    def _filled(self, template: Template, bound: dict[str, str]) -> str:
        """The template with its bound placeholders replaced by compact names (whole variable names only: ?ent1
        never matches inside ?ent10)."""
        names = {k: self.backend.compact(v) for k, v in bound.items()}
        return re.sub(r"\?[A-Za-z_]\w*", lambda m: names.get(m.group(0), m.group(0)), template.text)

    def _falsified(self, template: Template, bound: dict[str, str]) -> str | None:
        """The ASK program with its last entity swapped for another entity of the KB that makes it false."""
        entities = [p for p in template.placeholders if p.startswith("?ent")]
        if not entities:
            return None
        last = entities[-1]
        others = sorted(self._candidates(Template(f"SELECT DISTINCT {last} WHERE {{ {last} ?p ?o . }}"), {}, last))
        self.rng.shuffle(others)
        for value in others[:20]:
            trial = self._filled(template, {**bound, last: value})
            try:
                if self.backend.answers(trial) == ["false"]:
                    return trial
            except QueryError:
                continue
        return None

    def sample(self, progress: bool = True) -> list[SampledProgram]:
        """Up to `per_template` distinct programs per template (fewer where the KB offers fewer)."""
        programs, seen, uses = [], set(), Counter()
        bar = tqdm(total=self.per_template * len(self.templates), desc="sampling programs", disable=not progress)
        for index in range(len(self.templates)):
            made = 0
            for _ in range(self.per_template * self.attempts):
                if made == self.per_template:
                    break
                sampled = self.ground(index, uses)
                if sampled is None or sampled.program in seen:
                    continue
                seen.add(sampled.program)
                programs.append(sampled)
                made += 1
                bar.update(1)
            bar.update(self.per_template - made)
        bar.close()
        return programs


__all__ = ["ProgramSampler", "STRUCTURAL_TEMPLATES", "SampledProgram", "Template", "mask"]
