"""The worker process of OxigraphBackend: loads the store, then answers queries read from stdin, one framed pickle
each, until stdin closes. Run as `python -m paperzoo.kbqa._oxigraph_worker`; never imported by the library."""

from __future__ import annotations

import pickle
import struct
import sys


def _term(term):
    if term is None:
        return None
    return term.value if not type(term).__name__ == "BlankNode" else f"_:{term.value}"


def _read(stream):
    header = stream.read(8)
    if len(header) < 8:
        return None
    return pickle.loads(stream.read(struct.unpack("<Q", header)[0]))


def _write(stream, message):
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _open(source):
    import pyoxigraph as ox

    kind, value = source
    if kind == "location":
        return ox.Store.read_only(value)
    store = ox.Store()
    if kind == "ntriples":
        store.bulk_load(value.encode("utf-8"), format=ox.RdfFormat.N_TRIPLES)
    else:
        for path, fmt in value:
            store.bulk_load(path=path, format=getattr(ox.RdfFormat, fmt))
    return store


def _answer(store, query, prefixes, row_limit):
    import pyoxigraph as ox

    result = store.query(query, prefixes=prefixes)
    if isinstance(result, ox.QueryBoolean):
        return "boolean", bool(result)
    if not isinstance(result, ox.QuerySolutions):
        return "error", "only SELECT and ASK queries run"
    variables = [v.value for v in result.variables]
    rows = []
    for solution in result:  # lazily: stop reading as soon as the row limit is passed
        if len(rows) == row_limit:
            return "too_many_rows", None
        rows.append(tuple(_term(solution[v]) for v in variables))
    return "rows", (variables, rows)


def main() -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    try:
        store = _open(_read(stdin))
        _write(stdout, ("ready", len(store)))
    except Exception as err:  # reported to the parent, which raises it with the source named
        _write(stdout, ("error", f"{type(err).__name__}: {err}"))
        return
    while (message := _read(stdin)) is not None:
        query, prefixes, row_limit = message
        try:
            _write(stdout, _answer(store, query, prefixes, row_limit))
        except Exception as err:  # a syntax or evaluation error belongs to this query only
            _write(stdout, ("error", f"{type(err).__name__}: {err}"))


if __name__ == "__main__":
    main()
