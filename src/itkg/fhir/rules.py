"""The FHIR R4 resource-to-fact mapping of fhir.md §2, in one place.

Everything that decides which FHIR element becomes which contract §2 fact is in this module: the
status tables first, then one small function per resource type. Each function reads one resource
(a plain ``dict`` from the JSON) and returns the :class:`Record` it gives, or ``None`` with the
reason it gives nothing. Which *codes* mean which itkg term is not here: that is data, the SSSOM
mapping set (:mod:`itkg.mappings`), reached through :class:`Context`.

Reference resolution, files, Bundles, duplicates and reports live in :mod:`itkg.fhir.reader`; it
calls :data:`RULES` and turns each record into triples.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Collection
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, Protocol

from .. import vocab

I = vocab.ITKG
SNOMED = "http://snomed.info/sct"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"

# -- the tables -------------------------------------------------------------------------------------

#: Condition.clinicalStatus codes that count (absent counts too).
CONDITION_CLINICAL = frozenset({"active", "recurrence", "relapse"})
#: Condition.verificationStatus codes that count (absent counts too).
CONDITION_VERIFICATION = frozenset({"confirmed"})
#: Condition.severity code (SNOMED CT) that makes a spasticity condition severe spasticity.
SEVERE = "24484000"

#: Statuses of the treatment resources that give no received treatment: entered-in-error (fhir.md
#: §2), and records of something that did not happen (a draft prescription, a procedure not done or
#: still in preparation, a medication not taken or not given).
TREATMENT_NOT_COUNTED: dict[str, frozenset[str]] = {
    "MedicationStatement": frozenset({"entered-in-error", "not-taken"}),
    "MedicationRequest": frozenset({"entered-in-error", "draft"}),
    "MedicationAdministration": frozenset({"entered-in-error", "not-done"}),
    "Procedure": frozenset({"entered-in-error", "not-done", "preparation"}),
}
#: Where each medication resource keeps its dosage(s), whose ``route`` is read.
DOSAGE_ELEMENT = {"MedicationStatement": "dosage", "MedicationRequest": "dosageInstruction",
                  "MedicationAdministration": "dosage"}

#: Routes of administration (SNOMED CT), and the treatment classes that need one.
ORAL, TRANSDERMAL, INTRATHECAL = "26643006", "45890007", "72607000"
CLASS_ROUTE = {I + "OralOpioidTherapy": ORAL, I + "TransdermalOpioidTherapy": TRANSDERMAL,
               I + "OralBaclofenTherapy": ORAL}

#: Observation statuses that count for a CSF circulation assessment.
OBSERVATION_COUNTED = frozenset({"final", "amended", "corrected"})
#: ServiceRequest status that makes a planned therapy.
SERVICE_REQUEST_COUNTED = frozenset({"active"})

#: Consent (scope treatment): status and provision.type → consent status; other statuses decide nothing.
CONSENT_DECISIONS: dict[tuple[str, str | None], str] = {
    ("active", "permit"): vocab.CONSENT_GRANTED, ("active", None): vocab.CONSENT_GRANTED,
    ("active", "deny"): vocab.CONSENT_REFUSED,
    ("rejected", "permit"): vocab.CONSENT_REFUSED, ("rejected", "deny"): vocab.CONSENT_REFUSED,
    ("rejected", None): vocab.CONSENT_REFUSED,
    ("inactive", "permit"): vocab.CONSENT_WITHDRAWN, ("inactive", "deny"): vocab.CONSENT_WITHDRAWN,
    ("inactive", None): vocab.CONSENT_WITHDRAWN,
}

#: Elements that exist in FHIR R5 (or later) but not in R4: a resource carrying one is not R4.
NOT_R4: dict[str, tuple[str, ...]] = {
    "Consent": ("decision", "subject", "date", "grantor", "grantee", "controller", "manager",
                "regulatoryBasis", "policyBasis"),
    "MedicationStatement": ("medication", "adherence"),
    "MedicationRequest": ("medication",),
    "MedicationAdministration": ("medication", "occurenceDateTime", "occurencePeriod"),
    "Procedure": ("occurrenceDateTime", "occurrencePeriod"),
}

#: Where each resource type names its patient.
PATIENT_ELEMENT = {"Condition": "subject", "MedicationStatement": "subject",
                   "MedicationRequest": "subject", "MedicationAdministration": "subject",
                   "Procedure": "subject", "Consent": "patient", "Observation": "subject",
                   "ServiceRequest": "subject", "AllergyIntolerance": "patient"}


# -- what a rule returns -------------------------------------------------------------------------------

@dataclass(slots=True)
class Record:
    """The §2 record one resource gives: ``link`` from the patient to ``node`` (a record, or for
    ``plannedTherapy`` the therapy classes in ``types``), its types and property values, and the
    codes that gave them (for the evidence)."""

    link: str
    types: AbstractSet[str] = field(default_factory=set)
    values: list[tuple[str, str | tuple[str, str]]] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    #: set on a spasticity condition and on etiology conditions: the reader links them per patient
    spasticity: bool = False
    etiologies: frozenset[str] = frozenset()
    #: set by an intolerance: the drug's code IRIs; the received treatments of the same patient
    #: coded with one of them ended with severe side effects (the reader adds the outcome; ``link``
    #: is empty then)
    intolerance: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Meaning:
    """What a CodeableConcept's codings mean for the rules: the itkg terms they decide, and what
    the rules ask of those terms (the tests of :func:`meaning`), worked out once per distinct
    coding list and shared by every resource with the same codes."""

    #: the itkg terms the codings decide
    terms: frozenset[str]
    #: the codings as ``system-name code`` strings (the evidence)
    names: tuple[str, ...]
    #: the IRIs of the codings that name a system
    iris: frozenset[str]
    #: ``(system, code)`` of each coding mapped to no term (counted each time a rule reads the terms)
    unmapped: tuple[tuple[str, str], ...]
    #: terms that are a Condition or a Disorder individual, and the codes' IRIs (a Condition's types)
    condition_types: frozenset[str]
    #: terms that are Disorder individuals (etiologies)
    disorders: frozenset[str]
    #: whether a term is a kind of Spasticity
    spasticity: bool
    #: terms that are treatment classes
    treatments: frozenset[str]
    #: terms that are intrathecal therapies
    intrathecal: frozenset[str]
    #: terms that are treatment outcomes
    outcomes: frozenset[str]
    #: terms that are CSF circulation findings
    csf_findings: frozenset[str]


class Knows(Protocol):
    """The ontology's answers :func:`meaning` needs."""

    def is_a(self, term: str, ancestor: str) -> bool:
        """Whether ``term`` is ``ancestor`` or a subclass of it in the ontology."""

    def typed(self, term: str, cls: str) -> bool:
        """Whether the individual ``term`` is typed ``cls`` in the ontology (an outcome, a finding)."""


