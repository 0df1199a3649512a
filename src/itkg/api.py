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

import functools
import os
from collections import defaultdict
from pathlib import Path
from typing import Callable, Sequence, Union, cast

import rdflib

from . import names, processes
from .endpoint import SparqlEndpoint
from .engine import PatientIndex, RuleEngine
from .errors import InputError, ItkgError, QueryError, ValidationEngineError
from .knowledge import Knowledge, load_knowledge
from .guards import find_ill_typed
from .loading import PatientData, PatientStore, ill_typed_error, load, node_id
from .reasoning import DEFAULT_JAVA_MEMORY_MB, ReasoningReport, reason as _reason
from .report import DEFAULT_MAX_DETAILS, DEFAULT_MAX_LISTED, ReportResult, report as _report
from .resources import query_path
from .results import (EligibilityResult, PatientExplanation, PrerequisiteCheck, PrerequisiteState,
                      Status)
from .lexical import LexicalFormError
from .sparql import ENGINES, Engine as SparqlEngine, QueryResult, load_for_query, select
from .validation import ValidationReport, validate as _validate

#: What the API functions accept as patient data.
DataLike = Union[PatientData, rdflib.Graph, str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]]

#: Back-ends of :func:`eligibility`: the native rule engine, or the contract's SPARQL queries.
BACKENDS: tuple[str, ...] = names.BACKENDS


def _data(data: DataLike) -> PatientData:
    return data if isinstance(data, PatientData) else load(data)


def eligibility(data: DataLike | PatientStore | None, *, engine: str = "native", endpoint: SparqlEndpoint | None = None,
                knowledge: Knowledge | None = None, timeout: float | None = None,
                input_format: str | None = None, workers: int | None = None,
                mappings: Sequence[str | os.PathLike[str]] = (),
                fhir_base: str | None = None,
                extensions: Sequence[str | os.PathLike[str]] = (),
                max_memory: int | None = None) -> list[EligibilityResult]:
    """Every (patient, therapy, indication) whose indication is met (see :func:`_eligibility`).

    Paths may be FHIR R4 JSON (resources, Bundles, NDJSON, Bulk export directories; fhir.md) as
    well as RDF. ``mappings`` are a site's SSSOM files, added to the shipped mapping set, and
    ``fhir_base`` the base of the IRIs of FHIR patients and records; the evidence then names the
    FHIR resource and codes of each record (``Condition/c1; ICD-10-CM G89.3``). ``extensions``
    are a site's extension files (its own subclasses, indications, criteria, prerequisites):
    every engine decides with the ontology plus these (contract §6). ``max_memory`` (bytes) is the
    memory budget of this process and each child it starts while the call runs
    (:func:`itkg.processes.budgeted`): past it, :class:`~itkg.errors.MemoryBudgetError`.
    """
    from .fhir import hook
    with processes.budgeted(max_memory), hook.configured(mappings=mappings, base=fhir_base) as run:
        rows = _eligibility(data, engine=engine, endpoint=endpoint, knowledge=knowledge, timeout=timeout,
                            extensions=extensions, input_format=input_format, workers=workers)
        return hook.annotate(rows, run.notes)


