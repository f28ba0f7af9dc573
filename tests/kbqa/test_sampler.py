"""Stage 1: programs, templates and step-wise grounding, checked against answers computed from the triples."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from paperzoo.kbqa import seeds_path
from paperzoo.kbqa.backends import QueryError
from paperzoo.kbqa.programs import ProgramFormat, normalize, split
from paperzoo.kbqa.sampler import STRUCTURAL_TEMPLATES, ProgramSampler, mask
from paperzoo.kbqa.system import read_pairs


def test_mask_names_each_entity_and_relation_in_order():
    t = mask("SELECT DISTINCT ?x WHERE { e:usa r:embassy ?y . ?y r:treaties ?x . FILTER(?x != e:usa) }")
    assert t.text == "SELECT DISTINCT ?x WHERE { ?ent0 ?rel0 ?y . ?y ?rel1 ?x . FILTER(?x != ?ent0) }"
    assert t.placeholders == ["?ent0", "?rel0", "?rel1"]
    assert mask("ASK { e:a r:p e:b . }").text == "ASK { ?ent0 ?rel0 ?ent1 . }"


def test_literal_variables_come_from_comparisons_and_ordering():
    t = mask("SELECT ?x WHERE { ?x r:population ?v . } ORDER BY DESC(?v) LIMIT 1")
    assert t.literal_variables == {"?v"}
    assert mask("SELECT DISTINCT ?x WHERE { ?x r:area ?v . FILTER(?v > 1000) }").literal_variables == {"?v"}
    assert mask("SELECT DISTINCT ?x WHERE { e:a r:p ?x . }").literal_variables == set()


def test_split_refuses_shapes_it_cannot_walk():
    parts = split("SELECT DISTINCT ?x WHERE { e:a r:p ?y . ?y r:q ?x . FILTER(?x != e:a) }")
    assert parts.patterns == [("e:a", "r:p", "?y"), ("?y", "r:q", "?x")]
    assert parts.filters == ["FILTER(?x != e:a)"]
    for bad in ("SELECT ?x WHERE { { ?x r:p e:a . } UNION { ?x r:q e:a . } }",
                "SELECT ?x WHERE { ?x r:p e:a ; r:q e:b . }"):
        with pytest.raises(ValueError, match="program"):
            split(bad)
    with pytest.raises(QueryError, match="refused"):
        split("DELETE WHERE { ?s ?p ?o . }")


def test_surface_form_round_trips_every_seed(nations):
    fmt = ProgramFormat(nations)
    for _, program in read_pairs(seeds_path("nations"), nations):
        surface = fmt.to_surface(program)
        assert "e:" not in surface and "r:" not in surface
        assert fmt.from_surface(surface) == normalize(program)
    assert fmt.to_surface("ASK { e:usa r:embassy e:uk . }") == "ASK { e[usa] r[embassy] e[uk] . }"
    with pytest.raises(QueryError, match="no entity labelled 'atlantis'"):
        fmt.from_surface("ASK { e[atlantis] r[embassy] e[uk] . }")


def test_sampled_programs_follow_their_templates_and_answer_as_the_triples_say(nations, nations_kb):
    seeds = [p for _, p in read_pairs(seeds_path("nations"))]
    sampler = ProgramSampler(nations, seeds, per_template=8, max_answers=25, seed=0)
    programs = sampler.sample(progress=False)
    assert len(programs) >= 4 * len(sampler.templates)
    assert len({p.program for p in programs}) == len(programs)  # de-duplicated
    relations = {r for _, r, _ in nations_kb.triples} | {r for _, r, _ in nations_kb.literals}
    e = nations_kb.entity_ns
    for p in programs:
        assert mask(p.program).text == sampler.templates[p.template].text
        for name in __import__("re").findall(r"r:([\w\-.]+)", p.program):
            assert name in relations  # never rdfs:label or another non-KB predicate
        assert p.answers == nations.answers(p.program) and 0 < len(p.answers) <= 25
    # the one-hop forward programs: answers recomputed from the triples themselves
    one_hop = [p for p in programs if sampler.templates[p.template].text
               == "SELECT DISTINCT ?x WHERE { ?ent0 ?rel0 ?x . }"]
    assert one_hop
    for p in one_hop:
        (h, r, _), = split(p.program).patterns
        expected = {e + t for hh, rr, t in nations_kb.triples if hh == h[2:] and rr == r[2:]}
        assert set(p.answers) == expected
    # the superlative templates only take relations to numbers
    ordered = [p for p in programs if "ORDER BY" in p.program]
    assert ordered and all({"r:area", "r:population"} & set(p.program.split()) for p in ordered)
    # yes/no programs come out both ways
    asks = Counter(p.answers[0] for p in programs if p.program.startswith("ASK"))
    assert asks["true"] > 0 and asks["false"] > 0


def test_values_are_reused_at_most_max_value_uses_times(nations):
    sampler = ProgramSampler(nations, ["SELECT DISTINCT ?x WHERE { e:usa r:embassy ?x . }"], per_template=30,
                             max_value_uses=2, seed=1)
    programs = sampler.sample(progress=False)
    topics = Counter(split(p.program).patterns[0][0] for p in programs)
    assert programs and max(topics.values()) <= 2


def test_same_seed_same_programs(nations):
    seeds = [p for _, p in read_pairs(seeds_path("nations"))][:6]
    a = [p.program for p in ProgramSampler(nations, seeds, per_template=5, seed=3).sample(progress=False)]
    b = [p.program for p in ProgramSampler(nations, seeds, per_template=5, seed=3).sample(progress=False)]
    assert a == b


def test_the_same_programs_from_the_embedded_store_and_the_endpoint(umls_embedded, oxigraph_server, umls_kb):
    from paperzoo.kbqa.endpoint import SparqlEndpointBackend

    seeds = [p for _, p in read_pairs(seeds_path("umls"))][:8]
    endpoint = SparqlEndpointBackend(oxigraph_server, prefixes=umls_kb.prefixes)
    embedded = ProgramSampler(umls_embedded, seeds, per_template=4, seed=5).sample(progress=False)
    remote = ProgramSampler(endpoint, seeds, per_template=4, seed=5).sample(progress=False)
    assert [p.program for p in embedded] == [p.program for p in remote] and embedded
    assert [set(p.answers) for p in embedded] == [set(p.answers) for p in remote]


def test_zero_shot_mode_grounds_the_structural_templates(nations):
    sampler = ProgramSampler(nations, None, per_template=5, seed=0)
    assert [t.text for t in sampler.templates] == list(STRUCTURAL_TEMPLATES)
    made = Counter(p.template for p in sampler.sample(progress=False))
    assert set(made) == set(range(len(STRUCTURAL_TEMPLATES)))


def test_bad_seeds_are_named(nations, tmp_path):
    with pytest.raises(ValueError, match="seed 1"):
        ProgramSampler(nations, ["ASK { e:usa r:embassy e:uk . }",
                                 "SELECT ?x WHERE { { ?x r:p e:a . } UNION { ?x r:q e:a . } }"])
    with pytest.raises(ValueError, match="names no entity or relation"):
        ProgramSampler(nations, ["SELECT ?x WHERE { ?x ?p ?o . }"])
    with pytest.raises(ValueError, match="per_template=0"):
        ProgramSampler(nations, None, per_template=0)
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"question": "ok?", "sparql": "ASK { e:usa r:embassy e:uk . }"}) + "\n"
                     + json.dumps({"question": "broken?", "sparql": "SELECT ?x WHERE { e:usa r:embassy "}) + "\n")
    with pytest.raises(ValueError, match=r"seeds.jsonl:2: the seed program does not run: SyntaxError"):
        read_pairs(seeds, nations)
    seeds.write_text("{not json}\n")
    with pytest.raises(ValueError, match=r"seeds.jsonl:1: not a JSON line"):
        read_pairs(seeds)
    seeds.write_text(json.dumps({"question": "", "sparql": "ASK {}"}) + "\n")
    with pytest.raises(ValueError, match=r"seeds.jsonl:1: 'question' must be a non-empty string"):
        read_pairs(seeds)


def test_packaged_seeds_are_few_shot(nations):
    for kb in ("umls", "nations"):
        assert len(read_pairs(seeds_path(kb))) <= 25
    with pytest.raises(ValueError, match="no packaged seeds"):
        seeds_path("freebase")
    assert Path(seeds_path("umls")).is_file()
