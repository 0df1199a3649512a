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

import contextlib
import datetime as _dt
import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, Union, cast

import rdflib

from . import names, processes
from .engine import PatientIndex, RuleEngine
from .errors import InputError, ItkgError, MemoryBudgetError, QueryError, ValidationEngineError
from .knowledge import Knowledge, load_knowledge
from .loading import PatientData, PatientStore, Source, ill_typed_error, load
from .names import DEFAULT_JAVA_MEMORY_MB, DEFAULT_MAX_DETAILS, DEFAULT_MAX_LISTED
from .resources import query_path
from .results import EligibilityResult, PatientExplanation
from .backends import Input, as_paths, decision_backend

# What only some commands use is imported where it is used: every command imports this module,
# and ``itkg eligibility`` over local files needs neither pySHACL, nor the endpoint client
# (httpx, rich), nor Jinja, nor the SPARQL engines' modules (tests/test_imports.py counts them).
if TYPE_CHECKING:
    from .endpoint import SparqlEndpoint
    from .partition import Spool
    from .reasoning import Disagreement, ReasoningReport
    from .report import ReportResult
    from .sparql import QueryResult
    from .validation import ValidationReport

#: What the API functions accept as patient data.
DataLike = Union[PatientData, rdflib.Graph, str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]]

#: Back-ends of :func:`eligibility` chosen by name (a remote endpoint is chosen by giving it).
LOCAL_DECISION_BACKENDS: tuple[str, ...] = names.LOCAL_DECISION_BACKENDS
#: Kept for callers of 0.x: the same names.
BACKENDS = LOCAL_DECISION_BACKENDS
#: What ``engine=`` of :func:`validate` accepts: a validation back-end, or ``auto``.
VALIDATION_CHOICES: tuple[str, ...] = names.VALIDATION_CHOICES


def _data(data: DataLike) -> PatientData:
    return data if isinstance(data, PatientData) else load(data)


@dataclass(frozen=True)
class EligibilityRun:
    """What one eligibility run gives (:func:`eligibility_run`): the rows, the files read (with
    what was set aside from each), the notes a user should read about the input (contract §6:
    counts, files and lines, never a value), and the knowledge the rows were decided with (the
    ontology plus the extensions; renderers that name terms need it)."""

    rows: list[EligibilityResult]
    sources: tuple[Source, ...]
    notes: tuple[str, ...]
    knowledge: Knowledge
    started: _dt.datetime
    ended: _dt.datetime


def eligibility(data: DataLike | PatientStore | None, *, engine: str = "native", endpoint: SparqlEndpoint | None = None,
                knowledge: Knowledge | None = None, timeout: float | None = None,
                input_format: str | None = None, workers: int | None = None,
                mappings: Sequence[str | os.PathLike[str]] = (),
                fhir_base: str | None = None,
                extensions: Sequence[str | os.PathLike[str]] = (), strict: bool = False,
                progress: bool = False, max_memory: int | None = None) -> list[EligibilityResult]:
    """Every (patient, therapy, indication) whose indication is met: :func:`eligibility_run`'s
    rows (the arguments are the same).

    Paths may be FHIR R4 JSON (resources, Bundles, NDJSON, Bulk export directories; fhir.md) as
    well as RDF. ``mappings`` are a site's SSSOM files, added to the shipped mapping set, and
    ``fhir_base`` the base of the IRIs of FHIR patients and records; the evidence then names the
    FHIR resource and codes of each record (``Condition/c1; ICD-10-CM G89.3``). ``extensions``
    are a site's extension files (its own subclasses, indications, criteria, prerequisites):
    every engine decides with the ontology plus these (contract §6).
    """
    return eligibility_run(data, engine=engine, endpoint=endpoint, knowledge=knowledge, timeout=timeout,
                           input_format=input_format, workers=workers, mappings=mappings,
                           fhir_base=fhir_base, extensions=extensions, strict=strict,
                           progress=progress, max_memory=max_memory).rows


