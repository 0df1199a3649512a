"""Loading patient files straight into a pyoxigraph store (``itkg.loading.load_store``), the
Oxigraph SPARQL path: the same triples, the same sources and the same refusals, with the same
messages, as :func:`itkg.load`, without keeping the triples as Python objects."""

from __future__ import annotations

import os
from pathlib import Path

import pyoxigraph as ox
import pytest
import rdflib
import rdflib.compare

import itkg
from itkg import loading, sparql
from itkg.errors import InputError, QueryError
from itkg.loading import PatientStore, load, load_store, to_rdflib
from itkg.resources import query_path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "patients.ttl"
RULES = ROOT / "tests" / "data" / "rules.ttl"

PATIENT = ("@prefix itkg: <https://w3id.org/itkg/> .\n"
           "@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .\n"
           "<https://example.org/p> itkg:hasCondition _:c .\n"
           "_:c a itkg:CancerPain .\n")
IMPORTS = "<urn:ex:o> <http://www.w3.org/2002/07/owl#imports> <http://127.0.0.1:9/o> .\n"
ILL_TYPED = ('<https://example.org/p> itkg:consentDate "2026-13-45"^^xsd:date .\n'
             '<https://example.org/p> itkg:hivStatus "maybe"^^xsd:boolean .\n')
TRIPLE_TERM = "<https://example.org/p> <urn:ex:said> <<( <urn:a> <urn:b> <urn:c> )>> .\n"
SYNTAX_ERROR = "<https://example.org/p> itkg:hasCondition .\n"


@pytest.fixture(params=[2, loading._STREAM_BATCH], ids=["tiny-batches", "default-batches"])
def batch(request, monkeypatch) -> int:
    """Run each test with the default batch size and with batches of two triples, so that a
    problem in a later batch (after good ones went into the store) is covered too."""
    monkeypatch.setattr(loading, "_STREAM_BATCH", request.param)
    return request.param


def _graph(data: PatientStore) -> rdflib.Graph:
    graph = rdflib.Graph()
    for t in data.iter_triples():
        graph.add((to_rdflib(t.subject), to_rdflib(t.predicate), to_rdflib(t.object)))
    return graph


