"""Fixtures of the KBQA backend tests: UMLS in the embedded store, and UMLS behind a real SPARQL endpoint (the
`oxigraph` server binary of the oxigraph==0.5.13 wheel, started once per test session on a free loopback port)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from paperzoo.kbqa.backends import OxigraphBackend
from paperzoo.kbqa.endpoint import SparqlEndpointBackend
from paperzoo.kbqa.kb import load_kb

OXIGRAPH_INSTALL = "pip install oxigraph==0.5.13"
SERVER_TIMEOUT_S = 2  # the server's own limit (`serve --timeout-s`): it stops the work of a query the client left
STARTUP_S = 30


def oxigraph_binary() -> Path:
    """The `oxigraph` server binary of the oxigraph wheel: next to the venv's python, else on PATH."""
    beside = Path(sys.executable).parent / "oxigraph"
    if beside.is_file():
        return beside
    found = shutil.which("oxigraph")
    if found:
        return Path(found)
    pytest.fail(f"the oxigraph server binary is not installed (looked for {beside} and on PATH); install it with: "
                f"{OXIGRAPH_INSTALL}", pytrace=False)


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def umls_kb():
    return load_kb("umls")


@pytest.fixture(scope="session")
def umls_embedded(umls_kb):
    backend = OxigraphBackend.from_kb(umls_kb)
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def oxigraph_server(tmp_path_factory, umls_kb):
    """The query URL (`http://127.0.0.1:PORT/query`) of an Oxigraph server holding UMLS, ready to answer."""
    binary = oxigraph_binary()
    folder = tmp_path_factory.mktemp("oxigraph")
    data, store, log_path = folder / "data.nt", folder / "store", folder / "server.log"
    data.write_text(umls_kb.to_ntriples(), encoding="utf-8")
    loaded = subprocess.run([str(binary), "load", "--location", str(store), "--file", str(data)],
                            capture_output=True, text=True, timeout=120)
    if loaded.returncode != 0:
        pytest.fail(f"`oxigraph load` failed (exit code {loaded.returncode}): {loaded.stderr.strip()}", pytrace=False)
    port = free_port()
    url = f"http://127.0.0.1:{port}/query"
    with log_path.open("wb") as log:
        server = subprocess.Popen([str(binary), "serve", "--location", str(store), "--bind", f"127.0.0.1:{port}",
                                   "--timeout-s", str(SERVER_TIMEOUT_S)],
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        probe = SparqlEndpointBackend(url, timeout=1.0, retries=0)
        deadline = time.monotonic() + STARTUP_S
        while not probe.ping(timeout=0.5):
            if server.poll() is not None:
                pytest.fail(f"the oxigraph server ended (exit code {server.returncode}) before answering a query: "
                            f"{log_path.read_text(errors='replace').strip()}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"the oxigraph server did not answer a query at {url} within {STARTUP_S} s: "
                            f"{log_path.read_text(errors='replace').strip()}", pytrace=False)
            time.sleep(0.05)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
