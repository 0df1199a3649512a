""""Latest record" is linear in one patient's records in every engine (issue 14, item 4).

The planned-therapy constraint used to compare every consent record with every other (1,000
records: 170 s), and the contract queries paired every consent record with every CSF
assessment (eligibility --engine rdflib: 69 s at 10,000 records). One patient with 1,500 of each
now takes seconds in the rule engine, both SPARQL engines and pySHACL; the budget below is far
under what the quadratic forms took, and far over what the linear ones take on a loaded machine.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import itkg

RECORDS = 1500
BUDGET_S = 60.0


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lines = ["@prefix itkg: <https://w3id.org/itkg/> .", "@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .",
             "<https://example.org/crowded> itkg:hasCondition [ a itkg:CancerPain ] ;",
             "  itkg:receivedTreatment [ a itkg:OralOpioidTherapy ; itkg:hasOutcome itkg:SevereSideEffects ] ;",
             "  itkg:plannedTherapy itkg:IntrathecalAnalgesicTherapy ;"]
    for i in range(RECORDS):
        day = f"20{10 + i % 15:02d}-{1 + i % 12:02d}-{1 + i % 28:02d}"
        status = "itkg:ConsentGranted" if i else "itkg:ConsentRefused"
        lines.append(f'  itkg:hasConsent [ itkg:consentStatus {status} ; itkg:coversTherapy itkg:IntrathecalTherapy ;'
                     f' itkg:consentDate "{day}"^^xsd:date ] ;')
        lines.append(f'  itkg:hasCSFAssessment [ itkg:finding itkg:GoodCSFCirculation ; itkg:assessmentDate "{day}"^^xsd:date ] ;')
    lines.append("  itkg:hasConsent [ itkg:consentStatus itkg:ConsentGranted ; itkg:coversTherapy itkg:IntrathecalTherapy ;"
                 ' itkg:consentDate "2030-01-01"^^xsd:date ] .')
    path = tmp_path_factory.mktemp("linear") / "crowded.ttl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["native", "rdflib", "oxigraph"])
def test_eligibility_is_linear_in_one_patients_records(crowded: Path, engine: str) -> None:
    data = itkg.load(crowded)
    started = time.monotonic()
    (row,) = itkg.eligibility(data, engine=engine)
    assert time.monotonic() - started < BUDGET_S
    assert row.status == "qualifies"  # the grant of 2030 is the latest consent


@pytest.mark.slow
def test_validate_is_linear_in_one_patients_records(crowded: Path) -> None:
    data = itkg.load(crowded, strict_literals=False)
    started = time.monotonic()
    report = itkg.validate(data, engine="pyshacl")
    assert time.monotonic() - started < BUDGET_S
    assert report.conforms, [r.message for r in report.results][:3]


def test_validate_has_a_deadline(crowded: Path) -> None:
    """Like the other commands, validate gives up at --timeout: one line, exit 2, no output."""
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "itkg.cli", "validate", "--timeout", "0.5", str(crowded)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == "itkg: error: validation did not finish within 0.5 s"
