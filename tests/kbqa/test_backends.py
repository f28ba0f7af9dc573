"""The KB backends: the embedded Oxigraph store (a worker process) and a SPARQL endpoint over HTTP (a real Oxigraph
server, and tiny scripted HTTP servers for the retry policy) answer alike, refuse every update, stop at the time and
row limits, and report bad queries, bad KB files and unreachable endpoints."""

from __future__ import annotations

import http.server
import json
import math
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager

import pyoxigraph
import pytest

from paperzoo.kbqa.backends import OxigraphBackend, QueryError, QueryTimeout, RowLimitExceeded, with_prologue
from paperzoo.kbqa.endpoint import EndpointUnavailable, SparqlEndpointBackend, free_port
from paperzoo.kbqa.kb import RDFS, read_triples

from .conftest import SERVER_TIMEOUT_S

CARTESIAN = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }"  # 6.7k^3 rows: never finishes
# 45M pairs, each compared as strings: over 25 s in Oxigraph, which checks its own time limit while it runs (the 3-way
# product above first builds a 45M-row join, ~5 s, before Oxigraph looks at its limit)
SLOW_PAIRS = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . FILTER(STR(?c) < STR(?f)) }"
COUNT_ALL = "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }"
COUNT_NAMED = "SELECT (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } }"


@pytest.fixture(scope="module")
def endpoint(oxigraph_server, umls_kb):
    return SparqlEndpointBackend(oxigraph_server, prefixes=umls_kb.prefixes)


@pytest.fixture(params=["embedded", "endpoint"])
def backend(request):
    return request.getfixturevalue("umls_embedded" if request.param == "embedded" else "endpoint")


# --- the same answers from both, and from plain Python ----------------------------------------------------------------

def _hop(kb, head=None, relation=None, tail=None):
    return [(h, r, t) for h, r, t in kb.triples
            if (head is None or h == head) and (relation is None or r == relation) and (tail is None or t == tail)]


def _cases(kb):
    """(query, expected answer set) pairs: the expectation computed from kb.triples, not by a store."""
    e, r = kb.entity_ns, kb.relation_ns
    one_hop = {e + t for _, _, t in _hop(kb, "virus", "causes")}
    inverse = {e + h for h, _, _ in _hop(kb, None, "causes", "disease_or_syndrome")}
    two_hop = {e + t2 for _, _, t in _hop(kb, "virus", "causes") for _, _, t2 in _hop(kb, t, "affects")}
    isa_count = len({h for h, _, _ in _hop(kb, None, "isa", "organism")})
    present = ("virus", "causes", "disease_or_syndrome") in set(kb.triples)
    absent = ("virus", "causes", "virus") in set(kb.triples)
    return [
        ("SELECT DISTINCT ?x WHERE { e:virus r:causes ?x . }", one_hop),
        ("SELECT DISTINCT ?x WHERE { ?x r:causes e:disease_or_syndrome . }", inverse),
        ("SELECT DISTINCT ?y WHERE { e:virus r:causes ?x . ?x r:affects ?y . }", two_hop),
        ("SELECT (COUNT(DISTINCT ?x) AS ?n) WHERE { ?x r:isa e:organism . }", {str(isa_count)}),
        ("ASK { e:virus r:causes e:disease_or_syndrome . }", {"true" if present else "false"}),
        ("ASK { e:virus r:causes e:virus . }", {"true" if absent else "false"}),
        ('SELECT ?x WHERE { ?x rdfs:label "co-occurs with" . }', {r + "co-occurs_with"}),
        (f"PREFIX ent: <{e}>\nPREFIX rel: <{r}>\nPREFIX e: <{e}>\n"
         "SELECT DISTINCT ?x WHERE { ent:virus rel:causes ?x . ?x ?p e:virus . }",
         {e + t for _, _, t in _hop(kb, "virus", "causes") if any(_hop(kb, t, None, "virus"))}),
    ]


