"""Small builders of FHIR R4 resources for the FHIR tests (plain dicts, as the JSON holds them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

I = "https://w3id.org/itkg/"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
SCT = "http://snomed.info/sct"
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
BASE = "https://fhir.invalid/"
#: Values of the test Patient that must never appear in any message.
SECRET_NAME, SECRET_BIRTH, SECRET_MRN = "Zyxwquatsch", "1931-07-14", "MRN-99887766"


def cc(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def ref(target: str) -> dict[str, str]:
    return {"reference": target}


def patient(pid: str = "p1") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": SECRET_NAME}],
            "birthDate": SECRET_BIRTH, "identifier": [{"value": SECRET_MRN}]}


def condition(cid: str, system: str, code: str, pid: str = "p1", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": cid, "subject": ref(f"Patient/{pid}"),
            "code": cc(system, code), **extra}


def med_statement(mid: str, concept: dict | None = None, pid: str = "p1", *, route: str | None = None,
                  reason: str | None = "SevereSideEffects", status: str = "stopped",
                  kind: str = "MedicationStatement", **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": kind, "id": mid, "status": status,
                                "subject": ref(f"Patient/{pid}")}
    if concept is not None:
        resource["medicationCodeableConcept"] = concept
    dosage = {"route": cc(SCT, route)} if route else {}
    if kind == "MedicationStatement":
        resource["dosage"] = [dosage]
    elif kind == "MedicationRequest":
        resource["dosageInstruction"] = [dosage]
        resource["intent"] = "order"
    else:
        resource["dosage"] = dosage
    if reason:
        # MedicationRequest.statusReason is one CodeableConcept, the others a list (R4)
        resource["statusReason"] = cc(I, reason) if kind == "MedicationRequest" else [cc(I, reason)]
    resource.update(extra)
    return resource


def consent(kid: str, pid: str = "p1", *, status: str = "active", ptype: str | None = "permit",
            therapy: str = "IntrathecalTherapy", scope: str = "treatment",
            date: str | None = "2026-03-02T10:00:00Z", **extra: Any) -> dict[str, Any]:
    provision: dict[str, Any] = {"code": [cc(I, therapy)]} if therapy else {}
    if ptype:
        provision["type"] = ptype
    resource: dict[str, Any] = {"resourceType": "Consent", "id": kid, "status": status,
                                "scope": cc(SCOPE, scope), "category": [cc("http://loinc.org", "59284-0")],
                                "patient": ref(f"Patient/{pid}"), "provision": provision}
    if date:
        resource["dateTime"] = date
    resource.update(extra)
    return resource


def csf(oid: str, pid: str = "p1", *, finding: str = "GoodCSFCirculation", status: str = "final",
        date: str | None = "2026-02-20", **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Observation", "id": oid, "status": status,
                                "subject": ref(f"Patient/{pid}"), "code": cc(I, "CSFCirculationAssessment"),
                                "valueCodeableConcept": cc(I, finding)}
    if date:
        resource["effectiveDateTime"] = date
    resource.update(extra)
    return resource


def cancer_patient(pid: str = "p1") -> list[dict[str, Any]]:
    """A patient who qualifies for intrathecal analgesic therapy (cancer pain), in FHIR."""
    return [patient(pid), condition(f"c-{pid}", ICD, "G89.3", pid),
            med_statement(f"m-{pid}", cc(RX, "7052"), pid, route="26643006"),
            consent(f"k-{pid}", pid), csf(f"o-{pid}", pid)]


def write_ndjson(path: Path, resources: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in resources), encoding="utf-8")
    return path


def write_json(path: Path, resource: dict[str, Any]) -> Path:
    path.write_text(json.dumps(resource, indent=2), encoding="utf-8")
    return path


def bundle(resources: list[dict[str, Any]], kind: str = "collection", urls: list[str] | None = None) -> dict:
    entries = []
    for k, resource in enumerate(resources):
        entry: dict[str, Any] = {"resource": resource}
        if urls is not None and urls[k]:
            entry["fullUrl"] = urls[k]
        entries.append(entry)
    return {"resourceType": "Bundle", "type": kind, "entry": entries}
