"""Eligibility results in clinical standards (fhir.md §4): CDS Hooks cards and a FHIR R4 Bundle.

Both are pure functions of the rows :func:`itkg.eligibility` returns (status, unmet prerequisites,
evidence, prerequisite checks), in the style of :mod:`itkg.render`:

- :func:`cds_hooks` gives a CDS Hooks 3.0 response: one card per (patient, therapy) with a met
  indication; ``indicator`` info (qualifies), warning (pending) or critical (excluded); a
  ``summary`` under 140 characters; the evidence in ``detail`` (Markdown); and, for a prerequisite
  not documented yet, a suggestion that creates the FHIR resource to document it (a Task to
  document consent, a ServiceRequest to assess CSF circulation).
- :func:`fhir_bundle` gives a FHIR R4 ``Bundle`` of type collection: per indication a summary
  ``MeasureReport`` (indication met = initial population and denominator, qualifies = numerator,
  excluded = denominator exclusion) and per unmet prerequisite of a (patient, therapy) a
  ``DetectedIssue`` on the patient saying what is missing and why (a DEQM-style care gap).

Identifiers are UUIDs derived from what they describe, so the same results give the same bytes.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from . import vocab
from .knowledge import Knowledge
from .results import EligibilityResult, PrerequisiteCheck

#: Namespace of the UUIDs of cards, suggestions and resources.
_NS = uuid.UUID("6f1c1f0e-8a51-5b36-9f3c-2f1d5c0a1e77")
SOURCE_LABEL = "itkg intrathecal therapy eligibility"
SOURCE_URL = "https://w3id.org/itkg/"
INDICATORS = {"qualifies": "info", "pending": "warning", "excluded": "critical"}
MEASURE_POPULATION = "http://terminology.hl7.org/CodeSystem/measure-population"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
#: Card extension key naming the patient a card is about (a batch response covers many patients).
PATIENT_EXTENSION = "https://w3id.org/itkg/patient"
_FHIR_REFERENCE = re.compile(r"^(?:https?://\S+/|urn:uuid:\S+|)Patient/[A-Za-z0-9\-.]{1,64}$")
MAX_SUMMARY = 139

_PREREQUISITE_WORDS = {vocab.INFORMED_CONSENT: "informed consent", vocab.CSF_CIRCULATION: "CSF circulation"}
_FAILED_WORDS = {vocab.INFORMED_CONSENT: "consent refused or withdrawn",
                 vocab.CSF_CIRCULATION: "CSF circulation impaired"}


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(_NS, "\x1f".join(parts)))


def _label(knowledge: Knowledge, iri: str) -> str:
    return knowledge.label(iri)


def patient_reference(patient: str) -> dict[str, Any]:
    """A FHIR Reference to the patient: the IRI itself when it names a FHIR Patient
    (``…/Patient/<id>`` or a ``urn:uuid:``), else the IRI (or blank node id) as an identifier."""
    if _FHIR_REFERENCE.match(patient) or patient.startswith("urn:uuid:"):
        return {"reference": patient}
    return {"identifier": {"system": "urn:ietf:rfc:3986" if not patient.startswith("_:")
                           else "https://w3id.org/itkg/blank-node", "value": patient}}


def _summary(text: str) -> str:
    return text if len(text) <= MAX_SUMMARY else text[:MAX_SUMMARY - 1].rstrip() + "…"


def _group(results: Sequence[EligibilityResult]) -> dict[tuple[str, str], list[EligibilityResult]]:
    groups: dict[tuple[str, str], list[EligibilityResult]] = defaultdict(list)
    for row in results:
        groups[(row.patient, row.therapy)].append(row)
    return dict(sorted(groups.items()))


def _missing_why(check: PrerequisiteCheck | None, code: str) -> str:
    if check is None:
        return f"{_PREREQUISITE_WORDS.get(code, code)} not met"
    return check.reason


def _checks(rows: list[EligibilityResult]) -> dict[str, PrerequisiteCheck]:
    return {c.code: c for row in rows for c in row.prerequisites}


def _markdown_escape(text: str) -> str:
    return re.sub(r"([\\`*_\[\]#|])", r"\\\1", text)


def _suggestion(patient: str, therapy_label: str, code: str) -> dict[str, Any]:
    """A suggestion that creates the resource documenting a missing prerequisite."""
    subject = patient_reference(patient)
    if code == vocab.INFORMED_CONSENT:
        label = f"Document informed consent for {therapy_label}"
        resource: dict[str, Any] = {
            "resourceType": "Task", "status": "requested", "intent": "order",
            "code": {"coding": [{"system": vocab.ITKG, "code": "InformedConsent",
                                 "display": "informed consent"}], "text": label},
            "description": label, "for": subject}
    else:
        label = f"Assess CSF circulation before {therapy_label}"
        resource = {
            "resourceType": "ServiceRequest", "status": "draft", "intent": "proposal",
            "code": {"coding": [{"system": vocab.ITKG, "code": "CSFCirculationAssessment",
                                 "display": "CSF circulation assessment"}], "text": label},
            "subject": subject}
    return {"label": label, "uuid": _uuid("suggestion", patient, therapy_label, code),
            "actions": [{"type": "create", "description": label, "resource": resource}]}


def cds_hooks_cards(results: Sequence[EligibilityResult], *, knowledge: Knowledge) -> list[dict[str, Any]]:
    """The cards of :func:`cds_hooks`, one per (patient, therapy)."""
    cards = []
    for (patient, therapy), rows in _group(results).items():
        status = rows[0].status
        therapy_label = _label(knowledge, therapy)
        indications = ", ".join(_label(knowledge, r.indication) for r in rows)
        checks = _checks(rows)
        unmet = sorted({code for r in rows for code in r.unmet}, key=vocab.PREREQUISITE_ORDER.index)
        if status == "qualifies":
            summary = f"Qualifies for {therapy_label} ({indications})"
        elif status == "pending":
            summary = f"{therapy_label.capitalize()} pending: " + \
                " and ".join(f"{_PREREQUISITE_WORDS.get(c, c)} not documented" for c in unmet)
        else:
            failed = [c for c in unmet if checks.get(c) is not None and checks[c].state == "failed"] or unmet
            summary = f"{therapy_label.capitalize()} excluded: " + \
                " and ".join(_FAILED_WORDS.get(c, c) for c in failed)
        lines = [f"**{therapy_label.capitalize()}**: {status}", "", "Indication met:"]
        for row in rows:
            lines.append(f"- {_markdown_escape(_label(knowledge, row.indication))}")
            lines += [f"  - {_markdown_escape(e)}" for e in row.evidence
                      if not e.startswith(vocab.PREREQUISITE_ORDER)]
        lines += ["", "Prerequisites:"]
        for code in vocab.PREREQUISITE_ORDER:
            check = checks.get(code)
            if check is not None:
                lines.append(f"- {_PREREQUISITE_WORDS[code]}: {check.state} ({_markdown_escape(check.reason)})")
        card: dict[str, Any] = {
            "uuid": _uuid("card", patient, therapy),
            "summary": _summary(summary),
            "indicator": INDICATORS[status],
            "detail": "\n".join(lines),
            "source": {"label": SOURCE_LABEL, "url": SOURCE_URL,
                       "topic": {"system": vocab.ITKG, "code": therapy.rsplit("/", 1)[-1],
                                 "display": therapy_label}},
            "extension": {PATIENT_EXTENSION: patient},
        }
        missing = [c for c in unmet if checks.get(c) is None or checks[c].state == "missing"]
        if status == "pending" and missing:
            card["selectionBehavior"] = "any"
            card["suggestions"] = [_suggestion(patient, therapy_label, c) for c in missing]
        cards.append(card)
    return cards


def cds_hooks(results: Sequence[EligibilityResult], *, knowledge: Knowledge) -> str:
    """A CDS Hooks 3.0 response (``{"cards": [...]}``) for the results, as JSON text."""
    return json.dumps({"cards": cds_hooks_cards(results, knowledge=knowledge)}, indent=1,
                      ensure_ascii=False) + "\n"


def _reference_to_record(iri: str) -> dict[str, Any]:
    match = re.search(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$", iri)
    if match and iri.startswith(("http://", "https://")):
        return {"reference": iri, "display": f"{match.group(1)}/{match.group(2)}"}
    return {"identifier": {"system": "urn:ietf:rfc:3986", "value": iri}}


def fhir_bundle_resource(results: Sequence[EligibilityResult], *, knowledge: Knowledge,
                         now: _dt.datetime | None = None) -> dict[str, Any]:
    """The Bundle of :func:`fhir_bundle` as a dict."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    stamp = now.astimezone(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    day = stamp[:10]
    entries = []
    for indication in knowledge.indications:
        rows = [r for r in results if r.indication == indication.iri]
        counts = {"initial-population": len(rows), "denominator": len(rows),
                  "numerator": sum(r.status == "qualifies" for r in rows),
                  "denominator-exclusion": sum(r.status == "excluded" for r in rows)}
        rid = _uuid("measure-report", indication.iri, stamp)
        entries.append({"fullUrl": f"urn:uuid:{rid}", "resource": {
            "resourceType": "MeasureReport", "id": rid, "status": "complete", "type": "summary",
            "measure": indication.iri, "date": stamp, "period": {"start": day, "end": day},
            "group": [{
                "code": {"coding": [{"system": vocab.ITKG, "code": indication.iri.rsplit("/", 1)[-1],
                                     "display": indication.label}],
                         "text": f"{indication.label} → {_label(knowledge, indication.therapy)}"},
                "population": [{"code": {"coding": [{"system": MEASURE_POPULATION, "code": code}]},
                                "count": count} for code, count in counts.items()],
                "measureScore": {"value": round(counts["numerator"] / max(1, counts["denominator"]
                                                                        - counts["denominator-exclusion"]), 4)},
            }]}})
    for (patient, therapy), rows in _group(results).items():
        checks = _checks(rows)
        for code in sorted({c for r in rows for c in r.unmet}, key=vocab.PREREQUISITE_ORDER.index):
            check = checks.get(code)
            failed = check is not None and check.state == "failed"
            therapy_label = _label(knowledge, therapy)
            what = _FAILED_WORDS.get(code, code) if failed else \
                f"{_PREREQUISITE_WORDS.get(code, code)} not documented"
            rid = _uuid("detected-issue", patient, therapy, code)
            issue: dict[str, Any] = {
                "resourceType": "DetectedIssue", "id": rid, "status": "final",
                "code": {"coding": [{"system": ACT_CODE, "code": "CAREGAP", "display": "Care Gaps"},
                                    {"system": vocab.ITKG, "code": code, "display": _PREREQUISITE_WORDS.get(code, code)}],
                         "text": f"{therapy_label}: {what}"},
                "severity": "high" if failed else "moderate",
                "patient": patient_reference(patient),
                "identifiedDateTime": stamp,
                "detail": f"{therapy_label.capitalize()} ({', '.join(_label(knowledge, r.indication) for r in rows)}): "
                          f"{what}. {_missing_why(check, code)}",
            }
            if check is not None and check.records:
                issue["evidence"] = [{"detail": [_reference_to_record(r) for r in check.records]}]
            if not failed:
                issue["mitigation"] = [{"action": {"text": "Document informed consent" if code == vocab.INFORMED_CONSENT
                                                   else "Assess CSF circulation"}}]
            entries.append({"fullUrl": f"urn:uuid:{rid}", "resource": issue})
    return {"resourceType": "Bundle", "id": _uuid("bundle", stamp, str(len(results))), "type": "collection",
            "timestamp": stamp, "entry": entries}


def fhir_bundle(results: Sequence[EligibilityResult], *, knowledge: Knowledge,
                now: _dt.datetime | None = None) -> str:
    """A FHIR R4 collection Bundle (MeasureReports and DetectedIssues) for the results, as JSON."""
    return json.dumps(fhir_bundle_resource(results, knowledge=knowledge, now=now), indent=1,
                      ensure_ascii=False) + "\n"
