"""Stable names (issue 8): a blank-node record or patient has the same name in two runs and in
every engine (native, rdflib, Oxigraph, validate), never a fresh random id; people read it as
written, with file and line; ``explain`` finds a blank-node patient by its label as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from support import invoke

import itkg
from itkg.errors import InputError

ITKG = "https://w3id.org/itkg/"

#: A blank-node patient with blank-node records, labelled and not; the consent record is missing
#: its status, so validate reports it (record-level, naming the patient).
PATIENTS = """@prefix itkg: <https://w3id.org/itkg/> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .

_:p1 a itkg:Patient ;
  itkg:hasCondition _:c1 ;
  itkg:receivedTreatment [ a itkg:OralOpioidTherapy ;
                           itkg:hasOutcome itkg:SevereSideEffects ] ;
  itkg:hasConsent _:k1 .

_:c1 a itkg:CancerPain .
_:k1 a itkg:InformedConsent ; itkg:coversTherapy itkg:IntrathecalTherapy .
"""
_BLANK = re.compile(r"_:[A-Za-z0-9_.\-]*[A-Za-z0-9_\-]")


@pytest.fixture()
def patients(tmp_path: Path) -> Path:
    path = tmp_path / "patients.ttl"
    path.write_text(PATIENTS, encoding="utf-8")
    return path


def _rows(path: Path, engine: str) -> list[tuple]:
    return [(r.patient, r.therapy, r.status, r.evidence) for r in itkg.eligibility(path, engine=engine)]


def test_two_runs_and_every_engine_name_a_blank_node_record_alike(patients: Path) -> None:
    native = _rows(patients, "native")
    assert native and {r[0] for r in native} == {"_:p1"}
    names = {n for r in native for e in r[3] for n in _BLANK.findall(e)}
    assert names == {"_:c1", "_:k1", "_:_1"}  # labels as written; the unlabelled treatment numbered
    assert _rows(patients, "native") == native  # a second run
    for engine in ("rdflib", "oxigraph"):
        assert {(r[0], r[1], r[2]) for r in _rows(patients, engine)} == {(r[0], r[1], r[2]) for r in native}
        assert {n for r in _rows(patients, engine) for e in r[3] for n in _BLANK.findall(e)} <= names
    cli = json.loads(invoke("eligibility", "--format", "json", patients).stdout)["results"]
    assert {(r["patient"], r["therapy"], tuple(r["evidence"])) for r in cli} == {(r[0], r[1], r[3]) for r in native}
    report = itkg.validate(patients, engine="pyshacl")
    about_consent = [r for r in report.results if r.focus == "_:k1"]
    assert about_consent and all(r.patient == "_:p1" for r in about_consent)
    again = itkg.validate(patients, engine="pyshacl")
    assert [(r.focus, r.patient, r.message) for r in again.results] == \
        [(r.focus, r.patient, r.message) for r in report.results]


def test_people_read_the_label_as_written_with_file_and_line(patients: Path) -> None:
    explanation = itkg.explain(patients, "_:p1")
    texts = [e for i in explanation.indications for c in i.criteria for e in (*c.evidence, *c.failed)]
    assert any("_:c1 (patients.ttl line 10)" in t for t in texts), texts
    assert any("_:_1 (unlabelled, patients.ttl line 6)" in t for t in texts), texts
    report = itkg.validate(patients, engine="pyshacl")
    consent = [r for r in report.results if r.focus == "_:k1"]
    assert consent and all("_:p1 (patients.ttl line 4)" in r.text for r in consent), [r.text for r in consent]
    done = invoke("validate", patients)
    assert "_:k1 (patients.ttl line 11)" in done.stdout, done.stdout


def test_explain_finds_a_blank_node_patient_by_its_label_and_file(patients: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.ttl"
    other.write_text(PATIENTS, encoding="utf-8")
    one = itkg.explain(patients, "_:p1")
    assert one.patient == "_:p1" and any(i.met for i in one.indications)
    with pytest.raises(InputError, match="name the file"):
        itkg.explain([patients, other], "_:p1")
    two = itkg.explain([patients, other], "_:p1 (other.ttl)")
    assert two.patient == "_:f2-p1"
    assert itkg.explain([patients, other], "_:f1-p1").patient == "_:f1-p1"
    assert itkg.explain([patients, other], "_:p1 (patients.ttl line 4)").patient == "_:f1-p1"
    done = invoke("explain", "_:p1", patients)
    assert done.returncode == 0 and "_:c1 (patients.ttl line 10)" in done.stdout, done.stderr
    done = invoke("explain", "_:p1 (other.ttl)", patients, other)
    assert done.returncode == 0, done.stderr


def test_an_unlabelled_patient_is_found_by_the_name_itkg_gives_it(tmp_path: Path) -> None:
    path = tmp_path / "anon.ttl"
    path.write_text(PATIENTS.replace("_:p1 a itkg:Patient ;", "[] a itkg:Patient ;").replace(
        "  itkg:hasConsent _:k1 .", "  itkg:hasConsent _:k1 ] .").replace("[] a itkg:Patient ;", "[ a itkg:Patient ;"),
        encoding="utf-8")
    rows = itkg.eligibility(path)
    (patient,) = {r.patient for r in rows}
    assert re.fullmatch(r"_:_[0-9]+", patient)
    assert {r.patient for r in itkg.eligibility(path)} == {patient}
    assert itkg.explain(path, patient).patient == patient
