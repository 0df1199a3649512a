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
from .guards import is_valid_lexical
from .knowledge import Criterion, Indication, Knowledge, Prerequisite
from .loading import node_id
from .results import (PrerequisiteState, Status, CriterionExplanation, EligibilityResult, IndicationExplanation,
                      PatientExplanation, PrerequisiteCheck)


#: The links from a patient to the records the rules read (:meth:`PatientIndex.records`).
RECORD_LINKS = (vocab.HAS_CONDITION, vocab.RECEIVED_TREATMENT, vocab.HAS_CONSENT, vocab.HAS_CSF_ASSESSMENT)
_NO_PROPERTIES: dict[str, list] = {}

#: An object in the index: a node id (IRI or ``_:id``), or a literal as (lexical form, datatype).
Obj = "str | tuple[str, str]"


class PatientIndex:
    """The triples the rules look at, grouped by subject: ``node -> predicate -> [objects]``.

    Only the contract's predicates are kept (see :data:`itkg.vocab.INDEXED_PREDICATES`). Subclass
    axioms in patient data are set aside by the loaders (:mod:`itkg.setaside`); the hierarchy
    is the ontology's and the extensions' (``subclass_axioms`` stays empty, for callers of 0.1).
    """

    def __init__(self, predicates: frozenset[str] | None = None) -> None:
        self.nodes: dict[str, dict[str, list]] = {}
        self.subclass_axioms: list[tuple[str, str]] = []
        #: the predicates kept (:meth:`itkg.knowledge.Knowledge.indexed_predicates`)
        self.predicates = predicates if predicates is not None else vocab.INDEXED_PREDICATES

    @classmethod
    def from_triples(cls, triples: Iterable[ox.Triple],
                     predicates: frozenset[str] | None = None) -> "PatientIndex":
        index = cls(predicates)
        index.add_triples(triples)
        return index

    def add_triples(self, triples: Iterable[ox.Triple]) -> None:
        nodes, indexed = self.nodes, self.predicates
        for triple in triples:
            predicate = triple.predicate.value
            if predicate in indexed:
                obj = triple.object
                value = (obj.value, obj.datatype.value) if isinstance(obj, ox.Literal) else node_id(obj)
                nodes.setdefault(node_id(triple.subject), {}).setdefault(predicate, []).append(value)

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


_XSD = "http://www.w3.org/2001/XMLSchema#"
_DATE_TYPES = frozenset({_XSD + "date", _XSD + "dateTime"})
_DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(?:$|[TZ+-])")


def record_day(value: object) -> str | None:
    """The calendar day of a record's date as written (``YYYY-MM-DD``), or ``None`` when the
    value does not date the record (contract §6): only a valid ``xsd:date`` or ``xsd:dateTime``
    with a year from 0001 to 9999 does, and its timezone does not move it to another day.

    >>> record_day(("2026-03-02", "http://www.w3.org/2001/XMLSchema#date"))
    '2026-03-02'
    >>> record_day(("2026-03-02T23:30:00-05:00", "http://www.w3.org/2001/XMLSchema#dateTime"))
    '2026-03-02'
    >>> [record_day((v, "http://www.w3.org/2001/XMLSchema#date")) for v in ("2026-02-30", "0000-01-01", "12026-01-01")]
    [None, None, None]
    >>> record_day(("2026-03-02", "http://www.w3.org/2001/XMLSchema#string")) is None
    True
    """
    if not isinstance(value, tuple) or value[1] not in _DATE_TYPES:
        return None
    lexical = value[0]
    if not _DAY.match(lexical) or lexical.startswith("0000") or not is_valid_lexical(lexical, value[1]):
        return None
    return lexical[:10]


def parse_date(value: object) -> _dt.date | None:
    """:func:`record_day` as a :class:`datetime.date`.

    >>> parse_date(("2026-03-02", "http://www.w3.org/2001/XMLSchema#date"))
    datetime.date(2026, 3, 2)
    """
    day = record_day(value)
    return _dt.date.fromisoformat(day) if day is not None else None