def eligibility_run(data: DataLike | PatientStore | None, *, engine: str = "native",
                    endpoint: SparqlEndpoint | None = None, knowledge: Knowledge | None = None,
                    timeout: float | None = None, input_format: str | None = None,
                    workers: int | None = None, mappings: Sequence[str | os.PathLike[str]] = (),
                    fhir_base: str | None = None, extensions: Sequence[str | os.PathLike[str]] = (),
                    strict: bool = False, progress: bool = False,
                    checksums: bool = False, max_memory: int | None = None) -> EligibilityRun:
    """Decide eligibility (contract §3 and §5) as ``itkg eligibility`` does, and say what was read.

    :param data: patient files (a path or a list of paths: the population path, streamed and
        decided in ``workers`` processes when large, blank nodes named as in the file), what
        :func:`itkg.load` returned, an rdflib graph, a store from
        :func:`itkg.sparql.load_for_query` (SPARQL engines only), or ``None`` with ``endpoint``.
    :param engine: ``native`` (itkg's rule engine: fastest), or ``rdflib`` / ``oxigraph`` to run
        ``queries/eligibility-status.rq`` locally (:data:`itkg.names.DECISION_BACKENDS`). Every
        engine gives the same rows and the same evidence.
    :param endpoint: run the queries on a remote SPARQL endpoint instead (``data`` must be
        ``None``: the endpoint holds the data, the ontology and the extensions).
    :param strict: refuse (:class:`~itkg.errors.InputError`) input with an ill-typed value, or
        with no patient, instead of setting it aside with a note.
    :param progress: show the population path's progress on standard error.
    :param checksums: record each file's SHA-256 in the sources (for provenance output).
    :param max_memory: bytes this process and each child it starts may hold while the call runs
        (:func:`itkg.processes.budgeted`); past it, :class:`~itkg.errors.MemoryBudgetError`.

    With ``oxigraph``, files holding a literal Oxigraph's store would rewrite (``"…T24:00:00"``
    to the next day) are decided by ``rdflib``, which keeps it as written (:mod:`itkg.lexical`).
    """
    from .fhir import hook
    started = _dt.datetime.now(_dt.timezone.utc)
    knowledge = _knowledge(knowledge, extensions)
    with processes.budgeted(max_memory), hook.configured(mappings=mappings, base=fhir_base, strict=strict) as run:
        rows, sources = _eligibility(data, engine=engine, endpoint=endpoint, knowledge=knowledge,
                                     timeout=timeout, input_format=input_format, workers=workers,
                                     strict=strict, progress=progress, checksums=checksums)
        rows = hook.annotate(rows, run.notes)
    return EligibilityRun(rows, sources, tuple(input_notes(sources, no_patient_is_error=strict)), knowledge,
                          started, _dt.datetime.now(_dt.timezone.utc))


#: The note when Oxigraph was asked for and rdflib answered (:mod:`itkg.lexical`).
ENGINE_CHANGED = ("the input holds typed literals that Oxigraph's store would rewrite (leading zeros, "
                  "xsd:int, +00:00, 24:00:00, ...); the rdflib engine answered, so that they count and "
                  "come out as written")


def engine_notes(asked: str, answered: str) -> list[str]:
    """The note for standard error when the engine that answered is not the one asked for."""
    return [ENGINE_CHANGED] if asked == "oxigraph" and answered == "rdflib" else []


def input_notes(sources: Sequence[Source], *, no_patient_is_error: bool = False,
                ill_typed_kept: bool = False) -> list[str]:
    """What a user should read about the input (contract §6): what was set aside from each file,
    and that the inputs hold no patient. Counts, files and lines only, never a value.

    :param no_patient_is_error: raise :class:`~itkg.errors.InputError` instead of noting an
        input with no patient (``--strict``).
    :param ill_typed_kept: the ill-typed values were kept (``validate`` reports each one).
    """
    from . import setaside
    lines = setaside.notes(sources, ill_typed_kept=ill_typed_kept)
    if sources and not any(getattr(s, "holds_patient", True) for s in sources):
        if no_patient_is_error:
            raise InputError(", ".join(s.path for s in sources), setaside.NO_PATIENT)
        lines.append(setaside.NO_PATIENT)
    return lines


