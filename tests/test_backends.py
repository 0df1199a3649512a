"""One back-end protocol per kind, one name set, and the same evidence whichever back-end decided.

Issue 9 ("back-ends implement one small protocol each, chosen by one name set, with identical
results and evidence") and issue 8 ("evidence text is the same whichever engine decided"): the
contract's §6 edge inputs (``tests/test_contract_edges.py``) go through the native rule engine,
the rdflib and Oxigraph back-ends and a real Oxigraph server, and every row - status, unmet,
evidence and each prerequisite's reason - must be byte-identical. Records are named by IRIs
(the inputs are skolemised) so that the server, which names blank nodes its own way, is held to
the same text too; a second test holds the local back-ends to it with blank nodes, on one load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyoxigraph as ox
import pytest
import rdflib
import _oxigraph_server
from test_contract_edges import CASES

import itkg
from itkg import backends, names, validation
from itkg.endpoint import SparqlEndpoint
from itkg.resources import ontology_path

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ("native", "rdflib", "oxigraph")


def _rows(rows: list[itkg.EligibilityResult]) -> list[str]:
    """Every row with everything it says, as text: status, unmet, evidence, each prerequisite."""
    return [json.dumps({**row.to_dict(), "prerequisites": [[p.code, p.state, p.reason, list(p.records)]
                                                           for p in row.prerequisites]})
            for row in rows]


@pytest.fixture(scope="module")
def edges(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every §6 edge case whose file any engine may see (schema statements are itkg's to set
    aside), one patient each, records named by IRIs."""
    from itkg import guards
    guards.install_library_defaults()  # rdflib keeps every literal as written ("Z" stays "Z")
    folder = tmp_path_factory.mktemp("backends")
    graph = rdflib.Graph()
    for case in CASES:
        graph.parse(data=case.text(), format="turtle")
    path = folder / "edges.nt"
    path.write_text(graph.skolemize().serialize(format="nt"), encoding="utf-8")
    return path


def test_every_back_end_name_is_in_one_registry() -> None:
    assert tuple(backends.DECISION) == names.DECISION_BACKENDS
    assert tuple(validation.BACKENDS) == names.VALIDATION_BACKENDS
    for name, backend in backends.DECISION.items():
        assert backend.name == name and callable(backend.decide)
    for name, backend in validation.BACKENDS.items():
        assert backend.name == name
        assert isinstance(backend(), backends.ValidationBackend)
    assert isinstance(backends.decision_backend("native"), backends.DecisionBackend)
    assert isinstance(backends.decision_backend("oxigraph"), backends.DecisionBackend)


def test_an_unknown_back_end_is_refused_by_its_name_set(edges: Path) -> None:
    with pytest.raises(itkg.QueryError, match="native, rdflib, oxigraph"):
        itkg.eligibility(edges, engine="pyshacl")
    with pytest.raises(itkg.ValidationEngineError, match="auto, pyshacl, jena, turbo, native"):
        itkg.validate(edges, engine="oxigraph")


@pytest.mark.server
def test_the_evidence_is_byte_identical_whichever_back_end_decided(edges: Path) -> None:
    found = {engine: _rows(itkg.eligibility(edges, engine=engine, workers=1)) for engine in LOCAL}
    with _oxigraph_server.OxigraphServer() as server, SparqlEndpoint(server.query_url) as client:
        client.upload(ontology_path().read_bytes(), "text/turtle")
        data = itkg.load(edges)
        client.upload(ox.serialize(data.triples, format=ox.RdfFormat.N_TRIPLES), "application/n-triples")
        found["endpoint"] = _rows(itkg.eligibility(None, endpoint=client))
    assert len(found["native"]) >= len([c for c in CASES if c.status])
    for engine in ("rdflib", "oxigraph", "endpoint"):
        assert found[engine] == found["native"], engine


def test_the_evidence_is_worded_for_clinicians_in_every_back_end(edges: Path) -> None:
    """Ties say what tied and which rule decided; one record with two values says so; dates stay
    as written; never the bare state a query returns (``informed-consent: met``)."""
    for engine in LOCAL:
        evidence = {e for row in itkg.eligibility(edges, engine=engine, workers=1) for e in row.evidence}
        assert not any(e.endswith((": met", ": missing", ": failed")) for e in evidence), engine
        assert any("2 records on 2026-03-01" in e and "consent withdrawn wins a tie" in e for e in evidence)
        assert any("a tie within one record" in e and "consent refused wins a tie" in e for e in evidence)
        assert any("2 records on 2026-02-01" in e and "impaired CSF circulation wins a tie" in e
                   for e in evidence)


def test_local_back_ends_agree_on_blank_node_records_of_one_load() -> None:
    data = itkg.load(ROOT / "examples" / "patients.ttl")
    found = {engine: _rows(itkg.eligibility(data, engine=engine)) for engine in LOCAL}
    assert found["native"] and any("_:" in row for row in found["native"])
    assert found["rdflib"] == found["native"] and found["oxigraph"] == found["native"]


def test_a_store_loaded_for_oxigraph_gives_the_same_rows(edges: Path) -> None:
    from itkg.sparql import load_for_query
    store: Any = load_for_query(edges)
    assert _rows(itkg.eligibility(store, engine="oxigraph")) == _rows(itkg.eligibility(edges))
