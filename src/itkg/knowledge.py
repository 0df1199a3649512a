"""The clinical rules, read from the ontology rather than written in Python.

:class:`Knowledge` holds what the rule engine needs from ``ontology/itkg.ttl``: the indications and
their criteria (through ``queries/indication-criteria.rq``), the class hierarchy for subclass
closure, the prerequisites of intrathecal therapy and the labels used to explain decisions. Adding a
condition class to a criterion in the ontology changes what itkg decides, with no code change.

What the rule engine reads of the bundled ontology is also written, by ``python -m itkg.build``,
to ``ontology/itkg.knowledge.json`` (:func:`knowledge_json`), with the SHA-256 of the Turtle it was
read from: a command that decides from the bundled ontology alone reads that file instead of
parsing the Turtle with rdflib and running ``queries/indication-criteria.rq`` (a third of a
second of start-up, most of it importing rdflib and its SPARQL parser). The ontology stays the
one source: when the Turtle's checksum is not the file's (edited, not rebuilt) the Turtle is read
as before, and ``python -m itkg.build --check`` (``tests/test_build.py``) fails. Extensions are
always read with rdflib, and :attr:`Knowledge.graph` parses the Turtle when it is first asked for.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence, cast

from . import vocab
from .resources import ontology_path, query_path

if TYPE_CHECKING:
    import rdflib

_OWL = "http://www.w3.org/2002/07/owl#"
_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_RDFS = "http://www.w3.org/2000/01/rdf-schema#"
_SKOS = "http://www.w3.org/2004/02/skos/core#"


@dataclass(frozen=True)
class Criterion:
    """One way of meeting an indication (see ``itkg:IndicationCriterion``)."""

    iri: str
    label: str
    condition_classes: frozenset[str]
    treatment_classes: frozenset[str]
    outcomes: frozenset[str]

    @property
    def needs_prior_treatment(self) -> bool:
        return bool(self.treatment_classes)


@dataclass(frozen=True)
class Indication:
    """An indication: the therapy it indicates and its criteria (any one suffices)."""

    iri: str
    label: str
    therapy: str
    criteria: tuple[Criterion, ...]


@dataclass(frozen=True)
class Prerequisite:
    """A prerequisite of intrathecal therapy, named by its code (``skos:notation``), and how it
    is checked, as the ontology describes it (``itkg:recordLink`` and the properties beside it):
    the patient's records reached by ``link`` (those whose ``scope`` covers the therapy, when it
    has a scope), dated by ``date``; among the latest, a ``failing`` value of ``decision`` fails
    it, else a ``meeting`` value meets it, else it is missing."""

    iri: str
    code: str
    label: str
    link: str = ""
    record_class: str = ""
    date: str = ""
    decision: str = ""
    meeting: frozenset[str] = frozenset()
    failing: frozenset[str] = frozenset()
    scope: str | None = None
    order: int = 0
    variable: str = ""
    action: str = ""

    @property
    def complete(self) -> bool:
        """Whether the ontology says enough to check it (a link, a decision and a meeting value)."""
        return bool(self.link and self.decision and self.meeting)


class Knowledge:
    """The rules and terms of the ontology, indexed for the rule engine."""

    #: The triples of the extension files this knowledge holds besides the ontology (empty
    #: for the bundled ontology alone), and those files.
    extensions: rdflib.Graph | None = None
    extension_paths: tuple[str, ...] = ()

    def __init__(self, graph: rdflib.Graph) -> None:
        import rdflib
        self._graph: rdflib.Graph | None = graph
        self._turtle: Path | None = None
        self.labels: dict[str, str] = {}
        for subject, label in graph.subject_objects(rdflib.URIRef(_RDFS + "label")):
            if isinstance(subject, rdflib.URIRef) and (
                    str(subject) not in self.labels or getattr(label, "language", None) == "en"):
                self.labels[str(subject)] = str(label)
        self._parents: dict[str, set[str]] = defaultdict(set)
        for child, parent in graph.subject_objects(rdflib.URIRef(_RDFS + "subClassOf")):
            if isinstance(child, rdflib.URIRef) and isinstance(parent, rdflib.URIRef):
                self._parents[str(child)].add(str(parent))
        members: dict[str, set[str]] = defaultdict(set)
        for subject, cls in graph.subject_objects(rdflib.URIRef(_RDF + "type")):
            if isinstance(subject, rdflib.URIRef) and isinstance(cls, rdflib.URIRef):
                members[str(cls)].add(str(subject))
        self._individuals = {cls: frozenset(found) for cls, found in members.items()}
        self._ancestors: dict[str, frozenset[str]] = {}
        self.indications = self._read_indications()
        self.prerequisites = self._read_prerequisites()
        ontology = rdflib.URIRef(vocab.ITKG + "ontology")
        version = graph.value(ontology, rdflib.URIRef(_OWL + "versionInfo"))
        version_iri = graph.value(ontology, rdflib.URIRef(_OWL + "versionIRI"))
        self.version = str(version) if version is not None else ""
        self.version_iri = str(version_iri) if version_iri is not None else ""

    @classmethod
    def from_json(cls, data: Mapping[str, Any], turtle: Path) -> "Knowledge":
        """The knowledge :func:`knowledge_json` wrote of the ontology ``turtle`` (whose graph is
        parsed only if :attr:`graph` is asked for)."""
        knowledge = object.__new__(cls)
        knowledge._graph, knowledge._turtle = None, turtle
        knowledge.labels = dict(data["labels"])
        knowledge._parents = defaultdict(set, {child: set(parents) for child, parents in data["parents"].items()})
        knowledge._individuals = {c: frozenset(found) for c, found in data["individuals"].items()}
        knowledge._ancestors = {}
        knowledge.indications = tuple(
            Indication(i["iri"], i["label"], i["therapy"], tuple(
                Criterion(c["iri"], c["label"], frozenset(c["conditions"]), frozenset(c["treatments"]),
                          frozenset(c["outcomes"])) for c in i["criteria"]))
            for i in data["indications"])
        knowledge.prerequisites = {
            therapy: tuple(Prerequisite(**{**p, "meeting": frozenset(p["meeting"]), "failing": frozenset(p["failing"])})
                           for p in found)
            for therapy, found in data["prerequisites"]}
        knowledge.version, knowledge.version_iri = data["version"], data["version_iri"]
        return knowledge

    @property
    def graph(self) -> rdflib.Graph:
        """The ontology's triples (and the extensions'), as an rdflib graph (parsed when first
        asked for, for knowledge read from ``itkg.knowledge.json``)."""
        if self._graph is None:
            import rdflib
            self._graph = rdflib.Graph().parse(self._turtle, format="turtle")
        return self._graph

    def individuals(self, cls: str) -> frozenset[str]:
        """The terms the ontology types ``cls`` (directly: ``?x rdf:type cls``): an outcome's
        individuals, or ``owl:AnnotationProperty``'s properties."""
        return self._individuals.get(cls, frozenset())

    # -- hierarchy ---------------------------------------------------------------------------

    def ancestors(self, cls: str) -> frozenset[str]:
        """``cls`` and every class it is a subclass of (``rdfs:subClassOf*``), cached."""
        found = self._ancestors.get(cls)
        if found is None:
            seen = {cls}
            stack = [cls]
            while stack:
                for parent in self._parents.get(stack.pop(), ()):
                    if parent not in seen:
                        seen.add(parent)
                        stack.append(parent)
            found = self._ancestors[cls] = frozenset(seen)
        return found

    def with_subclass_axioms(self, pairs: Iterable[tuple[str, str]]) -> "Knowledge":
        """A copy that also knows subclass axioms from patient data (``ex:MyCRPS rdfs:subClassOf
        itkg:ComplexRegionalPainSyndrome``), as the SPARQL queries do over the union of graphs."""
        pairs = [(c, p) for c, p in pairs if p not in self._parents.get(c, ())]
        if not pairs:
            return self
        copy = object.__new__(Knowledge)
        copy.__dict__.update(self.__dict__)
        copy._parents = defaultdict(set, {k: set(v) for k, v in self._parents.items()})
        for child, parent in pairs:
            copy._parents[child].add(parent)
        copy._ancestors = {}
        return copy

    @property
    def extended(self) -> bool:
        """Whether extension files add to the ontology (then generated texts are made anew)."""
        return bool(self.extension_paths)

    def indexed_predicates(self) -> frozenset[str]:
        """The predicates the rule engine reads: the contract's, and every prerequisite's record
        link, date, decision and scope (an extension may add a prerequisite of its own)."""
        found = set(vocab.INDEXED_PREDICATES)
        for p in self.all_prerequisites():
            found.update(x for x in (p.link, p.date, p.decision, p.scope) if x)
        return frozenset(found)

    def label(self, iri: str) -> str:
        """The English label of a term, or its local name when it has none."""
        return self.labels.get(iri) or iri.rsplit("/", 1)[-1].rsplit("#", 1)[-1]

    def prerequisites_of(self, therapy: str) -> tuple[Prerequisite, ...]:
        """The prerequisites a therapy (or any class above it) requires, in contract order."""
        codes = {}
        for cls in self.ancestors(therapy):
            for prerequisite in self.prerequisites.get(cls, ()):
                codes[prerequisite.code] = prerequisite
        return tuple(sorted(codes.values(), key=lambda p: (p.order, p.code)))

    def all_prerequisites(self) -> tuple[Prerequisite, ...]:
        """Every prerequisite some therapy requires, in list order (for the generated queries)."""
        found = {p.iri: p for ps in self.prerequisites.values() for p in ps}
        return tuple(sorted(found.values(), key=lambda p: (p.order, p.code)))

    # -- reading the ontology ----------------------------------------------------------------

    def _read_indications(self) -> tuple[Indication, ...]:
        from rdflib.query import ResultRow
        rows = list(self.graph.query(query_path("indication-criteria").read_text(encoding="utf-8")))
        # rdflib's SPARQL parser (pyparsing) leaves cycles of exceptions, tracebacks and frames,
        # and a frame holds its callers' frames: under a caller that pauses the collector (``itkg
        # eligibility``) every caller's locals, the rows too, outlived it until one collection
        # at the end walked and freed them all (0.3 s at 100,000 FHIR patients). Collected here,
        # while young: a few milliseconds, once per ontology read.
        gc.collect(0)
        criteria: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        owner: dict[str, tuple[str, str]] = {}
        for result_row in rows:
            row = cast(ResultRow, result_row)  # a SELECT query's rows
            indication, therapy, criterion = str(row.indication), str(row.therapy), str(row.criterion)
            owner.setdefault(criterion, (indication, therapy))
            facts = criteria[criterion]
            facts["conditions"].add(str(row.conditionClass))
            if row.treatmentClass is not None:
                facts["treatments"].add(str(row.treatmentClass))
                facts["outcomes"].add(str(row.outcome))
        by_indication: dict[tuple[str, str], list[Criterion]] = defaultdict(list)
        for criterion, facts in criteria.items():
            by_indication[owner[criterion]].append(Criterion(
                iri=criterion, label=self.label(criterion),
                condition_classes=frozenset(facts["conditions"]),
                treatment_classes=frozenset(facts["treatments"]),
                outcomes=frozenset(facts["outcomes"]),
            ))
        return tuple(
            Indication(iri=ind, label=self.label(ind), therapy=therapy,
                       criteria=tuple(sorted(crits, key=lambda c: c.iri)))
            for (ind, therapy), crits in sorted(by_indication.items())
        )

    def _read_prerequisites(self) -> Mapping[str, tuple[Prerequisite, ...]]:
        import rdflib
        found: dict[str, list[Prerequisite]] = defaultdict(list)
        graph, itkg = self.graph, vocab.ITKG
        requires = rdflib.URIRef(itkg + "requiresPrerequisite")
        notation = rdflib.URIRef(_SKOS + "notation")

        def one(node: rdflib.term.Node, name: str) -> str:
            value = graph.value(node, rdflib.URIRef(itkg + name))
            return str(value) if value is not None else ""

        def every(node: rdflib.term.Node, name: str) -> frozenset[str]:
            return frozenset(str(v) for v in graph.objects(node, rdflib.URIRef(itkg + name)))

        for therapy, node in graph.subject_objects(requires):
            code = graph.value(node, notation)
            if code is None:
                continue
            order = graph.value(node, rdflib.URIRef(itkg + "prerequisiteOrder"))
            try:
                position = int(str(order)) if order is not None else 1000
            except (TypeError, ValueError):
                position = 1000
            found[str(therapy)].append(Prerequisite(
                str(node), str(code), self.label(str(node)), link=one(node, "recordLink"),
                record_class=one(node, "recordClass"), date=one(node, "recordDate"),
                decision=one(node, "decisionProperty"), meeting=every(node, "meetingValue"),
                failing=every(node, "failingValue"), scope=one(node, "scopeProperty") or None,
                order=position, variable=one(node, "stateVariable") or str(code).replace("-", "_"),
                action=one(node, "worklistAction")))
        return {k: tuple(v) for k, v in found.items()}


