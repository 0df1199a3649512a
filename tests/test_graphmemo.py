"""What :func:`itkg.validate` makes once per process from the ontology and the shapes graph
(:mod:`itkg.graphmemo`: the fixed hubs, the ontology's canonical N-Triples, the pySHACL mix-in) is
served again only for the same unchanged graphs: a graph changed in place, or another graph, gets
its own value, and validation sees the change.
"""

from __future__ import annotations

import pickle

import pyoxigraph as ox
import pytest
import rdflib
from rdflib.namespace import OWL, RDF, RDFS, SH

from itkg import graphmemo, native_shacl, turbo, validation
from itkg.knowledge import ontology_graph
from itkg.loading import PatientData
from itkg.partition import fixed_hubs
from itkg.validation import _copy_memory, _mixin, _QueryCachingGraph, shapes_graph

EX = rdflib.Namespace("https://example.org/memo/")


def copy_of(graph: rdflib.Graph) -> rdflib.Graph:
    copied = rdflib.Graph()
    for prefix, namespace in graph.namespaces():
        copied.bind(prefix, namespace, override=True)
    for triple in graph:
        copied.add(triple)
    return copied


def test_unchanged_graphs_are_served_the_value_made_once() -> None:
    ontology, shapes = ontology_graph(), shapes_graph()
    assert fixed_hubs(ontology, shapes) is fixed_hubs(ontology, shapes)
    assert native_shacl.canonical_nt(ontology) is native_shacl.canonical_nt(ontology)
    assert _mixin(ontology) is _mixin(ontology)


def test_adding_a_triple_the_graph_holds_keeps_the_value() -> None:
    """pySHACL adds its system triples to the shapes graph on every call: that is no change."""
    ontology, shapes = copy_of(ontology_graph()), copy_of(shapes_graph())
    hubs = fixed_hubs(ontology, shapes)
    for triple in list(shapes)[:3]:
        shapes.add(triple)
    assert fixed_hubs(ontology, shapes) is hubs
    data = PatientData(triples=[ox.Triple(ox.NamedNode(str(EX.p)), ox.NamedNode(str(RDF.type)),
                                          ox.NamedNode(str(EX.Thing)))])
    judged(data, "pyshacl", shapes, ontology)  # adds the system triples once
    hubs = fixed_hubs(ontology, shapes)
    judged(data, "pyshacl", shapes, ontology)
    assert fixed_hubs(ontology, shapes) is hubs


def test_a_graph_changed_in_place_is_not_served_the_cached_value() -> None:
    ontology, shapes = copy_of(ontology_graph()), copy_of(shapes_graph())
    hubs, text, mixin = fixed_hubs(ontology, shapes), native_shacl.canonical_nt(ontology), _mixin(ontology)
    assert mixin is not None
    ontology.add((EX.Extra, RDFS.subClassOf, OWL.Thing))
    assert ox.NamedNode(str(EX.Extra)) in fixed_hubs(ontology, shapes) - hubs
    assert f"<{EX.Extra}>".encode() in native_shacl.canonical_nt(ontology)
    assert f"<{EX.Extra}>".encode() not in text
    changed = _mixin(ontology)
    assert changed is not None and (EX.Extra, RDFS.subClassOf, OWL.Thing) in changed.triples
    assert (EX.Extra, RDFS.subClassOf, OWL.Thing) not in mixin.triples

    ontology.remove((EX.Extra, RDFS.subClassOf, OWL.Thing))  # rdflib's Memory.remove sends no event
    assert ox.NamedNode(str(EX.Extra)) not in fixed_hubs(ontology, shapes)
    assert f"<{EX.Extra}>".encode() not in native_shacl.canonical_nt(ontology)

    shapes.add((EX.SomeShape, SH.targetNode, EX.Targeted))  # the shapes graph is part of the key
    assert ox.NamedNode(str(EX.Targeted)) in fixed_hubs(ontology, shapes)

    ontology.bind("memo", EX)  # a prefix is part of the mix-in
    rebound = _mixin(ontology)
    assert rebound is not None and ("memo", rdflib.URIRef(EX)) in rebound.namespaces


