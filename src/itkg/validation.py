"""Validating patient graphs against ``shapes/*.ttl`` with pySHACL (contract §4).

itkg calls pySHACL exactly as the contract says any user may: the ontology as ``ont_graph``, no
inference, graphs passed as objects (never paths or URLs, which pySHACL would open or fetch), no
``owl:imports`` followed. It adds typed results and clinician-readable rendering on top.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import pyshacl
import rdflib
from rdflib.namespace import SH

from .knowledge import ontology_graph
from .loading import PatientData, node_id
from .resources import shapes_paths


@dataclass(frozen=True, order=True)
class ValidationResult:
    """One SHACL validation result: the node it is about, what it says, and where it came from."""

    focus: str
    message: str
    severity: str = "Violation"
    path: str | None = None
    value: str | None = field(default=None, compare=False)
    shape: str | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"focus": self.focus, "severity": self.severity, "path": self.path,
                "message": self.message, "shape": self.shape}


@dataclass(frozen=True)
class ValidationReport:
    """The verdict of contract §4: ``conforms`` and the results, sorted by focus node."""

    conforms: bool
    results: tuple[ValidationResult, ...]
    graph: rdflib.Graph = field(repr=False, compare=False, default_factory=rdflib.Graph)

    def to_dict(self) -> dict[str, Any]:
        return {"conforms": self.conforms, "results": [r.to_dict() for r in self.results]}


@lru_cache(maxsize=1)
def shapes_graph() -> rdflib.Graph:
    """Every ``shapes/*.ttl`` file in one graph (shared: do not modify it)."""
    graph = rdflib.Graph()
    for path in shapes_paths():
        graph.parse(path, format="turtle")
    return graph


def _name(term: rdflib.term.Node | None) -> str | None:
    if term is None:
        return None
    if isinstance(term, (rdflib.URIRef, rdflib.BNode)):
        return node_id(term)
    return str(term)


def validate(data: PatientData) -> ValidationReport:
    """Validate ontology ∪ ``data`` against the shapes with pySHACL (``inference="none"``).

    >>> from itkg.loading import load
    >>> from itkg.resources import data_root
    >>> report = validate(load(data_root() / "examples" / "patients.ttl"))
    >>> report.conforms, [r.focus for r in report.results]
    (False, ['https://example.org/patient/dev'])
    """
    conforms, report_graph, _ = pyshacl.validate(
        data.graph(), shacl_graph=shapes_graph(), ont_graph=ontology_graph(), inference="none",
        abort_on_first=False, allow_warnings=True, do_owl_imports=False, inplace=False,
    )
    results = []
    for result in report_graph.subjects(rdflib.RDF.type, SH.ValidationResult):
        messages = sorted(str(m) for m in report_graph.objects(result, SH.resultMessage))
        severity = report_graph.value(result, SH.resultSeverity)
        results.append(ValidationResult(
            focus=_name(report_graph.value(result, SH.focusNode)) or "",
            message=messages[0] if messages else "constraint violated",
            severity=str(severity).rsplit("#", 1)[-1] if severity else "Violation",
            path=_name(report_graph.value(result, SH.resultPath)),
            value=_name(report_graph.value(result, SH.value)),
            shape=_name(report_graph.value(result, SH.sourceShape)),
        ))
    return ValidationReport(bool(conforms), tuple(sorted(results)), report_graph)
