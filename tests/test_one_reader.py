"""One reader (issue 9): every format is parsed and checked once, and every sink (the triples of
``itkg.load``, an Oxigraph store, the rule engine's index, an rdflib graph) sees the same checked
triples under the same node names. The drift cases of the three former loaders are here too: a
triple term under a predicate the index does not keep, ``owl:imports``, schema statements and
ill-typed values counted alike."""

from __future__ import annotations

import json
from pathlib import Path

import pyoxigraph as ox
import pytest
import rdflib

import itkg
from itkg.engine import PatientIndex
from itkg.errors import InputError, UnsafeInputError
from itkg.loading import load, load_store, to_oxigraph_triple
from itkg.parallel import eligibility_rows
from itkg.streaming import build_index, plan

ROOT = Path(__file__).resolve().parent.parent
FHIR = ROOT / "examples" / "fhir-bulk"
ITKG = "https://w3id.org/itkg/"

#: Labelled and unlabelled blank nodes, a collection, an IRI patient, a schema statement and an
#: ill-typed value: everything the reader names, keeps, sets aside or counts.
TURTLE = """@prefix itkg: <https://w3id.org/itkg/> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
_:p1 a itkg:Patient ;
  itkg:hasCondition _:c1 ;
  itkg:receivedTreatment [ a itkg:OralOpioidTherapy ; itkg:hasOutcome itkg:SevereSideEffects ] ;
  itkg:hasConsent [ a itkg:InformedConsent ; itkg:consentStatus itkg:ConsentGranted ;
                    itkg:coversTherapy itkg:IntrathecalTherapy ; itkg:consentDate "2026-02-30"^^xsd:date ] ;
  <urn:ex:notes> ( "a" [ <urn:ex:x> 1 ] ) .
_:c1 a itkg:CancerPain .
<https://example.org/q> a itkg:Patient ; itkg:hasCondition [ a itkg:FailedBackSurgerySyndrome ] .
itkg:IntrathecalAnalgesicTherapy rdfs:subClassOf itkg:IntrathecalBaclofenTherapy .
"""


def _formats(folder: Path) -> dict[str, Path]:
    """The same patients in every RDF format (written once: each file is its own fixed input)."""
    source = folder / "p.ttl"
    source.write_text(TURTLE, encoding="utf-8")
    graph = rdflib.Graph().parse(source)
    files = {"turtle": source}
    for name, fmt, suffix in [("ntriples", "nt", ".nt"), ("jsonld", "json-ld", ".jsonld"), ("rdfxml", "xml", ".rdf")]:
        files[name] = folder / f"p{suffix}"
        graph.serialize(files[name], format=fmt, encoding="utf-8")
    return files


@pytest.fixture(scope="module")
def formats(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _formats(tmp_path_factory.mktemp("formats"))


def _terms(triples: object) -> set[tuple[str, str, str]]:
    return {(str(t.subject), str(t.predicate), str(t.object)) for t in triples}  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["turtle", "ntriples", "jsonld", "rdfxml", "fhir"])
def test_every_sink_sees_the_same_triples_with_the_same_names(formats: dict[str, Path], name: str) -> None:
    path = FHIR if name == "fhir" else formats[name]
    data = load(path)
    assert data.triples and data.sources[0].format == name
    store = load_store(path)
    assert _terms(store.iter_triples()) == _terms(data.triples)  # the same names, not just isomorphic
    assert store.sources == data.sources
    graph_terms = {tuple(str(to_oxigraph_triple(t)).split(" ", 2)) for t in data.graph()}
    assert len(graph_terms) == len(_terms(data.triples))
    assert _terms(to_oxigraph_triple(t) for t in data.graph()) == _terms(data.triples)
    index, sources = build_index([path], checksums=True)
    assert index.nodes == PatientIndex.from_triples(data.triples).nodes
    assert sources == data.sources
    assert load(path).triples == data.triples  # a second run: the same names, in the same order


def test_names_are_the_labels_as_written_and_numbers_for_unlabelled_nodes(formats: dict[str, Path]) -> None:
    data = load(formats["turtle"])
    blank = {t.subject.value for t in data.triples if isinstance(t.subject, ox.BlankNode)}
    assert {"p1", "c1"} <= blank
    assert blank - {"p1", "c1"} == {f"_{k}" for k in range(1, len(blank) - 1)}
    source = data.sources[0]
    assert (source.schema_set_aside, source.ill_typed) == (1, 1)
    rows = itkg.eligibility(formats["turtle"])
    assert {r.patient for r in rows} == {"_:p1", "https://example.org/q"}


def test_a_label_that_looks_like_an_unlabelled_nodes_name_keeps_its_own(tmp_path: Path) -> None:
    path = tmp_path / "u.ttl"
    path.write_text(f"_:_1 <{ITKG}hasCondition> [ a <{ITKG}CancerPain> ] .\n", encoding="utf-8")
    names = {t.subject.value for t in load(path).triples}
    assert names == {"__1", "_1"}  # the written label gets one more underscore: never the same node


