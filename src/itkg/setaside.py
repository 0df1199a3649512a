"""What itkg sets aside from patient files, and says it did (contract 1.1, §6).

Two kinds of statement in a patient file take no part in any decision:

* **Schema statements.** Patient data cannot change the rules: the knowledge is the ontology plus
  the extension files a user names (``--extension``). A statement *about* a class or an ``itkg:``
  term (``rdfs:subClassOf``, any ``owl:`` axiom, a criterion fact, a statement whose subject is an
  ``itkg:`` IRI) is dropped by every loader, so that no engine, shape run, HermiT run or ``itkg
  load`` upload ever sees it. One triple, ``itkg:IntrathecalAnalgesicTherapy rdfs:subClassOf
  itkg:IntrathecalBaclofenTherapy``, would otherwise turn consent to baclofen into consent to
  analgesia.
* **Ill-typed values** (``"2026-02-30"^^xsd:date``). One bad value must not stop a nightly run
  over a population: it is set aside as if absent, and counted with the file and line where it
  appears, never with the value (``strict`` refuses such input instead).

The loaders call :func:`split` (or, on the streaming path, :func:`is_schema` and
:func:`is_ill_typed` triple by triple) and record the counts on each
:class:`~itkg.loading.Source`; :func:`notes` words them for standard error.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence, TypeVar

import pyoxigraph as ox

from . import guards, vocab

OWL = "http://www.w3.org/2002/07/owl#"
RDFS = "http://www.w3.org/2000/01/rdf-schema#"

#: Predicates that state something about classes or properties.
SCHEMA_PREDICATES = frozenset({RDFS + "subClassOf", RDFS + "subPropertyOf", RDFS + "domain", RDFS + "range"})
#: ``rdf:type`` objects that make the subject a class, a property or an axiom.
_KEPT_OWL_TYPES = frozenset({OWL + "NamedIndividual", OWL + "Thing"})
SCHEMA_TYPES_EXTRA = frozenset({RDFS + "Class", RDFS + "Datatype", RDFS + "Resource",
                                "http://www.w3.org/1999/02/22-rdf-syntax-ns#Property"})


@lru_cache(maxsize=1)
def rule_predicates() -> frozenset[str]:
    """The ``itkg:`` properties that state rules (criterion and prerequisite facts): the ones the
    ontology declares as ``owl:AnnotationProperty``. Patient data may not use them."""
    from .knowledge import load_knowledge  # read once per process anyway

    return frozenset(p for p in load_knowledge().individuals(OWL + "AnnotationProperty") if p.startswith(vocab.ITKG))


def is_schema_parts(subject: str | None, predicate: str, obj: str | None) -> bool:
    """Whether a statement (subject IRI or None for a blank node, predicate IRI, object IRI or
    None) is about a class or an ``itkg:`` term, and so is not patient data."""
    if subject is not None and subject.startswith(vocab.ITKG):
        return True
    if predicate in SCHEMA_PREDICATES or predicate.startswith(OWL):
        return True
    if predicate == vocab.RDF_TYPE and obj is not None:
        return (obj.startswith(OWL) and obj not in _KEPT_OWL_TYPES) or obj in SCHEMA_TYPES_EXTRA
    return predicate.startswith(vocab.ITKG) and predicate in rule_predicates()


def is_schema(triple: ox.Triple | ox.Quad) -> bool:
    """:func:`is_schema_parts` for a pyoxigraph triple or quad."""
    subject, obj = triple.subject, triple.object
    return is_schema_parts(subject.value if type(subject) is ox.NamedNode else None,
                           triple.predicate.value,
                           obj.value if type(obj) is ox.NamedNode else None)


def is_ill_typed(obj: object) -> bool:
    """Whether ``obj`` is a literal whose text is not valid for its XSD datatype."""
    return isinstance(obj, ox.Literal) and not guards.is_valid_lexical(obj.value, obj.datatype.value)


class Tally:
    """What was set aside from one file: how many schema statements, and the ill-typed values
    (their predicate and datatype only, and their lexical forms kept just long enough to find
    their lines; they never leave this object)."""

    def __init__(self) -> None:
        self.schema = 0
        self.ill_typed: list[guards.IllTypedLiteral] = []
        self._lexicals: list[str] = []

    def add_ill_typed(self, triple: ox.Triple | ox.Quad) -> None:
        obj = triple.object
        assert isinstance(obj, ox.Literal)
        self.ill_typed.append(guards.IllTypedLiteral(triple.predicate.value, obj.datatype.value))
        if len(self._lexicals) < _MAX_LINES:
            self._lexicals.append(obj.value)

    def lines(self, data: bytes | Path | None) -> tuple[int, ...]:
        """The lines where the ill-typed values appear in ``data`` (the file's bytes or path),
        found by searching their text in order; as many as can be found (at most 20)."""
        if not self._lexicals or data is None:
            return ()
        try:
            raw = data if isinstance(data, bytes) else Path(data).read_bytes()
        except OSError:
            return ()
        return find_lines(raw, self._lexicals)


_MAX_LINES = 20


def find_lines(raw: bytes, lexicals: Sequence[str]) -> tuple[int, ...]:
    """Line numbers (1-based) of the first occurrences of ``lexicals`` in ``raw``, searched in
    order from where the previous one was found (the order a parser reports them in)."""
    lines: list[int] = []
    position = 0
    for lexical in lexicals:
        needle = lexical.encode("utf-8")
        found = raw.find(needle, position) if needle else -1
        if found < 0:
            found = raw.find(needle) if needle else -1
            if found < 0:
                continue
        else:
            position = found + len(needle)
        lines.append(raw.count(b"\n", 0, found) + 1)
    return tuple(lines)


_T = TypeVar("_T", ox.Triple, ox.Quad)


def split(triples: Iterable[_T], tally: Tally, *, keep_ill_typed: bool = False) -> list[_T]:
    """The triples of a patient file that are patient data; what is set aside is counted in
    ``tally``. With ``keep_ill_typed`` ill-typed values stay (``validate`` reports them)."""
    kept = []
    for triple in triples:
        if is_schema(triple):
            tally.schema += 1
        elif type(triple.object) is ox.Literal and is_ill_typed(triple.object):
            tally.add_ill_typed(triple)
            if keep_ill_typed:
                kept.append(triple)
        else:
            kept.append(triple)
    return kept


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def notes(sources: Iterable[object], *, ill_typed_kept: bool = False) -> list[str]:
    """One line per file with something set aside, for standard error (no value is quoted)."""
    lines = []
    for source in sources:
        path = getattr(source, "path", "<input>")
        schema = getattr(source, "schema_set_aside", 0)
        bad = getattr(source, "ill_typed", 0)
        where = getattr(source, "ill_typed_lines", ())
        if schema:
            lines.append(f"{path}: set aside {_counted(schema, 'statement')} about classes or itkg: terms "
                         "(patient data cannot change the rules; name a site's own terms with --extension)")
        if bad and not ill_typed_kept:  # kept (validate): the shapes or validate report each one
            at = f" (line{'s' if len(where) > 1 else ''} {', '.join(map(str, where))})" if where else ""
            lines.append(f"{path}: set aside {_counted(bad, 'ill-typed value')}{at} as absent "
                         "(--strict refuses such input)")
    return lines


def holds_patient(triples: Iterable[ox.Triple | ox.Quad]) -> bool:
    """Whether any node is typed ``itkg:Patient`` or is the subject of one of the five links."""
    links = PATIENT_LINKS
    for triple in triples:
        predicate = triple.predicate.value
        if predicate in links or (predicate == vocab.RDF_TYPE and isinstance(triple.object, ox.NamedNode)
                                  and triple.object.value == vocab.PATIENT):
            return True
    return False


#: The links from a patient to its records (contract §2).
PATIENT_LINKS = frozenset({vocab.HAS_CONDITION, vocab.RECEIVED_TREATMENT, vocab.HAS_CONSENT,
                           vocab.HAS_CSF_ASSESSMENT, vocab.PLANNED_THERAPY})

NO_PATIENT = ("the input holds no patient (nothing is typed itkg:Patient or links to a record with "
              "itkg:hasCondition, itkg:receivedTreatment, itkg:hasConsent, itkg:hasCSFAssessment or "
              "itkg:plannedTherapy; check the namespace https://w3id.org/itkg/)")
