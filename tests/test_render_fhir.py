"""Answers in clinical standards (fhir.md §4): CDS Hooks cards and an R4 Bundle, validated with the
fhir.resources R4B models (R4B covers MeasureReport, DetectedIssue, Task and ServiceRequest as R4)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import itkg
from itkg.cli import main
from itkg.knowledge import load_knowledge
from itkg.render_fhir import cds_hooks_cards, fhir_bundle_resource, patient_reference

import _fhir_helpers as F  # noqa: N812 - short, as in test_fhir_reader
I, ICD, SCT, RX = F.I, F.ICD, F.SCT, F.RX


def _population(tmp_path: Path) -> Path:
    """p1 qualifies (cancer pain); p2 pending (no consent, no CSF); p3 excluded (consent refused,
    CSF impaired); p4 has cancer pain and a plexopathy, both met, for the same therapy."""
    p2 = [r for r in F.cancer_patient("p2") if r["resourceType"] not in ("Consent", "Observation")]
    p3 = F.cancer_patient("p3")
    p3[3] = F.consent("k-p3", "p3", ptype="deny")
    p3[4] = F.csf("o-p3", "p3", finding="ImpairedCSFCirculation")
    p4 = [*F.cancer_patient("p4"), F.condition("c2-p4", ICD, "G54.0", "p4")]
    path = tmp_path / "population.json"
    F.write_json(path, F.bundle([*F.cancer_patient("p1"), *p2, *p3, *p4], kind="searchset"))
    return path


def _run(tmp_path: Path, fmt: str) -> Any:
    result = CliRunner().invoke(main, ["eligibility", str(_population(tmp_path)), "--format", fmt])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_cds_hooks_one_card_per_patient_and_therapy(tmp_path: Path) -> None:
    from fhir.resources.R4B.servicerequest import ServiceRequest
    from fhir.resources.R4B.task import Task

    cards = _run(tmp_path, "cds-hooks")["cards"]
    by_patient = {c["extension"]["https://w3id.org/itkg/patient"].rsplit("/", 1)[1]: c for c in cards}
    assert len(cards) == len(by_patient) == 4  # p4's two indications share one therapy: one card
    assert {p: c["indicator"] for p, c in by_patient.items()} == \
        {"p1": "info", "p2": "warning", "p3": "critical", "p4": "info"}
    for card in cards:
        assert 0 < len(card["summary"]) < 140 and "\n" not in card["summary"]
        assert card["source"]["label"] and card["uuid"]
        assert F.SECRET_NAME not in json.dumps(card) and F.SECRET_BIRTH not in json.dumps(card)
    assert by_patient["p2"]["summary"] == ("Intrathecal analgesic therapy pending: informed consent not "
                                           "documented and CSF circulation not documented")
    assert "consent refused or withdrawn" in by_patient["p3"]["summary"]
    # the evidence, in detail, names the FHIR resources and codes that decided
    assert "Condition/c-p1; ICD-10-CM G89.3" in by_patient["p1"]["detail"]
    assert "MedicationStatement/m-p1; RxNorm 7052" in by_patient["p1"]["detail"]
    assert "non-cancer pain indication" in by_patient["p4"]["detail"] and "ICD-10-CM G54.0" in by_patient["p4"]["detail"]
    # suggestions only for what is missing, and each creates a valid R4 resource
    assert "suggestions" not in by_patient["p1"] and "suggestions" not in by_patient["p3"]
    suggestions = by_patient["p2"]["suggestions"]
    assert by_patient["p2"]["selectionBehavior"] == "any"
    assert [s["label"] for s in suggestions] == [
        "Document informed consent for intrathecal analgesic therapy",
        "Assess CSF circulation before intrathecal analgesic therapy"]
    task, request = (s["actions"][0]["resource"] for s in suggestions)
    assert Task.model_validate(task).for_fhir.reference == F.BASE + "Patient/p2"
    assert ServiceRequest.model_validate(request).subject.reference == F.BASE + "Patient/p2"


def test_fhir_bundle_validates_and_counts(tmp_path: Path) -> None:
    from fhir.resources.R4B.bundle import Bundle

    data = _run(tmp_path, "fhir")
    bundle = Bundle.model_validate(data)
    assert bundle.type == "collection"
    resources = [e.resource for e in bundle.entry]
    reports = {r.measure.rsplit("/", 1)[1]: r for r in resources if r.__resource_type__ == "MeasureReport"}
    assert set(reports) == {"CancerPainIndication", "NonCancerPainIndication", "SevereSpasticityIndication"}

    def counts(name: str) -> dict[str, int]:
        group = reports[name].group[0]
        return {p.code.coding[0].code: p.count for p in group.population}

    assert counts("CancerPainIndication") == {"initial-population": 4, "denominator": 4, "numerator": 2,
                                              "denominator-exclusion": 1}
    assert counts("NonCancerPainIndication") == {"initial-population": 1, "denominator": 1, "numerator": 1,
                                                 "denominator-exclusion": 0}
    assert counts("SevereSpasticityIndication")["denominator"] == 0
    issues = [r for r in resources if r.__resource_type__ == "DetectedIssue"]
    got = sorted((i.patient.reference.rsplit("/", 1)[1], i.code.coding[1].code, i.severity) for i in issues)
    assert got == [("p2", "csf-circulation", "moderate"), ("p2", "informed-consent", "moderate"),
                   ("p3", "csf-circulation", "high"), ("p3", "informed-consent", "high")]
    refused = next(i for i in issues if i.severity == "high" and i.code.coding[1].code == "informed-consent")
    assert refused.evidence[0].detail[0].reference == F.BASE + "Consent/k-p3"
    assert "consent refused or withdrawn" in refused.detail
    assert F.SECRET_NAME not in json.dumps(data)


def test_outputs_from_rdf_patients_validate_too() -> None:
    from fhir.resources.R4B.bundle import Bundle

    path = itkg.resources.data_root() / "examples" / "patients.ttl"
    rows = itkg.eligibility(path)
    knowledge = load_knowledge()
    Bundle.model_validate(fhir_bundle_resource(rows, knowledge=knowledge,
                                               now=dt.datetime(2026, 11, 30, tzinfo=dt.timezone.utc)))
    cards = cds_hooks_cards(rows, knowledge=knowledge)
    assert len(cards) == len({(r.patient, r.therapy) for r in rows})
    # the same results give the same bytes
    assert cds_hooks_cards(rows, knowledge=knowledge) == cards


@pytest.mark.parametrize(("patient", "expected"), [
    ("https://fhir.invalid/Patient/p1", {"reference": "https://fhir.invalid/Patient/p1"}),
    ("urn:uuid:0b9f5a52-0000-4000-8000-0000000000aa", {"reference": "urn:uuid:0b9f5a52-0000-4000-8000-0000000000aa"}),
    ("https://example.org/patient/anna", {"identifier": {"system": "urn:ietf:rfc:3986",
                                                          "value": "https://example.org/patient/anna"}}),
])
def test_patient_references(patient: str, expected: dict) -> None:
    assert patient_reference(patient) == expected


def test_the_readme_tour_example_bulk_export() -> None:
    """README's tour: examples/fhir-bulk gives one info, one warning and one critical card."""
    bulk = itkg.resources.data_root() / "examples" / "fhir-bulk"
    result = CliRunner().invoke(main, ["eligibility", str(bulk), "--format", "cds-hooks"])
    assert result.exit_code == 0, result.output
    cards = json.loads(result.stdout)["cards"]
    assert [(c["indicator"], c["summary"]) for c in cards] == [
        ("info", "Qualifies for intrathecal analgesic therapy (cancer pain indication)"),
        ("warning", "Intrathecal baclofen therapy pending: informed consent not documented and CSF "
                    "circulation not documented"),
        ("critical", "Intrathecal analgesic therapy excluded: consent refused or withdrawn")]
    assert "(Condition/c1; ICD-10-CM G89.3)" in cards[0]["detail"]
    readme = (itkg.resources.data_root() / "README.md").read_text(encoding="utf-8")
    assert all(c["summary"] in readme for c in cards)
