"""The back-ends: one small protocol for each kind, one registry of names (httpx's transport model).

A *decision* back-end decides contract §3 for the data it is given (:class:`DecisionBackend`): the
native rule engine, or the contract's SPARQL queries in rdflib, in Oxigraph or on a remote
endpoint. A *validation* back-end judges batches against the shapes (contract §4;
:class:`ValidationBackend`, implemented in :mod:`itkg.validation`): pySHACL, Apache Jena or
pyshacl-turbo. Each is chosen by its name in :data:`itkg.names.BACKENDS`, the one vocabulary
that the command line's choices, the API's checks and the docs use.

Why one protocol: the API used to dispatch on strings in three places, and each SPARQL path built
its own evidence ("informed-consent: met") apart from the rule engine's. Now every decision
back-end returns :class:`~itkg.results.EligibilityResult` rows with the same evidence text, word
for word: the SPARQL back-ends decide with the generated status queries, fetch the facts behind
each row (:func:`itkg.rulegen.facts_query`) and word them with the rule engine's one wording
(:meth:`itkg.engine.RuleEngine.row`). Should the two ever disagree on a row, that is a bug, and the
back-end says so rather than print evidence that contradicts the status.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol, Sequence, Union, cast, runtime_checkable

from . import names
from .errors import QueryError
from .lazyimport import is_rdflib_graph, lazy
from .results import EligibilityResult

if TYPE_CHECKING:
    import rdflib

    from .endpoint import SparqlEndpoint
    from .engine import PatientIndex
    from .knowledge import Knowledge
    from .loading import PatientData, PatientStore, Source
    from .partition import Numbering, Plan
    from .sparql import QueryResult
else:  # imported when first used (itkg.lazyimport)
    rdflib = lazy("rdflib", globals())

#: What a decision back-end is given: patient files, loaded data, a store loaded for Oxigraph,
#: an rdflib graph, or nothing (the endpoint holds the data).
Input = Union["PatientData", "PatientStore", "rdflib.Graph", Sequence[Path], None]

#: The rows (sorted) and the sources they were read from.
Decided = tuple[list[EligibilityResult], tuple["Source", ...]]


@runtime_checkable
class DecisionBackend(Protocol):
    """Decides eligibility (contract §3): every (patient, therapy, indication) whose indication is
    met, with status, unmet prerequisites and evidence, sorted, and the sources read."""

    name: ClassVar[str]

    def decide(self, data: Input, knowledge: Knowledge) -> Decided:
        ...


@runtime_checkable
class ValidationBackend(Protocol):
    """Judges the batches of a partitioned input against the shapes (contract §4); the verdict and
    results are those of one pySHACL run over the whole graph (:mod:`itkg.partition`)."""

    name: ClassVar[str]
    #: local triples per batch that suit this back-end
    batch_triples: int

    def judge(self, numbering: Numbering, cut: Plan, *, workers: int,
              progress: Callable[[int, int], None] | None, shapes: rdflib.Graph, ontology: rdflib.Graph,
              extended: bool) -> list[Any]:
        ...


# -- the decision back-ends ------------------------------------------------------------------------


@dataclass
class Native:
    """itkg's rule engine: files streamed into its index (in ``workers`` processes when large),
    or loaded data indexed at once."""

    name: ClassVar[str] = "native"
    input_format: str | None = None
    workers: int | None = None
    strict: bool = False
    progress: bool = False
    checksums: bool = False

    def decide(self, data: Input, knowledge: Knowledge) -> Decided:
        from .engine import PatientIndex, RuleEngine
        from .loading import PatientData, PatientStore
        if isinstance(data, PatientStore):
            raise QueryError("a store loaded for Oxigraph serves the SPARQL engines only; use "
                             "engine='oxigraph', or itkg.load() for the native engine")
        if isinstance(data, PatientData) or is_rdflib_graph(data):
            loaded = data if isinstance(data, PatientData) else PatientData.from_graph(data)
            index = PatientIndex.from_triples(loaded.triples, knowledge.indexed_predicates())
            return RuleEngine(knowledge, index).eligibility(), tuple(loaded.sources)
        from .parallel import eligibility_rows
        rows, sources = eligibility_rows(list(data or ()), input_format=self.input_format, workers=self.workers,
                                         knowledge=knowledge, checksums=self.checksums,
                                         progress=self.progress, strict=self.strict)
        return sorted(rows), tuple(sources)


class _Queries:
    """A back-end that decides with the contract's generated queries: :meth:`select` runs one."""

    def select(self, text: str) -> QueryResult:
        raise NotImplementedError

    def facts(self, knowledge: Knowledge) -> PatientIndex:
        """The rule engine's index of the facts behind the rows: what the generated facts query
        returns (the triples of every indicated patient and of its records)."""
        from . import rulegen
        from .engine import PatientIndex
        from .loading import node_id
        index = PatientIndex(knowledge.indexed_predicates())
        nodes = index.nodes
        for fact in {(r["s"], r["p"], r["o"]) for r in self.select(rulegen.facts_query(knowledge)).rows}:
            subject, predicate, obj = fact
            nodes.setdefault(node_id(cast(Any, subject)), {}).setdefault(str(predicate), []).append(_value(obj))
        return index

    def rows(self, knowledge: Knowledge) -> list[EligibilityResult]:
        """The status query's rows, with the rule engine's evidence for each (see the module)."""
        from . import rulegen
        from .engine import RuleEngine
        from .loading import node_id
        status = self.select(rulegen.query("eligibility-status", knowledge)).rows
        engine = RuleEngine(knowledge, self.facts(knowledge))
        indications = {i.iri: i for i in knowledge.indications}
        prerequisites = [p for p in knowledge.all_prerequisites() if p.complete]
        results = []
        for row in status:
            if "patient" not in row:  # never from the generated query; kept as a guard (rdflib#3382)
                continue
            patient, indication = node_id(cast(Any, row["patient"])), str(row["indication"])
            worded = engine.row(patient, indications[indication])
            states = {p.code: str(row.get(p.variable, "missing")) for p in prerequisites}
            decided = (str(row["status"]), {code for code, state in states.items() if state not in ("met", "not-required")})
            if worded is None or (worded.status, set(worded.unmet)) != decided \
                    or worded.therapy != str(row["therapy"]):
                raise QueryError("the SPARQL back-end and the rule engine's wording disagree on a row; "
                                 "please report it")
            results.append(worded)
        return sorted(results)