def meaning(terms: frozenset[str], names: tuple[str, ...], iris: frozenset[str],
            unmapped: tuple[tuple[str, str], ...], knows: Knows) -> Meaning:
    """What the rules ask of a concept's terms, asked once (the rules below read these fields)."""
    is_a, typed = knows.is_a, knows.typed
    disorders = frozenset(t for t in terms if typed(t, I + "Disorder"))
    return Meaning(
        terms=terms, names=names, iris=iris, unmapped=unmapped,
        condition_types=iris | frozenset(t for t in terms if is_a(t, I + "Condition")) | disorders,
        disorders=disorders,
        spasticity=any(is_a(t, I + "Spasticity") for t in terms),
        treatments=frozenset(t for t in terms if is_a(t, I + "Treatment")),
        intrathecal=frozenset(t for t in terms if is_a(t, vocab.INTRATHECAL_THERAPY)),
        outcomes=frozenset(t for t in terms if typed(t, I + "TreatmentOutcome")),
        csf_findings=frozenset(t for t in terms if typed(t, I + "CSFCirculationFinding")))


class Context(Protocol):
    """What the rules need from the reader: codes to meanings, and medication references resolved."""

    def read(self, concept: Any) -> Meaning:
        """The meaning of a CodeableConcept (anything else means nothing); its codings mapped to
        no itkg term are counted as unmapped, once per call (the rules read each concept once)."""

    def medication(self, resource: dict) -> Any:
        """The CodeableConcept of the medication of a medication resource (inline, contained or
        referenced); raises :class:`Pending` when the referenced Medication may come later."""


class Pending(Exception):
    """A referenced Medication is not known yet: the reader tries the resource again at the end."""


Result = tuple[Record | None, str]