def check_inputs(files: Sequence[str | os.PathLike[str]], input_format: str | None = None) -> None:
    """Fail early on a file that is missing or of an unknown type, before any work starts."""
    from .fhir import is_fhir
    from .loading import detect_format
    for raw in files:
        path = Path(raw)
        if not is_fhir(path, input_format):
            detect_format(path, input_format)
        if not path.exists():
            raise InputError(path, "no such file")


def _eligibility(data: DataLike | PatientStore | None, *, engine: str, endpoint: SparqlEndpoint | None,
                 knowledge: Knowledge, timeout: float | None, input_format: str | None,
                 workers: int | None, strict: bool, progress: bool,
                 checksums: bool) -> tuple[list[EligibilityResult], tuple[Source, ...]]:
    """The rows (sorted) and the sources, by the back-end ``engine`` names (or ``endpoint``)."""
    backend = decision_backend(engine, endpoint=endpoint, input_format=input_format, workers=workers,
                               strict=strict, progress=progress, checksums=checksums, timeout=timeout)
    paths = as_paths(data)
    if endpoint is not None:
        if data is not None and (paths is None or paths):
            raise InputError(paths[0] if paths else "<data>",
                             "with --endpoint the data comes from the endpoint; give no files")
        return backend.decide(None, knowledge)
    if data is None or paths == []:
        raise InputError("<none>", "no input files given (or use an endpoint)")
    if paths is not None:
        check_inputs(paths, input_format)
        return backend.decide(paths, knowledge)
    return backend.decide(cast(Input, data), knowledge)


def _endpoint_select(endpoint: SparqlEndpoint, text: str) -> QueryResult:
    from .sparql import QueryResult
    variables, rows = endpoint.select(text)
    return QueryResult(tuple(variables), tuple(rows))


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
          input_format: str | None = None, timeout: float | None = 300.0, strict: bool = False,
          extensions: Sequence[str | os.PathLike[str]] = (), max_memory: int | None = None) -> QueryResult:
    """Run a SELECT query over the ontology and ``files`` (``itkg query``), or on ``endpoint``,
    and return its rows in a stable order (:func:`itkg.ordering.sort_result`), with the sources
    read (:func:`input_notes` says what was set aside from them).

    :param query: a ``.rq`` file, or the name of one of itkg's queries (:func:`query_file`).
        SERVICE, FROM, FROM NAMED and updates are refused (:func:`itkg.guards.gate_query`),
        within the deadline.
    :param engine: ``oxigraph`` or ``rdflib`` for local files (:data:`itkg.names.SPARQL_BACKENDS`).
    :param endpoint: run the query there; give no ``files`` (the endpoint holds the data).
    :param timeout: seconds; locally the query (and the loading of the files, in the query's
        child process, so that the data is held once) runs in a child killed at the deadline.
    :param strict: refuse input with an ill-typed value instead of setting it aside.
    :param extensions: a site's extension files: the query runs over the ontology plus these, and
        a contract query named by its name is generated with the site's rules.
    :param max_memory: bytes each process may hold (:func:`itkg.processes.budgeted`); past it,
        :class:`~itkg.errors.MemoryBudgetError`.

    Files holding a literal Oxigraph's store would rewrite are answered by ``rdflib`` with the
    ``oxigraph`` engine too, every form as written; the result's ``engine`` says which answered
    (:func:`engine_notes` words it).
    """
    with processes.budgeted(max_memory):
        return _query(query, files, engine=engine, endpoint=endpoint, input_format=input_format,
                      timeout=timeout, strict=strict, extensions=extensions)


