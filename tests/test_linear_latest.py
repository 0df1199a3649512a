""""Latest record" is linear in one patient's records in every engine (issue 14, item 4).

The planned-therapy constraint used to compare every consent record with every other (1,000
records: 170 s), and the contract queries paired every consent record with every CSF
assessment (eligibility --engine rdflib: 69 s at 10,000 records). The tests below measure the
work, not the time (a timed bound failed on a loaded CI machine and proved nothing on an idle
one): the number of Python function calls an engine makes for one patient with n, 2n and 4n
records. That count is the same on any machine under any load. Linear work adds as much from 2n
to 4n as twice what it adds from n to 2n (a ratio of 2); pairing every record with every other
gives a ratio near 4, as `test_the_measure_sees_quadratic_work` shows it does.

The Oxigraph engine evaluates the same generated query text as the rdflib engine (its work is
in Rust, where Python calls do not see it); the rdflib engine's count covers that text.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import rdflib

import itkg

RECORDS = 1500
SIZES = (50, 100, 200)
SMALL = (10, 20, 40)  # for the quadratic query, whose pairs grow fast


def _crowded_turtle(records: int) -> str:
    lines = ["@prefix itkg: <https://w3id.org/itkg/> .", "@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .",
             "<https://example.org/crowded> itkg:hasCondition [ a itkg:CancerPain ] ;",
             "  itkg:receivedTreatment [ a itkg:OralOpioidTherapy ; itkg:hasOutcome itkg:SevereSideEffects ] ;",
             "  itkg:plannedTherapy itkg:IntrathecalAnalgesicTherapy ;"]
    for i in range(records):
        day = f"20{10 + i % 15:02d}-{1 + i % 12:02d}-{1 + i % 28:02d}"
        status = "itkg:ConsentGranted" if i else "itkg:ConsentRefused"
        lines.append(f'  itkg:hasConsent [ itkg:consentStatus {status} ; itkg:coversTherapy itkg:IntrathecalTherapy ;'
                     f' itkg:consentDate "{day}"^^xsd:date ] ;')
        lines.append(f'  itkg:hasCSFAssessment [ itkg:finding itkg:GoodCSFCirculation ; itkg:assessmentDate "{day}"^^xsd:date ] ;')
    lines.append("  itkg:hasConsent [ itkg:consentStatus itkg:ConsentGranted ; itkg:coversTherapy itkg:IntrathecalTherapy ;"
                 ' itkg:consentDate "2030-01-01"^^xsd:date ] .')
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("linear") / "crowded.ttl"
    path.write_text(_crowded_turtle(RECORDS), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def sized(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    folder = tmp_path_factory.mktemp("sized")
    paths = {}
    for records in {SMALL[0] // 2, *SMALL, SIZES[0] // 2, *SIZES}:
        paths[records] = folder / f"crowded-{records}.ttl"
        paths[records].write_text(_crowded_turtle(records), encoding="utf-8")
    return paths


def _python_calls(work: Callable[[], object]) -> int:
    """Python function calls made by ``work`` in this thread: a measure of work that load cannot change."""
    calls = 0

    def count(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    sys.setprofile(count)
    try:
        work()
    finally:
        sys.setprofile(None)
    return calls


def _growth(work: Callable[[int], object], sizes: tuple[int, int, int] = SIZES) -> float:
    """What 2n to 4n records add over what n to 2n add: 2 for linear work, near 4 for quadratic."""
    work(sizes[0] // 2)  # once before counting: caches (parsed queries, the knowledge) filled
    n, twice, four = (_python_calls(lambda size=size: work(size)) for size in sizes)  # type: ignore[misc]
    assert twice - n > 1000, "the measure saw almost no work: the engine ran where it cannot count"
    return (four - twice) / (twice - n)


@pytest.mark.parametrize("engine", ["native", "rdflib"])
def test_eligibility_is_linear_in_one_patients_records(sized: dict[int, Path], engine: str) -> None:
    data = {records: itkg.load(path) for records, path in sized.items()}

    def decide(records: int) -> None:
        (row,) = itkg.eligibility(data[records], engine=engine)
        assert row.status == "qualifies"  # the grant of 2030 is the latest consent

    assert _growth(decide) < 3.0


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["native", "rdflib", "oxigraph"])
def test_the_latest_consent_decides_among_many(crowded: Path, engine: str) -> None:
    (row,) = itkg.eligibility(itkg.load(crowded), engine=engine)
    assert row.status == "qualifies"  # 1,500 records each; the grant of 2030 is the latest consent


def test_validate_is_linear_in_one_patients_records(sized: dict[int, Path]) -> None:
    data = {records: itkg.load(path, strict_literals=False) for records, path in sized.items()}

    def check(records: int) -> None:
        report = itkg.validate(data[records], engine="pyshacl")
        assert report.conforms, [r.message for r in report.results][:3]

    assert _growth(check) < 3.0


def test_the_measure_sees_quadratic_work(sized: dict[int, Path]) -> None:
    """The measure can fail: a query that pairs every consent record with every other grows near 4."""
    graphs = {records: rdflib.Graph().parse(path) for records, path in sized.items()}
    pairs = ("PREFIX itkg: <https://w3id.org/itkg/> SELECT (COUNT(*) AS ?n) WHERE { "
             "?p itkg:hasConsent ?a . ?p itkg:hasConsent ?b . ?a itkg:consentDate ?x . ?b itkg:consentDate ?y "
             "FILTER(?x < ?y) }")
    assert _growth(lambda records: list(graphs[records].query(pairs)), SMALL) > 3.5


def test_validate_has_a_deadline(crowded: Path) -> None:
    """Like the other commands, validate gives up at --timeout: one line, exit 2, no output."""
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "itkg.cli", "validate", "--timeout", "0.5", str(crowded)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == "itkg: error: validation did not finish within 0.5 s"
