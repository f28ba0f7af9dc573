"""The hand-written KBQA question sets (benchmarks/data/kbqa/README.md): the few-shot seeds, the test set and the
unlabelled pool of UMLS and Nations. Each file is well-formed, the three files of a KB share no question and no gold
SPARQL, and every gold query runs in pyoxigraph against its KB with a usable answer (1 to 25 rows, or a count >= 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pyoxigraph as ox
import pytest

from paperzoo.kbqa.kb import load_kb

ROOT = Path(__file__).resolve().parents[2]
KBS = ("umls", "nations")
MAX_SEEDS, MIN_TEST, MIN_POOL, MAX_ANSWERS = 25, 100, 100, 25
# file kind -> (path under the repo root, the keys of a line, the key of its gold SPARQL, the id prefix or None)
KINDS = {
    "seeds": ("paperzoo/kbqa/seeds/{kb}.jsonl", {"question", "sparql"}, "sparql", None),
    "test": ("benchmarks/data/kbqa/{kb}/test.jsonl", {"id", "question", "sparql"}, "sparql", "{kb}-test-"),
    "pool": ("benchmarks/data/kbqa/{kb}/unlabelled.jsonl", {"id", "question", "gold_sparql"}, "gold_sparql",
             "{kb}-pool-"),
}


def read_rows(kb: str, kind: str) -> list[dict]:
    path = ROOT / KINDS[kind][0].format(kb=kb)
    assert path.is_file(), f"{path} is missing"
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        assert line.strip(), f"{path}:{number}: blank line"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            pytest.fail(f"{path}:{number}: not JSON ({error})")
        assert isinstance(row, dict), f"{path}:{number}: not a JSON object"
        rows.append(row)
    return rows


@pytest.fixture(scope="module", params=KBS)
def kb_data(request):
    """(KB name, its KB, a pyoxigraph store of it, {kind: rows})."""
    kb = load_kb(request.param)
    store = ox.Store()
    store.load(kb.to_ntriples().encode(), format=ox.RdfFormat.N_TRIPLES)
    return request.param, kb, store, {kind: read_rows(request.param, kind) for kind in KINDS}


def test_rows_have_the_required_keys(kb_data):
    name, _, _, files = kb_data
    for kind, rows in files.items():
        keys, sparql_key, _ = KINDS[kind][1], KINDS[kind][2], KINDS[kind][3]
        for number, row in enumerate(rows, start=1):
            assert set(row) == keys, f"{name} {kind} line {number}: keys {sorted(row)}, expected {sorted(keys)}"
            for key in keys:
                assert isinstance(row[key], str) and row[key].strip(), f"{name} {kind} line {number}: empty {key}"
            assert row[sparql_key] == " ".join(row[sparql_key].split()), \
                f"{name} {kind} line {number}: the SPARQL is not on one line with single spaces"


def test_ids_are_unique_and_prefixed(kb_data):
    name, _, _, files = kb_data
    seen = set()
    for kind in ("test", "pool"):
        prefix = KINDS[kind][3].format(kb=name)
        for row in files[kind]:
            assert row["id"].startswith(prefix), f"{name} {kind}: id {row['id']!r} does not start with {prefix!r}"
            assert row["id"] not in seen, f"{name}: id {row['id']!r} is used twice"
            seen.add(row["id"])


def test_sizes(kb_data):
    name, _, _, files = kb_data
    assert 1 <= len(files["seeds"]) <= MAX_SEEDS, f"{name}: {len(files['seeds'])} seeds"
    assert len(files["test"]) >= MIN_TEST, f"{name}: {len(files['test'])} test questions"
    assert len(files["pool"]) >= MIN_POOL, f"{name}: {len(files['pool'])} pool questions"


def test_no_question_or_query_is_shared(kb_data):
    name, _, _, files = kb_data
    questions, queries = {}, {}
    for kind, rows in files.items():
        sparql_key = KINDS[kind][2]
        for number, row in enumerate(rows, start=1):
            where = f"{kind} line {number}"
            question = " ".join(row["question"].lower().split())
            assert question not in questions, (f"{name}: question {row['question']!r} at {where} and "
                                               f"{questions[question]}")
            questions[question] = where
            sparql = row[sparql_key]
            assert sparql not in queries, f"{name}: SPARQL {sparql!r} at {where} and {queries[sparql]}"
            queries[sparql] = where


def test_every_gold_query_runs_with_a_usable_answer(kb_data):
    name, kb, store, files = kb_data
    for kind, rows in files.items():
        sparql_key = KINDS[kind][2]
        for number, row in enumerate(rows, start=1):
            sparql, where = row[sparql_key], f"{name} {kind} line {number}: {row[sparql_key]}"
            try:
                result = store.query(sparql, prefixes=kb.prefixes)
            except (SyntaxError, OSError, ValueError) as error:
                pytest.fail(f"{where}: does not run ({error})")
            if sparql.startswith("ASK"):
                assert isinstance(result, ox.QueryBoolean), where
                continue
            solutions = list(result)
            if "COUNT(" in sparql:
                assert len(solutions) == 1, f"{where}: a COUNT returned {len(solutions)} rows"
                assert int(solutions[0]["count"].value) >= 1, f"{where}: the count is 0"
            else:
                assert 1 <= len(solutions) <= MAX_ANSWERS, f"{where}: {len(solutions)} answers"