def _query(query: str | os.PathLike[str], files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
           *, engine: str, endpoint: SparqlEndpoint | None, input_format: str | None,
           timeout: float | None, strict: bool, extensions: Sequence[str | os.PathLike[str]]) -> QueryResult:
    from . import rulegen
    from .backends import _ontology
    from .ordering import sort_result
    from .sparql import ENGINES, Engine as SparqlEngine, gate, select_files
    path = query_file(query)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise InputError(path, "cannot read the query file") from None
    knowledge = load_knowledge(extensions=extensions)
    if extensions and not Path(query).is_file() and str(query) in rulegen.QUERIES:
        text = rulegen.query(str(query), knowledge)  # the generated query, with the site's rules
    paths = [files] if isinstance(files, (str, os.PathLike)) else list(files)
    if endpoint is not None:
        if paths:
            raise InputError(Path(paths[0]), "with --endpoint the data comes from the endpoint; give no files")
        gate(text, str(path), timeout)  # within the deadline: see sparql.gate
        result = _endpoint_select(endpoint, text)
    else:
        if engine not in ENGINES:
            raise QueryError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
        if not paths:
            raise InputError("<none>", "no input files given")
        check_inputs(paths, input_format)
        # Loaded in the query's child process, and for Oxigraph straight into its store: the data
        # is held once (see select_files); gated there, within the deadline.
        result = select_files(text, paths, engine=cast(SparqlEngine, engine), input_format=input_format,
                              timeout=timeout, source=str(path), strict=strict, ontology=_ontology(knowledge))
    # Sorted whatever ran it: a server's order is not to be trusted (see itkg.ordering).
    return sort_result(result, text)


def _knowledge(knowledge: Knowledge | None, extensions: Sequence[str | os.PathLike[str]]) -> Knowledge:
    if knowledge is not None:
        if extensions:
            raise QueryError("give either knowledge or extensions, not both")
        return knowledge
    return load_knowledge(extensions=extensions)


def validate(data: DataLike, *, engine: str = "auto",
             extensions: Sequence[str | os.PathLike[str]] = (), input_format: str | None = None,
             workers: int | None = None, progress: Callable[[int, int], None] | None = None,
             timeout: float | None = None, strict: bool = False,
             on_read: Callable[[tuple[Source, ...]], None] | None = None,
             max_memory: int | None = None) -> ValidationReport:
    """Validate the patient graphs against ``shapes/`` (contract §4), as ``itkg validate`` does.

    A path is loaded without rejecting ill-typed literals, so that the shapes report those they
    check (the contract's dates) as violations. An ill-typed literal the shapes do not check is
    still bad input: it raises :class:`~itkg.errors.IllTypedLiteralError` rather than letting the
    data conform (and it is never rewritten). Paths are read into a temporary file, never held as
    Python triples (:func:`itkg.validation.read`); with a ``timeout``, only in the child process
    that validates, so that no process holds them twice.

    :param engine: ``"pyshacl"``, ``"jena"`` (Apache Jena SHACL, same verdicts, for populations),
        ``"turbo"`` (pyshacl-turbo, same verdicts, no Java; ``pip install 'itkg[turbo]'``) or
        ``"auto"`` (turbo when installed, below a million triples; else Jena for large inputs when
        installed; see :func:`itkg.validation.engine_for`).
    :param extensions: a site's extension files: validated against with the ontology, and their
        prerequisites checked by generated planned-therapy shapes.
    :param workers: processes for the batches of large inputs (default: one per CPU).
    :param progress: called with (batches done, batches) after each batch.
    :param timeout: seconds; the validation then runs in a child process killed at the deadline
        (:class:`~itkg.errors.ValidationEngineError`), which starts once the files are read.
    :param strict: refuse input with no patient (:class:`~itkg.errors.InputError`).
    :param on_read: called with the sources once files are read (in that child, with a
        ``timeout``), e.g. to show :func:`input_notes`; an :class:`~itkg.errors.ItkgError` it
        raises ends the validation.
    :param max_memory: bytes each process may hold (:func:`itkg.processes.budgeted`); past it,
        :class:`~itkg.errors.MemoryBudgetError`.
    """
    with processes.budgeted(max_memory):
        return _validate_data(data, engine=engine, extensions=extensions, input_format=input_format,
                              workers=workers, progress=progress, timeout=timeout, strict=strict,
                              on_read=on_read)


