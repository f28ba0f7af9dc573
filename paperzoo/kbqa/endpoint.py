"""A remote knowledge base: any SPARQL 1.1 endpoint over HTTP (Virtuoso with Freebase, as FlexKBQA used; an Oxigraph
server; Fuseki; ...), with the same read-only, time-limited, row-limited `execute` as the embedded store.

Standard library only (http.client, json). What `SparqlEndpointBackend` does with a query:

* It is checked read-only first (`KBBackend.execute` → `check_read_only`: only SELECT and ASK, no SERVICE), then the
  PREFIX declarations of the backend's prefixes that the query uses without declaring are prepended
  (`with_prologue`): a remote store knows none of paperzoo's `e:` / `r:` / `rdfs:` / `xsd:`.
* It is POSTed as `application/x-www-form-urlencoded` `query=...` to the endpoint URL: the query operation of the
  SPARQL 1.1 protocol, never the update operation (no `update=` is ever sent), asking for
  `application/sparql-results+json`. Give the URL of the query service itself: Virtuoso's `http://host:8890/sparql`,
  Oxigraph's `http://host:7878/query`, Fuseki's `http://host:3030/DATASET/query`.
* A SELECT becomes `Result(variables=head.vars, rows=...)` with each binding's `value` (None where a variable is
  unbound; a blank node as `_:id`, as the embedded store gives it); an ASK becomes `Result(boolean=...)`. More rows
  than the row limit is RowLimitExceeded (the whole answer is read first: HTTP gives no way to stop the server's
  serialisation early except hanging up, which the time limit does).

Time limit. The client waits at most `timeout` seconds for the whole answer (connecting, the server's work and
reading the body: one deadline, enforced on every socket read), then closes the connection and raises QueryTimeout.
Closing the connection stops the client waiting, not necessarily the server working: what stops the server's own work
is a server-side limit: Virtuoso's `MaxQueryExecutionTime` (virtuoso.ini, `[SPARQL]`) and its per-request `timeout`
parameter, which this client sends (in milliseconds, the unit Virtuoso reads, at least 1000 as Virtuoso ignores
smaller values; the name is `server_timeout_param`, None to send none); Oxigraph's `serve --timeout-s N` (Oxigraph
ignores the unknown `timeout` form field; it checks its limit as it evaluates, so a query that first builds a big join
can run a few seconds past it); or a reverse proxy's timeout in front of the endpoint (e.g. Oxigraph
`serve-read-only` behind nginx). An answer the server cut at its own limit is a QueryTimeout too, never a short
answer: Virtuoso's "anytime" partial results (HTTP 206, or an `X-SQL-State` header such as `S1TAT` on older
versions), its 500 "S1TAT"/"S1T00" timeout errors, and a body broken off by a cancellation ("The SPARQL operation has
been cancelled" from Oxigraph). (A Virtuoso `ResultSetMaxRows` cap that an old version returns with status 200 and
no header cannot be told from a full answer: set it above the row limit.) Each attempt has the full time limit; a
timeout is never retried (a query that ran out of time once will again, and the server may still be working on it).

Failures. HTTP 400 (the endpoint's syntax error), every other 4xx, a 500 and any other status but 200 and the
retried ones below are a QueryError carrying the server's message (trimmed), never retried: the same query fails
the same way. A connection refused, a DNS failure,
a connection reset or dropped, and HTTP 502 / 503 / 504 (a proxy or an endpoint still starting or overloaded) are
retried up to `retries` times, waiting `backoff`, `2·backoff`, `4·backoff`, ... seconds between attempts; when every
attempt fails the error is `EndpointUnavailable` (a QueryError and a ConnectionError) naming the URL, the number of
attempts and the last reason. `ping()` answers whether the endpoint runs a query now (an `ASK {}` with a short time
limit and no retry), for waiting until a freshly started server is ready.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import re
import socket
import ssl
import time
import urllib.parse

from .backends import KBBackend, QueryError, QueryTimeout, Result, RowLimitExceeded, with_prologue

RESULTS_JSON = "application/sparql-results+json"
RETRIED_STATUS = (502, 503, 504)
MESSAGE_CHARS = 500  # how much of a server's error message a QueryError carries
# a server's own time limit, as the text of its error or of the end of a broken-off answer
_SERVER_TIMEOUT = re.compile(r"\bS1T(?:AT|00)\b|timed? ?out|time limit|cancell?ed", re.IGNORECASE)


class EndpointUnavailable(QueryError, ConnectionError):
    """The endpoint could not be reached or kept failing (refused, DNS, reset, HTTP 502/503/504) on every attempt."""


class _Transient(Exception):
    """One attempt failed in a way worth retrying; `reason` says how."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _trimmed(text: str, limit: int = MESSAGE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