def _eligibility(data: DataLike | PatientStore | None, *, engine: str = "native", endpoint: SparqlEndpoint | None = None,
                 knowledge: Knowledge | None = None, timeout: float | None = None,
                 extensions: Sequence[str | os.PathLike[str]] = (), input_format: str | None = None,
                 workers: int | None = None) -> list[EligibilityResult]:
    """Every (patient, therapy, indication) whose indication is met, with status, unmet
    prerequisites and evidence (contract §3 and §5), sorted.

    :param engine: ``native`` (itkg's rule engine: fastest, with the deciding records in the
        evidence), or ``rdflib`` / ``oxigraph`` to run ``queries/eligibility-status.rq`` and
        ``queries/indication-evidence.rq`` locally. With ``oxigraph``, files are loaded straight
        into the store (:func:`itkg.sparql.load_for_query`), not kept as Python triples as well;
        ``data`` may also be such a store (for the SPARQL engines only). Data holding a literal
        Oxigraph's store would rewrite (``"…T24:00:00"`` to the next day) is answered by
        ``rdflib``, which keeps it as written (:mod:`itkg.lexical`).
    :param endpoint: run those queries on a remote SPARQL endpoint instead (``data`` is ignored
        and may be ``None``: the endpoint holds the data, and the ontology and extensions).
    :param extensions: a site's extension files (its own subclasses, indications, criteria,
        prerequisites): every engine decides with the ontology plus these (contract §6).
    """
    knowledge = _knowledge(knowledge, extensions)
    ontology = _ontology(knowledge)
    if endpoint is not None:
        return _rows_from_queries(lambda text: _endpoint_select(endpoint, text), knowledge)
    patient_data: PatientData | PatientStore
    if isinstance(data, PatientStore):
        if engine == "native":
            raise QueryError("a store loaded for Oxigraph serves the SPARQL engines only; use "
                             "engine='oxigraph', or itkg.load() for the native engine")
        patient_data = data
    elif engine == "native" and not extensions and data is not None \
            and not isinstance(data, (PatientData, rdflib.Graph)):
        # Files: the population path of ``itkg eligibility`` (streamed, in parallel when large;
        # blank nodes named as in the file).
        from .parallel import eligibility_rows
        paths = [data] if isinstance(data, (str, os.PathLike)) else list(data)
        rows, _ = eligibility_rows([Path(p) for p in paths], input_format=input_format, workers=workers,
                                   knowledge=knowledge)
        return sorted(rows)
    elif engine == "oxigraph" and not isinstance(data, (PatientData, rdflib.Graph)):
        try:
            patient_data = load_for_query(data, input_format=input_format, ontology=ontology)  # type: ignore[arg-type]  # files: into the store only
        except LexicalFormError:  # literals the store would rewrite: rdflib keeps them as written
            patient_data, engine = load(data, input_format=input_format), "rdflib"  # type: ignore[arg-type]
    elif data is None:
        raise QueryError("no data: give patient data, or an endpoint")
    else:
        patient_data = _data(data)
    if engine == "native" and isinstance(patient_data, PatientData):  # always, as loaded above
        return RuleEngine(knowledge, PatientIndex.from_triples(
            patient_data.triples, knowledge.indexed_predicates())).eligibility()
    if engine not in ENGINES:
        raise QueryError(f"unknown engine {engine!r}; use one of {', '.join(BACKENDS)}")
    return _rows_from_queries(
        lambda text: select(text, patient_data, engine=cast(SparqlEngine, engine), timeout=timeout,
                            ontology=ontology), knowledge)


def _endpoint_select(endpoint: SparqlEndpoint, text: str) -> QueryResult:
    variables, rows = endpoint.select(text)
    return QueryResult(tuple(variables), tuple(rows))


def _rows_from_queries(run, knowledge: Knowledge) -> list[EligibilityResult]:
    """Build eligibility rows from the contract's queries (for the SPARQL back-ends)."""
    evidence: dict[tuple[str, str], list[str]] = defaultdict(list)
    for row in run(query_text("indication-evidence", knowledge)).rows:
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
    prerequisites = [p for p in knowledge.all_prerequisites() if p.complete]
    for row in run(query_text("eligibility-status", knowledge)).rows:
        if "patient" not in row:  # never from the generated query; kept as a guard (rdflib#3382)
            continue
        patient, indication = node_id(row["patient"]), str(row["indication"])
        states = {p.code: str(row.get(p.variable, "missing")) for p in prerequisites}
        checks = tuple(PrerequisiteCheck(p.code, cast(PrerequisiteState, states[p.code]),
                                         f"{states[p.code]} (from the SPARQL query)")
                       for p in prerequisites if states[p.code] != "not-required")
        results.append(EligibilityResult(
            patient, str(row["therapy"]), indication, cast(Status, str(row["status"])),
            tuple(c.code for c in checks if c.state != "met"),
            tuple(sorted(evidence.get((patient, indication), ())))
            + tuple(f"{c.code}: {c.state}" for c in checks),
            checks))
    return sorted(results)


def query_text(name: str, knowledge: Knowledge) -> str:
    """The text of contract query ``name`` for ``knowledge``: the status queries are generated
    from its rule facts (so that extensions reach them; for the bundled ontology the text is the
    file's, which ``python -m itkg.build`` wrote), the others read from ``queries/``."""
    from . import rulegen
    if name in rulegen.QUERIES:
        return rulegen.query(name, knowledge)
    return query_path(name).read_text(encoding="utf-8")


def query_file(query: str | os.PathLike[str]) -> Path:
    """The query file ``query`` names: a path to a ``.rq`` file, or the name of one of itkg's
    queries (``eligible-therapies``)."""
    path = Path(query)
    if path.is_file():
        return path
    try:
        return query_path(str(query))
    except FileNotFoundError:
        raise QueryError(f"{query}: no such query file, and no query of that name in queries/") from None