def test_embedded_and_endpoint_agree_with_plain_python(umls_kb, umls_embedded, endpoint):
    cases = _cases(umls_kb)
    # the expectations are not trivial: answers to find, a true and a false ASK
    assert len(cases[0][1]) == 6 and len(cases[1][1]) > 3 and len(cases[2][1]) > 10
    assert cases[4][1] == {"true"} and cases[5][1] == {"false"} and int(next(iter(cases[3][1]))) > 1
    assert len(cases[7][1]) > 1
    for query, expected in cases:
        embedded, remote = umls_embedded.answers(query), endpoint.answers(query)
        assert set(embedded) == expected, query
        assert set(remote) == expected, query
        assert len(embedded) == len(set(embedded)) and len(remote) == len(set(remote))


def test_select_rows_keep_variables_and_unbound_values(backend):
    result = backend.execute("SELECT ?x ?label WHERE { VALUES ?x { e:virus e:not_in_the_kb } "
                             "OPTIONAL { ?x rdfs:label ?label } } ORDER BY ?x")
    ns = "https://paperzoo.dev/kb/umls/entity/"
    assert result.variables == ["x", "label"]
    assert result.rows == [(ns + "not_in_the_kb", None), (ns + "virus", "virus")]
    assert backend.execute("ASK {}").boolean is True


# --- read-only --------------------------------------------------------------------------------------------------------

REFUSED_QUERIES = [
    "INSERT DATA { e:virus r:causes e:virus . }",
    "DELETE WHERE { ?s ?p ?o . }",
    "LOAD <http://example.org/data.nt>",
    "CLEAR ALL",
    "DROP DEFAULT",
    "CREATE GRAPH <http://example.org/g>",
    "ADD DEFAULT TO <http://example.org/g>",
    "MOVE DEFAULT TO <http://example.org/g>",
    "COPY DEFAULT TO <http://example.org/g>",
    "SELECT * WHERE { SERVICE <http://example.org/sparql> { ?s ?p ?o . } }",
    "CONSTRUCT { ?s ?p ?o . } WHERE { ?s ?p ?o . }",
    "DESCRIBE e:virus",
    "WITH <http://example.org/g> DELETE { ?s ?p ?o . } WHERE { ?s ?p ?o . }",
    "PREFIX x: <http://example.org/> insert data { x:a x:b x:c . }",
    "SELECT * WHERE { ?s ?p ?o . } ; DELETE WHERE { ?s ?p ?o . }",
]


def _sizes(endpoint):
    return int(endpoint.answers(COUNT_ALL)[0]), int(endpoint.answers(COUNT_NAMED)[0])


@pytest.mark.parametrize("query", REFUSED_QUERIES, ids=lambda q: "-".join(re.findall(r"[A-Za-z]+", q)[:3]))
def test_updates_and_other_forms_are_refused_on_both(query, umls_kb, umls_embedded, endpoint, monkeypatch):
    size = len(umls_kb.to_ntriples().splitlines())
    assert _sizes(endpoint) == (size, 0)
    with pytest.raises(QueryError, match="refused"):
        umls_embedded.execute(query)
    sent = []
    monkeypatch.setattr(endpoint, "_post", lambda *args: sent.append(args))
    with pytest.raises(QueryError, match="refused"):
        endpoint.execute(query)
    assert sent == []  # nothing went over the wire
    monkeypatch.undo()
    assert _sizes(endpoint) == (size, 0)  # and the store is as it was
    assert int(umls_embedded.answers(COUNT_ALL)[0]) == size


@pytest.mark.parametrize("query, answer", [
    ("SELECT ?x WHERE { ?x r:load ?y . }", []),
    ("SELECT ?x WHERE { ?x r:insert e:drop . }", []),
    ('SELECT ?x WHERE { ?x rdfs:label "insert" . }', []),
    ("SELECT ?x WHERE { ?x <http://x/delete> ?y . }", []),
    ('ASK { ?x rdfs:label "DROP ALL; CLEAR DEFAULT" . }', ["false"]),
    ("SELECT ?delete WHERE { ?delete rdfs:label 'virus' . }  # then DELETE WHERE { ?s ?p ?o }",
     ["https://paperzoo.dev/kb/umls/entity/virus"]),
])
def test_keywords_inside_names_strings_iris_and_comments_are_not_refused(backend, query, answer):
    assert backend.answers(query) == answer