def _validate_data(data: DataLike, *, engine: str, extensions: Sequence[str | os.PathLike[str]],
                   input_format: str | None, workers: int | None,
                   progress: Callable[[int, int], None] | None, timeout: float | None,
                   strict: bool, on_read: Callable[[tuple[Source, ...]], None] | None) -> ValidationReport:
    from . import nodenames
    from .guards import find_ill_typed
    from .validation import ill_typed, read as read_population, validate as _validate
    if engine not in VALIDATION_CHOICES:
        raise ValidationEngineError(f"unknown SHACL engine {engine!r}; use one of {', '.join(VALIDATION_CHOICES)}")
    knowledge = load_knowledge(extensions=extensions) if extensions else None

    def relayed(done: int, total: int) -> None:  # shown by the parent when run in a deadline child
        if progress is not None and not processes.tell_parent("progress", (done, total)):
            progress(done, total)

    workers = processes.default_workers() if workers is None else workers
    run = functools.partial(_validate, engine=engine, knowledge=knowledge, workers=workers,
                            progress=relayed if progress is not None else None)

    def noted(sources: tuple[Source, ...]) -> None:
        input_notes(sources, no_patient_is_error=strict)
        if on_read is not None and not processes.tell_parent("read", sources):
            on_read(sources)

    def shown(kind: str, value: Any) -> None:  # in the parent: what the deadline child told it
        if kind == "read" and on_read is not None:
            on_read(value)
        elif kind == "progress" and progress is not None:
            progress(*value)

    paths = as_paths(data)
    if paths is None:
        loaded = data if isinstance(data, PatientData) else load(data, strict_literals=False)
        noted(loaded.sources)
        if timeout is None:
            report = run(loaded)
        else:  # pySHACL cannot be interrupted from inside: the validation runs in a child killed in time
            report = _with_deadline(run, (loaded,), timeout, messages=shown)
        if report.conforms:
            bad = find_ill_typed(loaded.triples)
            if bad:
                raise ill_typed_error(Path(", ".join(s.path for s in loaded.sources)), bad[0], len(bad))
        return nodenames.readable_report(report, loaded.sources)
    check_inputs(paths, input_format)

    def read_files() -> tuple[Spool, tuple[Source, ...]]:
        spool, sources = read_population(paths, input_format=input_format, knowledge=knowledge, workers=workers)
        try:
            noted(sources)
        except BaseException:
            spool.close()
            raise
        return spool, sources

    def checked(spool: Spool, sources: tuple[Source, ...]) -> ValidationReport:
        try:
            report = run(spool)
            if report.conforms:
                bad = ill_typed(spool, sources)
                if bad:
                    raise ill_typed_error(Path(", ".join(s.path for s in sources)), bad[0], len(bad))
            return nodenames.readable_report(report, sources)  # (in the child, with a deadline)
        finally:
            spool.close()

    if timeout is None:
        return checked(*read_files())
    return _with_deadline(checked, (), timeout, prepare=read_files, messages=shown)


def _with_deadline(function: Callable[..., ValidationReport], args: tuple, timeout: float, *,
                   prepare: Callable[[], tuple] | None = None,
                   messages: Callable[[str, Any], None] | None = None) -> ValidationReport:
    """``function(*args)`` in a child process killed after ``timeout`` seconds (see
    :func:`itkg.processes.call_with_deadline`; ``prepare`` runs there first, before the deadline;
    ``messages`` shows in this process what the child tells it)."""
    return cast("ValidationReport", processes.call_with_deadline(
        function, args, timeout, prepare=prepare, passes=(ItkgError,), messages=messages,
        timed_out=lambda: ValidationEngineError(f"validation did not finish within {timeout:g} s"),
        failed=lambda kind: ValidationEngineError(f"validation failed ({kind})")))


def read(files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *, input_format: str | None = None,
         strict: bool = False, keep_ill_typed: bool = False) -> PatientData:
    """Check and load patient files as every command does (:func:`check_inputs`, then
    :func:`itkg.load`): ill-typed values are set aside with a count (``strict`` refuses them), or
    kept when ``keep_ill_typed`` (for :func:`validate`, which reports each one)."""
    paths = [files] if isinstance(files, (str, os.PathLike)) else list(files)
    check_inputs(paths, input_format)
    if keep_ill_typed:
        return load(paths, input_format=input_format, strict_literals=False)
    return load(paths, input_format=input_format, strict=strict)