def test_several_files_name_each_files_nodes_apart(formats: dict[str, Path]) -> None:
    data = load([formats["turtle"], formats["ntriples"]])
    blank = {t.subject.value for t in data.triples if isinstance(t.subject, ox.BlankNode)}
    assert "f1-p1" in blank and all(b.startswith(("f1-", "f2-")) for b in blank)
    assert _terms(load_store([formats["turtle"], formats["ntriples"]]).iter_triples()) == _terms(data.triples)


def test_the_list_and_the_store_rename_exactly_the_nodes_whose_name_is_not_their_label(tmp_path: Path) -> None:
    """The sinks that keep pyoxigraph terms keep a parsed node as it is when its name is its label
    and rebuild only renamed ones (issue 8, speed): a label starting with ``_`` and every node of a
    second file are renamed, in the list and the store alike, and a label used twice stays one node."""
    one, two = tmp_path / "one.nt", tmp_path / "two.nt"
    a = "<http://www.w3.org/1999/02/22-rdf-syntax-ns#type>"
    one.write_text(f"_:b1 <{ITKG}hasCondition> _:_b2 .\n_:_b2 {a} <{ITKG}CancerPain> .\n"
                   f"_:b1 {a} <{ITKG}Patient> .\n", encoding="utf-8")
    two.write_text(f"_:b1 {a} <{ITKG}Patient> .\n_:b1 <{ITKG}hasCondition> _:b1 .\n", encoding="utf-8")
    alone = load(one)
    assert {t.subject.value for t in alone.triples} == {"b1", "__b2"}
    assert _terms(load_store(one).iter_triples()) == _terms(alone.triples)
    both = load([one, two])
    assert {t.subject.value for t in both.triples} == {"f1-b1", "f1-__b2", "f2-b1"}
    assert {t.object.value for t in both.triples if isinstance(t.object, ox.BlankNode)} == {"f1-__b2", "f2-b1"}
    assert _terms(load_store([one, two]).iter_triples()) == _terms(both.triples)


def test_names_do_not_depend_on_how_many_processes_read_a_file(tmp_path: Path) -> None:
    """A Turtle file cut for two workers numbers its unlabelled nodes as one process does."""
    body = "".join(f"<https://example.org/p{i}> a <{ITKG}Patient> ;\n"
                   f"  <{ITKG}hasCondition> [ a <{ITKG}CancerPain> ] ;\n"
                   f"  <{ITKG}receivedTreatment> [ a <{ITKG}OralOpioidTherapy> ; "
                   f"<{ITKG}hasOutcome> <{ITKG}SevereSideEffects> ] .\n\n" for i in range(400))
    path = tmp_path / "many.ttl"
    path.write_text(body, encoding="utf-8")
    tiny = path.stat().st_size // 4
    assert len(plan([path], parts=2, min_piece_bytes=tiny)) == 2
    cut, _ = eligibility_rows([path], workers=2, min_piece_bytes=tiny)
    whole, _ = eligibility_rows([path], workers=1)
    assert [(r, r.evidence, r.prerequisites) for r in cut] == [(r, r.evidence, r.prerequisites) for r in whole]
    assert whole == sorted(itkg.eligibility(load(path)))
    assert any("_:_" in e for r in whole for e in r.evidence)


# -- the drift cases: one refusal, one message, whichever sink -------------------------------------

DRIFT = {
    # a triple term under a predicate the index does not keep (refused by one loader, not another)
    "triple-term": (f"<https://example.org/p> <{ITKG}hasCondition> _:c .\n"
                    "<https://example.org/p> <urn:ex:said> <<( <urn:a> <urn:b> <urn:c> )>> .\n", InputError),
    "imports": ("<urn:ex:o> <http://www.w3.org/2002/07/owl#imports> <http://127.0.0.1:9/o> .\n", UnsafeInputError),
}


@pytest.mark.parametrize("case", sorted(DRIFT))
def test_every_sink_refuses_alike(tmp_path: Path, case: str) -> None:
    text, error = DRIFT[case]
    path = tmp_path / "d.nt"
    path.write_text(text, encoding="utf-8")
    messages = set()
    for read in (load, load_store, lambda p: build_index([p]), lambda p: eligibility_rows([p], workers=1)):
        with pytest.raises(error) as caught:
            read(path)
        messages.add(str(caught.value))
    assert len(messages) == 1


def test_set_aside_counts_are_the_same_in_every_sink(tmp_path: Path) -> None:
    path = tmp_path / "s.nt"
    path.write_text(f'<https://example.org/p> <{ITKG}hasCondition> _:c .\n'
                    f'_:c <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> <{ITKG}CancerPain> .\n'
                    f'<{ITKG}X> <http://www.w3.org/2000/01/rdf-schema#subClassOf> <{ITKG}Y> .\n'
                    f'_:c <urn:ex:d> "2026-02-30"^^<http://www.w3.org/2001/XMLSchema#date> .\n', encoding="utf-8")
    expected = load(path).sources
    assert (expected[0].schema_set_aside, expected[0].ill_typed, expected[0].ill_typed_lines) == (1, 1, (4,))
    assert load_store(path).sources == expected
    assert build_index([path], checksums=True)[1] == expected
    assert eligibility_rows([path], workers=1, checksums=True)[1] == expected
    assert json.dumps([s.__dict__ for s in expected])  # plain data