# --- limits -----------------------------------------------------------------------------------------------------------

def test_embedded_time_limit_ends_the_worker_and_the_next_query_works(umls_kb):
    backend = OxigraphBackend.from_kb(umls_kb)
    try:
        pid = backend._process.pid
        start = time.monotonic()
        with pytest.raises(QueryTimeout, match="time limit of 1 s"):
            backend.execute(CARTESIAN, timeout=1)
        assert time.monotonic() - start < 3
        assert backend._process is None
        with pytest.raises(ProcessLookupError):  # killed and reaped
            os.kill(pid, 0)
        assert set(backend.answers("SELECT ?x WHERE { e:virus r:causes ?x . }")) == \
            {umls_kb.entity_ns + t for _, _, t in _hop(umls_kb, "virus", "causes")}
        assert backend._process.pid != pid
    finally:
        backend.close()


def test_endpoint_time_limit_stops_waiting(endpoint, umls_kb):
    start = time.monotonic()
    with pytest.raises(QueryTimeout, match="time limit of 1 s"):
        endpoint.execute(CARTESIAN, timeout=1)
    assert time.monotonic() - start < 3
    # the server (its own --timeout-s stops that query's work) still answers others meanwhile
    assert endpoint.answers("ASK { e:virus r:causes e:disease_or_syndrome . }") == ["true"]


def test_endpoint_answer_cut_by_the_servers_own_limit_is_a_timeout(endpoint):
    start = time.monotonic()
    with pytest.raises(QueryTimeout, match="cancelled"):  # `serve --timeout-s` cancels it mid-answer
        endpoint.execute(SLOW_PAIRS, timeout=30)
    assert time.monotonic() - start < SERVER_TIMEOUT_S + 2


def test_row_limit(backend):
    with pytest.raises(RowLimitExceeded, match="row_limit=10"):
        backend.execute("SELECT * WHERE { ?a ?b ?c . }", row_limit=10)
    assert len(backend.execute("SELECT * WHERE { ?a ?b ?c . } LIMIT 10", row_limit=10).rows) == 10


def _store_error(backend, query: str) -> str:
    """The error the store itself gives for `query`: pyoxigraph's exception, or the server's HTTP 400 body."""
    if isinstance(backend, OxigraphBackend):
        with pytest.raises(SyntaxError) as caught:
            pyoxigraph.Store().query(query, prefixes=backend.prefixes)
        return str(caught.value)
    request = urllib.request.Request(backend.url, method="POST", headers={"Accept": "application/sparql-results+json"},
                                     data=urllib.parse.urlencode({"query": with_prologue(query, backend.prefixes)})
                                     .encode())
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 400
    return caught.value.read().decode()


def test_syntax_error_carries_the_stores_message(backend):
    query = "SELECT ?x WHERE { ?x r:causes }"
    with pytest.raises(QueryError) as caught:
        backend.execute(query)
    assert not isinstance(caught.value, (QueryTimeout, RowLimitExceeded, EndpointUnavailable))
    store_error = " ".join(_store_error(backend, query).split())
    assert store_error.startswith("error at") and "expected one of" in store_error
    assert store_error[:200] in " ".join(str(caught.value).split())


# --- the endpoint client: arguments, reachability, retry policy -------------------------------------------------------

@pytest.mark.parametrize("kwargs, field", [
    ({"url": "ftp://example.org/sparql"}, "url"), ({"url": "http:///sparql"}, "url"),
    ({"url": "localhost:8890/sparql"}, "url"), ({"url": "http://localhost:99999/sparql"}, "url"),
    ({"retries": -1}, "retries"), ({"retries": 1.5}, "retries"), ({"retries": True}, "retries"),
    ({"backoff": -0.1}, "backoff"), ({"backoff": math.nan}, "backoff"), ({"timeout": 0}, "timeout"),
    ({"row_limit": 0}, "row_limit"), ({"headers": {"X": 1}}, "headers"), ({"server_timeout_param": ""},
                                                                          "server_timeout_param"),
])
def test_endpoint_arguments_are_checked(kwargs, field):
    arguments = {"url": "http://localhost:8890/sparql", **kwargs}
    with pytest.raises(ValueError, match=f"{field}={kwargs[field]!r}".replace("(", r"\(").replace(".", r"\.")):
        SparqlEndpointBackend(**arguments)


