"""The ontology mixed in once per process (:func:`itkg.validation._mixin`) gives what pySHACL's
own ``ont_graph`` gives.

itkg's pySHACL engine no longer passes the ontology as ``ont_graph`` for every batch: it adds the
triples pySHACL's inoculation would add, made once. Each case here validates the same graph both
ways, as contract §4 says (``pyshacl.validate(data, shacl_graph=..., ont_graph=ontology,
inference="none")``) and through ``itkg.validation._pyshacl``, and compares the data graph that
was validated (triples, blank nodes aside, and prefixes) and the report (``conforms``, the results
as a multiset, and the report graph up to blank-node labels). The whole-graph differential tests
(``test_scale_validation.py``, ``test_engines_fuzz.py``) hold batched validation to plain pySHACL
as well.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyshacl
import pytest
import rdflib
from rdflib.compare import isomorphic
from rdflib.namespace import OWL, RDF, RDFS, SH

from itkg.knowledge import load_knowledge, ontology_graph
from itkg.validation import (_literal_message_substitution, _mixin, _pyshacl, _QueryCachingGraph, _result,
                             shapes_graph)

TESTS = Path(__file__).resolve().parent
#: Graphs with blank-node patients and records, a local therapy class, every record shape's
#: failures, both prerequisite shapes, and a whole corpus. The mix itself does not depend on the
#: data (the last test shows the one case that would); that itkg's pySHACL engine gives plain
#: ``ont_graph`` pySHACL's results on every one of the 22 shapes test graphs is held by
#: tests/test_engines_fuzz.py.
GRAPHS = [*(TESTS / "data" / "shapes" / f"{stem}.ttl" for stem in
            ("pt-both-missing", "pt-consent-coverage", "pt-local-subclass", "rec-consent", "rec-csf",
             "rec-treatment")),
          TESTS.parent / "examples" / "patients.ttl", TESTS / "data" / "rules.ttl"]
EXTENSION = TESTS / "data" / "extension-leptomeningeal.ttl"
EXTENDED_PATIENTS = TESTS / "data" / "extension-leptomeningeal-patients.ttl"


def _plain_triples(graph: rdflib.Graph) -> Counter[tuple[object, ...]]:
    """The triples of ``graph`` with every blank node as one placeholder (labels are fresh per run)."""
    def plain(term: object) -> object:
        return "_:" if isinstance(term, rdflib.BNode) else term
    return Counter(tuple(plain(term) for term in triple) for triple in graph)


def _results(report: rdflib.Graph) -> Counter[tuple[object, ...]]:
    found = (_result(report, node) for node in report.subjects(RDF.type, SH.ValidationResult))
    return Counter((r.focus if not r.focus.startswith("_:") else "_:", r.path, r.message, r.shape,
                    r.value if r.value is None or not r.value.startswith("_:") else "_:", r.severity)
                   for r in found)


def _both_ways(data: rdflib.Graph, shapes: rdflib.Graph,
               ontology: rdflib.Graph) -> tuple[rdflib.Graph, rdflib.Graph, rdflib.Graph, rdflib.Graph]:
    """``(graph, report)`` validated with ``ont_graph`` by pySHACL, then the same by ``_pyshacl``."""
    _literal_message_substitution()  # the message patch _pyshacl installs, for both runs alike
    # the graph class of itkg's batches (plain rdflib parses each SPARQL text per focus node, ten
    # times slower; test_scale_validation.py holds the two to the same reports)
    plain, premixed = _QueryCachingGraph(), _QueryCachingGraph()
    for triple in data:
        plain.add(triple)
        premixed.add(triple)
    report = pyshacl.validate(plain, shacl_graph=shapes, ont_graph=ontology, inference="none",
                              abort_on_first=False, allow_warnings=True, do_owl_imports=False,
                              inplace=True)[1]
    return plain, report, premixed, _pyshacl(premixed, shapes, ontology)


def assert_same(data: rdflib.Graph, shapes: rdflib.Graph, ontology: rdflib.Graph) -> Counter[tuple[object, ...]]:
    plain, report, premixed, premixed_report = _both_ways(data, shapes, ontology)
    assert _plain_triples(premixed) == _plain_triples(plain)
    assert set(premixed.namespaces()) == set(plain.namespaces())
    assert report.value(None, SH.conforms) == premixed_report.value(None, SH.conforms)
    assert _results(premixed_report) == _results(report)
    assert isomorphic(premixed_report, report)
    return _results(report)


@pytest.mark.parametrize("path", GRAPHS, ids=lambda path: path.stem)
def test_the_premixed_ontology_gives_pyshacls_own_mix_and_report(path: Path) -> None:
    assert _mixin(ontology_graph()) is not None  # the bundled ontology is mixed in once
    assert_same(rdflib.Graph().parse(path), shapes_graph(), ontology_graph())


def test_the_ontology_is_mixed_once_per_graph_and_with_a_sites_extension() -> None:
    bundled = ontology_graph()
    assert _mixin(bundled) is _mixin(bundled)
    knowledge = load_knowledge(extensions=[EXTENSION])
    extended = _mixin(knowledge.graph)
    assert extended is not None and extended is not _mixin(bundled)
    assert set(extended.triples) != set(_mixin(bundled).triples)  # type: ignore[union-attr]
    results = assert_same(rdflib.Graph().parse(EXTENDED_PATIENTS), shapes_graph(knowledge), knowledge.graph)
    assert results, "a case without results would not test much"


def test_an_ontology_whose_mix_depends_on_the_data_is_mixed_by_pyshacl() -> None:
    """pySHACL appends a named individual that is an RDF list to the list the data graph has at
    the same IRI (``rdflib.Collection`` at an IRI reads the target graph), so that mix depends on
    the data: such an ontology is left to pySHACL's ``ont_graph``, and the reports agree."""
    ex = rdflib.Namespace("https://example.org/mixin/")
    ontology = rdflib.Graph()
    ontology.add((ex.Kind, RDF.type, OWL.Class))
    ontology.add((ex.colours, RDF.type, OWL.NamedIndividual))
    ontology.add((ex.colours, RDF.first, rdflib.Literal("red")))
    ontology.add((ex.colours, RDF.rest, RDF.nil))
    assert _mixin(ontology) is None
    shapes = rdflib.Graph().parse(format="turtle", data=f"""
        @prefix sh: <{SH}> . @prefix ex: <{ex}> .
        ex:ListShape a sh:NodeShape ; sh:targetNode ex:colours ;
            sh:property [ sh:path <{RDF.first}> ; sh:maxCount 1 ] .""")
    data = rdflib.Graph()
    data.add((ex.colours, RDF.first, rdflib.Literal("blue")))
    data.add((ex.colours, RDF.rest, RDF.nil))
    data.add((ex.thing, RDFS.label, rdflib.Literal("thing")))
    assert_same(data, shapes, ontology)
    # mixed into an empty graph first, the list would have two first elements, not two elements
    from pyshacl.rdfutil.inoculate import inoculate
    alone, mixed = rdflib.Graph(), rdflib.Graph()
    inoculate(alone, ontology)
    mixed += data
    inoculate(mixed, ontology)
    assert _plain_triples(alone + data) != _plain_triples(mixed)
