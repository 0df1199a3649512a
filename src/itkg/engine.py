"""itkg's native rule engine: contract §3 evaluated patient by patient over an index of the triples.

Why not only SPARQL: the contract's queries (``queries/*.rq``) are the portable statement of the
rules and run in any engine, but a hospital population needs a linear pass that also keeps the
facts behind each decision. This engine reads *what* the rules are from :class:`~itkg.knowledge.Knowledge`
(the ontology's indication facts and class hierarchy) and applies the contract's fixed procedure:
criteria, then the two prerequisites with "latest record wins" and its tie-breaks. The test suite
checks that it gives the same rows as the SPARQL queries in rdflib and Oxigraph.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Iterable, Iterator, NamedTuple, Sequence

import pyoxigraph as ox

from . import vocab
from .knowledge import Criterion, Indication, Knowledge, Prerequisite
from .loading import node_id
from .results import (Status, CriterionExplanation, EligibilityResult, IndicationExplanation,
                      PatientExplanation, PrerequisiteCheck)

_DATE = re.compile(r"^(-?\d{4,})-(\d{2})-(\d{2})(Z|[+-]\d{2}:\d{2})?$")

#: The links from a patient to the records the rules read (:meth:`PatientIndex.records`).
RECORD_LINKS = (vocab.HAS_CONDITION, vocab.RECEIVED_TREATMENT, vocab.HAS_CONSENT, vocab.HAS_CSF_ASSESSMENT)
_NO_PROPERTIES: dict[str, list] = {}

#: An object in the index: a node id (IRI or ``_:id``), or a literal as (lexical form, datatype).
Obj = "str | tuple[str, str]"


class PatientIndex:
    """The triples the rules look at, grouped by subject: ``node -> predicate -> [objects]``.

    Only the contract's predicates are kept (see :data:`itkg.vocab.INDEXED_PREDICATES`), plus the
    ``rdfs:subClassOf`` axioms patient files may add to the hierarchy.
    """

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, list]] = {}
        self.subclass_axioms: list[tuple[str, str]] = []

    @classmethod
    def from_triples(cls, triples: Iterable[ox.Triple]) -> "PatientIndex":
        index = cls()
        index.add_triples(triples)
        return index

    def add_triples(self, triples: Iterable[ox.Triple]) -> None:
        nodes, indexed = self.nodes, vocab.INDEXED_PREDICATES
        for triple in triples:
            predicate = triple.predicate.value
            if predicate in indexed:
                obj = triple.object
                value = (obj.value, obj.datatype.value) if isinstance(obj, ox.Literal) else node_id(obj)
                nodes.setdefault(node_id(triple.subject), {}).setdefault(predicate, []).append(value)
            elif predicate == vocab.RDFS_SUBCLASS_OF and isinstance(triple.object, ox.NamedNode) \
                    and isinstance(triple.subject, ox.NamedNode):
                self.subclass_axioms.append((triple.subject.value, triple.object.value))

    def get(self, node: str, predicate: str) -> Sequence:
        return self.nodes.get(node, _NO_PROPERTIES).get(predicate, ())

    def patients(self) -> list[str]:
        """Every node with a condition (only those can meet an indication), sorted."""
        return sorted(n for n, props in self.nodes.items() if vocab.HAS_CONDITION in props)

    def records(self, patient: str) -> list[str]:
        """The nodes whose triples the rules read for ``patient``, besides the patient's own: its
        conditions, prior treatments, consents and CSF assessments. A patient can be decided
        from an index holding just these nodes (see :mod:`itkg.parallel`)."""
        found = self.nodes.get(patient, _NO_PROPERTIES)
        return [n for link in RECORD_LINKS for n in found.get(link, ()) if isinstance(n, str)]

    def fragment(self, nodes: Iterable[str]) -> dict[str, dict[str, list]]:
        """The entries of ``nodes`` that are in this index (to merge into another with :meth:`merge`)."""
        found = self.nodes
        return {n: found[n] for n in nodes if n in found}

    def take(self, nodes: Iterable[str]) -> dict[str, dict[str, list]]:
        """Like :meth:`fragment`, but removes the entries from this index."""
        found = self.nodes
        return {n: found.pop(n) for n in nodes if n in found}

    def merge(self, fragment: dict[str, dict[str, list]]) -> None:
        """Add the triples of a :meth:`fragment` of another index."""
        for node, props in fragment.items():
            mine = self.nodes.setdefault(node, {})
            for predicate, values in props.items():
                mine.setdefault(predicate, []).extend(values)

    def is_patient(self, node: str) -> bool:
        """Whether ``node`` is typed ``itkg:Patient`` or links to patient records."""
        props = self.nodes.get(node)
        if not props:
            return False
        return vocab.PATIENT in props.get(vocab.RDF_TYPE, ()) or any(
            p in props for p in (vocab.HAS_CONDITION, vocab.RECEIVED_TREATMENT, vocab.HAS_CONSENT,
                                 vocab.HAS_CSF_ASSESSMENT, vocab.PLANNED_THERAPY))


def parse_date(value: object) -> _dt.date | None:
    """The calendar date of an ``xsd:date`` literal (a timezone is ignored), else ``None``.

    >>> parse_date(("2026-03-02", "http://www.w3.org/2001/XMLSchema#date"))
    datetime.date(2026, 3, 2)
    >>> parse_date(("2026-03-02", "http://www.w3.org/2001/XMLSchema#string")) is None
    True
    """
    if not isinstance(value, tuple) or value[1] != vocab.XSD_DATE:
        return None
    match = _DATE.match(value[0])
    if not match:
        return None
    try:
        return _dt.date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


def _or_join(words: list[str]) -> str:
    words = sorted(set(words))
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _ref(node: str) -> str:
    return node if node.startswith("_:") else f"<{node}>"


class _Record(NamedTuple):
    """A consent or CSF record: its node, latest date and decision values (a tuple: cheap to make)."""

    node: str
    date: _dt.date | None
    values: frozenset[str]


_CONSENT_LOST = frozenset({vocab.CONSENT_REFUSED, vocab.CONSENT_WITHDRAWN})
_CSF_LOST = frozenset({vocab.IMPAIRED_CSF})


class RuleEngine:
    """Applies the rules of a :class:`Knowledge` to a :class:`PatientIndex`."""

    def __init__(self, knowledge: Knowledge, index: PatientIndex) -> None:
        self.k = knowledge.with_subclass_axioms(index.subclass_axioms)
        self.index = index
        # Caches: a population repeats a few classes, therapies and dates millions of times.
        self._verdicts: dict[tuple[object, frozenset[str]], bool] = {}
        self._prerequisites: dict[str, tuple[Prerequisite, ...]] = {}
        self._dates: dict[object, _dt.date | None] = {}

    # -- criteria ------------------------------------------------------------------------------

    def _is_in(self, cls: object, classes: frozenset[str]) -> bool:
        """Whether ``cls`` is one of ``classes`` or below one of them (remembered)."""
        key = (cls, classes)
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._verdicts[key] = isinstance(cls, str) and not self.k.ancestors(cls).isdisjoint(classes)
        return verdict

    def _typed(self, node: str, classes: frozenset[str]) -> str | None:
        """The first type of ``node`` (sorted) that is one of ``classes`` or below one of them."""
        for cls in sorted(self.index.get(node, vocab.RDF_TYPE)):
            if self._is_in(cls, classes):
                return cls
        return None

    def criterion(self, patient: str, criterion: Criterion) -> CriterionExplanation:
        """Whether ``patient`` meets ``criterion``: the facts found for it and, when it is not met,
        the requirement that failed (and prior treatments that ended the wrong way)."""
        get, label = self.index.get, self.k.label
        conditions: list[str] = []
        for condition in sorted(c for c in get(patient, vocab.HAS_CONDITION) if isinstance(c, str)):
            cls = self._typed(condition, criterion.condition_classes)
            if cls is not None:
                conditions.append(f"{label(cls)} diagnosis {_ref(condition)}")
        treatments: list[str] = []
        near_misses: list[str] = []
        if criterion.needs_prior_treatment:
            for treatment in sorted(t for t in get(patient, vocab.RECEIVED_TREATMENT) if isinstance(t, str)):
                cls = self._typed(treatment, criterion.treatment_classes)
                if cls is None:
                    continue
                outcomes = sorted(o for o in get(treatment, vocab.HAS_OUTCOME) if isinstance(o, str))
                good = [o for o in outcomes if o in criterion.outcomes]
                treatments += [f"{label(cls)} {_ref(treatment)} ended with {label(o)}" for o in good]
                if not good:
                    ended = _or_join([label(o) for o in outcomes]) if outcomes else "no recorded outcome"
                    near_misses.append(f"{label(cls)} {_ref(treatment)} ended with {ended}")
        failed: list[str] = []
        if not conditions:
            failed.append(f"no {_or_join([label(c) for c in criterion.condition_classes])} diagnosis")
        if criterion.needs_prior_treatment and not treatments:
            failed.append("no prior {} with {}".format(
                _or_join([label(c) for c in criterion.treatment_classes]),
                _or_join([label(o) for o in criterion.outcomes])))
            failed += near_misses
        return CriterionExplanation(criterion.iri, criterion.label, not failed,
                                    tuple(conditions + treatments), tuple(failed))

    # -- prerequisites ---------------------------------------------------------------------------

    def _date(self, value: object) -> _dt.date | None:
        found = self._dates.get(value, False)
        if found is False:
            found = self._dates[value] = parse_date(value)
        return found  # type: ignore[return-value]

    def _records(self, nodes: Iterable, date_property: str, value_property: str) -> list[_Record]:
        records = []
        for node in nodes:
            if not isinstance(node, str):
                continue
            dates = [d for d in map(self._date, self.index.get(node, date_property)) if d]
            values = frozenset(v for v in self.index.get(node, value_property) if isinstance(v, str))
            records.append(_Record(node, max(dates) if dates else None, values))
        return records

    @staticmethod
    def _latest(records: list[_Record]) -> list[_Record]:
        """The records tied for latest: the latest date, or all of them when none is dated."""
        dated = [r.date for r in records if r.date is not None]
        if not dated:
            return sorted(records, key=lambda r: r.node)
        newest = max(dated)
        return sorted((r for r in records if r.date == newest), key=lambda r: r.node)

    def _decide(self, code: str, latest: list[_Record], good: str, bad: frozenset[str],
                what: str) -> PrerequisiteCheck:
        """Apply "a refusal, withdrawal or impaired finding among the latest wins"."""
        nodes = tuple(r.node for r in latest)
        when = latest[0].date.isoformat() if latest[0].date else "undated"
        refs = ", ".join(_ref(n) for n in nodes)
        losing = sorted({v for r in latest for v in r.values if v in bad})
        if losing:
            return PrerequisiteCheck(code, "failed",
                                     f"{what} {refs} ({when}): {_or_join([self.k.label(v) for v in losing])}", nodes)
        if any(good in r.values for r in latest):
            return PrerequisiteCheck(code, "met", f"{what} {refs} ({when}): {self.k.label(good)}", nodes)
        return PrerequisiteCheck(code, "missing", f"{what} {refs} ({when}) records no decision", nodes)

    def consent(self, patient: str, therapy: str) -> PrerequisiteCheck:
        """Informed consent: the latest consent record covering ``therapy`` must grant it."""
        covering_classes = self.k.ancestors(therapy)
        covering = [c for c in self.index.get(patient, vocab.HAS_CONSENT) if isinstance(c, str)
                    and covering_classes.intersection(self.index.get(c, vocab.COVERS_THERAPY))]
        records = self._records(covering, vocab.CONSENT_DATE, vocab.CONSENT_STATUS)
        if not records:
            return PrerequisiteCheck(vocab.INFORMED_CONSENT, "missing",
                                     f"no informed consent covering {self.k.label(therapy)} is recorded")
        return self._decide(vocab.INFORMED_CONSENT, self._latest(records), vocab.CONSENT_GRANTED,
                            _CONSENT_LOST,
                            f"latest informed consent covering {self.k.label(therapy)}")

    def csf(self, patient: str) -> PrerequisiteCheck:
        """CSF circulation: the latest CSF circulation assessment must find good circulation."""
        records = self._records(self.index.get(patient, vocab.HAS_CSF_ASSESSMENT),
                                vocab.ASSESSMENT_DATE, vocab.FINDING)
        if not records:
            return PrerequisiteCheck(vocab.CSF_CIRCULATION, "missing",
                                     "no CSF circulation assessment is recorded")
        return self._decide(vocab.CSF_CIRCULATION, self._latest(records), vocab.GOOD_CSF,
                            _CSF_LOST, "latest CSF circulation assessment")

    def prerequisites(self, patient: str, therapy: str) -> tuple[PrerequisiteCheck, ...]:
        required = self._prerequisites.get(therapy)
        if required is None:
            required = self._prerequisites[therapy] = self.k.prerequisites_of(therapy)
        checks = []
        for prerequisite in required:
            if prerequisite.code == vocab.INFORMED_CONSENT:
                checks.append(self.consent(patient, therapy))
            elif prerequisite.code == vocab.CSF_CIRCULATION:
                checks.append(self.csf(patient))
        return tuple(checks)

    # -- rows ----------------------------------------------------------------------------------

    def explain_indication(self, patient: str, indication: Indication) -> IndicationExplanation:
        criteria = tuple(self.criterion(patient, c) for c in indication.criteria)
        met = any(c.met for c in criteria)
        return IndicationExplanation(indication.iri, indication.label, indication.therapy, met, criteria,
                                     self._result(patient, indication, criteria) if met else None)

    def _result(self, patient: str, indication: Indication,
                criteria: Iterable[CriterionExplanation]) -> EligibilityResult:
        """The row of a met indication; the evidence is that of its met ``criteria``."""
        checks = self.prerequisites(patient, indication.therapy)
        states = {c.state for c in checks}
        status: Status = "excluded" if "failed" in states else "pending" if "missing" in states else "qualifies"
        evidence = [f"{c.label}: {fact}" for c in criteria if c.met for fact in c.evidence]
        evidence += [f"{c.code}: {c.reason}" for c in checks]
        return EligibilityResult(patient, indication.therapy, indication.iri, status,
                                 tuple(c.code for c in checks if c.state != "met"), tuple(evidence), checks)

    def _has_type_in(self, props: dict[str, list], classes: frozenset[str]) -> bool:
        """Whether a node (its properties) is typed with one of ``classes`` or a class below."""
        verdicts = self._verdicts
        for cls in props.get(vocab.RDF_TYPE, ()):
            verdict = verdicts.get((cls, classes))
            if verdict is None:
                verdict = self._is_in(cls, classes)
            if verdict:
                return True
        return False

    def meets(self, patient: str, criterion: Criterion) -> bool:
        """``criterion(patient, criterion).met``, without building the texts that explain it.

        Most patients meet at most one indication; deciding the others this way first makes
        :meth:`rows` several times faster on a population, with the same rows. (Literals among
        the objects are never keys of ``nodes`` nor members of the criterion's sets, so they
        drop out as in :meth:`criterion`.)
        """
        nodes = self.index.nodes
        props = nodes.get(patient, _NO_PROPERTIES)
        classes = criterion.condition_classes
        if not any(self._has_type_in(nodes.get(c, _NO_PROPERTIES), classes)
                   for c in props.get(vocab.HAS_CONDITION, ())):
            return False
        if not criterion.needs_prior_treatment:
            return True
        classes, outcomes = criterion.treatment_classes, criterion.outcomes
        for treatment in props.get(vocab.RECEIVED_TREATMENT, ()):
            found = nodes.get(treatment, _NO_PROPERTIES)
            if not outcomes.isdisjoint(found.get(vocab.HAS_OUTCOME, ())) and self._has_type_in(found, classes):
                return True
        return False

    def rows(self, patient: str) -> Iterator[EligibilityResult]:
        """The eligibility rows of one patient: one per indication it meets (the rows of
        :meth:`explain_indication`, explaining only the criteria that are met)."""
        for indication in self.k.indications:
            met = [self.criterion(patient, c) for c in indication.criteria if self.meets(patient, c)]
            if met:
                yield self._result(patient, indication, met)

    def eligibility(self) -> list[EligibilityResult]:
        """Every row of contract §3, sorted by patient, therapy and indication."""
        return sorted(row for patient in self.index.patients() for row in self.rows(patient))

    def explain(self, patient: str) -> PatientExplanation:
        return PatientExplanation(
            patient, tuple(self.explain_indication(patient, i) for i in self.k.indications))
