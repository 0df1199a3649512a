"""Validating patient graphs against ``shapes/*.ttl`` (contract §4), with pySHACL, Apache Jena or
pyshacl-turbo.

itkg calls pySHACL as the contract says any user may: the ontology mixed into the data as
pySHACL's ``ont_graph`` mixes it (by pySHACL's own code, once per process: :func:`_mixin` says
why that is the same), no inference, graphs passed as objects (never paths or URLs, which pySHACL
would open or fetch), no ``owl:imports`` followed. It adds typed results and clinician-readable rendering on top. For
populations, the same batches can be judged by Jena SHACL instead (:mod:`itkg.jena`), which the
contract equally allows and which is about ten times faster; ``engine="auto"`` picks it for large
inputs when it is installed. pyshacl-turbo (:mod:`itkg.turbo`, the optional extra ``itkg[turbo]``)
is a third, Java-free engine, held to the same results by the same differential tests.

Populations are validated in batches (:mod:`itkg.partition` says why that gives the verdict of one
whole-graph run), in worker processes if asked. Each batch is an rdflib graph that keeps the
SPARQL queries it has parsed: pySHACL hands rdflib the same query text for every focus node, and
parsing it took longer than answering it.
"""

from __future__ import annotations

import re
from array import array
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
import functools
from functools import lru_cache
from queue import Queue
from typing import IO, Any, Callable, ClassVar, Iterable, Sequence, Sized
from pathlib import Path
import os

import pyoxigraph as ox
import pyshacl
import rdflib
from rdflib.namespace import RDF, SH
from rdflib.plugins.sparql import prepareQuery

from . import jena, names, native_shacl, processes, turbo
from .errors import ValidationEngineError
from .knowledge import Knowledge, ontology_graph
from .guards import IllTypedLiteral, find_ill_typed
from .loading import DEFAULT_MAX_BYTES, PatientData, Source, load_store, node_id, to_rdflib
from rdflib.plugins.stores.memory import Memory

from .graphmemo import GraphMemo
from .partition import (LINKS_RECORD, Numbering, Plan, Spool, fixed_hubs, is_partitionable, node_key, plan,
                        rdflib_node, target_object_predicates)
from .resources import shapes_paths

#: Local triples per batch: small enough that a SPARQL constraint's cost stays flat, large enough
#: that pySHACL's start-up per call (about 0.06 s) does not count. pyshacl-turbo gets smaller ones
#: (:data:`itkg.turbo.BATCH_TRIPLES`).
BATCH_TRIPLES = 20_000

#: SHACL back-ends. ``auto`` is pyshacl-turbo when it is installed, for inputs below
#: :data:`AUTO_TURBO_MAX_TRIPLES` triples or when Jena is missing; else Jena for inputs of at least
#: :data:`AUTO_JENA_TRIPLES` triples when Jena is installed (its start-up, about two seconds, pays
#: off from there); else pySHACL. Measured (docs/performance.md, on a loaded machine): turbo took
#: a quarter of Jena's time at 10,000 patients and a fifth of pySHACL's, but only drew level with
#: Jena at 100,000 patients (1.6 million triples), where Jena's two worker processes use both
#: cores and turbo's threads share the GIL for part of each batch.
ENGINES = names.VALIDATION_CHOICES
AUTO_JENA_TRIPLES = 100_000
AUTO_TURBO_MAX_TRIPLES = 1_000_000

_Triple = tuple[rdflib.term.Node, rdflib.term.Node, rdflib.term.Node]


@dataclass(frozen=True, order=True)
class ValidationResult:
    """One SHACL validation result: the node it is about, what it says, and where it came from."""

    focus: str
    message: str
    severity: str = "Violation"
    path: str | None = None
    value: str | None = field(default=None, compare=False)
    shape: str | None = field(default=None, compare=False)
    #: The patient whose record the focus node is (contract §6), or None when the focus is not a record.
    patient: str | None = field(default=None, compare=False)
    #: The focus node and the patient as people find them in the input (a blank node as written,
    #: with file and line: :mod:`itkg.nodenames`); None: as their ids.
    focus_text: str | None = field(default=None, compare=False)
    patient_text: str | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        found = {"focus": self.focus, "severity": self.severity, "path": self.path,
                 "message": self.message, "shape": self.shape}
        if self.patient is not None:
            found["patient"] = self.patient
        return found

    @property
    def text(self) -> str:
        """The message for people, naming the patient of a record-level result first."""
        if self.patient is None or self.message.startswith("Patient "):
            return self.message
        return f"Patient {self.patient_text or self.patient}: {self.message}"