def knowledge_path(turtle: Path) -> Path:
    """Where :func:`knowledge_json` of the ontology ``turtle`` is kept: beside it
    (``itkg.ttl``: ``itkg.knowledge.json``)."""
    return turtle.with_suffix(".knowledge.json")


def knowledge_json(knowledge: Knowledge, turtle: bytes) -> str:
    """What the rule engine and the FHIR mapping read of an ontology, as the text of
    ``itkg.knowledge.json`` (written by ``python -m itkg.build``), with the SHA-256 of the
    Turtle ``turtle`` it was read from; :func:`load_knowledge` reads it back
    (:meth:`Knowledge.from_json`) when the Turtle still has that checksum."""
    data = {
        "note": "Generated by `python -m itkg.build` from ontology/itkg.ttl; do not edit.",
        "turtle_sha256": hashlib.sha256(turtle).hexdigest(),
        "version": knowledge.version, "version_iri": knowledge.version_iri,
        "labels": knowledge.labels,
        "parents": {child: sorted(parents) for child, parents in sorted(knowledge._parents.items()) if parents},
        "individuals": {cls: sorted(found) for cls, found in sorted(knowledge._individuals.items())},
        "indications": [{"iri": i.iri, "label": i.label, "therapy": i.therapy, "criteria": [
            {"iri": c.iri, "label": c.label, "conditions": sorted(c.condition_classes),
             "treatments": sorted(c.treatment_classes), "outcomes": sorted(c.outcomes)} for c in i.criteria]}
            for i in knowledge.indications],
        "prerequisites": [[therapy, [{**{f: getattr(p, f) for f in _PREREQUISITE_FIELDS},
                                      "meeting": sorted(p.meeting), "failing": sorted(p.failing)} for p in found]]
                          for therapy, found in knowledge.prerequisites.items()],
    }
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


