"""Knowledge-base backends: one interface for an embedded store and a remote SPARQL endpoint.

`KBBackend.execute(query)` runs a generated query read-only, under a time limit and a row limit, and returns a
`Result`; the look-ups that step-wise grounding needs (`relations()`, `labels()`) are SPARQL queries themselves, so any
backend that can execute has them. Every query first goes through `check_read_only`: only SELECT and ASK run;
INSERT / DELETE / LOAD / CLEAR / DROP / CREATE / ADD / MOVE / COPY and SERVICE (which would make the store call out)
are refused before anything reaches the store.

`OxigraphBackend` (embedded, the default) keeps pyoxigraph in a worker process of its own, so a query past its time
limit is stopped by ending that process (a store evaluating a query inside Rust cannot be interrupted from Python),
and the next query starts a fresh worker. `SparqlEndpointBackend` (paperzoo.kbqa.endpoint) speaks the SPARQL 1.1
protocol over HTTP to any endpoint (Virtuoso with Freebase, as the paper used; an Oxigraph server).
"""

from __future__ import annotations

import os
import pickle
import re
import select
import struct
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from .kb import RDFS, KnowledgeBase

QUERY_FORMS = ("SELECT", "ASK")
REFUSED = ("INSERT", "DELETE", "LOAD", "CLEAR", "DROP", "CREATE", "ADD", "MOVE", "COPY", "SERVICE", "WITH")


class QueryError(ValueError):
    """A query that was refused, did not parse, or failed in the store."""


class QueryTimeout(QueryError, TimeoutError):
    """A query stopped at the time limit."""


class RowLimitExceeded(QueryError):
    """A query stopped after more rows than the row limit (its answer would have been cut, so none is given)."""


# the parts of a query whose text is not SPARQL keywords: strings (long ones first), IRIs, comments
_OPAQUE = re.compile(r'"""(?:[^"\\]|\\.|"(?!""))*"""|\'\'\'(?:[^\'\\]|\\.|\'(?!\'\'))*\'\'\''
                     r'|"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|<[^<>"{}|^`\\\s]*>|#[^\n]*')
# prefixed names (`ns:film.copy`, `e:my-load`) and language tags (`@add`): never keywords
_NAMES = re.compile(r'(?<![\w?$])(?:[A-Za-z][\w.\-]*)?:(?:[\w\-:]|%[0-9A-Fa-f]{2}|\\.|\.(?=[\w\-:%]))+'
                     r'|@[A-Za-z]+(?:-[A-Za-z0-9]+)*')
_PROLOGUE = re.compile(r"^\s*(?:(?:PREFIX\s+[A-Za-z0-9_.\-]*:\s*<>|BASE\s*<>)\s*)*", re.IGNORECASE)
_WORD = re.compile(r"(?<![\w?$:])([A-Za-z]+)(?![\w:])")
_DECLARED = re.compile(r"PREFIX\s+([A-Za-z0-9_.\-]*):", re.IGNORECASE)
_USED_PREFIX = re.compile(r"(?<![\w?$:<])([A-Za-z][A-Za-z0-9_.\-]*|):(?=[A-Za-z0-9_\-])")


def _masked(query: str, names: bool = False) -> str:
    """The query with strings, IRIs and comments emptied (`""`, `<>`, ``), and with `names`, prefixed names and
    language tags too (`p:x`, `@x`), so keywords are found only where they are keywords."""
    def blank(match):
        text = match.group(0)
        return "" if text.startswith("#") else ('<>' if text.startswith("<") else '""')
    masked = _OPAQUE.sub(blank, query)
    return _NAMES.sub(lambda m: "@x" if m.group(0).startswith("@") else "p:x", masked) if names else masked


def check_read_only(query: str) -> str:
    """The query form ("SELECT" or "ASK") of a read-only query; QueryError naming what is refused otherwise."""
    if not isinstance(query, str) or not query.strip():
        raise QueryError(f"query must be a non-empty SPARQL string, got {query!r}")
    masked = _masked(query, names=True)
    words = [w.upper() for w in _WORD.findall(masked)]
    refused = sorted(set(words) & set(REFUSED))
    if refused:
        raise QueryError(f"refused: the query uses {', '.join(refused)}; only read-only SELECT and ASK queries run "
                         f"(no updates, no SERVICE calls out of the store): {query[:120]!r}")
    body = _PROLOGUE.sub("", masked, count=1)
    form = _WORD.match(body.lstrip())
    kind = form.group(1).upper() if form else body.strip()[:20]
    if kind not in QUERY_FORMS:
        raise QueryError(f"refused: the query form is {kind!r}; only {' and '.join(QUERY_FORMS)} queries run: "
                         f"{query[:120]!r}")
    return kind