@dataclass(frozen=True)
class ValidationReport:
    """The verdict of contract §4: ``conforms`` and the results, sorted by focus node."""

    conforms: bool
    results: tuple[ValidationResult, ...]
    graph: rdflib.Graph = field(repr=False, compare=False, default_factory=rdflib.Graph)

    def to_dict(self) -> dict[str, Any]:
        return {"conforms": self.conforms, "results": [r.to_dict() for r in self.results]}


@lru_cache(maxsize=1)
def _bundled_shapes() -> rdflib.Graph:
    graph = rdflib.Graph()
    for path in shapes_paths():
        graph.parse(path, format="turtle")
    return graph


def shapes_graph(knowledge: Knowledge | None = None) -> rdflib.Graph:
    """Every ``shapes/*.ttl`` file in one graph (shared: do not modify it). With a ``knowledge``
    that has extension files, the generated shapes (:data:`itkg.shapegen.GENERATED`: the
    planned-therapy and vocabulary shapes) are made anew from its rules, so a site's
    prerequisite is checked, and its own therapy classes and outcomes are known, too."""
    if knowledge is None or not knowledge.extended:
        return _bundled_shapes()
    from .shapegen import GENERATED
    graph = rdflib.Graph()
    for path in shapes_paths():
        if path.name not in GENERATED:
            graph.parse(path, format="turtle")
    for generate in GENERATED.values():
        graph.parse(data=generate(knowledge), format="turtle")
    return graph


@lru_cache(maxsize=32)
def _prepared(text: str, namespaces: frozenset[tuple[str, str]]) -> Any:
    return prepareQuery(text, initNs=dict(namespaces))


class _QueryCachingGraph(rdflib.Graph):
    """An rdflib graph that parses each SPARQL text once, with the namespaces rdflib would use."""

    def query(self, query_object: Any, processor: Any = "sparql", result: Any = "sparql",
              initNs: Any = None, initBindings: Any = None,  # noqa: N803 - rdflib's names
              use_store_provided: bool = True, **kwargs: Any) -> Any:
        if isinstance(query_object, str) and not kwargs and processor == "sparql":
            namespaces = initNs or dict(self.namespaces())
            query_object = _prepared(query_object, frozenset((k, str(v)) for k, v in namespaces.items()))
        return super().query(query_object, processor, result, initNs, initBindings,
                             use_store_provided, **kwargs)


def _name(term: rdflib.term.Node | None) -> str | None:
    if term is None:
        return None
    if isinstance(term, (rdflib.URIRef, rdflib.BNode)):
        return node_id(term)
    return str(term)


def _result(report: rdflib.Graph, node: rdflib.term.Node) -> ValidationResult:
    messages = sorted(str(m) for m in report.objects(node, SH.resultMessage))
    severity = report.value(node, SH.resultSeverity)
    return ValidationResult(
        focus=_name(report.value(node, SH.focusNode)) or "",
        message=messages[0] if messages else "constraint violated",
        severity=str(severity).rsplit("#", 1)[-1] if severity else "Violation",
        path=_name(report.value(node, SH.resultPath)),
        value=_name(report.value(node, SH.value)),
        shape=_name(report.value(node, SH.sourceShape)),
    )


def _described(report: rdflib.Graph, node: rdflib.term.Node) -> Iterable[_Triple]:
    """The triples of ``node`` in the report and of the blank nodes they lead to (copied records, paths)."""
    seen, stack = {node}, [node]
    while stack:
        for s, p, o in report.triples((stack.pop(), None, None)):
            yield s, p, o
            if isinstance(o, rdflib.BNode) and o not in seen:
                seen.add(o)
                stack.append(o)


def _literal_message_substitution() -> None:
    """Make pySHACL put ``{?var}`` values into SHACL-SPARQL messages as they are.

    pySHACL 0.40 fills them in with ``re.sub(pattern, str(value), message)``, so a backslash in a
    value quoted by a message (a consent date ``"2026\\1-03"`` in the planned-therapy message) is
    read as a group reference: ``\\1`` crashes validation, ``\\\\`` comes out as one backslash,
    ``\\n`` as a line break. Jena shows the value as it is, and so does this replacement, which
    differs from pySHACL's only in giving ``re.sub`` a function (whose result is used literally).
    Installed once, before the first pySHACL run.
    """
    from pyshacl.constraints.constraint_component import ConstraintComponent

    if getattr(ConstraintComponent._format_sparql_based_result_message, "_itkg", False):
        return
    original = ConstraintComponent._format_sparql_based_result_message

    def literal(self: Any, msg: Any, bound_vars: Any) -> Any:
        fdict: dict[str, Any] = {}
        if isinstance(bound_vars, (tuple, list)):
            if len(bound_vars) == 4:
                fdict.update(bound_vars[3])
                bound_vars = bound_vars[:3]
            if len(bound_vars) == 3:
                for key, val in zip(("this", "path", "value"), bound_vars):
                    if val is not None:
                        fdict[key] = val
        elif isinstance(bound_vars, dict):
            fdict.update(bound_vars)
        else:
            return original(self, msg, bound_vars)
        for var, val in fdict.items():
            # A function replacement is taken literally: a backslash in the value stays one.
            msg = re.sub("{{[?$]{}}}".format(re.escape(str(var))), functools.partial(_literally, str(val)), msg)
        return msg

    literal._itkg = True  # type: ignore[attr-defined]
    ConstraintComponent._format_sparql_based_result_message = literal  # type: ignore[method-assign]