@pytest.fixture(scope="module")
def formats(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("formats")
    graph = rdflib.Graph().parse(EXAMPLES)
    files = [EXAMPLES]
    for fmt, suffix in [("nt", ".nt"), ("json-ld", ".jsonld"), ("xml", ".rdf")]:
        path = folder / f"patients{suffix}"
        graph.serialize(path, format=fmt, encoding="utf-8")
        files.append(path)
    return files


def test_store_holds_what_load_holds_in_every_format(formats, batch) -> None:
    for path in formats:
        expected, data = load(path), load_store(path)
        assert rdflib.compare.isomorphic(_graph(data), expected.graph()), path
        assert data.sources == expected.sources
        assert len(data) == len(expected)


def test_equal_blank_node_labels_in_two_files_stay_two_nodes(tmp_path, batch) -> None:
    first, second = tmp_path / "a.ttl", tmp_path / "b.ttl"
    first.write_text(PATIENT)
    second.write_text(PATIENT.replace("example.org/p", "example.org/q"))
    data = load_store([first, second])
    assert len({t.object for t in data.iter_triples() if isinstance(t.object, ox.BlankNode)}) == 2
    assert rdflib.compare.isomorphic(_graph(data), load([first, second]).graph())


@pytest.mark.parametrize("text", [
    pytest.param(PATIENT + IMPORTS, id="owl-imports"),
    pytest.param(PATIENT + TRIPLE_TERM, id="triple-term"),
    pytest.param(PATIENT + ILL_TYPED, id="ill-typed"),
    pytest.param(PATIENT + ILL_TYPED + IMPORTS, id="imports-reported-before-ill-typed"),
    pytest.param(PATIENT + IMPORTS + PATIENT * 3 + SYNTAX_ERROR, id="syntax-error-after-imports"),
    pytest.param(PATIENT + ILL_TYPED + PATIENT * 3 + SYNTAX_ERROR, id="syntax-error-after-ill-typed"),
])
def test_store_refuses_what_load_refuses_with_the_same_message(tmp_path, batch, text: str) -> None:
    path = tmp_path / "bad.ttl"
    path.write_text(text)
    with pytest.raises(InputError) as expected:
        load(path, strict=True)
    with pytest.raises(InputError) as got:
        load_store(path, strict=True)
    assert type(got.value) is type(expected.value)
    assert str(got.value) == str(expected.value)


@pytest.mark.parametrize("name, text", [
    ("dtd.rdf", '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY e "x">]><r/>'),
    ("graphs.jsonld", '{"@id": "urn:g", "@graph": [{"@id": "urn:s", "urn:p": "o"}]}'),
    ("big.ttl", PATIENT * 100),
])
def test_gates_before_the_parser_apply_to_the_store_too(tmp_path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError) as expected:
        load(path, max_bytes=1000)
    with pytest.raises(InputError) as got:
        load_store(path, max_bytes=1000)
    assert (type(got.value), str(got.value)) == (type(expected.value), str(expected.value))


def test_ill_typed_literals_are_kept_as_written_when_not_strict(tmp_path, batch) -> None:
    path = tmp_path / "loose.ttl"
    path.write_text(PATIENT + ILL_TYPED)
    data = load_store(path, strict_literals=False)
    assert {t.object.value for t in data.iter_triples() if isinstance(t.object, ox.Literal)} == \
        {"2026-13-45", "maybe"}


def test_a_store_is_queried_with_the_ontology_it_was_loaded_with() -> None:
    data = sparql.load_for_query(EXAMPLES)
    count = "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }"
    with pytest.raises(QueryError, match="with the ontology"):
        sparql.select(count, data, with_ontology=False)
    bare = sparql.load_for_query(EXAMPLES, with_ontology=False)
    assert int(sparql.select(count, bare, with_ontology=False).rows[0]["n"]) == len(bare.store)
    for engine in sparql.ENGINES:  # the same answer as from the triples in memory
        assert sparql.select(count, data, engine=engine) == sparql.select(count, load(EXAMPLES), engine=engine)


def test_api_eligibility_with_oxigraph_loads_files_only_into_the_store(monkeypatch) -> None:
    expected = itkg.eligibility(RULES)

    def refuse(*args, **kwargs):
        raise AssertionError("the oxigraph path built a PatientData (a Python copy of the data)")

    monkeypatch.setattr(loading.PatientData, "__init__", refuse)
    got = itkg.eligibility(RULES, engine="oxigraph")
    assert [(r.patient, r.therapy, r.indication, r.status, r.unmet) for r in got] == \
        [(r.patient, r.therapy, r.indication, r.status, r.unmet) for r in expected]
    with pytest.raises(QueryError):
        itkg.eligibility(sparql.load_for_query(RULES), engine="native")


def test_with_a_deadline_the_files_are_loaded_only_in_the_query_process(monkeypatch, tmp_path) -> None:
    """A store loaded in the parent would be copied, page by page, into the forked query process
    as Oxigraph reads it; the files must be loaded in that process instead."""
    record = tmp_path / "loaded-in"
    real = sparql.load_for_query

    def recording(*args, **kwargs):
        record.write_text(str(os.getpid()))
        return real(*args, **kwargs)

    monkeypatch.setattr(sparql, "load_for_query", recording)
    text = query_path("eligible-therapies").read_text(encoding="utf-8")
    got = sparql.select_files(text, [RULES], timeout=120)
    assert int(record.read_text()) != os.getpid()
    assert got == sparql.select(text, load(RULES), engine="oxigraph")


@pytest.mark.parametrize("engine", sparql.ENGINES)
@pytest.mark.parametrize("timeout", [None, 120])
def test_input_errors_reach_the_caller_unchanged_from_the_query_process(tmp_path, engine, timeout) -> None:
    path = tmp_path / "bad.ttl"
    path.write_text(PATIENT + IMPORTS + PATIENT + SYNTAX_ERROR)
    with pytest.raises(InputError) as expected:
        load(path)
    with pytest.raises(InputError) as got:
        sparql.select_files("SELECT * WHERE { ?s ?p ?o }", path, engine=engine, timeout=timeout)
    assert (type(got.value), str(got.value), got.value.line, got.value.column) == \
        (type(expected.value), str(expected.value), expected.value.line, expected.value.column)


_QUERY_AFTER_A_DISK_STORE = """
import sys, pyoxigraph as ox
from itkg import sparql
ox.Store(sys.argv[1]).flush()  # this process has opened an on-disk store (RocksDB's threads run)
print(sparql.select_files("SELECT * WHERE { ?s ?p ?o }", sys.argv[2], engine="oxigraph", timeout=120).rows)
"""


def test_a_query_with_a_deadline_after_an_on_disk_store_finishes(tmp_path: Path) -> None:
    """Regression: a process that had opened an on-disk Oxigraph store forked the query child,
    whose own on-disk store then waited forever for RocksDB's threads (not copied by fork)."""
    import subprocess
    import sys
    data = tmp_path / "one.ttl"
    data.write_text("<urn:a> <urn:b> <urn:c> .\n", encoding="utf-8")
    try:
        done = subprocess.run([sys.executable, "-c", _QUERY_AFTER_A_DISK_STORE, str(tmp_path / "db"), str(data)],
                              capture_output=True, text=True, timeout=30)  # a hang guard: it takes ~2 s
    except subprocess.TimeoutExpired:
        pytest.fail("the query child hung")
    assert done.returncode == 0, done.stderr
