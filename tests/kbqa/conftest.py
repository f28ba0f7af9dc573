"""Fixtures of the KBQA backend tests: UMLS in the embedded store, and UMLS behind a real SPARQL endpoint (the
`oxigraph` server binary of the oxigraph==0.5.13 wheel, started once per test session on a free loopback port)."""

from __future__ import annotations


import pytest

from paperzoo.kbqa.backends import OxigraphBackend
from paperzoo.kbqa.endpoint import oxigraph_server as oxigraph_server_of
from paperzoo.kbqa.kb import load_kb

SERVER_TIMEOUT_S = 2  # the server's own limit (`serve --timeout-s`): it stops the work of a query the client left


@pytest.fixture(scope="session")
def umls_kb():
    return load_kb("umls")


@pytest.fixture(scope="session")
def nations_kb():
    return load_kb("nations")


def _embedded(kb):
    backend = OxigraphBackend.from_kb(kb)
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def umls_embedded(umls_kb):
    yield from _embedded(umls_kb)


@pytest.fixture(scope="session")
def nations(nations_kb):
    """Nations in the embedded store."""
    yield from _embedded(nations_kb)


@pytest.fixture(scope="session")
def oxigraph_server(tmp_path_factory, umls_kb):
    """The query URL (`http://127.0.0.1:PORT/query`) of an Oxigraph server holding UMLS, ready to answer (a missing
    server binary fails, naming the package to install)."""
    try:
        with oxigraph_server_of(umls_kb, tmp_path_factory.mktemp("oxigraph"), timeout_s=SERVER_TIMEOUT_S) as url:
            yield url
    except FileNotFoundError as err:
        pytest.fail(str(err), pytrace=False)