@dataclass(frozen=True)
class _Mixin:
    """What pySHACL's ``ont_graph`` adds to a data graph (its ``rdfutil.inoculate.inoculate``): the
    ontology's prefixes, bound where the data graph has none of that name, and the ontology's
    RDFS and OWL axioms, copied with fresh blank nodes."""

    namespaces: tuple[tuple[str, rdflib.URIRef], ...]
    triples: tuple[_Triple, ...]
    #: the triples in a graph of their own, which :meth:`graph` copies
    template: rdflib.Graph = field(default_factory=rdflib.Graph, compare=False, repr=False)

    def __post_init__(self) -> None:
        add = self.template.add
        for triple in self.triples:
            add(triple)

    def into(self, graph: rdflib.Graph) -> None:
        """Mix the ontology into ``graph`` as ``inoculate(graph, ontology)`` would."""
        self._bind(graph)
        add = graph.add
        for triple in self.triples:
            add(triple)

    def graph(self) -> _QueryCachingGraph:
        """A new batch graph that holds the mix-in already (the data is added after it).

        Adding the mix-in's two thousand triples one by one took about 20 ms a batch (rdflib's
        ``Memory.add`` keeps three indexes, the graph's contexts and an event per triple), as long
        as validating a small batch. Its indexes are copied from :attr:`template` instead (about
        5 ms). The indexes are rdflib's own (``Memory``'s private fields): when they are not what
        :func:`_copy_memory` knows, the triples are added one by one, as before."""
        graph = _QueryCachingGraph()
        self._bind(graph)
        if not _copy_memory(self.template, graph):
            add = graph.add
            for triple in self.triples:
                add(triple)
        return graph

    def _bind(self, graph: rdflib.Graph) -> None:
        manager = graph.namespace_manager
        bound = {prefix for prefix, _ in manager.namespaces()}
        for prefix, namespace in self.namespaces:
            if prefix not in bound:
                manager.bind(prefix, namespace)


#: The private fields of rdflib's ``Memory`` store that :func:`_copy_memory` copies.
_MEMORY_FIELDS = tuple("_Memory__" + name for name in (
    "spo", "pos", "osp", "contextTriples", "tripleContexts", "defaultContexts", "context_obj_map",
    "all_contexts"))


def _copy_memory(template: rdflib.Graph, graph: rdflib.Graph) -> bool:
    """Give the empty ``graph`` the triples of ``template`` (one graph each in a ``Memory``
    store) by copying the store's indexes; False, and nothing done, when either store is not the
    ``Memory`` this knows (rdflib 7: nested dicts by subject, predicate and object, a set of
    triples per context, and per-triple contexts only where they differ from the default)."""
    source: Any = template.store
    target: Any = graph.store
    if type(template.store) is not Memory or type(graph.store) is not Memory or len(graph) \
            or not all(hasattr(store, name) for store in (source, target) for name in _MEMORY_FIELDS):
        return False
    old = f"{type(template.identifier).__name__}:{template.identifier}"
    new = f"{type(graph.identifier).__name__}:{graph.identifier}"
    triples_in = source._Memory__contextTriples
    defaults = source._Memory__defaultContexts
    if set(triples_in) != {None, old} or source._Memory__tripleContexts \
            or defaults != {old: False, None: False} or source._Memory__all_contexts != {template}:
        return False  # not one plain graph's triples
    for name in ("spo", "pos", "osp"):
        index = getattr(source, "_Memory__" + name)
        setattr(target, "_Memory__" + name,
                {first: {second: dict(third) for second, third in rest.items()} for first, rest in index.items()})
    target._Memory__contextTriples = {None: set(triples_in[None]), new: set(triples_in[old])}
    target._Memory__defaultContexts = {new: False, None: False}
    target._Memory__context_obj_map = {new: graph}
    target._Memory__all_contexts = {graph}
    return True


