"""The public Python API: load patient graphs, decide eligibility, validate, explain.

The command line is a thin layer over these functions. Each accepts what :func:`itkg.load`
returns, or anything it accepts (a path, a list of paths, an rdflib graph).

>>> import itkg
>>> from itkg.resources import data_root
>>> data = itkg.load(data_root() / "examples" / "patients.ttl")
>>> [(r.patient.rsplit("/", 1)[1], r.status) for r in itkg.eligibility(data)]
[('anna', 'qualifies'), ('ben', 'pending'), ('carla', 'qualifies'), ('dev', 'excluded')]
>>> itkg.explain(data, "https://example.org/patient/eli").indications[2].criteria[0].failed
('no prior dantrolene therapy, oral baclofen therapy or tizanidine therapy with no response at maximum dose or severe side effects', 'oral baclofen therapy _:... ended with adequate response')
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Sequence, Union

import rdflib

from . import names, vocab
from .endpoint import SparqlEndpoint
from .engine import PatientIndex, RuleEngine
from .errors import InputError, QueryError
from .knowledge import Knowledge, load_knowledge
from .loading import PatientData, PatientStore, load, node_id
from .reasoning import ReasoningReport, reason as _reason
from .report import DEFAULT_MAX_DETAILS, DEFAULT_MAX_LISTED, ReportResult, report as _report
from .resources import query_path
from .results import EligibilityResult, PatientExplanation, PrerequisiteCheck
from .sparql import ENGINES, QueryResult, load_for_query, select
from .validation import ValidationReport, validate as _validate

#: What the API functions accept as patient data.
DataLike = Union[PatientData, rdflib.Graph, str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]]

#: Back-ends of :func:`eligibility`: the native rule engine, or the contract's SPARQL queries.
BACKENDS: tuple[str, ...] = names.BACKENDS


def _data(data: DataLike) -> PatientData:
    return data if isinstance(data, PatientData) else load(data)


def eligibility(data: DataLike | PatientStore, *, engine: str = "native", endpoint: SparqlEndpoint | None = None,
                knowledge: Knowledge | None = None, timeout: float | None = None,
                mappings: Sequence[str | os.PathLike[str]] = (),
                fhir_base: str | None = None) -> list[EligibilityResult]:
    """Every (patient, therapy, indication) whose indication is met (see :func:`_eligibility`).

    Paths may be FHIR R4 JSON (resources, Bundles, NDJSON, Bulk export directories; fhir.md) as
    well as RDF. ``mappings`` are a site's SSSOM files, added to the shipped mapping set, and
    ``fhir_base`` the base of the IRIs of FHIR patients and records; the evidence then names the
    FHIR resource and codes of each record (``Condition/c1; ICD-10-CM G89.3``).
    """
    from .fhir import hook
    with hook.configured(mappings=mappings, base=fhir_base) as run:
        rows = _eligibility(data, engine=engine, endpoint=endpoint, knowledge=knowledge, timeout=timeout)
        return hook.annotate(rows, run.notes)


def _eligibility(data: DataLike | PatientStore, *, engine: str = "native", endpoint: SparqlEndpoint | None = None,
                 knowledge: Knowledge | None = None,
                 timeout: float | None = None) -> list[EligibilityResult]:
    """Every (patient, therapy, indication) whose indication is met, with status, unmet
    prerequisites and evidence (contract §3 and §5), sorted.

    :param engine: ``native`` (itkg's rule engine: fastest, with the deciding records in the
        evidence), or ``rdflib`` / ``oxigraph`` to run ``queries/eligibility-status.rq`` and
        ``queries/indication-evidence.rq`` locally. With ``oxigraph``, files are loaded straight
        into the store (:func:`itkg.sparql.load_for_query`), not kept as Python triples as well;
        ``data`` may also be such a store (for the SPARQL engines only).
    :param endpoint: run those queries on a remote SPARQL endpoint instead (``data`` is ignored
        and may be ``None``: the endpoint holds the data).
    """
    knowledge = knowledge or load_knowledge()
    if endpoint is not None:
        return _rows_from_queries(lambda text: _endpoint_select(endpoint, text), knowledge)
    patient_data: PatientData | PatientStore
    if isinstance(data, PatientStore):
        if engine == "native":
            raise QueryError("a store loaded for Oxigraph serves the SPARQL engines only; use "
                             "engine='oxigraph', or itkg.load() for the native engine")
        patient_data = data
    elif engine == "oxigraph" and not isinstance(data, (PatientData, rdflib.Graph)):
        patient_data = load_for_query(data)  # type: ignore[arg-type]  # files: into the store only
    else:
        patient_data = _data(data)
    if engine == "native" and isinstance(patient_data, PatientData):  # always, as loaded above
        return RuleEngine(knowledge, PatientIndex.from_triples(patient_data.triples)).eligibility()
    if engine not in ENGINES:
        raise QueryError(f"unknown engine {engine!r}; use one of {', '.join(BACKENDS)}")
    return _rows_from_queries(
        lambda text: select(text, patient_data, engine=engine, timeout=timeout), knowledge)


def _endpoint_select(endpoint: SparqlEndpoint, text: str) -> QueryResult:
    variables, rows = endpoint.select(text)
    return QueryResult(tuple(variables), tuple(rows))


def _rows_from_queries(run, knowledge: Knowledge) -> list[EligibilityResult]:
    """Build eligibility rows from the contract's queries (for the SPARQL back-ends)."""
    evidence: dict[tuple[str, str], list[str]] = defaultdict(list)
    for row in run(query_path("indication-evidence").read_text(encoding="utf-8")).rows:
        key = (node_id(row["patient"]), str(row["indication"]))
        label = knowledge.label(str(row["criterion"]))
        fact = f"{label}: {knowledge.label(str(row['conditionType']))} diagnosis {_ref(row['condition'])}"
        if fact not in evidence[key]:
            evidence[key].append(fact)
        if "treatment" in row:
            fact = (f"{label}: {knowledge.label(str(row['treatmentType']))} {_ref(row['treatment'])}"
                    f" ended with {knowledge.label(str(row['outcome']))}")
            if fact not in evidence[key]:
                evidence[key].append(fact)
    results = []
    for row in run(query_path("eligibility-status").read_text(encoding="utf-8")).rows:
        patient, indication = node_id(row["patient"]), str(row["indication"])
        states = {vocab.INFORMED_CONSENT: str(row["consent"]), vocab.CSF_CIRCULATION: str(row["csf"])}
        checks = tuple(PrerequisiteCheck(code, states[code], f"{states[code]} (from the SPARQL query)")
                       for code in vocab.PREREQUISITE_ORDER)
        results.append(EligibilityResult(
            patient, str(row["therapy"]), indication, str(row["status"]),
            tuple(c.code for c in checks if c.state != "met"),
            tuple(sorted(evidence.get((patient, indication), ())))
            + tuple(f"{c.code}: {c.state}" for c in checks),
            checks))
    return sorted(results)


