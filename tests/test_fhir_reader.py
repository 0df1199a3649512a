"""FHIR R4 in (fhir.md §1-§3): every row and status of §2, every reference form, inputs, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support import load_by_path
from click.testing import CliRunner

import itkg
from itkg import vocab
from itkg.cli import main
from itkg.fhir import is_fhir, read

import _fhir_helpers as F  # noqa: N812 - short, as the rules module names its namespaces
I, ICD, SCT, RX, ATC, BASE = F.I, F.ICD, F.SCT, F.RX, F.ATC, F.BASE
P1 = BASE + "Patient/p1"
TYPE = vocab.RDF_TYPE


def facts(tmp_path: Path, resources: list[dict[str, Any]], **options: Any) -> set[tuple[str, str, str]]:
    """The triples the resources give, as (subject, predicate, object) strings (literals: value)."""
    path = F.write_ndjson(tmp_path / "in.ndjson", resources)
    graph = read([path], **options)
    return {(t.subject.value, t.predicate.value, t.object.value) for t in graph.triples}


def rows(tmp_path: Path, resources: list[dict[str, Any]], **options: Any) -> list[tuple[str, str, str]]:
    path = F.write_ndjson(tmp_path / "in.ndjson", resources)
    return [(r.patient, r.indication.rsplit("/", 1)[1], r.status) for r in itkg.eligibility(path, **options)]


def linked(found: set[tuple[str, str, str]], link: str) -> list[str]:
    return sorted(o for s, p, o in found if p == link)


def types(found: set[tuple[str, str, str]], node: str) -> set[str]:
    return {o for s, p, o in found if s == node and p == TYPE}


def values(found: set[tuple[str, str, str]], node: str, predicate: str) -> set[str]:
    return {o for s, p, o in found if s == node and p == predicate}


# -- the whole path -------------------------------------------------------------------------------

def test_a_cancer_patient_in_fhir_qualifies_with_fhir_evidence(tmp_path: Path) -> None:
    path = F.write_ndjson(tmp_path / "in.ndjson", F.cancer_patient())
    [row] = itkg.eligibility(path)
    assert (row.patient, row.status) == (P1, "qualifies")
    evidence = " | ".join(row.evidence)
    assert "Condition/c-p1; ICD-10-CM G89.3" in evidence
    assert "MedicationStatement/m-p1; RxNorm 7052" in evidence
    assert "Consent/k-p1" in evidence and "Observation/o-p1" in evidence


# -- Condition -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("field", "system", "code", "counts"), [
    *[("clinicalStatus", F.CLINICAL, code, counts) for code, counts in [
        (None, True), ("active", True), ("recurrence", True), ("relapse", True),
        ("inactive", False), ("remission", False), ("resolved", False)]],
    *[("verificationStatus", F.VERIFICATION, code, counts) for code, counts in [
        (None, True), ("confirmed", True), ("unconfirmed", False), ("provisional", False),
        ("differential", False), ("refuted", False), ("entered-in-error", False)]]])
def test_condition_status(tmp_path: Path, field: str, system: str, code: str | None, counts: bool) -> None:
    """A Condition counts unless its clinical status is not current or its verification status is
    not confirmed; one that does not count gives no fact at all."""
    extra = {field: F.cc(system, code)} if code else {}
    found = facts(tmp_path, [F.condition("c1", ICD, "G89.3", **extra)])
    assert (P1, vocab.HAS_CONDITION, BASE + "Condition/c1") in found if counts else not found


def test_condition_types_are_the_mapped_classes_and_the_codes(tmp_path: Path) -> None:
    found = facts(tmp_path, [F.condition("c1", ICD, "G90.511"), F.condition("c2", SCT, "999999")])
    assert types(found, BASE + "Condition/c1") == {I + "ComplexRegionalPainSyndromeType1",
                                                    "http://purl.bioontology.org/ontology/ICD10CM/G90.511"}
    # an unmapped code is kept (as the IRI of its code) and decides nothing
    assert types(found, BASE + "Condition/c2") == {"http://snomed.info/id/999999"}


def _spasticity(severity: str | None) -> list[dict[str, Any]]:
    extra = {"severity": F.cc(SCT, severity)} if severity else {}
    return [F.condition("s1", SCT, "221360009", **extra),
            F.med_statement("b1", F.cc(RX, "197391"), route="26643006", reason="NoResponseAtMaximumDose")]


@pytest.mark.parametrize(("severity", "met"), [("24484000", True), ("6736007", False), (None, False)])
def test_severe_spasticity_comes_from_condition_severity(tmp_path: Path, severity: str | None, met: bool) -> None:
    found = facts(tmp_path, _spasticity(severity))
    assert (I + "SevereSpasticity" in types(found, BASE + "Condition/s1")) is met
    assert rows(tmp_path, _spasticity(severity)) == \
        ([(P1, "SevereSpasticityIndication", "pending")] if met else [])


def test_etiology_is_another_counted_condition_of_the_patient(tmp_path: Path) -> None:
    resources = _spasticity("24484000") + [
        F.condition("e1", SCT, "24700007"),  # multiple sclerosis
        F.condition("e2", SCT, "230690007", clinicalStatus=F.cc(F.CLINICAL, "resolved")),  # stroke, not counted
        F.condition("e3", SCT, "90584004", pid="p2"),  # spinal cord injury of another patient
    ]
    found = facts(tmp_path, resources)
    assert values(found, BASE + "Condition/s1", I + "hasEtiology") == {I + "MultipleSclerosis"}


# -- treatments ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["MedicationStatement", "MedicationRequest", "MedicationAdministration"])
@pytest.mark.parametrize(("route", "expected"), [
    ("26643006", "OralOpioidTherapy"), ("45890007", "TransdermalOpioidTherapy"),
    ("47625008", "SystemicAnalgesicTherapy"), (None, "SystemicAnalgesicTherapy")])
def test_medication_route_picks_the_treatment_class(tmp_path: Path, kind: str, route: str | None,
                                                    expected: str) -> None:
    found = facts(tmp_path, [F.med_statement("m1", F.cc(ATC, "N02AA01"), route=route, kind=kind)])
    node = f"{BASE}{kind}/m1"
    assert linked(found, vocab.RECEIVED_TREATMENT) == [node]
    assert I + expected in types(found, node)
    assert values(found, node, vocab.HAS_OUTCOME) == {I + "SevereSideEffects"}


@pytest.mark.parametrize("kind", ["MedicationStatement", "MedicationRequest", "MedicationAdministration"])
def test_an_intrathecal_medication_is_never_a_prior_treatment(tmp_path: Path, kind: str) -> None:
    resources = [F.condition("c1", ICD, "G89.3"),
                 F.med_statement("m1", F.cc(RX, "7052"), route="72607000", kind=kind)]
    assert linked(facts(tmp_path, resources), vocab.RECEIVED_TREATMENT) == []
    assert rows(tmp_path, resources) == []


@pytest.mark.parametrize(("kind", "status", "counts"), [
    ("MedicationStatement", "entered-in-error", False), ("MedicationStatement", "not-taken", False),
    ("MedicationStatement", "active", True), ("MedicationStatement", "completed", True),
    ("MedicationRequest", "entered-in-error", False), ("MedicationRequest", "draft", False),
    ("MedicationRequest", "stopped", True), ("MedicationRequest", "cancelled", True),
    ("MedicationAdministration", "entered-in-error", False), ("MedicationAdministration", "not-done", False),
    ("MedicationAdministration", "completed", True),
    ("Procedure", "entered-in-error", False), ("Procedure", "not-done", False),
    ("Procedure", "preparation", False), ("Procedure", "completed", True), ("Procedure", "stopped", True),
])
def test_treatment_statuses(tmp_path: Path, kind: str, status: str, counts: bool) -> None:
    if kind == "Procedure":
        resource = {"resourceType": "Procedure", "id": "m1", "status": status, "subject": F.ref("Patient/p1"),
                    "code": F.cc(I, "SpinalSurgery"), "outcome": F.cc(I, "TreatmentFailure")}
    else:
        resource = F.med_statement("m1", F.cc(RX, "7052"), status=status, kind=kind)
    assert bool(linked(facts(tmp_path, [resource]), vocab.RECEIVED_TREATMENT)) is counts


def test_procedure_outcome_is_the_treatment_outcome(tmp_path: Path) -> None:
    resources = [F.condition("c1", ICD, "G54.6"),  # phantom limb pain
                 {"resourceType": "Procedure", "id": "pr1", "status": "completed", "subject": F.ref("Patient/p1"),
                  "code": F.cc(I, "InterventionalPainProcedure"), "outcome": F.cc(I, "TreatmentFailure")}]
    found = facts(tmp_path, resources)
    assert values(found, BASE + "Procedure/pr1", vocab.HAS_OUTCOME) == {I + "TreatmentFailure"}
    assert rows(tmp_path, resources) == [(P1, "NonCancerPainIndication", "pending")]


def test_status_reason_gives_the_outcome_and_several_reasons_all_count(tmp_path: Path) -> None:
    resource = F.med_statement("m1", F.cc(RX, "7804"), reason=None,
                               statusReason=[F.cc(I, "InadequatePainRelief"), F.cc(I, "SevereSideEffects"),
                                             F.cc(SCT, "182862001")])
    found = facts(tmp_path, [resource])
    assert values(found, BASE + "MedicationStatement/m1", vocab.HAS_OUTCOME) == \
        {I + "InadequatePainRelief", I + "SevereSideEffects"}


@pytest.mark.parametrize("form", ["inline", "contained", "relative", "urn", "absolute", "later-file"])
def test_the_medication_is_found_in_every_reference_form(tmp_path: Path, form: str) -> None:
    med = {"resourceType": "Medication", "id": "med1", "code": F.cc(RX, "4337")}
    statement = F.med_statement("m1", None, route="45890007")
    if form == "inline":
        statement["medicationCodeableConcept"] = F.cc(RX, "4337")
        paths = [F.write_ndjson(tmp_path / "a.ndjson", [statement])]
    elif form == "contained":
        statement["contained"] = [{**med, "id": "x"}]
        statement["medicationReference"] = F.ref("#x")
        paths = [F.write_ndjson(tmp_path / "a.ndjson", [statement])]
    elif form in ("relative", "absolute"):
        statement["medicationReference"] = F.ref("Medication/med1" if form == "relative"
                                                 else "https://other.example/fhir/Medication/med1")
        paths = [F.write_ndjson(tmp_path / "a.ndjson", [med, statement])]
    elif form == "urn":
        statement["medicationReference"] = F.ref("urn:uuid:6d3c8a0e-0000-4000-8000-000000000001")
        doc = F.bundle([statement, {**med, "id": "other-id"}],
                       urls=[None, "urn:uuid:6d3c8a0e-0000-4000-8000-000000000001"])
        paths = [F.write_json(tmp_path / "b.json", doc)]
    else:  # the Medication comes in a later file of the run
        statement["medicationReference"] = F.ref("Medication/med1")
        paths = [F.write_ndjson(tmp_path / "a.ndjson", [statement]), F.write_ndjson(tmp_path / "b.ndjson", [med])]
    found = {(t.subject.value, t.predicate.value, t.object.value) for t in read(paths).triples}
    assert I + "TransdermalOpioidTherapy" in types(found, BASE + "MedicationStatement/m1")


# -- Consent ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "ptype", "decision"), [
    ("active", "permit", "ConsentGranted"), ("active", None, "ConsentGranted"),
    ("active", "deny", "ConsentRefused"), ("rejected", "permit", "ConsentRefused"),
    ("rejected", None, "ConsentRefused"), ("inactive", "permit", "ConsentWithdrawn"),
    ("inactive", None, "ConsentWithdrawn"),
    ("draft", "permit", None), ("proposed", "permit", None), ("entered-in-error", "permit", None)])
def test_consent_decisions(tmp_path: Path, status: str, ptype: str | None, decision: str | None) -> None:
    found = facts(tmp_path, [F.consent("k1", status=status, ptype=ptype)])
    node = BASE + "Consent/k1"
    if decision is None:
        assert found == set()
    else:
        assert values(found, node, vocab.CONSENT_STATUS) == {I + decision}
        assert values(found, node, vocab.COVERS_THERAPY) == {I + "IntrathecalTherapy"}
        assert values(found, node, vocab.CONSENT_DATE) == {"2026-03-02"}


@pytest.mark.parametrize("scope", ["patient-privacy", "research", "adr"])
def test_consents_of_other_scopes_never_count(tmp_path: Path, scope: str) -> None:
    assert facts(tmp_path, [F.consent("k1", scope=scope)]) == set()
    assert rows(tmp_path, [*F.cancer_patient()[:3], F.consent("k1", scope=scope), F.csf("o1")]) == \
        [(P1, "CancerPainIndication", "pending")]


def test_consent_covers_the_mapped_therapies_of_nested_provisions(tmp_path: Path) -> None:
    nested = F.consent("k1", therapy="")
    nested["provision"]["provision"] = [{"type": "permit", "code": [F.cc(I, "IntrathecalBaclofenTherapy")]},
                                        {"provision": [{"code": [F.cc(I, "IntrathecalAnalgesicTherapy")]}]}]
    none = F.consent("k2", therapy="")
    none["provision"]["code"] = [F.cc(SCT, "999999")]
    found = facts(tmp_path, [nested, none])
    assert values(found, BASE + "Consent/k1", vocab.COVERS_THERAPY) == \
        {I + "IntrathecalBaclofenTherapy", I + "IntrathecalAnalgesicTherapy"}
    assert values(found, BASE + "Consent/k2", vocab.COVERS_THERAPY) == set()  # covers none


@pytest.mark.parametrize(("written", "date"), [
    ("2026-03-02", "2026-03-02"), ("2026-03-02T23:30:00-05:00", "2026-03-02"), ("2026-03", None),
    ("not a date", None)])
def test_consent_date_is_the_day_of_datetime(tmp_path: Path, written: str, date: str | None) -> None:
    found = facts(tmp_path, [F.consent("k1", date=written)])
    assert values(found, BASE + "Consent/k1", vocab.CONSENT_DATE) == ({date} if date else set())


# -- CSF and planned therapy ------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "counts"), [
    ("final", True), ("amended", True), ("corrected", True), ("preliminary", False),
    ("registered", False), ("cancelled", False), ("entered-in-error", False), ("unknown", False)])
def test_csf_observation_statuses(tmp_path: Path, status: str, counts: bool) -> None:
    found = facts(tmp_path, [F.csf("o1", status=status)])
    assert bool(linked(found, vocab.HAS_CSF_ASSESSMENT)) is counts


def test_csf_finding_and_date(tmp_path: Path) -> None:
    period = F.csf("o2", finding="ImpairedCSFCirculation", date=None,
                   effectivePeriod={"start": "2026-01-05T08:00:00Z"})
    found = facts(tmp_path, [F.csf("o1"), period, {**F.csf("o3"), "code": F.cc("http://loinc.org", "1-8")}])
    assert values(found, BASE + "Observation/o1", vocab.FINDING) == {I + "GoodCSFCirculation"}
    assert values(found, BASE + "Observation/o2", vocab.FINDING) == {I + "ImpairedCSFCirculation"}
    assert values(found, BASE + "Observation/o2", vocab.ASSESSMENT_DATE) == {"2026-01-05"}
    assert linked(found, vocab.HAS_CSF_ASSESSMENT) == [BASE + "Observation/o1", BASE + "Observation/o2"]


@pytest.mark.parametrize(("status", "code", "planned"), [
    ("active", "IntrathecalBaclofenTherapy", True), ("draft", "IntrathecalBaclofenTherapy", False),
    ("completed", "IntrathecalBaclofenTherapy", False), ("active", "OralBaclofenTherapy", False)])
def test_planned_therapy_from_service_request(tmp_path: Path, status: str, code: str, planned: bool) -> None:
    request = {"resourceType": "ServiceRequest", "id": "sr1", "status": status, "intent": "plan",
               "subject": F.ref("Patient/p1"), "code": F.cc(I, code)}
    found = facts(tmp_path, [request])
    assert linked(found, vocab.PLANNED_THERAPY) == ([I + code] if planned else [])


# -- references and patients ------------------------------------------------------------------------

def test_patients_named_by_full_url_or_base_and_absent_patients_still_count(tmp_path: Path) -> None:
    urn = "urn:uuid:0b9f5a52-0000-4000-8000-0000000000aa"
    doc = F.bundle([F.patient("pa"), F.condition("c1", ICD, "G89.3", pid="pa"),
                    {**F.condition("c2", ICD, "G89.3"), "subject": F.ref(urn)},
                    {**F.condition("c3", ICD, "G89.3"), "subject": F.ref("https://other.example/fhir/Patient/pz")},
                    F.condition("c4", ICD, "G89.3", pid="absent"),
                    {**F.condition("c5", ICD, "G89.3"), "subject": F.ref("Group/g1")}],
                   kind="transaction", urls=[urn, None, None, None, None, None])
    graph = read([F.write_json(tmp_path / "b.json", doc)])
    found = {(t.subject.value, t.predicate.value, t.object.value) for t in graph.triples}
    subjects = {s for s, p, o in found if p == vocab.HAS_CONDITION}
    assert subjects == {urn, BASE + "Patient/pz", BASE + "Patient/absent"}
    assert (urn, TYPE, vocab.PATIENT) in found
    assert graph.report.no_patient == 1  # the Group


def test_the_base_can_be_set(tmp_path: Path) -> None:
    found = facts(tmp_path, [F.condition("c1", ICD, "G89.3")], base="https://hospital.example/fhir")
    assert ("https://hospital.example/fhir/Patient/p1", vocab.HAS_CONDITION,
            "https://hospital.example/fhir/Condition/c1") in found


# -- inputs -----------------------------------------------------------------------------------------

def test_a_bulk_directory_a_bundle_a_resource_and_rdf_mixed_in_one_run(tmp_path: Path) -> None:
    bulk = tmp_path / "export"
    bulk.mkdir()
    resources = F.cancer_patient("b1")
    by_type: dict[str, list] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(resource)
    for kind, group in by_type.items():
        F.write_ndjson(bulk / f"{kind}.ndjson", group)
    (bulk / "README.txt").write_text("not read", encoding="utf-8")
    doc = F.write_json(tmp_path / "bundle.json", F.bundle(F.cancer_patient("b2"), kind="searchset"))
    single = F.write_json(tmp_path / "one.json", F.condition("c9", ICD, "G89.3", pid="b3"))
    rdf = Path(itkg.resources.data_root() / "examples" / "patients.ttl")
    files = [str(bulk), str(doc), str(single), str(rdf)]
    result = CliRunner().invoke(main, ["eligibility", *files, "--format", "json", "--workers", "2"])
    assert result.exit_code == 0, result.output
    got = {(r["patient"].rsplit("/", 1)[1], r["status"]) for r in json.loads(result.stdout)["results"]}
    assert {("b1", "qualifies"), ("b2", "qualifies"), ("anna", "qualifies"), ("dev", "excluded")} <= got
    assert not any(p == "b3" for p, _ in got)  # cancer pain alone indicates nothing


def test_fhir_is_told_from_json_ld_by_content(tmp_path: Path) -> None:
    fhir_json = F.write_json(tmp_path / "x.json", F.condition("c1", ICD, "G89.3"))
    jsonld = tmp_path / "y.json"
    jsonld.write_text(json.dumps({"@context": {"itkg": I}, "@id": "urn:x", "resourceType": "x"}), encoding="utf-8")
    assert is_fhir(fhir_json) and not is_fhir(jsonld) and is_fhir(tmp_path)
    assert not is_fhir(Path(itkg.resources.data_root() / "examples" / "patients.ttl"))
    assert is_fhir(jsonld, "fhir") and not is_fhir(fhir_json, "jsonld")


@pytest.mark.parametrize("command", [["validate"], ["explain", P1], ["query", "eligible-therapies"],
                                     ["convert", "-o", "OUT.nt"]])
def test_every_command_that_takes_patient_files_takes_fhir(tmp_path: Path, command: list[str]) -> None:
    path = F.write_ndjson(tmp_path / "in.ndjson", F.cancer_patient())
    args = [a.replace("OUT.nt", str(tmp_path / "out.nt")) for a in command] + [str(path)]
    if command[0] == "explain":
        args = ["explain", P1, str(path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    if command[0] == "query":
        assert P1 in result.stdout


# -- bad input --------------------------------------------------------------------------------------

def test_bad_json_in_ndjson_names_file_and_line_and_echoes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bad.ndjson"
    path.write_text(json.dumps(F.patient()) + "\n" + json.dumps(F.condition("c1", ICD, "G89.3")) + "\n"
                    + '{"resourceType": "Condition", "note": "' + F.SECRET_NAME + '" oops}\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["eligibility", str(path)])
    assert result.exit_code == 2
    assert f"{path}:3:" in result.stderr and "not valid JSON" in result.stderr
    assert F.SECRET_NAME not in result.output and F.SECRET_BIRTH not in result.output


def test_bad_json_in_a_json_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "resourceType": "Bundle",\n  "entry": [ ,\n]}\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["eligibility", str(path)])
    assert result.exit_code == 2 and f"{path}:3:" in result.stderr


def test_deep_nesting_and_long_lines_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "deep.ndjson"
    path.write_text('{"resourceType": "Condition", "x": ' + "[" * 100_000 + "]" * 100_000 + "}\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["eligibility", str(path)])
    assert result.exit_code == 2 and f"{path}:1:" in result.stderr and "nested" in result.stderr


def _r5_and_typeless() -> list[dict[str, Any]]:
    r5 = {"resourceType": "Consent", "id": "k5", "status": "active", "decision": "permit",
          "subject": F.ref("Patient/p1")}
    return [r5, {"id": "nothing", "subject": F.ref("Patient/p1")}, *F.cancer_patient()]


def test_non_r4_resources_are_reported_and_the_rest_goes_on(tmp_path: Path) -> None:
    path = F.write_ndjson(tmp_path / "mixed.ndjson", _r5_and_typeless())
    result = CliRunner().invoke(main, ["eligibility", str(path), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert [r["status"] for r in json.loads(result.stdout)["results"]] == ["qualifies"]
    assert f"{path}:1: a Consent with 'decision' is not FHIR R4" in result.stderr
    assert f"{path}:2: not a FHIR resource (no resourceType)" in result.stderr


def test_non_r4_resources_are_refused_under_strict(tmp_path: Path) -> None:
    path = F.write_ndjson(tmp_path / "mixed.ndjson", _r5_and_typeless())
    result = CliRunner().invoke(main, ["eligibility", str(path), "--strict"])
    assert result.exit_code == 2 and f"{path}:1:" in result.stderr and "--strict" in result.stderr


def test_duplicate_ids_across_files_first_in_input_order_wins(tmp_path: Path) -> None:
    granted = F.write_ndjson(tmp_path / "a.ndjson", [F.consent("k1")])
    refused = F.write_ndjson(tmp_path / "b.ndjson", [F.consent("k1", ptype="deny")])
    rest = F.write_ndjson(tmp_path / "rest.ndjson", [c for c in F.cancer_patient() if c["resourceType"] != "Consent"])
    for order, status in (([granted, refused], "qualifies"), ([refused, granted], "excluded")):
        results = itkg.eligibility([rest, *order])
        assert [r.status for r in results] == [status]
    graph = read([granted, refused])
    assert graph.report.duplicates == 1 and graph.report.first_duplicate == f"{refused}:1"


def test_unmapped_codes_are_counted_by_system_and_code_never_by_patient(tmp_path: Path) -> None:
    resources = [F.patient(), F.condition("c1", SCT, "111111"), F.condition("c2", SCT, "111111", pid="p2"),
                 F.condition("c3", "https://hospital.example/codes", "LOCAL-9"), *F.cancer_patient("p3")]
    path = F.write_ndjson(tmp_path / "in.ndjson", resources)
    out = tmp_path / "unmapped.tsv"
    result = CliRunner().invoke(main, ["eligibility", str(path), "--unmapped-codes", str(out)])
    assert result.exit_code == 0, result.output
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "system\tcode\tcount"
    assert lines[1] == f"{SCT}\t111111\t2"
    assert "https://hospital.example/codes\tLOCAL-9\t1" in lines
    assert "Patient" not in out.read_text(encoding="utf-8") and "p2" not in out.read_text(encoding="utf-8")
    assert "code(s) are mapped to no itkg term" in result.stderr


def test_a_concepts_meaning_is_worked_out_once_and_its_unmapped_codes_counted_at_every_read(tmp_path: Path) -> None:
    # The reader remembers what a coding list means (itkg.fhir.rules.Meaning); the unmapped codes
    # still count once per resource that reads them, one coding alone or among others.
    two = {"coding": [{"system": SCT, "code": "111111"}, {"system": ICD, "code": "G89.3"}]}
    resources = [F.patient(), *(F.condition(f"c{n}", SCT, "111111") for n in range(3)),
                 {**F.condition("c9", SCT, "111111"), "code": two},
                 {**F.condition("c10", SCT, "111111"), "code": two}]
    graph = read([F.write_ndjson(tmp_path / "in.ndjson", resources)])
    assert graph.report.unmapped == {(SCT, "111111"): 5}
    found = {(t.subject.value, t.predicate.value, t.object.value) for t in graph.triples}
    assert I + "CancerPain" in types(found, BASE + "Condition/c10")
    assert graph.notes[BASE + "Condition/c10"] == "Condition/c10, SNOMED CT 111111, ICD-10-CM G89.3"


def test_a_record_with_an_empty_id_is_named_as_one_without_id(tmp_path: Path) -> None:
    found = facts(tmp_path, [F.patient(), {**F.condition("x", ICD, "G89.3"), "id": ""}])
    [record] = linked(found, vocab.HAS_CONDITION)
    assert record.startswith(BASE + "Condition/_itkg-") and record != BASE + "Condition/"


@pytest.mark.parametrize("engine", ["oxigraph", "rdflib"])
def test_query_reports_what_reading_fhir_found_as_eligibility_does(tmp_path: Path, engine: str) -> None:
    # Regression: itkg query read FHIR in its deadline child and printed nothing of the report.
    resources = [F.patient(), F.condition("c1", SCT, "111111"), F.condition("c2", SCT, "111111", pid="p2"),
                 F.condition("c3", "https://hospital.example/codes", "LOCAL-9"), *F.cancer_patient("p3"),
                 {"resourceType": "Consent", "id": "r5", "decision": "permit", "patient": F.ref("Patient/p1")}]
    path = F.write_ndjson(tmp_path / "in.ndjson", resources)
    reports = {}
    for command in (["eligibility", str(path)], ["query", "eligible-therapies", str(path), "--engine", engine]):
        out = tmp_path / f"{command[0]}.tsv"
        result = CliRunner().invoke(main, [*command, "--format", "csv", "--unmapped-codes", str(out)])
        assert result.exit_code == 0, result.output
        reports[command[0]] = ([line for line in result.stderr.splitlines() if line.startswith("itkg: FHIR: ")],
                               out.read_text(encoding="utf-8"))
        for secret in (F.SECRET_NAME, F.SECRET_BIRTH, F.SECRET_MRN, "p2"):
            assert secret not in result.stderr and secret not in reports[command[0]][1]
    lines, tsv = reports["query"]
    assert (lines, tsv) == reports["eligibility"]
    assert any("2 code(s) are mapped to no itkg term (3 occurrences)" in line for line in lines)
    assert any("a Consent with 'decision' is not FHIR R4" in line for line in lines)
    assert f"{SCT}\t111111\t2" in tsv.splitlines()


def test_site_mappings_from_the_cli_and_the_api(tmp_path: Path) -> None:
    site = tmp_path / "site.sssom.tsv"
    site.write_text("# curie_map:\n#   HOSP: https://hospital.example/codes/\n"
                    "subject_id\tpredicate_id\tobject_id\tmapping_justification\n"
                    "itkg:CancerPain\tskos:exactMatch\tHOSP:PAIN-ONC\tsemapv:ManualMappingCuration\n",
                    encoding="utf-8")
    resources = F.cancer_patient()
    resources[1] = F.condition("c-p1", "https://hospital.example/codes", "PAIN-ONC")
    assert rows(tmp_path, resources) == []
    assert rows(tmp_path, resources, mappings=[site]) == [(P1, "CancerPainIndication", "qualifies")]
    path = tmp_path / "in.ndjson"
    result = CliRunner().invoke(main, ["eligibility", str(path), "--mappings", str(site), "--format", "csv"])
    assert result.exit_code == 0 and "qualifies" in result.stdout


def test_convert_writes_turtle_and_ntriples_linked_to_the_resources(tmp_path: Path) -> None:
    import rdflib

    path = F.write_ndjson(tmp_path / "in.ndjson", F.cancer_patient())
    for name, fmt in (("out.ttl", "turtle"), ("out.nt", "nt")):
        result = CliRunner().invoke(main, ["convert", str(path), "-o", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        graph = rdflib.Graph().parse(tmp_path / name, format=fmt)
        assert (rdflib.URIRef(BASE + "Condition/c-p1"), rdflib.URIRef("http://purl.org/dc/terms/identifier"),
                rdflib.Literal("Condition/c-p1")) in graph
    text = itkg.convert([path]).decode("utf-8")
    assert "itkg:CancerPain" in text
    assert F.SECRET_NAME not in text and F.SECRET_MRN not in text and F.SECRET_BIRTH not in text
    result = CliRunner().invoke(main, ["convert", str(path), "-o", str(path)])
    assert result.exit_code == 2  # never over an input


# -- any JSON in any field: a result or bad input (exit 2), never a crash ------------------------------

def _mutations() -> Any:
    from hypothesis import strategies as st

    leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                       st.text(max_size=8), st.sampled_from(["Patient/p1", "#x", "urn:uuid:a b", "a b", "active", "%zz", "a#b#c",
                                       "Patient/[x]", "https://[::1/Patient/q"]))
    values = st.recursive(leaves, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                           st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                          max_leaves=6)
    return st.lists(st.tuples(st.integers(0, 4), st.integers(0, 30), values), min_size=1, max_size=4)


def test_any_json_in_any_field_gives_a_result_or_bad_input(tmp_path: Path) -> None:
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(_mutations())
    def check(mutations: list[tuple[int, int, Any]]) -> None:
        resources = F.cancer_patient()
        for index, field_number, value in mutations:
            resource = resources[index]
            keys = sorted(resource)
            resource[keys[field_number % len(keys)]] = value  # resourceType too, sometimes
        path = F.write_ndjson(tmp_path / "fuzz.ndjson", resources)
        try:
            graph = read([path])
            itkg.eligibility(path)
        except itkg.InputError:
            return
        assert graph.report is not None

    check()


def test_ids_and_references_that_are_not_valid_iris_are_encoded(tmp_path: Path) -> None:
    weird = {**F.condition("a b", ICD, "G89.3"), "subject": F.ref("Patient/p q")}
    odd_system = F.condition("c2", "local codes", "x y")
    found = facts(tmp_path, [weird, odd_system])
    assert (BASE + "Patient/p%20q", vocab.HAS_CONDITION, BASE + "Condition/a%20b") in found
    assert "urn:itkg:invalid:local%20codes/x%20y" in types(found, BASE + "Condition/c2")


def test_any_id_reference_or_system_becomes_a_valid_iri() -> None:
    import pyoxigraph as ox
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from itkg.fhir.reader import _valid
    from itkg.mappings import coding_iri

    @settings(max_examples=300, deadline=None, database=None)
    @given(st.text(max_size=12), st.sampled_from([BASE + "Condition/", "urn:uuid:", "", "https://", "mailto:",
                                                  "https://[::1]/", "http://x:99999/"]))
    def check(text: str, prefix: str) -> None:
        ox.NamedNode(_valid(prefix + text))
        ox.NamedNode(_valid(coding_iri(prefix + text or "s", text or "c")))

    check()


def test_a_lone_surrogate_is_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "s.ndjson"
    path.write_text('{"resourceType": "Condition", "id": "\\ud800"}\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["eligibility", str(path)])
    assert result.exit_code == 2 and f"{path}:1:" in result.stderr and "surrogate" in result.stderr


def _intolerance(severity: str = "severe", kind: str = "intolerance", code: str = "7052",
                 **extra: Any) -> dict[str, Any]:
    return {"resourceType": "AllergyIntolerance", "id": "a1", "patient": F.ref("Patient/p1"), "type": kind,
            "category": ["medication"], "code": F.cc(RX, code), "reaction": [{"severity": severity}], **extra}


@pytest.mark.parametrize(("intolerance", "outcome"), [
    (_intolerance(), True), (_intolerance(severity="moderate"), False), (_intolerance(kind="allergy"), False),
    (_intolerance(code="4337"), False),  # fentanyl: not the drug the patient took
    (_intolerance(clinicalStatus=F.cc("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                                      "resolved")), False),
    (_intolerance(verificationStatus=F.cc("http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                                          "refuted")), False),
])
def test_a_severe_intolerance_to_the_drug_is_a_severe_side_effect(tmp_path: Path, intolerance: dict,
                                                                   outcome: bool) -> None:
    """The documented extra outcome route: the intolerance may come before or after the treatment."""
    resources = F.cancer_patient()
    resources[2] = F.med_statement("m-p1", F.cc(RX, "7052"), route="26643006", reason=None)
    for order in ([intolerance, *resources], [*resources, intolerance]):
        path = F.write_ndjson(tmp_path / "in.ndjson", order)
        results = itkg.eligibility(path)
        assert [r.status for r in results] == (["qualifies"] if outcome else [])
        if outcome:
            assert "severe side effects from AllergyIntolerance/a1" in " ".join(results[0].evidence)


def test_progress_counts_every_byte_read(tmp_path: Path) -> None:
    path = F.write_ndjson(tmp_path / "in.ndjson", F.cancer_patient() * 2000)
    doc = F.write_json(tmp_path / "b.json", F.bundle(F.cancer_patient("p9")))
    seen: list[int] = []
    read([path, doc], on_read=seen.append)
    assert len(seen) > 2 and sum(seen) == path.stat().st_size + doc.stat().st_size


# -- several processes: the result of one ---------------------------------------------------------

def _graph_summary(graph: Any) -> tuple:
    triples = sorted((t.subject.value, t.predicate.value, t.object.value) for t in graph.triples)
    report = graph.report.to_dict()
    return triples, graph.notes, report, [graph.count(i) for i in range(len(graph.files))]


def test_several_processes_give_the_graph_of_one(tmp_path: Path) -> None:
    bulk = load_by_path("itkg_benchmarks_fhir_bulk", Path(__file__).parents[1] / "benchmarks" / "fhir_bulk.py")
    export = bulk.generate(300, tmp_path / "export", seed=3)
    # a medication referenced across chunks, an intolerance before the treatment, and a bundle
    extra = F.write_ndjson(tmp_path / "extra.ndjson", [
        {"resourceType": "AllergyIntolerance", "id": "ai", "patient": F.ref("Patient/p5"), "type": "intolerance",
         "category": ["medication"], "code": F.cc(RX, "7052"), "reaction": [{"severity": "severe"}]},
        {"resourceType": "Medication", "id": "late", "code": F.cc(RX, "7804")}])
    early = F.write_ndjson(tmp_path / "early.ndjson", [
        {**F.med_statement("ms-late", None, pid="p7", route="26643006"),
         "medicationReference": F.ref("Medication/late")}])
    doc = F.write_json(tmp_path / "b.json", F.bundle(F.cancer_patient("pb"), kind="collection"))
    paths = [early, export, extra, doc]
    one = read(paths)
    several = read(paths, workers=2, min_chunk_bytes=4096)
    assert several.blobs  # it did run in several processes
    assert _graph_summary(several) == _graph_summary(one)
    assert I + "OralOpioidTherapy" in types({(t.subject.value, t.predicate.value, t.object.value)
                                             for t in several.triples}, BASE + "MedicationStatement/ms-late")


def test_a_duplicate_across_chunks_or_an_error_is_left_to_one_process(tmp_path: Path) -> None:
    from itkg.fhir import parallel
    from itkg.mappings import load_mappings

    lines = [F.condition(f"c{n}", ICD, "G89.3", pid=f"p{n}") for n in range(400)]
    dup = F.write_ndjson(tmp_path / "dup.ndjson", [*lines, F.condition("c1", ICD, "M96.1", pid="p1")])
    options = dict(base=BASE, mappings=load_mappings(), strict=False, max_bytes=1 << 30, workers=2,
                   min_chunk_bytes=4096)
    assert parallel.read([dup], **options) is None
    assert read([dup], workers=2, min_chunk_bytes=4096).report.duplicates == 1
    bad = tmp_path / "bad.ndjson"
    F.write_ndjson(bad, lines)
    bad.write_text(bad.read_text(encoding="utf-8") + "{oops\n", encoding="utf-8")
    assert parallel.read([bad], **options) is None
    with pytest.raises(itkg.InputError) as caught:
        read([bad], workers=2, min_chunk_bytes=4096)
    assert caught.value.line == 401


def test_explain_names_the_fhir_resources_and_codes(tmp_path: Path) -> None:
    path = F.write_ndjson(tmp_path / "in.ndjson", F.cancer_patient())
    result = CliRunner().invoke(main, ["explain", P1, str(path), "--format", "json"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "(Condition/c-p1; ICD-10-CM G89.3)" in text and "(Consent/k-p1" in text


@pytest.mark.parametrize(("written", "date"), [("2026-02-30", None), ("2026-02-28T10:00:00Z", "2026-02-28"),
                                                ("2025-02-29", None), ("2024-02-29", "2024-02-29")])
def test_a_day_that_does_not_exist_is_undated_never_ill_typed(tmp_path: Path, written: str, date: str | None) -> None:
    found = facts(tmp_path, [F.consent("k1", date=written), F.csf("o1", date=written)])
    assert values(found, BASE + "Consent/k1", vocab.CONSENT_DATE) == ({date} if date else set())
    assert values(found, BASE + "Observation/o1", vocab.ASSESSMENT_DATE) == ({date} if date else set())
    assert rows(tmp_path, [*F.cancer_patient()[:3], F.consent("k1", date=written), F.csf("o1", date=written)]) \
        == [(P1, "CancerPainIndication", "qualifies")]


def test_ndjson_read_in_blocks_numbers_its_lines_as_one_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The reader splits a chunk's lines a few MiB at a time (itkg.fhir.reader._blocks), never all
    # at once; here in blocks of 64 bytes, with CR LF and lone CR line ends and blank lines.
    from itkg.fhir import reader as fhir_reader
    original = fhir_reader._blocks
    monkeypatch.setattr(fhir_reader, "_blocks", lambda data: original(data, 64))
    lines = [json.dumps(r) for r in F.cancer_patient()]
    text = "\r\n".join(lines[:2]) + "\r\n\r\n" + "\r".join(lines[2:]) + "\n\n{oops\n"
    bad = tmp_path / "bad.ndjson"
    bad.write_bytes(text.encode("utf-8"))
    with pytest.raises(itkg.InputError) as caught:
        read([bad])
    assert caught.value.line == len(lines) + 3
    good = tmp_path / "good.ndjson"
    good.write_bytes(text.rsplit("{oops", 1)[0].encode("utf-8"))
    [row] = itkg.eligibility(good)
    assert row.status == "qualifies"