def _mixin(ontology: rdflib.Graph) -> _Mixin | None:
    """The ontology's mix-in, made once per process and unchanged ontology graph (a site's
    extended ontology is another graph; :mod:`itkg.graphmemo`); None when it would depend on the
    data graph.

    pySHACL, given ``ont_graph``, mixes the ontology into every data graph it validates. That took
    0.1 s a call on an idle machine whatever the data's size (nearly all of a small batch's time),
    and the same again for every batch. What it adds does not depend on the data graph: it copies
    the ontology's triples that type a class or property, or state an RDFS or OWL property, and
    the named individuals whole, reading only the ontology; a copied blank node is a fresh one;
    the data graph is only added to (and read only at those fresh nodes, when a copied RDF list
    is appended to). The one exception is an RDF list
    whose head is an IRI (a named individual that is a list), which pySHACL appends to whatever
    list the data graph already has at that IRI: such an ontology is mixed in per batch, as before.
    So mixing it once into an empty graph and adding those triples to each batch's graph gives
    the graph pySHACL would have validated, up to the labels of the ontology's blank nodes (the
    same in every batch of a process here, as in one whole-graph run; fresh per batch before);
    the prefixes are bound per graph, as pySHACL binds them (only names the graph lacks).
    ``tests/test_pyshacl_mixin.py`` holds the two ways to the same reports.
    """
    return _MIXINS(ontology)


def _made_mixin(ontology: rdflib.Graph) -> _Mixin | None:
    from pyshacl.graph_abstraction import DataGraph
    from pyshacl.rdfutil.inoculate import inoculate

    mixin: _Mixin | None = None
    if not any(isinstance(head, rdflib.URIRef) for head in ontology.subjects(RDF.first, None)):
        mixed = rdflib.Graph()
        inoculate(DataGraph.from_rdflib(mixed), ontology)  # as pySHACL wraps a data graph
        mixin = _Mixin(tuple(ontology.namespace_manager.namespaces()), tuple(mixed))
    return mixin


def _prefixes(graph: rdflib.Graph) -> tuple[tuple[str, str], ...]:
    return tuple(graph.namespace_manager.namespaces())


#: The mix-in of each ontology graph (see :func:`_mixin`); its prefixes are part of the mix-in,
#: so a prefix bound later makes it anew too.
_MIXINS: GraphMemo[_Mixin | None] = GraphMemo(_made_mixin, extra=_prefixes)


def _pyshacl(graph: rdflib.Graph, shapes: rdflib.Graph, ontology: rdflib.Graph | None = None,
             mixed: bool = False) -> rdflib.Graph:
    """Plain pySHACL, as contract §4 says; ``graph`` becomes the data graph with the ontology mixed
    in: by pySHACL itself (``ont_graph``) or, the same triples made once per process, by
    :func:`_mixin`, and then validated without ``ont_graph``. ``mixed``: ``graph`` came from
    ``_mixin(ontology).graph()`` and holds them already."""
    _literal_message_substitution()
    ontology = ontology if ontology is not None else ontology_graph()
    mixin = _mixin(ontology)
    if mixin is not None and not mixed:
        mixin.into(graph)
    return pyshacl.validate(
        graph, shacl_graph=shapes, ont_graph=ontology if mixin is None else None,
        inference="none",
        abort_on_first=False, allow_warnings=True, do_owl_imports=False, inplace=True,
    )[1]


def _graph_of(triples: Iterable[ox.Triple], extra: Iterable[_Triple] = (),
              mixin: _Mixin | None = None) -> rdflib.Graph:
    graph = _QueryCachingGraph() if mixin is None else mixin.graph()
    add = graph.add
    for triple in extra:
        add(triple)
    for s, p, o in triples:
        add((to_rdflib(s), to_rdflib(p), to_rdflib(o)))
    return graph


@dataclass(frozen=True)
class _Batch:
    """What one batch found: its own results, and their part of the report graph."""

    results: list[ValidationResult]
    triples: list[_Triple]


@dataclass(frozen=True)
class _Context:
    """What every batch needs besides its own triples: the shapes graph (the very same blank nodes
    in every process), the shared triples and the local subjects among them (see
    :class:`~itkg.partition.Partition`)."""

    shapes: rdflib.Graph
    shared: list[_Triple]
    replicated: frozenset[rdflib.term.Node]
    #: the ontology and a site's extensions, when not the bundled ontology alone
    ontology: rdflib.Graph | None = None


#: The context of the batches this process validates; set by :func:`validate`, or by
#: :func:`_enter` in a worker (so validation is not thread-safe).
_CONTEXT: _Context | None = None


def _enter(context: _Context | None) -> None:
    global _CONTEXT
    _CONTEXT = context


def _owned(focus: object, own: set[Any], first: bool, replicated: frozenset[Any]) -> bool:
    """Whether a result about ``focus`` belongs to this batch (see :mod:`itkg.partition`): its
    focus is a subject of the batch, or this is the first batch and the focus is a hub, a literal
    or a shared node that no batch owns."""
    return focus in own or (first and focus not in replicated)


