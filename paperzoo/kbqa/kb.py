"""Knowledge bases as RDF: triple TSVs (pykeen's UMLS and Nations, or a user's own) turned into N-Triples with
readable labels, the namespaces every stage of paperzoo.kbqa writes queries in.

A KB named `name` puts entity `acquired_abnormality` at `https://paperzoo.dev/kb/<name>/entity/acquired_abnormality`
and relation `location_of` at `.../relation/location_of`, each with an `rdfs:label` ("acquired abnormality",
"location of"). A numeric object (Nations' `area`, `population`) becomes an `xsd:integer` / `xsd:decimal` literal.
Queries use the prefixes `e:` (entities), `r:` (relations), `rdfs:` and `xsd:` without declaring them:

    SELECT DISTINCT ?x WHERE { e:virus r:causes ?x . }

pykeen's datasets ship inside its wheel (`pip install --no-deps pykeen`); their files are parsed here, pykeen itself
is never imported.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path

BASE = "https://paperzoo.dev/kb/"
RDFS = "http://www.w3.org/2000/01/rdf-schema#"
XSD = "http://www.w3.org/2001/XMLSchema#"
PYKEEN_KBS = ("umls", "nations")
PYKEEN_INSTALL = "pip install --no-deps pykeen==1.11.1"

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")  # a valid local name for `e:` / `r:` (SPARQL PN_LOCAL subset)
_INTEGER = re.compile(r"^[+-]?\d+$")
_DECIMAL = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")


def label_of(local_name: str) -> str:
    """The readable label of an entity or relation id: underscores become spaces."""
    return local_name.replace("_", " ")


@dataclass
class KnowledgeBase:
    """Triples of (head, relation, tail) local names plus numeric literals, with the namespaces of the KB `name`."""

    name: str
    triples: list[tuple[str, str, str]] = field(default_factory=list)
    literals: list[tuple[str, str, str]] = field(default_factory=list)  # (entity, relation, number as written)

    def __post_init__(self):
        if not _NAME.match(self.name):
            raise ValueError(f"KB name {self.name!r} must be letters, digits, '_', '-' or '.'")

    @property
    def entity_ns(self) -> str:
        return f"{BASE}{self.name}/entity/"

    @property
    def relation_ns(self) -> str:
        return f"{BASE}{self.name}/relation/"

    @property
    def prefixes(self) -> dict[str, str]:
        return {"e": self.entity_ns, "r": self.relation_ns, "rdfs": RDFS, "xsd": XSD}

    def entities(self) -> list[str]:
        return sorted({h for h, _, _ in self.triples} | {t for _, _, t in self.triples}
                      | {h for h, _, _ in self.literals})

    def relations(self) -> list[str]:
        return sorted({r for _, r, _ in self.triples} | {r for _, r, _ in self.literals})

    def to_ntriples(self) -> str:
        """The KB as N-Triples: every triple, every literal, and an rdfs:label per entity and relation."""
        e, r, label = self.entity_ns, self.relation_ns, f"<{RDFS}label>"
        lines = [f"<{e}{h}> <{r}{rel}> <{e}{t}> ." for h, rel, t in self.triples]
        for h, rel, value in self.literals:
            kind = "integer" if _INTEGER.match(value) else "decimal"
            lines.append(f'<{e}{h}> <{r}{rel}> "{value}"^^<{XSD}{kind}> .')
        lines += [f'<{e}{x}> {label} "{label_of(x)}" .' for x in self.entities()]
        lines += [f'<{r}{x}> {label} "{label_of(x)}" .' for x in self.relations()]
        return "\n".join(lines) + "\n"


def read_triples(path: str | Path, numeric: bool = False) -> list[tuple[str, str, str]]:
    """Tab-separated (head, relation, tail) lines of `path`; blank lines and `#` comments are skipped. A bad line is a
    ValueError naming the file and line number: not three fields, an empty field, a name that cannot be an IRI local
    name, or (numeric=True) a tail that is not a number."""
    path = Path(path)
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) != 3:
                raise ValueError(f"{path}:{number}: expected 3 tab-separated fields (head, relation, tail), got "
                                 f"{len(fields)}: {line[:80]!r}")
            fields = [f.strip() for f in fields]
            for what, value in zip(("head", "relation", "tail"), fields):
                if what == "tail" and numeric:
                    if not _DECIMAL.match(value):
                        raise ValueError(f"{path}:{number}: the tail {value!r} of a literal line is not a number")
                elif not _NAME.match(value):
                    raise ValueError(f"{path}:{number}: the {what} {value!r} is empty or has characters an IRI local "
                                     "name cannot hold (letters, digits, '_', '-', '.')")
            rows.append(tuple(fields))
    return rows


def pykeen_folder(name: str) -> Path:
    """The folder of pykeen's dataset `name` (umls or nations) inside the installed wheel (found, not imported)."""
    if name not in PYKEEN_KBS:
        raise ValueError(f"kb={name!r}: the KBs shipped with pykeen are {list(PYKEEN_KBS)}")
    spec = importlib.util.find_spec("pykeen")
    folder = Path(spec.submodule_search_locations[0]) / "datasets" / name if spec and spec.submodule_search_locations \
        else None
    if folder is None or not (folder / "train.txt").is_file():
        raise ImportError(f"pykeen's {name} files are not installed; install them with: {PYKEEN_INSTALL}")
    return folder


def load_kb(name: str) -> KnowledgeBase:
    """pykeen's UMLS (135 semantic types, 46 relations, 6,529 triples) or Nations (14 countries, 55 relations, 1,992
    triples, area and population literals): every split (train, valid, test) is the KB."""
    folder = pykeen_folder(name)
    triples = [t for split in ("train", "valid", "test") for t in read_triples(folder / f"{split}.txt")]
    literals = read_triples(folder / "literals.txt", numeric=True) if (folder / "literals.txt").is_file() else []
    return KnowledgeBase(name, sorted(set(triples)), sorted(set(literals)))


def kb_from_tsv(name: str, triples: str | Path, literals: str | Path | None = None) -> KnowledgeBase:
    """A user's KB from a triple TSV (and optionally a TSV of numeric literals)."""
    rows = read_triples(triples)
    if not rows:
        raise ValueError(f"{triples}: no triples")
    return KnowledgeBase(name, rows, read_triples(literals, numeric=True) if literals else [])


__all__ = ["BASE", "KnowledgeBase", "PYKEEN_KBS", "kb_from_tsv", "label_of", "load_kb", "pykeen_folder",
           "read_triples"]