def _code(concept: Any) -> str | None:
    """The first code of a CodeableConcept (for FHIR's own required code systems)."""
    if type(concept) is dict:  # the usual concept, its first coding with a code, first
        found = concept.get("coding")
        if type(found) is list and found and type(found[0]) is dict and type(found[0].get("code")) is str:
            return found[0]["code"]
    for coding in codings(concept):
        if isinstance(coding.get("code"), str):
            return coding["code"]
    return None


def status_of(resource: dict) -> str | None:
    """``status`` when it is a string (the only form R4 allows), else None."""
    status = resource.get("status")
    return status if isinstance(status, str) else None


def as_list(value: Any) -> list:
    """A JSON array as a list; anything else (a misplaced object or value) as nothing."""
    return value if isinstance(value, list) else []


def codings(concept: Any) -> list[dict]:
    """The Coding objects of a CodeableConcept (nothing for anything else: input is data)."""
    found = concept.get("coding") if isinstance(concept, dict) else None
    return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []


def _concepts(value: Any) -> list | tuple:
    """A CodeableConcept element or a list of them, as a sequence."""
    return value if isinstance(value, list) else () if value is None else (value,)


def _snomed_codes(concept: Any) -> set[str]:
    if type(concept) is dict:  # the usual concept, one coding, first
        found = concept.get("coding")
        if type(found) is list and len(found) == 1 and type(found[0]) is dict:
            code = found[0].get("code")
            return {code} if type(code) is str and found[0].get("system") == SNOMED else set()
    return {c["code"] for c in codings(concept) if c.get("system") == SNOMED and isinstance(c.get("code"), str)}


#: Calendar days already checked (:func:`date_of`): the same few thousand recur.
_DAYS: dict[str, str | None] = {}


def date_of(value: Any) -> str | None:
    """The calendar day of a FHIR date or dateTime (``2026-03-02T10:00:00+01:00`` → ``2026-03-02``),
    as written; None for partial dates (``2026-03``) and anything else."""
    # YYYY-MM-DD in ASCII digits, then the end or a time: string tests, no pattern per resource
    if isinstance(value, str) and len(value) >= 10 and (len(value) == 10 or value[10] == "T"):
        day = value[:10]
        if day in _DAYS:
            return _DAYS[day]
        found = None
        digits = day[:4] + day[5:7] + day[8:10]
        if day[4] == "-" and day[7] == "-" and digits.isascii() and digits.isdigit():
            try:  # a day that exists (2026-02-30 does not): else undated, never an ill-typed value
                _dt.date(int(day[:4]), int(day[5:7]), int(day[8:10]))
                found = day
            except ValueError:
                pass
        if len(_DAYS) < 1 << 16:
            _DAYS[day] = found
        return found
    return None


def _date_value(resource: dict, *names: str) -> str | None:
    for name in names:
        value = resource.get(name)
        if isinstance(value, dict):  # a Period: its start
            value = value.get("start")
        day = date_of(value)
        if day is not None:
            return day
    return None


def _outcomes(ctx: Context, value: Any) -> AbstractSet[str]:
    concepts = _concepts(value)
    if len(concepts) == 1:
        return ctx.read(concepts[0]).outcomes
    found: set[str] = set()
    for one in concepts:
        found |= ctx.read(one).outcomes
    return found


def _status_not_counted(resource: dict, clinical_ok: Collection[str],
                        verification_ok: Collection[str]) -> str | None:
    """Why a Condition or AllergyIntolerance does not count by its clinical or verification status
    (an absent status counts), or ``None``: the one status rule both resource types share."""
    clinical = _code(resource.get("clinicalStatus"))
    if clinical is not None and clinical not in clinical_ok:
        return f"clinicalStatus {clinical}"
    verification = _code(resource.get("verificationStatus"))
    if verification is not None and verification not in verification_ok:
        return f"verificationStatus {verification}"
    return None


# -- the rules, one per resource type ------------------------------------------------------------------

def condition(resource: dict, ctx: Context) -> Result:
    """Condition.code → ``hasCondition`` of the mapped classes (the codes' IRIs are kept as types
    too: they decide nothing). Severe spasticity from Condition.severity; etiologies link later."""
    why = _status_not_counted(resource, CONDITION_CLINICAL, CONDITION_VERIFICATION)
    if why is not None:
        return None, why
    found = ctx.read(resource.get("code"))
    types = found.condition_types
    record = Record(vocab.HAS_CONDITION, types, [], list(found.names), etiologies=found.disorders)
    if found.spasticity:
        record.spasticity = True
        if SEVERE in _snomed_codes(resource.get("severity")):
            record.types = types | {I + "SevereSpasticity"}
            record.codes.append(f"severity SNOMED CT {SEVERE}")
    return record, ""