def _validate_batch(local: Sequence[ox.Triple] | bytes, first: bool) -> _Batch:
    """Validate shared ∪ ``local`` and keep the results whose focus node this batch owns."""
    assert _CONTEXT is not None, "validate() sets the context"
    if isinstance(local, bytes):
        local = [quad.triple for quad in ox.parse(local, format=ox.RdfFormat.N_TRIPLES)]
    mixin = _mixin(_CONTEXT.ontology if _CONTEXT.ontology is not None else ontology_graph())
    report = _pyshacl(_graph_of(local, _CONTEXT.shared, mixin), _CONTEXT.shapes, _CONTEXT.ontology,
                      mixed=mixin is not None)
    own = {to_rdflib(s) for s in {t.subject for t in local}}  # no RDF-star here (the loaders refuse it)
    return _owned_results(report, own, first, _CONTEXT.replicated)


def _owned_results(report: rdflib.Graph, own: set[rdflib.term.Identifier], first: bool,
                   replicated: frozenset[rdflib.term.Node]) -> _Batch:
    """The results of an rdflib SHACL report that this batch owns (its local subjects are
    ``own``), with their report triples."""
    results: list[ValidationResult] = []
    triples: list[_Triple] = []
    for node in report.subjects(RDF.type, SH.ValidationResult):
        focus = report.value(node, SH.focusNode)
        if _owned(focus, own, first, replicated):
            results.append(_result(report, node))
            triples.extend(_described(report, node))
    return _Batch(results, triples)


def _merged(batches: Iterable[_Batch]) -> ValidationReport:
    """One SHACL report: one sh:ValidationReport over the results of every batch."""
    graph = rdflib.Graph()
    graph.bind("sh", SH)
    report = rdflib.BNode()
    results: list[ValidationResult] = []
    for batch in batches:
        results.extend(batch.results)
        for triple in batch.triples:
            graph.add(triple)
            if triple[1] == RDF.type and triple[2] == SH.ValidationResult:
                graph.add((report, SH.result, triple[0]))
    conforms = all(r.severity in ("Info", "Warning") for r in results)
    graph.add((report, RDF.type, SH.ValidationReport))
    graph.add((report, SH.conforms, rdflib.Literal(conforms)))
    return ValidationReport(conforms, tuple(sorted(results)), graph)


ITKG_NS = "https://w3id.org/itkg/"
#: The links from a patient to its records (contract §2).
_RECORD_LINKS = frozenset(ITKG_NS + name for name in (
    "hasCondition", "receivedTreatment", "hasConsent", "hasCSFAssessment", "plannedTherapy"))


def _naming_patients(report: ValidationReport, data: Numbering) -> ValidationReport:
    """Name the patient of every result about a record (contract §6: "messages name the
    patient"): :attr:`ValidationResult.patient`, which the text and JSON outputs show
    (``Patient <p>: The informed consent record ...``). The SHACL message itself stays the
    engine's, so the pySHACL and Jena reports stay comparable; the same whichever engine ran."""
    foci = {r.focus for r in report.results}
    owners: dict[str, set[str]] = {}
    ids, subjects, objects = data.ids, data.subjects, data.objects
    if foci:
        for i, flag in enumerate(data.flags):
            if flag & LINKS_RECORD and objects[i] >= 0:
                record = ids[objects[i]]
                if record in foci:
                    owners.setdefault(record, set()).add(ids[subjects[i]])
    if not owners:
        return report
    results = [replace(r, patient=", ".join(sorted(owners[r.focus]))) if r.focus in owners else r
               for r in report.results]
    return ValidationReport(report.conforms, tuple(results), report.graph)


#: The record links as predicates (for :class:`~itkg.partition.Numbering`).
_RECORD_LINK_NODES = tuple(ox.NamedNode(iri) for iri in sorted(_RECORD_LINKS))


def _numbered(data: PatientData | Numbering, shapes: rdflib.Graph) -> Numbering:
    if isinstance(data, Numbering):
        return data
    numbering = Numbering(target_object_predicates(shapes), _RECORD_LINK_NODES, source=data.triples)
    numbering.add(data.triples)
    return numbering


def _plan(data: Numbering, batch_triples: int, shapes: rdflib.Graph, ontology: rdflib.Graph) -> Plan:
    if not is_partitionable(shapes):
        return Plan(array("q"), [array("q", range(len(data)))], frozenset())
    cut = plan(data, fixed_hubs(ontology, shapes), batch_triples)
    if isinstance(data, Spool):
        data.numbers = {}  # the largest structure, read by the partitioning only
    return cut