def explain(data: DataLike, patient: str, *, knowledge: Knowledge | None = None,
            extensions: Sequence[str | os.PathLike[str]] = (), input_format: str | None = None,
            strict: bool = False, mappings: Sequence[str | os.PathLike[str]] = (),
            fhir_base: str | None = None) -> PatientExplanation:
    """Every indication of the ontology, met or not, for one patient, criterion by criterion.

    :param patient: the patient's IRI; for a blank node, its label as written (``_:p1``, with
        its file when several files hold one: ``_:p1 (b.ttl)``) or the id itkg gives it in rows
        (``_:_3``, ``_:f2-p1``; see :mod:`itkg.nodenames`). The evidence names blank-node records
        as written, with file and line.
    :param strict: refuse input with an ill-typed value instead of setting it aside.
    :raises InputError: when no patient with that identifier is in the data.
    """
    from . import nodenames
    from .fhir import hook
    knowledge = _knowledge(knowledge, extensions)
    outer = hook.LAST
    with hook.configured(mappings=mappings, base=fhir_base, strict=strict) as run:
        paths = as_paths(data)
        patient_data = read(paths, input_format=input_format, strict=strict) if paths is not None \
            else _data(data)
    index = PatientIndex.from_triples(patient_data.triples, knowledge.indexed_predicates())
    patient = nodenames.find_patient(patient, patient_data.sources, index.is_patient)
    explanation = nodenames.readable_explanation(RuleEngine(knowledge, index).explain(patient),
                                                 patient_data.sources)
    notes = {**(outer.notes if outer is not None else {}), **run.notes}
    # FHIR input: the evidence names the resources and codes
    return hook.annotate_explanation(explanation, notes) if notes else explanation


def reason(data: DataLike, *, extensions: Sequence[str | os.PathLike[str]] = (), timeout: float = 300.0,
           max_patients: int = 20_000, java_memory_mb: int = DEFAULT_JAVA_MEMORY_MB,
           ontology: rdflib.Graph | None = None, input_format: str | None = None,
           strict: bool = False) -> ReasoningReport:
    """Classify the patients into the indications' defined classes with HermiT, in a child
    process with a deadline (``itkg reason``; :func:`itkg.reasoning.reason` says more). With
    ``extensions``, HermiT gets the ontology, the extension files and the generated OWL class of
    each extension indication (:func:`itkg.rulegen.missing_owl_classes`).

    :param timeout: seconds before HermiT (Python and Java) is killed.
    :param max_patients: refuse larger inputs (HermiT is for cohorts, not populations).
    :param java_memory_mb: the Java heap.
    :param ontology: the ontology to reason with (default: itkg's own, with ``extensions``).
    """
    from .reasoning import reason as _reason
    if extensions and ontology is None:
        from .rulegen import missing_owl_classes
        knowledge = load_knowledge(extensions=extensions)
        ontology = rdflib.Graph()
        ontology += knowledge.graph
        ontology += missing_owl_classes(knowledge)
    paths = as_paths(data)
    patient_data = read(paths, input_format=input_format, strict=strict) if paths is not None \
        else _data(data)
    return _reason(patient_data.graph(), timeout=timeout, max_patients=max_patients,
                   java_memory_mb=java_memory_mb, ontology=ontology)


def agreement(data: DataLike, report: ReasoningReport, *,
              extensions: Sequence[str | os.PathLike[str]] = ()) -> list[Disagreement]:
    """Where HermiT's classification (``report``, from :func:`reason`) and the rule engine's
    indications for ``data`` differ (``itkg reason --check-agreement``); empty when they agree."""
    from .reasoning import agreement as _agreement
    rows = eligibility(data, extensions=extensions)
    return _agreement(report, {(r.patient, r.indication) for r in rows})


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
    from .report import report as _report
    if isinstance(data, rdflib.Graph):
        raise InputError("<graph>", "the report needs files or itkg.load() data, not an rdflib graph")
    with hook.configured(mappings=mappings, base=fhir_base, strict=strict):
        return _report(data, output, engine=engine, endpoint=endpoint, input_format=input_format,
                       knowledge=knowledge, extensions=extensions, strict=strict, timeout=timeout,
                       max_listed=max_listed, max_details=max_details)