def test_another_graph_with_other_content_gets_its_own_value() -> None:
    ontology = ontology_graph()
    other = copy_of(ontology)
    other.add((EX.Other, RDF.type, OWL.Class))
    assert native_shacl.canonical_nt(other) != native_shacl.canonical_nt(ontology)
    assert f"<{EX.Other}>".encode() not in native_shacl.canonical_nt(ontology)


def judged(data: PatientData, engine: str, shapes: rdflib.Graph, ontology: rdflib.Graph) -> list[object]:
    """``data`` validated as :func:`itkg.validate` does, with these very graph objects."""
    numbering = validation._numbered(data, shapes)
    cut = validation._plan(numbering, 10**9, shapes, ontology)
    batches = validation.BACKENDS[engine]().judge(numbering, cut, workers=1, progress=None, shapes=shapes,
                                                  ontology=ontology, extended=True)
    return [r.to_dict() for r in validation._merged(batches).results]


@pytest.mark.parametrize("engine", ["pyshacl", "native", "turbo"])
def test_validation_sees_an_ontology_changed_in_place(engine: str) -> None:
    """A consent record of a site's own class is judged by the consent shapes once the ontology
    (changed in place, after a first validation) makes the class a kind of informed consent."""
    if engine == "turbo" and not turbo.available():
        pytest.skip("pyshacl-turbo is not installed")
    data = PatientData(triples=[ox.Triple(ox.NamedNode(str(EX.c)), ox.NamedNode(str(RDF.type)),
                                          ox.NamedNode(str(EX.LocalConsent)))])
    ontology, shapes = copy_of(ontology_graph()), copy_of(shapes_graph())
    before = judged(data, engine, shapes, ontology)
    ontology.add((EX.LocalConsent, RDFS.subClassOf, rdflib.URIRef("https://w3id.org/itkg/InformedConsent")))
    after = judged(data, engine, shapes, ontology)
    assert after != before and after, "the consent shapes judge the record once it is a consent"
    assert after == judged(data, engine, copy_of(shapes), copy_of(ontology))  # as a graph never seen


def test_graphs_asked_about_still_pickle() -> None:
    """pySHACL worker processes get the shapes graph (and a site's ontology) pickled: the change
    counter the memo subscribes to the store must pickle with it."""
    shapes = copy_of(shapes_graph())
    graphmemo.version(shapes)
    again = pickle.loads(pickle.dumps(shapes))
    assert set(again) == set(shapes)
    assert graphmemo.version(again) is not None


def test_graphs_in_other_stores_are_not_memoised() -> None:
    made = []

    def compute(graph: rdflib.Graph) -> int:
        made.append(graph)
        return len(made)

    memo: graphmemo.GraphMemo[int] = graphmemo.GraphMemo(compute)
    simple = rdflib.Graph(store="SimpleMemory")
    assert memo(simple) != memo(simple)
    plain = rdflib.Graph()
    assert memo(plain) == memo(plain)
    assert len(made) == 3


def test_the_premixed_batch_graph_holds_what_mixing_in_gives() -> None:
    """:meth:`_Mixin.graph` copies rdflib's ``Memory`` indexes; the graph must be the one
    ``into`` makes (triples, prefixes), and stay a working graph (adding, removing, reading)."""
    mixin = _mixin(ontology_graph())
    assert mixin is not None
    assert _copy_memory(mixin.template, _QueryCachingGraph()), "rdflib's Memory store is not the one this copies"
    copied, added = mixin.graph(), _QueryCachingGraph()
    mixin.into(added)
    assert set(copied) == set(added) and len(copied) == len(added) == len(set(mixin.triples))
    assert dict(copied.namespaces()) == dict(added.namespaces())
    triple = (EX.p, RDF.type, EX.Thing)
    copied.add(triple)
    assert triple in copied and triple not in mixin.template and len(copied) == len(added) + 1
    assert set(copied.subjects(RDF.type, EX.Thing)) == {EX.p}
    copied.remove(triple)
    assert set(copied) == set(added)
    some = next(iter(mixin.triples))
    copied.remove(some)
    assert some in mixin.template and some in added  # the copy shares no index with the template