def engine_for(data: Sized, engine: str = "auto") -> str:
    """The back-end :func:`validate` uses for ``data`` (what :func:`itkg.load` or :func:`read`
    returned): ``"pyshacl"``, ``"jena"``, ``"turbo"`` or ``"native"``."""
    if engine not in ENGINES:
        raise ValidationEngineError(f"unknown SHACL engine {engine!r}; use one of {', '.join(ENGINES)}")
    if engine == "auto":
        size = len(data)
        if turbo.available() and (size < AUTO_TURBO_MAX_TRIPLES or not jena.available()):
            return "turbo"
        return "jena" if size >= AUTO_JENA_TRIPLES and jena.available() else "pyshacl"
    return engine


def validate(data: PatientData | Numbering, *, workers: int = 1, batch_triples: int | None = None,
             progress: Callable[[int, int], None] | None = None, engine: str = "auto",
             knowledge: Knowledge | None = None) -> ValidationReport:
    """Validate ontology ∪ ``data`` against the shapes (``inference="none"``).

    The verdict and results are those of one pySHACL run over the whole graph; the data is
    validated in batches of about ``batch_triples`` local triples (default: the engine's own,
    :data:`BATCH_TRIPLES` or :data:`itkg.turbo.BATCH_TRIPLES`), in ``workers`` processes (threads
    for turbo). ``engine`` is ``"pyshacl"``, ``"jena"`` (Apache Jena SHACL, see :mod:`itkg.jena`),
    ``"turbo"`` (pyshacl-turbo, see :mod:`itkg.turbo`) or ``"auto"`` (:func:`engine_for`).
    ``progress(done, total)`` is called after each batch.
    pySHACL worker processes are spawned, so a script that asks for more than one must guard its
    top level with ``if __name__ == "__main__":``.

    >>> from itkg.loading import load
    >>> from itkg.resources import data_root
    >>> report = validate(load(data_root() / "examples" / "patients.ttl"))
    >>> report.conforms, [r.focus for r in report.results]
    (False, ['https://example.org/patient/dev'])
    """
    chosen = engine_for(data, engine)
    backend = BACKENDS[chosen]()
    if chosen == "turbo":
        turbo.require()  # a missing engine is an error before the partitioning, not after
    if batch_triples is None:
        batch_triples = backend.batch_triples
    extended = knowledge is not None and knowledge.extended
    shapes = shapes_graph(knowledge)
    ontology = knowledge.graph if extended else ontology_graph()  # type: ignore[union-attr]
    if chosen == "native":
        native_shacl.compile_shapes(shapes)  # shapes it does not implement: refused before any work
    numbering = _numbered(data, shapes)
    cut = _plan(numbering, batch_triples, shapes, ontology)
    batches = backend.judge(numbering, cut, workers=max(1, min(workers, len(cut))), progress=progress,
                            shapes=shapes, ontology=ontology, extended=extended)
    return _naming_patients(_merged(batches), numbering)


class PyShacl:
    """pySHACL (:class:`itkg.backends.ValidationBackend`): batches in this process, or in
    ``workers`` spawned processes."""

    name: ClassVar[str] = "pyshacl"
    batch_triples = BATCH_TRIPLES

    def judge(self, numbering: Numbering, cut: Plan, *, workers: int,
              progress: Callable[[int, int], None] | None, shapes: rdflib.Graph, ontology: rdflib.Graph,
              extended: bool) -> list[_Batch]:
        context = _Context(shapes, [(to_rdflib(s), to_rdflib(p), to_rdflib(o)) for s, p, o in numbering.triples(cut.shared)],
                           frozenset(rdflib_node(numbering.ids[n]) for n in cut.replicated), ontology if extended else None)
        if workers > 1:
            return _in_processes(numbering, cut, workers, context, progress)
        _enter(context)
        try:
            done = []
            for index, batch in enumerate(cut.batches):
                done.append(_validate_batch(numbering.triples(batch), index == 0))
                if progress:
                    progress(index + 1, len(cut))
            return done
        finally:
            _enter(None)


class Jena:
    """Apache Jena SHACL (:mod:`itkg.jena`): batches in ``workers`` Java processes."""

    name: ClassVar[str] = "jena"
    batch_triples = BATCH_TRIPLES

    def judge(self, numbering: Numbering, cut: Plan, *, workers: int,
              progress: Callable[[int, int], None] | None, shapes: rdflib.Graph, ontology: rdflib.Graph,
              extended: bool) -> list[_Batch]:
        return _in_jena(numbering, cut, workers, progress, shapes, ontology)


class Native:
    """itkg's own SHACL engine (:mod:`itkg.native_shacl`): the shapes compiled once, batches in
    ``workers`` spawned processes."""

    name: ClassVar[str] = "native"
    batch_triples = native_shacl.BATCH_TRIPLES

    def judge(self, numbering: Numbering, cut: Plan, *, workers: int,
              progress: Callable[[int, int], None] | None, shapes: rdflib.Graph, ontology: rdflib.Graph,
              extended: bool) -> list[_Batch]:
        return native_shacl.judge(numbering, cut, workers=workers, progress=progress, shapes=shapes,
                                  ontology=ontology)