def convert(files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
            output: str | os.PathLike[str] | None = None, *, input_format: str | None = None,
            mappings: Sequence[str | os.PathLike[str]] = (), fhir_base: str | None = None,
            strict: bool = False) -> bytes:
    """The patient graph of ``files`` (FHIR R4 JSON, Bundles, NDJSON, Bulk export directories,
    and RDF) as contract §2 RDF, each record linked to the FHIR resource it came from
    (``itkg convert``): Turtle or N-Triples by ``output``'s extension, written atomically there
    when given (never over an input). Returns the bytes."""
    from .fhir.convert import convert as _convert, output_format
    if output is not None:
        output_format(Path(output))  # an unknown output type fails before any work
    paths = [files] if isinstance(files, (str, os.PathLike)) else list(files)
    check_inputs(paths, input_format)
    return _convert(paths, output, input_format=input_format, mappings=mappings, fhir_base=fhir_base,
                    strict=strict)


@dataclass(frozen=True)
class Upload:
    """What :func:`upload` sent: triples, from how many files, and the patient files' sources."""

    triples: int
    files: int
    sources: tuple[Source, ...]
    #: Literals sent as written that a server keeping values will rewrite (docs/endpoint.md).
    rewritten: int = 0


def upload(files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], endpoint: SparqlEndpoint, *,
           graph: str | None = None, replace: bool = False, input_format: str | None = None,
           strict: bool = False, extensions: Sequence[str | os.PathLike[str]] = ()) -> Upload:
    """Upload ``files`` to ``endpoint`` with the Graph Store Protocol, after checking them
    (``itkg load``).

    itkg's own ontology file (``ontology/itkg.ttl`` or ``.owl``) and the ``extensions`` are
    knowledge and are sent as they are; from every other file, which is patient data,
    statements about classes or itkg: terms are set aside and never sent (contract §6).

    :param graph: the named graph to load into (default graph if ``None``).
    :param replace: replace the graph's content instead of adding to it.
    """
    from .knowledge import read_extension
    from .loading import ntriples
    paths = [Path(files)] if isinstance(files, (str, os.PathLike)) else [Path(f) for f in files]
    check_inputs(paths, input_format)
    ontology_files = [path for path in paths if _is_bundled_ontology(path)]
    patient_files = [path for path in paths if path not in ontology_files]
    triples: list[Any] = []
    sources: tuple[Source, ...] = ()
    if patient_files:
        data = load(patient_files, input_format=input_format, strict=strict)
        triples, sources = data.triples, tuple(data.sources)
    knowledge = rdflib.Graph()  # read with the input gates, nothing set aside
    for path in [*ontology_files, *map(Path, extensions)]:
        knowledge += read_extension(path)
    endpoint.upload(ntriples(triples), "application/n-triples", graph=graph, replace=replace)
    if len(knowledge):
        endpoint.upload(knowledge.serialize(format="nt", encoding="utf-8"), "application/n-triples", graph=graph)
    from .lexical import count_changed
    return Upload(len(triples) + len(knowledge), len(paths) + len(extensions), sources, count_changed(triples))


def upload_notes(sent: Upload) -> list[str]:
    """What a user should read about an upload: :func:`input_notes`, and how many literals a
    server that keeps values (Oxigraph's does) will answer in another form than the one sent."""
    notes = input_notes(sent.sources)
    if sent.rewritten:
        notes.append(f"{sent.rewritten} typed literal(s) are not in canonical form (leading zeros, "
                     "xsd:int, +00:00, 24:00:00, ...); they are sent as written, and a server that "
                     "stores values, as Oxigraph does, answers with its canonical form")
    return notes


def _is_bundled_ontology(path: Path) -> bool:
    """Whether ``path`` holds exactly itkg's own ontology (Turtle or RDF/XML)."""
    import hashlib

    from .resources import ontology_owl_path, ontology_path
    try:
        digest = hashlib.sha256(path.read_bytes()).digest()
    except OSError:
        return False
    return any(digest == hashlib.sha256(own.read_bytes()).digest()
               for own in (ontology_path(), ontology_owl_path()) if own.is_file())