def _value(term: Any) -> object:
    """A query result term as the rule engine's index holds it: a node id, or (lexical, datatype)."""
    from .loading import node_id
    if isinstance(term, rdflib.Literal):
        datatype = term.datatype or (rdflib.RDF.langString if term.language else rdflib.XSD.string)
        return (str(term), str(datatype))
    return node_id(term)


@dataclass
class Rdflib(_Queries):
    """The contract's queries in rdflib, over the loaded data (or the files, loaded here)."""

    name: ClassVar[str] = "rdflib"
    input_format: str | None = None
    strict: bool = False
    timeout: float | None = None
    _data: Any = field(default=None, repr=False)
    _ontology: rdflib.Graph | None = field(default=None, repr=False)

    def _load(self, data: Input, knowledge: Knowledge) -> Any:
        from .loading import PatientData, PatientStore, load
        if isinstance(data, (PatientData, PatientStore)):
            return data
        if is_rdflib_graph(data):
            return PatientData.from_graph(data)
        return load(list(data or ()), input_format=self.input_format, strict=self.strict)

    def decide(self, data: Input, knowledge: Knowledge) -> Decided:
        self._data, self._ontology = self._load(data, knowledge), _ontology(knowledge)
        return self.rows(knowledge), tuple(self._data.sources)

    def select(self, text: str) -> QueryResult:
        from .sparql import select
        return select(text, self._data, engine=cast(Any, self.name), timeout=self.timeout, ontology=self._ontology)

    def facts(self, knowledge: Knowledge) -> PatientIndex:
        """The data's own triples, indexed: rdflib answers the facts query in time quadratic in the
        patients (134 s at 800), and the triples are at hand here anyway."""
        from .engine import PatientIndex
        from .loading import PatientData
        triples = self._data.triples if isinstance(self._data, PatientData) else self._data.iter_triples()
        return PatientIndex.from_triples(triples, knowledge.indexed_predicates())