class SparqlEndpointBackend(KBBackend):
    """A SPARQL 1.1 endpoint over HTTP (see the module docstring).

    url: the query service (`http(s)://host[:port]/path`). prefixes: declared for the queries that use them
    undeclared (`KnowledgeBase.prefixes` for a paperzoo KB loaded into the endpoint). timeout / row_limit: as
    KBBackend. retries: extra attempts after a connection failure or an HTTP 502/503/504 (0: one attempt only).
    backoff: seconds before the first retry, doubled for each next one. headers: extra HTTP headers (e.g.
    Authorization). server_timeout_param: the form field that carries the time limit to the server in milliseconds
    (Virtuoso's `timeout`), None to send none.
    """

    def __init__(self, url: str, prefixes: dict[str, str] | None = None, timeout: float = 10.0,
                 row_limit: int = 10_000, retries: int = 2, backoff: float = 0.5,
                 headers: dict[str, str] | None = None, server_timeout_param: str | None = "timeout"):
        super().__init__(prefixes, timeout, row_limit)
        if not isinstance(url, str):
            raise ValueError(f"url={url!r} must be an http(s) URL string")
        parts = urllib.parse.urlsplit(url)
        try:
            port = parts.port
        except ValueError as err:
            raise ValueError(f"url={url!r} has a bad port: {err}") from None
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url={url!r} must be an http:// or https:// URL with a host, such as "
                             "http://localhost:8890/sparql")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries={retries!r} must be an integer >= 0")
        if isinstance(backoff, bool) or not isinstance(backoff, (int, float)) or not math.isfinite(backoff) \
                or backoff < 0:
            raise ValueError(f"backoff={backoff!r} must be a number of seconds >= 0")
        if headers is not None and not (isinstance(headers, dict)
                                        and all(isinstance(k, str) and isinstance(v, str)
                                                for k, v in headers.items())):
            raise ValueError(f"headers={headers!r} must be a dict of header names to string values")
        if server_timeout_param is not None and (not isinstance(server_timeout_param, str)
                                                 or not server_timeout_param.strip()):
            raise ValueError(f"server_timeout_param={server_timeout_param!r} must be a form field name or None")
        self.url = url
        self.retries, self.backoff = retries, float(backoff)
        self.headers = dict(headers or {})
        self.server_timeout_param = server_timeout_param
        self._https = parts.scheme.lower() == "https"
        self._host, self._port = parts.hostname, port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    # --- one query -------------------------------------------------------------------------------------------------
    def _run(self, query: str, timeout: float, row_limit: int) -> Result:
        text = with_prologue(query, self.prefixes)
        return self._request(text, timeout, row_limit, retries=self.retries)

    def ping(self, timeout: float = 2.0) -> bool:
        """Whether the endpoint answers `ASK {}` now (one attempt, at most `timeout` seconds)."""
        try:
            return self._request("ASK {}", min(timeout, self.timeout), 1, retries=0).boolean is True
        except QueryError:
            return False

    def _request(self, text: str, timeout: float, row_limit: int, retries: int) -> Result:
        form = {"query": text}
        if self.server_timeout_param:
            form[self.server_timeout_param] = str(max(1000, math.ceil(timeout * 1000)))
        body = urllib.parse.urlencode(form).encode("utf-8")
        attempts, reason = 0, ""
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            attempts += 1
            try:
                status, headers, payload = self._post(body, timeout, text)
            except _Transient as failure:
                reason = failure.reason
                continue
            if status in RETRIED_STATUS:
                reason = f"HTTP {status}: {_trimmed(payload.decode('utf-8', 'replace'), 200)}"
                continue
            return self._parse(status, headers, payload, text, timeout, row_limit)
        plural = "attempt" if attempts == 1 else "attempts"
        raise EndpointUnavailable(f"the SPARQL endpoint {self.url} failed after {attempts} {plural}; last reason: "
                                  f"{reason}")

    def _post(self, body: bytes, timeout: float, text: str):
        """(status, headers, body) of one POST, read within `timeout` seconds in all; _Transient for what is worth
        another attempt, QueryTimeout past the deadline, QueryError for the rest."""
        deadline = time.monotonic() + timeout

        def left() -> float:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("deadline passed")
            return remaining

        kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        connection = kind(self._host, self._port, timeout=timeout)
        response = None
        try:
            connection.request("POST", self._path, body=body, headers={
                "Content-Type": "application/x-www-form-urlencoded; charset=utf-8", "Accept": RESULTS_JSON,
                "User-Agent": "paperzoo-kbqa", **self.headers})
            sock = connection.sock  # kept: for a `Connection: close` answer, getresponse() lets go of it
            sock.settimeout(left())
            response = connection.getresponse()
            chunks = []
            while not response.isclosed():
                sock.settimeout(left())
                chunk = response.read1(1 << 16)  # one socket read at most, so the deadline holds for the whole body
                if not chunk:
                    break
                chunks.append(chunk)
            if response.length:  # the server closed before the Content-Length it announced
                raise http.client.IncompleteRead(b"".join(chunks), response.length)
            return response.status, response.headers, b"".join(chunks)
        except socket.timeout:  # TimeoutError: connecting, waiting or reading past the deadline
            raise QueryTimeout(f"the SPARQL endpoint {self.url} did not answer within the time limit of {timeout:g} s; "
                               f"the connection was closed: {text[:120]!r}") from None
        except ssl.SSLError as err:  # a certificate or TLS failure is the same on the next attempt
            raise QueryError(f"TLS failure talking to the SPARQL endpoint {self.url}: {err}") from None
        except socket.gaierror as err:
            raise _Transient(f"host {self._host!r} not resolved ({err.strerror or err})") from None
        except http.client.IncompleteRead as err:
            raise _Transient(f"the answer broke off after {len(err.partial)} bytes") from None
        except (ConnectionError, http.client.HTTPException, OSError) as err:
            raise _Transient(f"{type(err).__name__}: {err}") from None
        finally:
            if response is not None:
                response.close()
            connection.close()

    def _parse(self, status: int, headers, payload: bytes, text: str, timeout: float, row_limit: int) -> Result:
        message = payload.decode("utf-8", "replace")
        if status == 206 or headers.get("X-SQL-State"):
            raise QueryTimeout(f"the SPARQL endpoint {self.url} cut its answer at its own limit (HTTP {status}, "
                               f"{_trimmed(headers.get('X-SQL-State', '') + ' ' + headers.get('X-SQL-Message', ''))})"
                               f": {text[:120]!r}")
        if status != 200:
            what = "rejected the query" if 400 <= status < 500 else "failed"
            error = QueryTimeout if status >= 500 and _SERVER_TIMEOUT.search(message) else QueryError
            raise error(f"the SPARQL endpoint {self.url} {what} (HTTP {status}): {_trimmed(message)} "
                        f"in query {text[:200]!r}")
        try:
            data = json.loads(message)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except ValueError:
            tail = _trimmed(message[-MESSAGE_CHARS:])
            error = QueryTimeout if _SERVER_TIMEOUT.search(tail) else QueryError
            raise error(f"the SPARQL endpoint {self.url} sent an answer that is not SPARQL JSON results "
                        f"(Content-Type {headers.get('Content-Type')!r}), ending: {tail!r}") from None
        if "boolean" in data:
            if not isinstance(data["boolean"], bool):
                raise QueryError(f"the SPARQL endpoint {self.url} sent boolean={data['boolean']!r}")
            return Result(boolean=data["boolean"])
        try:
            variables = list(data["head"]["vars"])
            bindings = data["results"]["bindings"]
        except (KeyError, TypeError):
            raise QueryError(f"the SPARQL endpoint {self.url} sent JSON without head.vars and results.bindings: "
                             f"{_trimmed(message, 200)!r}") from None
        if len(bindings) > row_limit:
            raise RowLimitExceeded(f"the query returned more than row_limit={row_limit} rows ({len(bindings)}): "
                                   f"{text[:120]!r}")
        return Result(variables=variables, rows=[tuple(self._value(b.get(v)) for v in variables) for b in bindings])

    @staticmethod
    def _value(term):
        if term is None:
            return None
        return f"_:{term['value']}" if term.get("type") == "bnode" else term["value"]

    def __repr__(self) -> str:
        return f"SparqlEndpointBackend({self.url!r})"


