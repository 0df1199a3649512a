"""Real FHIR data that we did not write: the R4 specification's examples (npm
``hl7.fhir.r4.examples`` 4.0.1, HL7, CC0) and cql-exec-fhir's two Synthea patient bundles.

``.ci/run`` fetches both with ``npm pack`` into ``$ITKG_EXTERNAL_DATA`` (default
``.cache/external`` in the checkout). The tests skip when the cache is absent on a developer's
machine, and fail when it is absent under CI (``CI`` set), so CI always runs them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support import FHIR_EXAMPLES, SYNTHEA, external_data

import itkg
from itkg import vocab
from itkg.cli import main
from itkg.fhir import read

EXAMPLES = FHIR_EXAMPLES
#: Conformance and terminology resources: examples of the specification, not of clinical records.
NOT_CLINICAL = {"SearchParameter", "ValueSet", "CodeSystem", "StructureDefinition", "ConceptMap",
                "OperationDefinition", "CapabilityStatement", "CompartmentDefinition",
                "ImplementationGuide", "NamingSystem", "StructureMap", "TerminologyCapabilities",
                "MessageDefinition", "GraphDefinition", "ExampleScenario", "TestScript", "TestReport"}


@pytest.fixture(scope="module")
def clinical_examples() -> list[Path]:
    package = external_data(EXAMPLES)
    files = sorted(p for p in package.glob("*.json")
                   if p.name.split("-")[0] not in NOT_CLINICAL and p.name != "package.json")
    assert len(files) > 600
    return files


@pytest.fixture(scope="module")
def synthea() -> list[Path]:
    files = sorted(p for p in external_data(SYNTHEA).glob("*.json") if not p.name.startswith("Condition"))
    assert len(files) == 2
    return files


@pytest.fixture(scope="module")
def read_examples(clinical_examples: list[Path]) -> Any:
    return read(clinical_examples)


def _patient_values(files: list[Path]) -> set[str]:
    """Names, birth dates and identifiers of every Patient in the files (Bundles included)."""
    found: set[str] = set()

    def walk(resource: Any) -> None:
        if not isinstance(resource, dict):
            return
        if resource.get("resourceType") == "Patient":
            for name in resource.get("name") or ():
                found.update(v for v in [name.get("family"), *(name.get("given") or ())] if isinstance(v, str))
            if isinstance(resource.get("birthDate"), str):
                found.add(resource["birthDate"])
            found.update(i["value"] for i in resource.get("identifier") or () if isinstance(i.get("value"), str))
        for entry in resource.get("entry") or ():
            walk(entry.get("resource"))
        for contained in resource.get("contained") or ():
            walk(contained)

    for path in files:
        walk(json.loads(path.read_text(encoding="utf-8")))
    # short values ("1", "Jim") could occur by chance in a code or a path: keep the telling ones
    return {v for v in found if len(v) >= 5}


def test_every_clinical_example_imports_and_none_is_misread_as_r5(read_examples: Any) -> None:
    report = read_examples.report
    assert report.not_r4_count == 0, report.not_r4
    for kind in ("Patient", "Condition", "MedicationRequest", "MedicationStatement",
                 "MedicationAdministration", "Procedure", "Consent", "Observation", "ServiceRequest"):
        assert report.resources[kind] > 0, kind


def test_no_example_yields_an_indication(clinical_examples: list[Path], synthea: list[Path]) -> None:
    assert itkg.eligibility(clinical_examples) == []
    assert itkg.eligibility(synthea) == []


def test_every_privacy_consent_is_ignored(read_examples: Any) -> None:
    report = read_examples.report
    consents = report.resources["Consent"]
    assert consents >= 12
    ignored = sum(n for (kind, reason), n in report.not_counted.items()
                  if kind == "Consent" and reason.startswith("scope "))
    assert ignored == consents
    assert [t for t in read_examples.triples if t.predicate.value == vocab.HAS_CONSENT] == []


def test_the_synthea_bundles_import(synthea: list[Path]) -> None:
    graph = read(synthea)
    assert graph.report.resources["Patient"] == 2 and graph.report.not_r4_count == 0
    counted = sum(1 for t in graph.triples if t.predicate.value == vocab.HAS_CONDITION)
    not_counted = sum(n for (kind, _), n in graph.report.not_counted.items() if kind == "Condition")
    assert counted >= 2 and counted + not_counted == graph.report.resources["Condition"]


@pytest.mark.slow
def test_nothing_from_a_patient_appears_in_any_message(tmp_path: Path, clinical_examples: list[Path],
                                                       synthea: list[Path]) -> None:
    files = [*clinical_examples, *synthea]
    secrets = _patient_values(files)
    assert len(secrets) > 20
    unmapped = tmp_path / "unmapped.tsv"
    runner = CliRunner()
    outputs = []
    for fmt in ("json", "cds-hooks", "fhir"):
        result = runner.invoke(main, ["eligibility", *map(str, files), "--format", fmt,
                                      "--unmapped-codes", str(unmapped)])
        assert result.exit_code == 0, result.output
        outputs += [result.stdout, result.stderr, unmapped.read_text(encoding="utf-8")]
    # bad input: a Patient example cut off mid-way must be refused without quoting it
    patient = next(p for p in clinical_examples if p.name.startswith("Patient-"))
    broken = tmp_path / patient.name
    text = patient.read_text(encoding="utf-8")
    broken.write_text(text[: len(text) // 2], encoding="utf-8")
    result = runner.invoke(main, ["eligibility", str(broken)])
    assert result.exit_code == 2
    outputs.append(result.output)
    result = runner.invoke(main, ["convert", str(patient), "-o", str(tmp_path / "out.ttl")])
    assert result.exit_code == 0, result.output
    outputs.append(result.output)
    leaked = sorted(s for s in secrets if any(s in out for out in outputs))
    assert leaked == []
