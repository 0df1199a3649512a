"""Contract §4 at scale: checking one patient's planned therapy costs the same in a small and a large graph.

pySHACL runs a SPARQL constraint once per focus node, with ``$this`` as an rdflib initial binding.
A query pattern that is not reached from ``$this`` is evaluated over the whole graph for every
patient with a planned therapy, and validation time grows with the square of the population. One
such pattern is enough: rdflib puts ``?record itkg:finding itkg:ImpairedCSFCirculation`` (a
constant object) before ``$this itkg:hasCSFAssessment ?record`` and reads every impaired assessment
in the graph. These tests count the triples rdflib reads while pySHACL validates the same patients
alone and among many other patients, and require the counts to be equal. They count triples, not
seconds, so they are exact and do not depend on the machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pyshacl import validate
from rdflib import BNode, Graph, Literal, Namespace, URIRef
from rdflib.namespace import RDF, SH, XSD

from itkg.validation import _QueryCachingGraph


ITKG = Namespace("https://w3id.org/itkg/")
SHAPE = Namespace("https://w3id.org/itkg/shapes/")
TESTS = Path(__file__).resolve().parent
# Patients with planned therapies: every state of both prerequisites, ties, undated records, blank nodes.
FOCUS_FILES = [TESTS.parent / "examples" / "patients.ttl",
               *(TESTS / "data" / "shapes" / f"{stem}.ttl" for stem in
                 ("pt-consent-tie", "pt-consent-coverage", "pt-csf-undated", "pt-csf-no-finding", "pt-both-missing"))]
OTHER_PATIENTS = 60


class CountingGraph(_QueryCachingGraph):
    """An rdflib graph that counts the triples its pattern matches yield (SPARQL evaluation reads through them).

    itkg's query-caching graph, so that each SPARQL text is parsed once, not once per focus node
    (which was most of this module's time); the triples a query reads do not depend on it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def triples(self, triple: tuple) -> Iterator[tuple]:  # type: ignore[override]
        for found in super().triples(triple):
            self.reads += 1
            yield found


def other_patients(count: int) -> Graph:
    """Patients without a planned therapy, holding every kind of record the prerequisite queries read.

    Each has a grant, a refusal and a withdrawal covering all intrathecal therapy, a record without a
    decision, and good, impaired and undated CSF assessments, so a query that strays from its own
    patient reads them.
    """
    graph = Graph()
    for index in range(count):
        patient = URIRef(f"https://example.org/other/p{index}")
        graph.add((patient, RDF.type, ITKG.Patient))
        for status, day in ((ITKG.ConsentGranted, "01"), (ITKG.ConsentRefused, "02"), (ITKG.ConsentWithdrawn, "02"),
                            (None, "03")):
            consent = BNode()
            graph.add((patient, ITKG.hasConsent, consent))
            graph.add((consent, RDF.type, ITKG.InformedConsent))
            graph.add((consent, ITKG.coversTherapy, ITKG.IntrathecalTherapy))
            graph.add((consent, ITKG.consentDate, Literal(f"2026-03-{day}", datatype=XSD.date)))
            if status is not None:
                graph.add((consent, ITKG.consentStatus, status))
        for finding, day in ((ITKG.GoodCSFCirculation, "01"), (ITKG.ImpairedCSFCirculation, "02"),
                             (ITKG.ImpairedCSFCirculation, None)):
            assessment = BNode()
            graph.add((patient, ITKG.hasCSFAssessment, assessment))
            graph.add((assessment, RDF.type, ITKG.CSFCirculationAssessment))
            graph.add((assessment, ITKG.finding, finding))
            if day is not None:
                graph.add((assessment, ITKG.assessmentDate, Literal(f"2026-02-{day}", datatype=XSD.date)))
    return graph


@pytest.fixture(scope="module")
def focus_patients() -> Graph:
    graph = Graph()
    for path in FOCUS_FILES:
        graph.parse(path)
    return graph


def reads_and_results(data: Graph, shape: URIRef, shapes: Graph, ontology: Graph) -> tuple[int, set[tuple]]:
    """Triples read while pySHACL validates ``data`` against one shape, and the results (blank foci as "_")."""
    graph = CountingGraph()
    graph += data
    conforms, report, _ = validate(graph, shacl_graph=shapes, ont_graph=ontology, inference="none",
                                   do_owl_imports=False, inplace=True, use_shapes=[shape])
    results = {("_" if isinstance(report.value(r, SH.focusNode), BNode) else str(report.value(r, SH.focusNode)),
                str(report.value(r, SH.value)), str(report.value(r, SH.resultMessage)))
               for r in report.subjects(RDF.type, SH.ValidationResult)}
    assert conforms == (not results)
    return graph.reads, results


@pytest.mark.parametrize("shape_name", ["PlannedTherapyInformedConsentShape", "PlannedTherapyCSFCirculationShape"])
@pytest.mark.slow
def test_prerequisite_check_reads_only_the_patients_own_records(
        shape_name: str, shapes: Graph, ontology: Graph, focus_patients: Graph) -> None:
    """Adding patients who are not planned for a therapy adds no reads and changes no result."""
    shape = SHAPE[shape_name]
    alone_reads, alone_results = reads_and_results(focus_patients, shape, shapes, ontology)
    crowd = focus_patients + other_patients(OTHER_PATIENTS)
    assert len(crowd) > 5 * len(focus_patients)
    crowd_reads, crowd_results = reads_and_results(crowd, shape, shapes, ontology)
    assert alone_results, "the focus patients must exercise the shape"
    assert crowd_results == alone_results
    assert crowd_reads == alone_reads, (
        f"{shape_name} read {crowd_reads - alone_reads} more triples among {OTHER_PATIENTS} other patients: "
        "some query pattern is not reached from $this")