def treatment(resource: dict, ctx: Context) -> Result:
    """Medication resources and Procedure → ``receivedTreatment`` of the mapped treatment class,
    with outcomes from ``statusReason`` / ``Procedure.outcome``. A medication given intrathecally
    (SNOMED CT 72607000), or a code mapped to an intrathecal therapy, is never a prior treatment."""
    kind = resource["resourceType"]
    status = status_of(resource)
    if status in TREATMENT_NOT_COUNTED[kind]:
        return None, f"status {status}"
    routes: set[str] = set()
    if kind == "Procedure":
        concept = resource.get("code")
        outcome = _outcomes(ctx, resource.get("outcome"))
    else:
        concept = ctx.medication(resource)
        for dosage in _concepts(resource.get(DOSAGE_ELEMENT[kind])):
            if isinstance(dosage, dict):
                routes |= _snomed_codes(dosage.get("route"))
        outcome = _outcomes(ctx, resource.get("statusReason"))
    found = ctx.read(concept)
    if INTRATHECAL in routes or found.intrathecal:
        return None, "intrathecal therapy, never a prior treatment"
    key = (found.treatments, found.iris, frozenset(routes))
    chosen = _CHOSEN.get(key)
    if chosen is None:
        classes = frozenset(choose_by_route(set(found.treatments), routes))
        chosen = (classes, classes | found.iris)  # the classes, and the record's types
        if len(_CHOSEN) < 1 << 12:
            _CHOSEN[key] = chosen
    if not chosen[0]:
        return None, "no mapped treatment"
    has_outcome = vocab.HAS_OUTCOME
    return Record(vocab.RECEIVED_TREATMENT, chosen[1], [(has_outcome, o) for o in sorted(outcome)],
                  list(found.names)), ""


#: :func:`choose_by_route`'s answers: the same few classes and routes recur.
_CHOSEN: dict[tuple[frozenset[str], frozenset[str], frozenset[str]], tuple[frozenset[str], frozenset[str]]] = {}


def choose_by_route(classes: set[str], routes: set[str]) -> set[str]:
    """Among the treatment classes a medication code maps to, those its route picks: the classes
    that need the given route; else, with no route given, the classes that need none (or all when
    every class needs one: an oral baclofen tablet with no route is still oral baclofen); else the
    classes that need none.

    >>> sorted(choose_by_route({I + "SystemicAnalgesicTherapy", I + "OralOpioidTherapy"}, {ORAL}))
    ['https://w3id.org/itkg/OralOpioidTherapy']
    >>> sorted(choose_by_route({I + "SystemicAnalgesicTherapy", I + "OralOpioidTherapy"}, set()))
    ['https://w3id.org/itkg/SystemicAnalgesicTherapy']
    """
    routed = {c for c in classes if CLASS_ROUTE.get(c) in routes}
    if routed:
        return routed
    free = {c for c in classes if c not in CLASS_ROUTE}
    return free if free or routes else classes


_INFORMED_CONSENT = frozenset({I + "InformedConsent"})
_CSF_ASSESSMENT = frozenset({I + "CSFCirculationAssessment"})


def consent(resource: dict, ctx: Context) -> Result:
    """A Consent of scope ``treatment`` → ``hasConsent`` with status, covered therapies (mapped
    codes of ``provision.code``, nested provisions included) and date. Any other scope is never a
    treatment consent."""
    scope = resource.get("scope")
    for coding in codings(scope):
        if coding.get("code") == "treatment" and coding.get("system") == CONSENT_SCOPE:
            break
    else:
        return None, f"scope {_code(scope) or 'absent'}"
    provision: dict[str, Any] = resource["provision"] if isinstance(resource.get("provision"), dict) else {}
    status, ptype = resource.get("status"), provision.get("type")
    decision = CONSENT_DECISIONS.get((status, ptype)) if isinstance(status, str) \
        and (ptype is None or isinstance(ptype, str)) else None
    if decision is None:
        return None, f"status {status_of(resource)}"
    record = Record(vocab.HAS_CONSENT, _INFORMED_CONSENT, [(vocab.CONSENT_STATUS, decision)])
    covered: set[str] = set()
    stack: list[dict[str, Any]] = [provision]
    while stack:
        current = stack.pop()
        for concept in _concepts(current.get("code")):
            found = ctx.read(concept)
            covered |= found.intrathecal
            record.codes += found.names
        stack += [p for p in _concepts(current.get("provision")) if isinstance(p, dict)]
    if covered:
        record.values += [(vocab.COVERS_THERAPY, t) for t in sorted(covered)]
    day = date_of(resource.get("dateTime"))
    if day is not None:
        record.values.append((vocab.CONSENT_DATE, (day, vocab.XSD_DATE)))
    return record, ""