_PREREQUISITE_FIELDS = ("iri", "code", "label", "link", "record_class", "date", "decision", "scope", "order",
                        "variable", "action")


def _stored(path: Path) -> Knowledge | None:
    """The knowledge kept beside the ontology ``path`` (:func:`knowledge_path`), if it was read
    from this very Turtle (same SHA-256); else None (then the Turtle is read)."""
    try:
        turtle = path.read_bytes()
        data = json.loads(knowledge_path(path).read_text(encoding="utf-8"))
        if data.get("turtle_sha256") != hashlib.sha256(turtle).hexdigest():
            return None
        return Knowledge.from_json(data, path)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # unreadable: the Turtle is read
        return None


@lru_cache(maxsize=4)
def _load(path: Path) -> Knowledge:
    stored = _stored(path)
    if stored is not None:
        return stored
    import rdflib
    return Knowledge(rdflib.Graph().parse(path, format="turtle"))


def read_extension(path: str | os.PathLike[str]) -> rdflib.Graph:
    """The triples of a site's extension file (Turtle, N-Triples, JSON-LD or RDF/XML), read with
    the input gates of :func:`itkg.load` but nothing set aside: an extension *is* knowledge (its
    own subclasses of contract classes, indications, criteria, prerequisites)."""
    import pyoxigraph as ox
    import rdflib

    from .errors import InputError, UnsafeInputError
    from .loading import (DEFAULT_MAX_BYTES, IMPORTS_REFUSED, OWL_IMPORTS, detect_format, parse_failure,
                          read_checked, to_rdflib)
    source = Path(path)
    fmt = detect_format(source)
    data = read_checked(source, fmt, DEFAULT_MAX_BYTES)
    graph = rdflib.Graph()
    try:
        for quad in ox.parse(data, format=fmt, base_iri=source.resolve().as_uri(), without_named_graphs=True):
            if quad.predicate.value == OWL_IMPORTS:
                raise UnsafeInputError(source, IMPORTS_REFUSED)
            if type(quad.object) is ox.Triple:
                raise InputError(source, "RDF 1.2 triple terms are not supported in extension files")
            graph.add((to_rdflib(quad.subject), to_rdflib(quad.predicate), to_rdflib(quad.object)))
    except (SyntaxError, MemoryError, ValueError, OSError) as error:
        raise parse_failure(source, fmt, error) from None
    return graph