def _ref(term: rdflib.term.Identifier) -> str:
    name = node_id(term)
    return name if name.startswith("_:") else f"<{name}>"


def validate(data: DataLike, *, engine: str = "auto") -> ValidationReport:
    """Validate the patient graphs against ``shapes/`` (contract §4). A path is loaded without
    rejecting ill-typed literals, so that the shapes report them as violations.

    :param engine: ``"pyshacl"``, ``"jena"`` (Apache Jena SHACL, same verdicts, for populations),
        ``"turbo"`` (pyshacl-turbo, same verdicts, no Java; ``pip install 'itkg[turbo]'``) or
        ``"auto"`` (Jena for large inputs when installed; see :func:`itkg.validation.engine_for`).
    """
    if not isinstance(data, PatientData):
        data = load(data, strict_literals=False)
    return _validate(data, engine=engine)


def explain(data: DataLike, patient: str, *, knowledge: Knowledge | None = None) -> PatientExplanation:
    """Every indication of the ontology, met or not, for one patient, criterion by criterion.

    :param patient: the patient's IRI (or ``_:id`` for a blank node).
    :raises InputError: when no patient with that identifier is in the data.
    """
    patient_data = _data(data)
    index = PatientIndex.from_triples(patient_data.triples)
    if not index.is_patient(patient):
        raise InputError(",".join(s.path for s in patient_data.sources) or "<graph>",
                         "no such patient in the input")
    return RuleEngine(knowledge or load_knowledge(), index).explain(patient)


def reason(data: DataLike, **options) -> "ReasoningReport":
    """Classify the patients into the indications' defined classes with HermiT, in a child
    process with a deadline (see :func:`itkg.reasoning.reason` for the options)."""
    return _reason(_data(data).graph(), **options)


def report(data: DataLike | None, output: Union[str, "os.PathLike[str]"], *, engine: str = "native",
           endpoint: SparqlEndpoint | None = None, input_format: str | None = None,
           knowledge: Knowledge | None = None, timeout: float | None = None,
           max_listed: int = DEFAULT_MAX_LISTED, max_details: int = DEFAULT_MAX_DETAILS) -> ReportResult:
    """Write the clinic's self-contained HTML report of ``data`` to ``output`` (``itkg report``):
    summary with attrition per indication, worklist, qualifying and excluded patients, and each
    patient's explanation. The file holds patient data: it is written atomically, owner-only.

    The arguments are those of :func:`eligibility`; see :func:`itkg.report.report` for the caps.
    ``data`` may be what :func:`itkg.load` returned, a path or a list of paths (``None`` with
    ``endpoint``); an rdflib graph is not accepted (the report names the input files).
    """
    if isinstance(data, rdflib.Graph):
        raise InputError("<graph>", "the report needs files or itkg.load() data, not an rdflib graph")
    return _report(data, output, engine=engine, endpoint=endpoint, input_format=input_format,
                   knowledge=knowledge, timeout=timeout, max_listed=max_listed, max_details=max_details)