def _or_join(words: list[str]) -> str:
    words = sorted(set(words))
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _ref(node: str) -> str:
    return node if node.startswith("_:") else f"<{node}>"


class _Record(NamedTuple):
    """A consent or CSF record: its node, latest date and decision values (a tuple: cheap to make)."""

    node: str
    date: str | None
    values: frozenset[str]


class RuleEngine:
    """Applies the rules of a :class:`Knowledge` to a :class:`PatientIndex`."""

    def __init__(self, knowledge: Knowledge, index: PatientIndex) -> None:
        self.k = knowledge.with_subclass_axioms(index.subclass_axioms)
        self.index = index
        # Caches: a population repeats a few classes, therapies and dates millions of times.
        self._verdicts: dict[tuple[object, frozenset[str]], bool] = {}
        self._prerequisites: dict[str, tuple[Prerequisite, ...]] = {}
        self._dates: dict[object, str | None] = {}
        #: per (prerequisite, therapy): the classes that cover the therapy and the words for it
        self._wording: dict[tuple[str, str], tuple[frozenset[str] | None, str, str]] = {}
        #: the condition classes of every criterion, and per set of a patient's conditions' types
        #: those of them the conditions meet (:meth:`_met_condition_classes`)
        self._condition_classes = frozenset(c.condition_classes for i in self.k.indications for c in i.criteria)
        self._met_by_types: dict[frozenset, frozenset[frozenset[str]]] = {}

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
            wanted = _or_join([label(c) for c in criterion.condition_classes])
            broader = self._broader_conditions(patient, criterion.condition_classes)
            if broader:  # e.g. spasticity recorded, but not as severe spasticity
                failed += [f"{label(cls)} diagnosis {_ref(node)} is recorded, but not as {wanted}"
                           for node, cls in broader]
            else:
                failed.append(f"no {wanted} diagnosis")
        if criterion.needs_prior_treatment and not treatments:
            failed.append("no prior {} with {}".format(
                _or_join([label(c) for c in criterion.treatment_classes]),
                _or_join([label(o) for o in criterion.outcomes])))
            failed += near_misses
        return CriterionExplanation(criterion.iri, criterion.label, not failed,
                                    tuple(conditions + treatments), tuple(failed))

    def _broader_conditions(self, patient: str, classes: frozenset[str]) -> list[tuple[str, str]]:
        """The patient's conditions typed with a class *above* one of ``classes`` (a recorded
        spasticity where severe spasticity is required): (node, class), sorted."""
        found = []
        for condition in sorted(c for c in self.index.get(patient, vocab.HAS_CONDITION) if isinstance(c, str)):
            for cls in sorted(t for t in self.index.get(condition, vocab.RDF_TYPE) if isinstance(t, str)):
                if cls not in classes and any(cls in self.k.ancestors(c) for c in classes):
                    found.append((condition, cls))
                    break
        return found

    # -- prerequisites ---------------------------------------------------------------------------

    def _date(self, value: object) -> str | None:
        found = self._dates.get(value, False)
        if found is False:
            found = self._dates[value] = record_day(value)
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
        """The records tied for latest: the latest day, or all of them when none is dated."""
        if len(records) == 1:  # (the common case)
            return records
        dated = [r.date for r in records if r.date is not None]
        if not dated:
            return sorted(records, key=lambda r: r.node)
        newest = max(dated)
        return sorted((r for r in records if r.date == newest), key=lambda r: r.node)

    def _decide(self, prerequisite: Prerequisite, latest: list[_Record], what: str) -> PrerequisiteCheck:
        """Apply "among the latest records, a failing value wins; else a meeting value meets", and
        say so in words: when records tie on their day, or one record states several values (a
        tie within itself), the evidence says what tied and which rule decided."""
        code, label = prerequisite.code, self.k.label
        nodes = tuple(r.node for r in latest)
        when = latest[0].date or "undated"
        if len(latest) == 1 and len(latest[0].values) <= 1:  # one record, one value: nothing tied
            # (the common case, as below without the sets: the same words)
            value = next(iter(latest[0].values), None)
            if value is not None and (value in prerequisite.failing or value in prerequisite.meeting):
                return PrerequisiteCheck(code, "failed" if value in prerequisite.failing else "met",
                                         f"{what} {_ref(nodes[0])} ({when}): {_or_join([label(value)])}", nodes)
            return PrerequisiteCheck(code, "missing", f"{what} {_ref(nodes[0])} ({when}) records no decision", nodes)
        refs = ", ".join(_ref(n) for n in nodes)
        losing = sorted({v for r in latest for v in r.values if v in prerequisite.failing})
        meeting = sorted({v for r in latest for v in r.values if v in prerequisite.meeting})
        stated = sorted({v for r in latest for v in r.values})
        state: PrerequisiteState = "failed" if losing else "met" if meeting else "missing"
        deciding = losing or meeting
        if len(latest) == 1 and len(stated) <= 1:  # one record, one value: nothing tied
            if deciding:
                return PrerequisiteCheck(code, state, f"{what} {refs} ({when}): {_or_join([label(v) for v in deciding])}", nodes)
            return PrerequisiteCheck(code, state, f"{what} {refs} ({when}) records no decision", nodes)
        words = " and ".join(label(v) for v in stated) or "no decision"
        if len(latest) > 1:
            head = (f"{what}: {len(latest)} undated records ({refs})" if when == "undated"
                    else f"{what}: {len(latest)} records on {when} ({refs})")
            head += f" tie, stating {words}"
        else:
            head = f"{what} {refs} ({when}) states {words}, a tie within one record"
        if state == "failed":
            rule = f"{_or_join([label(v) for v in losing])} wins a tie"
        elif state == "met":
            rule = f"{_or_join([label(v) for v in meeting])}, with nothing against it, meets it"
        else:
            rule = "none of them records a decision"
        return PrerequisiteCheck(code, state, f"{head}: {rule}", nodes)

    def prerequisite(self, patient: str, therapy: str, prerequisite: Prerequisite) -> PrerequisiteCheck:
        """Check one prerequisite as the ontology describes it (:class:`Prerequisite`): the
        patient's records by its link (those covering ``therapy``, if it has a scope), the latest
        of them, and their decision values."""
        get = self.index.get
        wording = self._wording.get((prerequisite.iri, therapy))
        if wording is None:
            label = self.k.label
            what = label(prerequisite.record_class) if prerequisite.record_class else label(prerequisite.link)
            wording = self._wording[(prerequisite.iri, therapy)] = (
                frozenset(self.k.ancestors(therapy)) if prerequisite.scope else None,
                f" covering {label(therapy)}" if prerequisite.scope else "", what)
        covering_classes, covering, what = wording
        nodes = [n for n in get(patient, prerequisite.link) if isinstance(n, str)]
        scope = prerequisite.scope
        if covering_classes is not None and scope:
            nodes = [n for n in nodes if not covering_classes.isdisjoint(get(n, scope))]
        records = self._records(nodes, prerequisite.date, prerequisite.decision)
        if not records:
            return PrerequisiteCheck(prerequisite.code, "missing", f"no {what}{covering} is recorded")
        return self._decide(prerequisite, self._latest(records), f"latest {what}{covering}")

    def consent(self, patient: str, therapy: str) -> PrerequisiteCheck:
        """The informed consent prerequisite of ``therapy`` (kept for callers of version 0.1)."""
        return self._by_code(patient, therapy, vocab.INFORMED_CONSENT)

    def csf(self, patient: str, therapy: str = vocab.INTRATHECAL_THERAPY) -> PrerequisiteCheck:
        """The CSF circulation prerequisite (kept for callers of version 0.1)."""
        return self._by_code(patient, therapy, vocab.CSF_CIRCULATION)

    def _by_code(self, patient: str, therapy: str, code: str) -> PrerequisiteCheck:
        for prerequisite in self.k.prerequisites_of(therapy):
            if prerequisite.code == code:
                return self.prerequisite(patient, therapy, prerequisite)
        raise KeyError(code)

    def prerequisites(self, patient: str, therapy: str) -> tuple[PrerequisiteCheck, ...]:
        required = self._prerequisites.get(therapy)
        if required is None:
            required = self._prerequisites[therapy] = tuple(
                p for p in self.k.prerequisites_of(therapy) if p.complete)
        return tuple(self.prerequisite(patient, therapy, p) for p in required)

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

    def _met_condition_classes(self, props: dict[str, list]) -> frozenset[frozenset[str]]:
        """The criteria's condition classes (:attr:`Criterion.condition_classes`) that the
        patient's conditions meet: a condition typed with one of them or a class below.

        Remembered per set of the conditions' types: a population has a few such sets, so each
        patient costs one set and one lookup for every criterion of every indication, and most
        (no relevant condition) nothing more. (Literals among the objects are never keys of
        ``nodes`` nor classes, so they drop out as in :meth:`criterion`.)"""
        nodes = self.index.nodes
        types = frozenset([t for c in props.get(vocab.HAS_CONDITION, ())
                           for t in nodes.get(c, _NO_PROPERTIES).get(vocab.RDF_TYPE, ())])
        found = self._met_by_types.get(types)
        if found is None:
            found = frozenset(classes for classes in self._condition_classes
                              if any(self._is_in(t, classes) for t in types))
            if len(self._met_by_types) < 1 << 12:
                self._met_by_types[types] = found
        return found

    def _treated(self, props: dict[str, list], criterion: Criterion) -> bool:
        """Whether the patient (its properties) has the prior treatment ``criterion`` needs (a
        treatment of its classes that ended with one of its outcomes), or it needs none."""
        if not criterion.needs_prior_treatment:
            return True
        nodes = self.index.nodes
        classes, outcomes = criterion.treatment_classes, criterion.outcomes
        for treatment in props.get(vocab.RECEIVED_TREATMENT, ()):
            found = nodes.get(treatment, _NO_PROPERTIES)
            if not outcomes.isdisjoint(found.get(vocab.HAS_OUTCOME, ())) and self._has_type_in(found, classes):
                return True
        return False

    def meets(self, patient: str, criterion: Criterion) -> bool:
        """``criterion(patient, criterion).met``, without building the texts that explain it.

        Most patients meet at most one indication; deciding the others this way first makes
        :meth:`rows` several times faster on a population, with the same rows.
        """
        props = self.index.nodes.get(patient, _NO_PROPERTIES)
        return criterion.condition_classes in self._met_condition_classes(props) and self._treated(props, criterion)

    def rows(self, patient: str) -> Iterator[EligibilityResult]:
        """The eligibility rows of one patient: one per indication it meets (the rows of
        :meth:`explain_indication`, explaining only the criteria that are met)."""
        props = self.index.nodes.get(patient, _NO_PROPERTIES)
        met_classes = self._met_condition_classes(props)
        if met_classes:  # (else no criterion is met: most of a population)
            for indication in self.k.indications:
                found = self._row(patient, props, met_classes, indication)
                if found is not None:
                    yield found

    def row(self, patient: str, indication: Indication) -> EligibilityResult | None:
        """The row of ``patient`` for ``indication``, or ``None`` when it is not met: the one
        wording of evidence, which the SPARQL back-ends use too (:mod:`itkg.backends`)."""
        props = self.index.nodes.get(patient, _NO_PROPERTIES)
        return self._row(patient, props, self._met_condition_classes(props), indication)

    def _row(self, patient: str, props: dict[str, list], met_classes: frozenset[frozenset[str]],
             indication: Indication) -> EligibilityResult | None:
        met = [self.criterion(patient, c) for c in indication.criteria
               if c.condition_classes in met_classes and self._treated(props, c)]
        return self._result(patient, indication, met) if met else None

    def eligibility(self) -> list[EligibilityResult]:
        """Every row of contract §3, sorted by patient, therapy and indication."""
        return sorted(row for patient in self.index.patients() for row in self.rows(patient))

    def explain(self, patient: str) -> PatientExplanation:
        return PatientExplanation(
            patient, tuple(self.explain_indication(patient, i) for i in self.k.indications))