def query(query: str | os.PathLike[str], files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] = (),
          *, engine: str = "oxigraph", endpoint: SparqlEndpoint | None = None,
          input_format: str | None = None, timeout: float | None = 300.0,
          max_memory: int | None = None) -> QueryResult:
    """Run a SELECT query over the ontology and ``files`` (``itkg query``), or on ``endpoint``,
    and return its rows in a stable order (:func:`itkg.ordering.sort_result`).

    :param query: a ``.rq`` file, or the name of one of itkg's queries (:func:`query_file`).
        SERVICE, FROM, FROM NAMED and updates are refused (:func:`itkg.guards.gate_query`),
        within the deadline.
    :param engine: ``oxigraph`` or ``rdflib`` for local files.
    :param timeout: seconds; locally the query (and the loading of the files, in the query's
        child process, so that the data is held once) runs in a child killed at the deadline.
    :param max_memory: bytes each process may hold (:func:`itkg.processes.budgeted`); past it,
        :class:`~itkg.errors.MemoryBudgetError`.
    """
    with processes.budgeted(max_memory):
        return _query(query, files, engine=engine, endpoint=endpoint, input_format=input_format,
                      timeout=timeout)


def _query(query: str | os.PathLike[str], files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
           *, engine: str, endpoint: SparqlEndpoint | None, input_format: str | None,
           timeout: float | None) -> QueryResult:
    from .ordering import sort_result
    from .sparql import gate, select_files
    path = query_file(query)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise InputError(path, "cannot read the query file") from None
    if endpoint is not None:
        gate(text, str(path), timeout)  # within the deadline: see sparql.gate
        result = _endpoint_select(endpoint, text)
    else:
        if engine not in ENGINES:
            raise QueryError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
        paths = [files] if isinstance(files, (str, os.PathLike)) else list(files)
        if not paths:
            raise InputError("<none>", "no input files given")
        result = select_files(text, paths, engine=cast(SparqlEngine, engine), input_format=input_format,
                              timeout=timeout, source=str(path))  # gated there, within the deadline
    # Sorted whatever ran it: a server's order is not to be trusted (see itkg.ordering).
    return sort_result(result, text)


def _ref(term: rdflib.term.Identifier) -> str:
    name = node_id(term)
    return name if name.startswith("_:") else f"<{name}>"


def _knowledge(knowledge: Knowledge | None, extensions: Sequence[str | os.PathLike[str]]) -> Knowledge:
    if knowledge is not None:
        if extensions:
            raise QueryError("give either knowledge or extensions, not both")
        return knowledge
    return load_knowledge(extensions=extensions)


def _ontology(knowledge: Knowledge) -> rdflib.Graph | None:
    """The graph the SPARQL engines add to the data: None for the bundled ontology alone."""
    return None if knowledge is load_knowledge() else knowledge.graph


def validate(data: DataLike, *, engine: str = "auto",
             extensions: Sequence[str | os.PathLike[str]] = (), input_format: str | None = None,
             workers: int | None = None, progress: Callable[[int, int], None] | None = None,
             timeout: float | None = None, max_memory: int | None = None) -> ValidationReport:
    """Validate the patient graphs against ``shapes/`` (contract §4), as ``itkg validate`` does.

    A path is loaded without rejecting ill-typed literals, so that the shapes report those they
    check (the contract's dates) as violations. An ill-typed literal the shapes do not check is
    still bad input: it raises :class:`~itkg.errors.IllTypedLiteralError` rather than letting the
    data conform (and it is never rewritten).

    :param engine: ``"pyshacl"``, ``"jena"`` (Apache Jena SHACL, same verdicts, for populations),
        ``"turbo"`` (pyshacl-turbo, same verdicts, no Java; ``pip install 'itkg[turbo]'``) or
        ``"auto"`` (turbo when installed, below a million triples; else Jena for large inputs when
        installed; see :func:`itkg.validation.engine_for`).
    :param extensions: a site's extension files: validated against with the ontology, and their
        prerequisites checked by generated planned-therapy shapes.
    :param workers: processes for the batches of large inputs (default: one per CPU).
    :param progress: called with (batches done, batches) after each batch.
    :param timeout: seconds; the validation then runs in a child process killed at the deadline
        (:class:`~itkg.errors.ValidationEngineError`).
    :param max_memory: bytes each process may hold (:func:`itkg.processes.budgeted`); past it,
        :class:`~itkg.errors.MemoryBudgetError`.
    """
    with processes.budgeted(max_memory):
        return _validate_data(data, engine=engine, extensions=extensions, input_format=input_format,
                              workers=workers, progress=progress, timeout=timeout)