@dataclass
class Oxigraph(Rdflib):
    """The contract's queries in Oxigraph; files are loaded straight into its store (held once)."""

    name: ClassVar[str] = "oxigraph"

    #: ``rdflib`` once the files held a literal Oxigraph's store would rewrite (:mod:`itkg.lexical`).
    answered: str = "oxigraph"

    def facts(self, knowledge: Knowledge) -> PatientIndex:
        """The facts query (linear in Oxigraph); the data's own index when rdflib answers."""
        if self.answered == "rdflib":
            return Rdflib.facts(self, knowledge)
        return _Queries.facts(self, knowledge)

    def _load(self, data: Input, knowledge: Knowledge) -> Any:
        from .lexical import LexicalFormError
        from .loading import PatientData, PatientStore
        from .sparql import load_for_query
        if isinstance(data, (PatientData, PatientStore)) or is_rdflib_graph(data):
            return super()._load(data, knowledge)
        try:
            return load_for_query(list(data or ()), input_format=self.input_format, strict=self.strict,
                                  ontology=_ontology(knowledge))
        except LexicalFormError:  # the store would rewrite a literal: rdflib keeps them as written
            self.answered = "rdflib"  # select() over these triples hands every query to rdflib
            return super()._load(data, knowledge)


@dataclass
class Endpoint(_Queries):
    """The contract's queries on a remote SPARQL endpoint, which holds the data, the ontology and
    the extensions (``itkg load``)."""

    client: SparqlEndpoint
    name: ClassVar[str] = "endpoint"

    def decide(self, data: Input, knowledge: Knowledge) -> Decided:
        if data:
            raise QueryError("with an endpoint the data comes from the endpoint; give no data")
        return self.rows(knowledge), ()

    def select(self, text: str) -> QueryResult:
        from .sparql import QueryResult
        variables, rows = self.client.select(text)
        return QueryResult(tuple(variables), tuple(rows))


def _ontology(knowledge: Knowledge) -> rdflib.Graph | None:
    """The graph the SPARQL back-ends add to the data: None for the bundled ontology alone."""
    from .knowledge import load_knowledge
    return None if knowledge is load_knowledge() else knowledge.graph


#: The decision back-ends by name (:data:`itkg.names.DECISION_BACKENDS`).
DECISION: dict[str, type] = {b.name: b for b in (Native, Rdflib, Oxigraph, Endpoint)}


def decision_backend(name: str, *, endpoint: SparqlEndpoint | None = None, input_format: str | None = None,
                     workers: int | None = None, strict: bool = False, progress: bool = False,
                     checksums: bool = False, timeout: float | None = None) -> DecisionBackend:
    """The decision back-end ``name`` (or the endpoint's, when one is given), with its options."""
    if endpoint is not None:
        return Endpoint(endpoint)
    if name not in names.LOCAL_DECISION_BACKENDS:
        raise QueryError(f"unknown engine {name!r}; use one of {', '.join(names.LOCAL_DECISION_BACKENDS)}")
    if name == "native":
        return Native(input_format, workers, strict, progress, checksums)
    return cast(DecisionBackend, DECISION[name](input_format, strict, timeout))


def as_paths(data: object) -> list[Path] | None:
    """``data`` as a list of paths, when it names files (else ``None``)."""
    if isinstance(data, (str, os.PathLike)):
        return [Path(data)]
    if isinstance(data, (list, tuple)) and all(isinstance(p, (str, os.PathLike)) for p in data):
        return [Path(p) for p in data]
    return None


__all__ = ["DecisionBackend", "ValidationBackend", "DECISION", "decision_backend", "Native", "Rdflib",
           "Oxigraph", "Endpoint", "as_paths"]