def connect(url: str, *, store_url: str | None = None, timeout: float = 600.0,
            credentials: str | os.PathLike[str] | None = None, method: str = "auto",
            max_rows: int | None = None, max_mb: float | None = None) -> SparqlEndpoint:
    """A client of the SPARQL endpoint ``url`` for :func:`eligibility`, :func:`query`,
    :func:`report` and :func:`upload` (use it as a context manager).

    :param timeout: the deadline, in seconds, of all traffic with the server through this client,
        however many requests it takes and however slowly they are answered.
    :param credentials: a file holding ``user:password`` (mode 600), for HTTP Digest or Basic
        authentication; without it, ``ITKG_ENDPOINT_USER`` and ``ITKG_ENDPOINT_PASSWORD``.
    :param method: how queries are POSTed (:data:`itkg.names.ENDPOINT_METHODS`).
    :param max_rows: the server's result row cap, where it does not say so itself.
    :param max_mb: refuse an answer larger than this.
    """
    from .endpoint import DEFAULT_MAX_RESPONSE_BYTES, Credentials, SparqlEndpoint
    return SparqlEndpoint(
        url, store_url=store_url, timeout=timeout, deadline=time.monotonic() + timeout, method=method,
        max_rows=max_rows, credentials=Credentials.from_file(credentials) if credentials is not None else None,
        max_response_bytes=int(max_mb * 2**20) if max_mb else DEFAULT_MAX_RESPONSE_BYTES)


@contextlib.contextmanager
def command_scope(endpoints: Sequence[str] = (), *, max_memory: int | None = 0) -> Iterator[None]:
    """The process policy of one command, put back afterwards: library defaults (rdflib never
    logs a value), network only to the ``endpoints`` the user named (a backstop behind the input
    and query gates), ending signals turned into ``SystemExit`` so that ``finally`` blocks
    end child processes and remove private folders, and the memory budget (``--max-memory``):
    ``max_memory`` bytes per process, ``None`` for the default (three quarters of the machine's
    memory), 0 for none (:func:`itkg.processes.memory_budget`; :func:`memory_error` tells when
    it ran out)."""
    from .guards import install_library_defaults, network_guard
    install_library_defaults()
    budget = processes.default_memory_budget() if max_memory is None else max_memory or None
    with network_guard(list(endpoints)), processes.signals_end_cleanly(), processes.memory_budget(budget):
        yield


def memory_error(error: BaseException) -> MemoryBudgetError | None:
    """The error to report when ``error``, raised inside :func:`command_scope`, means that the
    memory budget ran out: a ``MemoryError``, a Rust panic near the budget, or the interrupt of
    the budget's watchdog (not ^C). ``None`` otherwise, and when no budget is set."""
    budget = processes.current_budget()
    if budget is None:
        return None
    if isinstance(error, KeyboardInterrupt):
        return MemoryBudgetError(budget) if processes.budget_exceeded() else None
    return MemoryBudgetError(budget) if processes.is_out_of_memory(error) else None


@contextlib.contextmanager
def fhir_reading(*, mappings: Sequence[str | os.PathLike[str]] = (), fhir_base: str | None = None,
                 strict: bool = False, progress: bool = False, workers: int | None = None) -> Iterator[Any]:
    """Read FHIR input with these settings inside the block (what the API functions read there
    uses them too); yields the run, whose findings :func:`fhir_findings` words."""
    from .fhir import hook
    with hook.configured(mappings=mappings, base=fhir_base, strict=strict, progress=progress,
                         workers=workers or processes.default_workers()) as run:
        yield run


def fhir_findings(run: Any) -> tuple[list[str], str | None]:
    """What reading FHIR found in a :func:`fhir_reading` block: lines for standard error (counts,
    never patient values), and the TSV of codes mapped to no itkg term (``None`` when no FHIR was read)."""
    from collections import Counter

    from .fhir.reader import FhirReport
    lines = [line for report in run.reports for line in report.lines()]
    if not run.reports:
        return lines, None
    merged = FhirReport(unmapped=sum((r.unmapped for r in run.reports), Counter()))
    return lines, merged.unmapped_tsv()