def _validate_data(data: DataLike, *, engine: str, extensions: Sequence[str | os.PathLike[str]],
                   input_format: str | None, workers: int | None,
                   progress: Callable[[int, int], None] | None, timeout: float | None) -> ValidationReport:
    if not isinstance(data, PatientData):
        data = load(data, input_format=input_format, strict_literals=False)
    run = functools.partial(_validate, engine=engine,
                            knowledge=load_knowledge(extensions=extensions) if extensions else None,
                            workers=processes.default_workers() if workers is None else workers,
                            progress=progress)
    if timeout is None:
        report = run(data)
    else:  # pySHACL cannot be interrupted from inside: the validation runs in a child killed in time
        report = processes.call_with_deadline(
            run, (data,), timeout, passes=(ItkgError,),
            timed_out=lambda: ValidationEngineError(f"validation did not finish within {timeout:g} s"),
            failed=lambda kind: ValidationEngineError(f"validation failed ({kind})"))
    if report.conforms:
        bad = find_ill_typed(data.triples)
        if bad:
            raise ill_typed_error(Path(", ".join(s.path for s in data.sources)), bad[0], len(bad))
    return report


def explain(data: DataLike, patient: str, *, knowledge: Knowledge | None = None,
            extensions: Sequence[str | os.PathLike[str]] = ()) -> PatientExplanation:
    """Every indication of the ontology, met or not, for one patient, criterion by criterion.

    :param patient: the patient's IRI (or ``_:id`` for a blank node).
    :raises InputError: when no patient with that identifier is in the data.
    """
    knowledge = _knowledge(knowledge, extensions)
    patient_data = _data(data)
    index = PatientIndex.from_triples(patient_data.triples, knowledge.indexed_predicates())
    if not index.is_patient(patient):
        raise InputError(",".join(s.path for s in patient_data.sources) or "<graph>",
                         "no such patient in the input")
    return RuleEngine(knowledge, index).explain(patient)


def reason(data: DataLike, *, extensions: Sequence[str | os.PathLike[str]] = (), timeout: float = 300.0,
           max_patients: int = 20_000, java_memory_mb: int = DEFAULT_JAVA_MEMORY_MB,
           ontology: rdflib.Graph | None = None) -> ReasoningReport:
    """Classify the patients into the indications' defined classes with HermiT, in a child
    process with a deadline (``itkg reason``; :func:`itkg.reasoning.reason` says more). With
    ``extensions``, HermiT gets the ontology, the extension files and the generated OWL class of
    each extension indication (:func:`itkg.rulegen.missing_owl_classes`).

    :param timeout: seconds before HermiT (Python and Java) is killed.
    :param max_patients: refuse larger inputs (HermiT is for cohorts, not populations).
    :param java_memory_mb: the Java heap.
    :param ontology: the ontology to reason with (default: itkg's own, with ``extensions``).
    """
    if extensions and ontology is None:
        from .rulegen import missing_owl_classes
        knowledge = load_knowledge(extensions=extensions)
        ontology = rdflib.Graph()
        ontology += knowledge.graph
        ontology += missing_owl_classes(knowledge)
    return _reason(_data(data).graph(), timeout=timeout, max_patients=max_patients,
                   java_memory_mb=java_memory_mb, ontology=ontology)


def report(data: DataLike | None, output: Union[str, "os.PathLike[str]"], *, engine: str = "native",
           endpoint: SparqlEndpoint | None = None, input_format: str | None = None,
           knowledge: Knowledge | None = None, timeout: float | None = None,
           mappings: Sequence[Union[str, "os.PathLike[str]"]] = (), fhir_base: str | None = None,
           extensions: Sequence[Union[str, "os.PathLike[str]"]] = (), strict: bool = False,
           max_listed: int = DEFAULT_MAX_LISTED, max_details: int = DEFAULT_MAX_DETAILS) -> ReportResult:
    """Write the clinic's self-contained HTML report of ``data`` to ``output`` (``itkg report``):
    summary with attrition per indication, worklist, qualifying and excluded patients, and each
    patient's explanation. The file holds patient data: it is written atomically, owner-only.

    The arguments are those of :func:`eligibility` (FHIR input too: the per-patient part then
    names the FHIR resource of each record); see :func:`itkg.report.report` for the caps.
    ``data`` may be what :func:`itkg.load` returned, a path or a list of paths (``None`` with
    ``endpoint``); an rdflib graph is not accepted (the report names the input files).
    """
    from .fhir import hook
    if isinstance(data, rdflib.Graph):
        raise InputError("<graph>", "the report needs files or itkg.load() data, not an rdflib graph")
    with hook.configured(mappings=mappings, base=fhir_base, strict=strict):
        return _report(data, output, engine=engine, endpoint=endpoint, input_format=input_format,
                       knowledge=knowledge, extensions=extensions, strict=strict, timeout=timeout,
                       max_listed=max_listed, max_details=max_details)