def test_unreachable_endpoint_is_retried_then_named():
    url = f"http://127.0.0.1:{free_port()}/query"  # nothing listens there
    backend = SparqlEndpointBackend(url, retries=2, backoff=0.01)
    start = time.monotonic()
    with pytest.raises(QueryError) as caught:
        backend.execute("ASK {}")
    assert time.monotonic() - start < 1
    assert isinstance(caught.value, EndpointUnavailable) and isinstance(caught.value, ConnectionError)
    assert url in str(caught.value) and "3 attempts" in str(caught.value) and "Refused" in str(caught.value)
    assert backend.ping() is False


def test_ping(endpoint):
    assert endpoint.ping() is True


ASK_TRUE = (200, {"Content-Type": "application/sparql-results+json"}, b'{"head": {}, "boolean": true}')
ROWS = (200, {"Content-Type": "application/sparql-results+json"},
        json.dumps({"head": {"vars": ["x", "y"]}, "results": {"bindings": [
            {"x": {"type": "uri", "value": "http://a/1"}, "y": {"type": "literal", "value": "one"}},
            {"x": {"type": "bnode", "value": "b0"}}]}}).encode())


@contextmanager
def scripted_server(*answers):
    """An HTTP server answering POSTs with `answers` in turn: (status, headers, body), "hang up" (close without an
    answer), "cut" (close in the middle of the body) or "hang" (wait until the test ends); yields (url, requests
    seen)."""
    seen, release = [], threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append({"path": self.path, "headers": dict(self.headers),
                         "form": urllib.parse.parse_qs(body.decode())})
            answer = answers[min(len(seen), len(answers)) - 1]
            if answer == "hang up":
                self.close_connection = True
                return
            if answer == "hang":
                release.wait(10)
                return
            if answer == "cut":  # announces 1000 bytes, sends 20, hangs up
                self.send_response(200)
                self.send_header("Content-Type", "application/sparql-results+json")
                self.send_header("Content-Length", "1000")
                self.end_headers()
                self.wfile.write(ROWS[2][:20])
                self.close_connection = True
                return
            status, headers, payload = answer
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(payload))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/sparql", seen
    finally:
        release.set()
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status", [503, 502, 504])
def test_busy_endpoint_is_retried_with_backoff(status):
    busy = (status, {"Content-Type": "text/plain"}, b"Service Unavailable: warming up")
    with scripted_server(busy, busy, ROWS) as (url, seen):
        backend = SparqlEndpointBackend(url, prefixes={"e": "http://a/"}, retries=2, backoff=0.05, timeout=2.5)
        start = time.monotonic()
        result = backend.execute("SELECT ?x ?y WHERE { ?x ?p e:b . }")
        assert time.monotonic() - start >= 0.05 + 0.1  # backoff, then 2 x backoff
    assert len(seen) == 3
    assert result.variables == ["x", "y"] and result.rows == [("http://a/1", "one"), ("_:b0", None)]
    request = seen[0]
    assert request["path"] == "/sparql"
    assert request["headers"]["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert request["headers"]["Accept"] == "application/sparql-results+json"
    assert set(request["form"]) == {"query", "timeout"}  # the query operation, never `update`
    assert request["form"]["query"] == ["PREFIX e: <http://a/>\nSELECT ?x ?y WHERE { ?x ?p e:b . }"]
    assert request["form"]["timeout"] == ["2500"]  # milliseconds, as Virtuoso reads it


def test_retries_run_out():
    busy = (503, {}, b"overloaded")
    with scripted_server(busy, busy, ASK_TRUE) as (url, seen):
        with pytest.raises(EndpointUnavailable, match=r"after 2 attempts.*HTTP 503: overloaded"):
            SparqlEndpointBackend(url, retries=1, backoff=0.01).execute("ASK {}")
    assert len(seen) == 2


def test_dropped_connection_is_retried():
    with scripted_server("hang up", "cut", ASK_TRUE) as (url, seen):
        backend = SparqlEndpointBackend(url, retries=2, backoff=0.01, server_timeout_param=None,
                                        headers={"Authorization": "Bearer token"})
        assert backend.answers("ASK {}") == ["true"]
    assert len(seen) == 3 and set(seen[0]["form"]) == {"query"}  # no `timeout` field when told not to send one
    assert seen[2]["headers"]["Authorization"] == "Bearer token"
    with scripted_server("cut") as (url, seen):
        with pytest.raises(EndpointUnavailable, match=r"after 1 attempt; .*broke off after 20 bytes"):
            SparqlEndpointBackend(url, retries=0).execute("ASK {}")


def test_bad_request_is_not_retried():
    with scripted_server((400, {"Content-Type": "text/plain"},
                          b"Virtuoso 37000 Error SP030: SPARQL compiler, line 1: syntax error\n\n"),
                         ASK_TRUE) as (url, seen):
        with pytest.raises(QueryError, match=r"HTTP 400\): Virtuoso 37000 Error SP030: SPARQL compiler, line 1: "
                                             r"syntax error in query") as caught:
            SparqlEndpointBackend(url, retries=3, backoff=0.01).execute("ASK {}")
    assert len(seen) == 1 and not isinstance(caught.value, EndpointUnavailable)


def test_timeout_is_not_retried():
    with scripted_server("hang", ASK_TRUE) as (url, seen):
        start = time.monotonic()
        with pytest.raises(QueryTimeout):
            SparqlEndpointBackend(url, timeout=0.3, retries=3, backoff=0.01).execute("ASK {}")
        assert time.monotonic() - start < 1.5
    assert len(seen) == 1


@pytest.mark.parametrize("answer", [
    (206, {"Content-Type": "application/sparql-results+json"}, ROWS[2]),  # Virtuoso's anytime partial result
    (200, {"X-SQL-State": "S1TAT", "X-SQL-Message": "RC...: Returning incomplete results"}, ROWS[2]),
    (500, {"Content-Type": "text/plain"}, b"Virtuoso S1TAT Error Query did not complete due to ANYTIME timeout."),
    (200, {"Content-Type": "application/sparql-results+json"},
     b'{"head":{"vars":["n"]},"results":{"bindings":[The SPARQL operation has been cancelled'),
])
def test_an_answer_cut_at_the_servers_limit_is_a_timeout_not_a_short_answer(answer):
    with scripted_server(answer) as (url, seen):
        with pytest.raises(QueryTimeout):
            SparqlEndpointBackend(url, retries=2, backoff=0.01).execute("SELECT ?x ?y WHERE { ?x ?p ?y . }")
    assert len(seen) == 1


def test_unparsable_answer_is_a_query_error():
    with scripted_server((200, {"Content-Type": "text/html"}, b"<html>login</html>")) as (url, seen):
        with pytest.raises(QueryError, match="not SPARQL JSON results") as caught:
            SparqlEndpointBackend(url).execute("ASK {}")
    assert not isinstance(caught.value, QueryTimeout)


# --- KB files ---------------------------------------------------------------------------------------------------------

def test_read_triples_names_the_bad_line(tmp_path):
    tsv = tmp_path / "kb.tsv"
    tsv.write_text("a\tr\tb\n# a comment\nc\td\n")
    with pytest.raises(ValueError, match=r"kb\.tsv:3: expected 3 tab-separated fields"):
        read_triples(tsv)
    numbers = tmp_path / "literals.tsv"
    numbers.write_text("a\tarea\t12.5\na\tpopulation\tmany\n")
    with pytest.raises(ValueError, match=r"literals\.tsv:2: .*'many'.* not a number"):
        read_triples(numbers, numeric=True)
    good = tmp_path / "good.tsv"
    good.write_text("a\tr\tb\n\n# skipped\nb\tr\tc\n")
    assert read_triples(good) == [("a", "r", "b"), ("b", "r", "c")]


def test_bad_or_missing_rdf_files(tmp_path):
    bad = tmp_path / "bad.ttl"
    bad.write_text("@prefix a: <http://a/> .\na:x a:p a:y ;\n")
    with pytest.raises(QueryError, match=r"could not be loaded: .*[Pp]arser error.*bad\.ttl"):
        OxigraphBackend(files=[bad])
    with pytest.raises(FileNotFoundError, match="missing.nt"):
        OxigraphBackend(files=[tmp_path / "missing.nt"])
    with pytest.raises(FileNotFoundError, match="no-store"):
        OxigraphBackend(location=tmp_path / "no-store")


def test_ntriples_and_turtle_files_load_and_answer(tmp_path):
    (tmp_path / "a.nt").write_text("<http://a/x> <http://a/p> <http://a/y> .\n")
    (tmp_path / "b.ttl").write_text('@prefix a: <http://a/> .\na:y a:p a:z ; a:label "zed" .\n')
    with OxigraphBackend.from_files([tmp_path / "a.nt", tmp_path / "b.ttl"], prefixes={"a": "http://a/"}) as backend:
        assert backend.size == 3
        assert backend.answers("SELECT ?z WHERE { a:x a:p/a:p ?z . }") == ["http://a/z"]
        assert backend.answers('SELECT ?s WHERE { ?s a:label "zed" . }') == ["http://a/y"]


def test_existing_store_folder_opens_read_only(tmp_path, umls_kb):
    folder = tmp_path / "store"
    store = pyoxigraph.Store(str(folder))
    store.bulk_load(umls_kb.to_ntriples().encode(), format=pyoxigraph.RdfFormat.N_TRIPLES)
    store.flush()
    del store  # releases the store's lock
    with OxigraphBackend(location=folder, prefixes=umls_kb.prefixes) as backend:
        assert backend.size == len(umls_kb.to_ntriples().splitlines())
        assert "https://paperzoo.dev/kb/umls/entity/disease_or_syndrome" in \
            backend.answers("SELECT ?x WHERE { e:virus r:causes ?x . }")
        writer = pyoxigraph.Store(str(folder))  # only possible while the backend holds no write lock on it
        assert len(writer) == backend.size
        del writer


# --- labels -----------------------------------------------------------------------------------------------------------

def test_labels_and_compact_names(backend, umls_kb):
    labels = backend.labels()
    assert len(labels) == len(umls_kb.entities()) + len(umls_kb.relations())
    assert backend.label(umls_kb.relation_ns + "co-occurs_with") == "co-occurs with"
    assert backend.label(umls_kb.entity_ns + "disease_or_syndrome") == "disease or syndrome"
    assert backend.label("http://elsewhere.org/x/some_thing") == "some thing"  # unlabelled: its local name
    assert backend.label("42") == "42"
    assert backend.compact(umls_kb.entity_ns + "virus") == "e:virus"
    assert backend.compact(umls_kb.relation_ns + "co-occurs_with") == "r:co-occurs_with"
    assert backend.compact(RDFS + "label") == "rdfs:label"
    assert backend.compact("http://elsewhere.org/x") == "<http://elsewhere.org/x>"


def test_a_worker_that_dies_mid_query_is_an_error_and_the_next_query_starts_a_new_one(umls_kb):
    import os
    import signal
    import threading

    backend = OxigraphBackend.from_kb(umls_kb)
    try:
        pid = backend._process.pid
        threading.Timer(0.3, os.kill, (pid, signal.SIGKILL)).start()  # killed while the long query runs
        with pytest.raises(QueryError, match="worker process ended during the query"):
            backend.execute("SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }", timeout=20)
        assert backend.answers("ASK { e:virus r:causes e:disease_or_syndrome . }") == ["true"]
        assert backend._process.pid != pid
    finally:
        backend.close()