def with_prologue(query: str, prefixes: dict[str, str]) -> str:
    """The query with a PREFIX declaration for each prefix of `prefixes` it uses without declaring (for stores that
    know no default prefixes, such as a remote endpoint)."""
    masked = _masked(query)
    declared = set(_DECLARED.findall(masked))
    used = set(_USED_PREFIX.findall(_DECLARED.sub(" ", masked)))
    missing = sorted((used - declared) & set(prefixes))
    return "".join(f"PREFIX {p}: <{prefixes[p]}>\n" for p in missing) + query


@dataclass
class Result:
    """What a query returned: `rows` of term values (IRI text, literal lexical form, None where unbound) for a
    SELECT, `boolean` for an ASK."""

    variables: list[str] = field(default_factory=list)
    rows: list[tuple] = field(default_factory=list)
    boolean: bool | None = None

    def answers(self) -> list[str]:
        """The answer set, in first-seen order: "true"/"false" for an ASK, else the bound values of the first
        variable."""
        if self.boolean is not None:
            return ["true" if self.boolean else "false"]
        seen = {}
        for row in self.rows:
            if row and row[0] is not None:
                seen.setdefault(row[0], None)
        return list(seen)


class KBBackend(ABC):
    """A knowledge base that executes read-only SPARQL. Subclasses implement `_run`; `prefixes` are the default
    prefixes queries may use undeclared (e:, r:, rdfs:, xsd: for paperzoo's KBs).

    timeout: seconds a query may run before it is stopped (QueryTimeout). row_limit: the most rows a SELECT may
    return (RowLimitExceeded beyond it).
    """

    def __init__(self, prefixes: dict[str, str] | None = None, timeout: float = 10.0, row_limit: int = 10_000):
        if not (isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0):
            raise ValueError(f"timeout={timeout!r} must be a positive number of seconds")
        if isinstance(row_limit, bool) or not isinstance(row_limit, int) or row_limit <= 0:
            raise ValueError(f"row_limit={row_limit!r} must be a positive integer")
        self.prefixes = dict(prefixes or {})
        self.timeout, self.row_limit = float(timeout), row_limit
        self._labels: dict[str, str] | None = None

    @abstractmethod
    def _run(self, query: str, timeout: float, row_limit: int) -> Result:
        """Execute a checked query; raise QueryError (or a subclass) on failure."""

    def execute(self, query: str, timeout: float | None = None, row_limit: int | None = None) -> Result:
        """Run `query` read-only (see check_read_only) under the time and row limits (the backend's unless given)."""
        check_read_only(query)
        return self._run(query, self.timeout if timeout is None else timeout,
                         self.row_limit if row_limit is None else row_limit)

    def answers(self, query: str) -> list[str]:
        return self.execute(query).answers()

    # --- look-ups for grounding and for reading answers ------------------------------------------------------------
    def labels(self) -> dict[str, str]:
        """rdfs:label of every labelled IRI (cached: one query per backend)."""
        if self._labels is None:
            rows = self.execute(f"SELECT ?s ?l WHERE {{ ?s <{RDFS}label> ?l . }}", row_limit=10**7).rows
            self._labels = {s: label for s, label in rows}
        return self._labels

    def label(self, value: str) -> str:
        """The label of an IRI (its local name with underscores as spaces when unlabelled); a literal as it is."""
        if value in self.labels():
            return self.labels()[value]
        if "://" in value:
            return re.split(r"[/#]", value.rstrip("/"))[-1].replace("_", " ")
        return value

    def compact(self, iri: str) -> str:
        """`e:virus` for the IRI of virus under the backend's prefixes (the IRI in <> when no prefix fits)."""
        for name, namespace in self.prefixes.items():
            local = iri[len(namespace):] if iri.startswith(namespace) else None
            if local and re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*", local) and not local.endswith("."):
                return f"{name}:{local}"
        return f"<{iri}>"

    def close(self) -> None:
        """Release what the backend holds (a worker process, a session)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ----------------------------------------------------------------------------------------------------------------------
# Embedded: pyoxigraph in a worker process


def _send(stream, message) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _read_exact(fd: int, size: int, deadline: float | None) -> bytes | None:
    """`size` bytes from `fd`, or None when the deadline passes first (or the pipe closes: b'' returned short)."""
    chunks, left = [], size
    while left:
        wait = None if deadline is None else deadline - time.monotonic()
        if wait is not None and wait <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            return None
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


RDF_FORMATS = {".nt": "N_TRIPLES", ".ttl": "TURTLE", ".rdf": "RDF_XML", ".owl": "RDF_XML", ".xml": "RDF_XML",
               ".nq": "N_QUADS", ".trig": "TRIG", ".n3": "N3"}


class OxigraphBackend(KBBackend):
    """An embedded pyoxigraph store, queried in a worker process (see the module docstring).

    Build it from a KnowledgeBase (`from_kb`), RDF or triple-TSV files (`from_files`), or an existing on-disk store
    folder (`OxigraphBackend(location=DIR)`, opened read-only).
    """

    def __init__(self, *, ntriples: str | None = None, files: list[str | Path] | None = None,
                 location: str | Path | None = None, prefixes: dict[str, str] | None = None,
                 timeout: float = 10.0, row_limit: int = 10_000):
        super().__init__(prefixes, timeout, row_limit)
        sources = [s is not None for s in (ntriples, files, location)]
        if sum(sources) != 1:
            raise ValueError("give exactly one of ntriples=, files= or location=")
        if files is not None:
            files = [Path(f) for f in files]
            for f in files:
                if not f.is_file():
                    raise FileNotFoundError(f"{f}: no such RDF file")
                if f.suffix.lower() not in RDF_FORMATS:
                    raise ValueError(f"{f}: unknown RDF format {f.suffix!r}; known: {sorted(RDF_FORMATS)} (a triple "
                                     "TSV goes through paperzoo.kbqa.kb.kb_from_tsv and from_kb)")
            self._source = ("files", [(str(f), RDF_FORMATS[f.suffix.lower()]) for f in files])
        elif location is not None:
            if not Path(location).is_dir():
                raise FileNotFoundError(f"{location}: no such Oxigraph store folder")
            self._source = ("location", str(location))
        else:
            self._source = ("ntriples", ntriples)
        self._process: subprocess.Popen | None = None
        self.size = self._start()  # load once now: a bad file fails here, not at the first question

    @classmethod
    def from_kb(cls, kb: KnowledgeBase, **kwargs) -> OxigraphBackend:
        return cls(ntriples=kb.to_ntriples(), prefixes=kb.prefixes, **kwargs)

    @classmethod
    def from_files(cls, files, prefixes: dict[str, str] | None = None, **kwargs) -> OxigraphBackend:
        return cls(files=list(files), prefixes=prefixes, **kwargs)

    def _start(self) -> int:
        self._process = subprocess.Popen([sys.executable, "-m", "paperzoo.kbqa._oxigraph_worker"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        _send(self._process.stdin, self._source)
        status, payload = self._receive(deadline=None)
        if status == "died":
            code = self._process.wait()
            self.close()
            raise QueryError(f"the Oxigraph worker process ended while loading the store (exit code {code})")
        if status != "ready":
            self.close()
            raise QueryError(f"the Oxigraph store could not be loaded: {payload}")
        return payload

    def _receive(self, deadline: float | None):
        fd = self._process.stdout.fileno()
        header = _read_exact(fd, 8, deadline)
        if header is None:
            return "timeout", None
        size = struct.unpack("<Q", header)[0] if len(header) == 8 else None
        data = _read_exact(fd, size, None) if size is not None else b""
        if size is None or len(data) < size:  # the pipe closed mid-message: the worker died (a crash, a kill, OOM)
            return "died", None
        return pickle.loads(data)

    def _run(self, query: str, timeout: float, row_limit: int) -> Result:
        if self._process is None or self._process.poll() is not None:
            self._start()
        try:
            _send(self._process.stdin, (query, self.prefixes, row_limit))
            status, payload = self._receive(deadline=time.monotonic() + timeout)
        except BrokenPipeError:
            status, payload = "died", None
        if status == "died":
            code = self._process.poll()
            self.close()  # the next query starts a fresh worker
            raise QueryError(f"the Oxigraph worker process ended during the query (exit code {code}); the next query "
                             f"starts a new one: {query[:120]!r}")
        if status == "timeout":
            self.close()  # the query is stopped with its process; the next query starts a fresh worker
            raise QueryTimeout(f"the query ran past the time limit of {timeout:g} s and was stopped: {query[:120]!r}")
        if status == "rows":
            return Result(variables=payload[0], rows=payload[1])
        if status == "boolean":
            return Result(boolean=payload)
        if status == "too_many_rows":
            raise RowLimitExceeded(f"the query returned more than row_limit={row_limit} rows and was stopped: "
                                   f"{query[:120]!r}")
        raise QueryError(f"{payload} in query {query[:200]!r}")

    def close(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
            for stream in (self._process.stdin, self._process.stdout):
                stream.close()
            self._process = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the process ends with its pipes
            pass


__all__ = ["KBBackend", "OxigraphBackend", "QueryError", "QueryTimeout", "Result", "RowLimitExceeded",
           "check_read_only", "with_prologue"]