class Turbo:
    """pyshacl-turbo (:mod:`itkg.turbo`): small batches in ``workers`` threads of this process."""

    name: ClassVar[str] = "turbo"
    batch_triples = turbo.BATCH_TRIPLES

    def judge(self, numbering: Numbering, cut: Plan, *, workers: int,
              progress: Callable[[int, int], None] | None, shapes: rdflib.Graph, ontology: rdflib.Graph,
              extended: bool) -> list[_Batch]:
        return _in_turbo(numbering, cut, workers, progress, shapes, ontology)


#: The validation back-ends by name (:data:`itkg.names.VALIDATION_BACKENDS`).
BACKENDS: dict[str, type[PyShacl] | type[Jena] | type[Turbo] | type[Native]] = {
    b.name: b for b in (PyShacl, Jena, Turbo, Native)}


def read(paths: Sequence[str | os.PathLike[str]], *, input_format: str | None = None,
         max_bytes: int = DEFAULT_MAX_BYTES, knowledge: Knowledge | None = None,
         workers: int = 1) -> tuple[Spool, tuple[Source, ...]]:
    """Read patient files for :func:`validate`, with the checks and errors of :func:`itkg.load`
    (ill-typed literals kept, for the shapes to report): the checked triples go to a
    :class:`~itkg.partition.Spool`, so a population is never held as Python triples (a million
    patients are about 6 GB as such). The caller closes the spool.

    With ``workers`` above one, large N-Triples input is read in that many forked processes
    (:mod:`itkg.spooled`: the same spool, numbers and errors; the sources then carry no
    checksum, which validation does not show)."""
    targets = target_object_predicates(shapes_graph(knowledge))
    if workers > 1:
        from . import spooled
        found = spooled.read([Path(p) for p in paths], functools.partial(_spool, targets),
                             input_format=input_format, max_bytes=max_bytes, workers=workers)
        if found is not None:
            return found
    spool = Spool(targets, _RECORD_LINK_NODES)
    try:
        loaded = load_store(paths, input_format=input_format, max_bytes=max_bytes, strict_literals=False,
                            store=spool)  # type: ignore[arg-type]  # a duck-typed store: see Spool
        spool.finish()
    except BaseException:
        spool.close()
        raise
    return spool, loaded.sources


def _spool(targets: set[ox.NamedNode], file: IO[bytes] | None, at: int) -> Spool:
    """A spool with the shapes' predicates, writing into ``file`` from ``at`` (:mod:`itkg.spooled`)."""
    return Spool(targets, _RECORD_LINK_NODES, file=file, at=at)


def ill_typed(spool: Spool, sources: Sequence[Source]) -> list[IllTypedLiteral]:
    """The ill-typed literals of what :func:`read` read (``find_ill_typed`` over the spool, read
    back in batches; skipped when the loader counted none in RDF files)."""
    if not any(s.ill_typed or s.format == "fhir" for s in sources):
        return []
    found: list[IllTypedLiteral] = []
    step = 100_000
    for start in range(0, len(spool), step):
        found += find_ill_typed(spool.triples(range(start, min(start + step, len(spool)))))
    return found


def _in_processes(data: Numbering, plan: Plan, workers: int, context: _Context,
                  progress: Callable[[int, int], None] | None) -> list[_Batch]:
    """Batches in ``workers`` fresh processes, at most two per worker in flight (bounded memory).

    Workers are spawned, not forked: a forked child writes into the parent's freed memory, all
    over a heap of millions of triples, and each ends up with a private copy of gigabytes.
    """
    pool = processes.spawn_pool(workers, _enter, (context,))
    failed = True
    try:
        done = _windowed(lambda index: pool.submit(
            _validate_batch, data.lines(plan.batches[index]), index == 0),
            len(plan), workers, progress)
        failed = False
        return done
    finally:  # on an error or a signal, start no further batch and end the running ones
        processes.stop_pool(pool, failed=failed)


def _windowed(submit: Callable[[int], Future[_Batch]], count: int, workers: int,
              progress: Callable[[int, int], None] | None) -> list[_Batch]:
    """Submit batches ``0 .. count-1`` with at most two per worker in flight (bounded memory),
    collecting them in order; on an error, the batches not yet started are cancelled."""
    done: list[_Batch] = []
    pending: deque[Future[_Batch]] = deque()

    def collect() -> None:
        while True:
            try:
                done.append(pending[0].result(timeout=processes.WAKE_S))
                break
            except FutureTimeout:
                processes.raise_if_stopping()  # an ending signal whose SystemExit was lost
        pending.popleft()
        if progress:
            progress(len(done), count)

    try:
        for index in range(count):
            pending.append(submit(index))
            while len(pending) >= 2 * workers:
                collect()
        while pending:
            collect()
    finally:
        for future in pending:
            future.cancel()
    return done