def observation(resource: dict, ctx: Context) -> Result:
    """An Observation whose code maps to CSFCirculationAssessment → ``hasCSFAssessment`` with the
    finding (valueCodeableConcept) and date (effective[x])."""
    found = ctx.read(resource.get("code"))
    if I + "CSFCirculationAssessment" not in found.terms:
        return None, "not a CSF circulation assessment"
    if status_of(resource) not in OBSERVATION_COUNTED:
        return None, f"status {status_of(resource)}"
    record = Record(vocab.HAS_CSF_ASSESSMENT, _CSF_ASSESSMENT, [], list(found.names))
    value = ctx.read(resource.get("valueCodeableConcept"))
    record.values += [(vocab.FINDING, finding) for finding in sorted(value.csf_findings)]
    record.codes += value.names
    day = _date_value(resource, "effectiveDateTime", "effectivePeriod", "effectiveInstant")
    if day is not None:
        record.values.append((vocab.ASSESSMENT_DATE, (day, vocab.XSD_DATE)))
    return record, ""


def service_request(resource: dict, ctx: Context) -> Result:
    """An active ServiceRequest whose code maps to an intrathecal therapy → ``plannedTherapy``."""
    if status_of(resource) not in SERVICE_REQUEST_COUNTED:
        return None, f"status {status_of(resource)}"
    found = ctx.read(resource.get("code"))
    if not found.intrathecal:
        return None, "no mapped intrathecal therapy"
    return Record(vocab.PLANNED_THERAPY, types=set(found.intrathecal), codes=list(found.names)), ""


#: AllergyIntolerance: counted clinical and verification statuses, and what makes it an intolerance
#: with severe side effects (fhir.md §2 lets the project add this documented outcome route).
INTOLERANCE_CLINICAL = frozenset({"active", "recurrence", "relapse"})
INTOLERANCE_VERIFICATION = frozenset({"confirmed"})


def allergy_intolerance(resource: dict, ctx: Context) -> Result:
    """An ``AllergyIntolerance`` of type intolerance, category medication (or none), with a
    reaction of severity severe, to a drug mapped to a treatment class: every received treatment of
    the same patient coded with the same drug code ended with severe side effects (the evidence
    names the intolerance)."""
    why = _status_not_counted(resource, INTOLERANCE_CLINICAL, INTOLERANCE_VERIFICATION)
    if why is not None:
        return None, why
    if resource.get("type") != "intolerance":
        return None, "not an intolerance"
    categories = as_list(resource.get("category"))
    if categories and "medication" not in categories:
        return None, "not a medication intolerance"
    if not any(isinstance(r, dict) and r.get("severity") == "severe" for r in as_list(resource.get("reaction"))):
        return None, "no severe reaction"
    found = ctx.read(resource.get("code"))
    if not found.treatments - found.intrathecal:
        return None, "no mapped treatment"
    return Record("", intolerance=found.iris, codes=list(found.names)), ""


#: Resource type → its rule. Every other type gives no fact (it is counted as skipped).
RULES: dict[str, Callable[[dict, Context], Result]] = {
    "Condition": condition,
    "MedicationStatement": treatment,
    "MedicationRequest": treatment,
    "MedicationAdministration": treatment,
    "Procedure": treatment,
    "Consent": consent,
    "Observation": observation,
    "ServiceRequest": service_request,
    "AllergyIntolerance": allergy_intolerance,
}


def not_r4(resource: dict) -> str | None:
    """Why a resource is not FHIR R4, or None (only what the rules would misread is checked)."""
    kind = resource.get("resourceType")
    for name in NOT_R4.get(kind, ()):  # type: ignore[arg-type]
        if name in resource:
            return f"a {kind} with '{name}' is not FHIR R4 (it is R5 or later)"
    return None