def _stamp(path: Path) -> tuple[str, float, int]:
    try:
        stat = path.stat()
    except OSError:
        return (str(path), 0.0, 0)
    return (str(path.resolve()), stat.st_mtime, stat.st_size)


@lru_cache(maxsize=8)
def _load_extended(path: Path, extensions: tuple[tuple[str, float, int], ...]) -> Knowledge:
    import rdflib
    graph = rdflib.Graph()
    graph += _load(path).graph
    own = rdflib.Graph()
    for name, _, _ in extensions:
        own += read_extension(name)
    graph += own
    knowledge = Knowledge(graph)
    knowledge.extensions = own
    knowledge.extension_paths = tuple(name for name, _, _ in extensions)
    return knowledge


def load_knowledge(path: Path | None = None, *,
                   extensions: Sequence[str | os.PathLike[str]] = ()) -> Knowledge:
    """The knowledge of the bundled ontology (or of ``path``) and of a site's ``extensions``
    (``--extension FILE``), parsed once per process (again when an extension file changes).

    >>> k = load_knowledge()
    >>> [i.iri.rsplit("/", 1)[1] for i in k.indications]
    ['CancerPainIndication', 'NonCancerPainIndication', 'SevereSpasticityIndication']
    """
    base = Path(path) if path is not None else ontology_path()
    if not extensions:
        return _load(base)
    return _load_extended(base, tuple(_stamp(Path(e)) for e in extensions))


def ontology_graph() -> rdflib.Graph:
    """The bundled ontology as an rdflib graph (shared: do not modify it)."""
    return load_knowledge().graph