def _jena_batch(raw: list[jena.RawResult], own: set[str], first: bool,
                replicated: frozenset[str]) -> _Batch:
    """The results of one Jena batch (whose local subjects are ``own``), owned as
    :func:`_validate_batch` owns pySHACL's, as report triples."""
    results: list[ValidationResult] = []
    triples: list[_Triple] = []
    for focus, path, value, shape, severity, component, message in raw:
        if not isinstance(focus, (ox.NamedNode, ox.BlankNode, ox.Literal)):
            raise ValidationEngineError("the Jena SHACL worker sent a result without a focus node")
        if not _owned(None if isinstance(focus, ox.Literal) else node_key(focus), own, first, replicated):
            continue
        text = message.value if isinstance(message, ox.Literal) else "constraint violated"
        node = rdflib.BNode()
        triples.append((node, RDF.type, SH.ValidationResult))
        triples.append((node, SH.resultMessage, rdflib.Literal(text)))
        for predicate, term in ((SH.focusNode, focus), (SH.resultPath, path), (SH.value, value),
                                (SH.sourceShape, shape), (SH.resultSeverity, severity),
                                (SH.sourceConstraintComponent, component)):
            if isinstance(term, (ox.NamedNode, ox.BlankNode, ox.Literal)):
                triples.append((node, predicate, to_rdflib(term)))
        results.append(ValidationResult(
            focus=_name(to_rdflib(focus)) or "", message=text,
            severity=severity.value.rsplit("#", 1)[-1] if isinstance(severity, ox.NamedNode) else "Violation",
            path=_name(to_rdflib(path)) if isinstance(path, (ox.NamedNode, ox.Literal)) else None,
            value=_name(to_rdflib(value)) if isinstance(value, (ox.NamedNode, ox.BlankNode, ox.Literal)) else None,
            shape=_name(to_rdflib(shape)) if isinstance(shape, (ox.NamedNode, ox.BlankNode)) else None))
    return _Batch(results, triples)


def _own(data: Numbering, batch: Sequence[int]) -> set[str]:
    """The ids of the local subjects of a batch."""
    ids, subjects = data.ids, data.subjects
    return {ids[subjects[i]] for i in batch}


def _in_jena(data: Numbering, plan: Plan, workers: int, progress: Callable[[int, int], None] | None,
             shapes_graph_: rdflib.Graph, ontology: rdflib.Graph) -> list[_Batch]:
    """Batches judged by ``workers`` Jena processes, fed by as many threads (each waits on its pipe)."""
    shapes = shapes_graph_.serialize(format="nt", encoding="utf-8")
    base = ontology.serialize(format="nt", encoding="utf-8") + data.lines(plan.shared)
    largest = max((len(batch) for batch in plan.batches), default=0) + len(plan.shared)
    replicated = frozenset(data.ids[n] for n in plan.replicated)
    with jena.JenaPool(workers, shapes, base, jena.heap_mb(largest)) as pool:
        idle: Queue[jena.JenaWorker] = Queue()
        for worker in pool.workers:
            idle.put(worker)

        def judge(index: int) -> _Batch:
            batch = plan.batches[index]
            local = data.lines(batch)
            worker = idle.get()
            try:
                raw = worker.validate(local)
            finally:
                idle.put(worker)
            return _jena_batch(raw, _own(data, batch), index == 0, replicated)

        with ThreadPoolExecutor(workers, initializer=processes.block_ending_signals) as threads:
            return _windowed(lambda index: threads.submit(judge, index), len(plan), workers, progress)


def _in_turbo(data: Numbering, plan: Plan, workers: int, progress: Callable[[int, int], None] | None,
              shapes: rdflib.Graph, ontology: rdflib.Graph) -> list[_Batch]:
    """Batches judged by pyshacl-turbo in ``workers`` threads (its native code releases the GIL)."""
    validator = turbo.TurboValidator(shapes, native_shacl.base_bytes(data, plan, ontology))
    replicated = frozenset(rdflib_node(data.ids[n]) for n in plan.replicated)

    def judge(index: int) -> _Batch:
        batch = plan.batches[index]
        own: set[rdflib.term.Identifier] = set(map(rdflib_node, _own(data, batch)))
        return _owned_results(validator.validate(data.lines(batch)), own, index == 0, replicated)

    with ThreadPoolExecutor(workers, initializer=processes.block_ending_signals) as threads:
        return _windowed(lambda index: threads.submit(judge, index), len(plan), workers, progress)


def _literally(text: str, match: re.Match[str]) -> str:
    """``text`` as the replacement of ``match``, backslashes and all (see the message patch)."""
    return text