OXIGRAPH_INSTALL = "pip install oxigraph==0.5.13"


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def oxigraph_binary():
    """The `oxigraph` server binary of the oxigraph wheel: beside this Python, else on PATH; FileNotFoundError saying
    how to install it otherwise."""
    import shutil
    import sys
    from pathlib import Path

    beside = Path(sys.executable).parent / "oxigraph"
    if beside.is_file():
        return beside
    found = shutil.which("oxigraph")
    if found:
        return Path(found)
    raise FileNotFoundError(f"the oxigraph server binary is not installed (looked for {beside} and on PATH); install "
                            f"it with: {OXIGRAPH_INSTALL}")


@contextlib.contextmanager
def oxigraph_server(kb, folder=None, timeout_s: float = 2.0, startup_s: float = 30.0):
    """A local SPARQL endpoint holding `kb` (a KnowledgeBase): `oxigraph load` into a store folder, then `oxigraph
    serve` on a free loopback port with its own query time limit (`--timeout-s`); yields the query URL once a query
    answers, and stops the server on exit. `folder`: where the store goes (default: a temporary folder)."""
    import subprocess
    import tempfile
    from pathlib import Path

    binary = oxigraph_binary()
    with tempfile.TemporaryDirectory(prefix="oxigraph-") as tmp:
        root = Path(folder or tmp)
        root.mkdir(parents=True, exist_ok=True)
        data, store, log_path = root / "data.nt", root / "store", root / "server.log"
        data.write_text(kb.to_ntriples(), encoding="utf-8")
        loaded = subprocess.run([str(binary), "load", "--location", str(store), "--file", str(data)],
                                capture_output=True, text=True, timeout=600)
        if loaded.returncode != 0:
            raise QueryError(f"`oxigraph load` failed (exit code {loaded.returncode}): {loaded.stderr.strip()}")
        port = free_port()
        url = f"http://127.0.0.1:{port}/query"
        with log_path.open("wb") as log:
            server = subprocess.Popen([str(binary), "serve", "--location", str(store), "--bind", f"127.0.0.1:{port}",
                                       "--timeout-s", f"{timeout_s:g}"],
                                      stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            probe = SparqlEndpointBackend(url, timeout=1.0, retries=0)
            deadline = time.monotonic() + startup_s
            while not probe.ping(timeout=0.5):
                if server.poll() is not None or time.monotonic() > deadline:
                    state = (f"ended (exit code {server.returncode})" if server.poll() is not None
                             else f"did not answer within {startup_s:g} s")
                    raise QueryError(f"the oxigraph server at {url} {state}: "
                                     f"{log_path.read_text(errors='replace').strip()[-500:]}")
                time.sleep(0.05)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


__all__ = ["EndpointUnavailable", "OXIGRAPH_INSTALL", "SparqlEndpointBackend", "free_port", "oxigraph_binary",
           "oxigraph_server"]
