"""A large FHIR Bulk export decided in waves (:mod:`itkg.fhir.waves`) gives the rows, evidence,
report and sources of one pass, with patients split across files and parts, Medications and
etiologies in other parts, intolerances in another file; what waves cannot trust (a ``Type/id``
in two parts, a reference the pre-scan does not read, a record without id) is decided another
way, with the same rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support import load_by_path

from itkg.fhir import hook
from itkg.fhir.waves import names, prescan
from itkg.knowledge import load_knowledge
from itkg.parallel import _FhirWaveRun, eligibility_rows
from itkg.progress import Meter
from itkg.streaming import Untrusted, plan

import _fhir_helpers as F  # noqa: N812

ROOT = Path(__file__).resolve().parents[1]
#: the parts of a test export: a few kilobytes each, a dozen parts
WAVE = 4096


def _export(tmp_path: Path, patients: int = 120) -> Path:
    bulk = load_by_path("itkg_benchmarks_fhir_bulk", ROOT / "benchmarks" / "fhir_bulk.py")
    return bulk.generate(patients, tmp_path / "export", seed=5)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _move_to_end(path: Path, rid: str) -> None:
    """Put the resource ``rid`` of an NDJSON file last (into the file's last part)."""
    resources = _lines(path)
    moved = [r for r in resources if r["id"] == rid]
    assert len(moved) == 1
    F.write_ndjson(path, [r for r in resources if r["id"] != rid] + moved)


def _one_pass(paths: list[Path]) -> tuple[list, list[list[str]], list]:
    """Rows (annotated), report lines and sources of one process reading everything at once."""
    with hook.configured() as run:
        rows, sources = eligibility_rows(paths, workers=1, fhir_waves_from=1 << 40)
        rows = hook.annotate(sorted(rows), run.notes)
    return rows, [r.lines() for r in run.reports], [(s.path, s.triples) for s in sources]


def _in_waves(paths: list[Path], workers: int) -> tuple[list, list[list[str]], list]:
    """The same, decided in waves and nothing else (raises what waves cannot trust)."""
    knowledge = load_knowledge()
    with hook.configured() as run:
        pieces = plan(paths, fhir_facts=True, parts=12, min_piece_bytes=WAVE)
        assert len({p.fhir.part for p in pieces if p.fhir is not None}) == 12
        with Meter(workers, 0, visible=False) as meter:
            rows, sources = _FhirWaveRun(pieces, workers, knowledge, meter).rows(False)
        rows = hook.annotate(sorted(rows), run.notes)
    return rows, [r.lines() for r in run.reports], [(s.path, s.triples) for s in sources]


def _via_eligibility(paths: list[Path]) -> tuple[list, list[list[str]], list]:
    with hook.configured() as run:
        rows, sources = eligibility_rows(paths, workers=2, min_piece_bytes=WAVE, fhir_waves_from=0,
                                         fhir_wave_bytes=WAVE)
        rows = hook.annotate(sorted(rows), run.notes)
    return rows, [r.lines() for r in run.reports], [(s.path, s.triples) for s in sources]


def test_patients_split_across_files_and_waves_are_decided_as_in_one_pass(tmp_path: Path) -> None:
    export = _export(tmp_path)
    conditions = _lines(export / "Condition.ndjson")
    statements = _lines(export / "MedicationStatement.ndjson")
    # an early patient's only condition, an early spasticity's etiology and an early statement's
    # Medication are moved to the last part of their files; an early patient's intolerance is in a
    # file read before the others
    alone = next(c for c in conditions if c["code"]["coding"][0]["code"] in ("G89.3", "M96.1")
                 and c["clinicalStatus"]["coding"][0]["code"] == "active")
    etiology = next(c for c in conditions if c["id"].startswith("e"))
    referenced = next(m for m in statements if "medicationReference" in m)
    cancer = {c["subject"]["reference"] for c in conditions if c["code"]["coding"][0]["code"] == "G89.3"
              and c["clinicalStatus"]["coding"][0]["code"] == "active"}
    intolerant = next(m for m in statements if m["subject"]["reference"] in cancer and "medicationCodeableConcept" in m
                      and m["status"] != "entered-in-error" and m["dosage"][0]["route"]["coding"][0]["code"] != "72607000")
    _move_to_end(export / "Condition.ndjson", alone["id"])
    _move_to_end(export / "Condition.ndjson", etiology["id"])
    _move_to_end(export / "Medication.ndjson", referenced["medicationReference"]["reference"].split("/")[1])
    F.write_ndjson(export / "AllergyIntolerance.ndjson", [
        {"resourceType": "AllergyIntolerance", "id": "ai", "patient": intolerant["subject"], "type": "intolerance",
         "category": ["medication"], "code": intolerant["medicationCodeableConcept"],
         "reaction": [{"severity": "severe"}]}])
    reference = _one_pass([export])
    rows = reference[0]
    assert {r.status for r in rows} >= {"pending", "excluded"}
    assert any(r.patient.endswith(alone["subject"]["reference"]) for r in rows)
    assert any("AllergyIntolerance/ai" in e for r in rows for e in r.evidence)
    assert any(f"(MedicationStatement/{referenced['id']};" in e for r in rows for e in r.evidence)
    for workers in (1, 2):
        assert _in_waves([export], workers) == reference
    assert _via_eligibility([export]) == reference


def test_what_waves_cannot_trust_is_decided_another_way_with_the_same_rows(tmp_path: Path) -> None:
    export = _export(tmp_path)
    conditions = export / "Condition.ndjson"
    original = conditions.read_text(encoding="utf-8")
    first = _lines(conditions)[0]
    cases = {
        # the same Type/id in the first part and the last (the first in input order is used)
        "a Type/id in two parts": {**first, "code": F.cc(F.ICD, "M96.1")},
        # a patient named the way the pre-scan does not read
        "a urn patient": F.condition("u1", F.ICD, "G89.3", subject=F.ref("urn:uuid:0c3d1b5a-7e2f-4a61-9d0b-1f2e3d4c5b6a")),
        # a record numbered in input order
        "a record without id": {k: v for k, v in F.condition("x", F.ICD, "G89.3", pid="p7").items() if k != "id"},
    }
    for case, resource in cases.items():
        conditions.write_text(original + json.dumps(resource) + "\n", encoding="utf-8")
        reference = _one_pass([export])
        for workers in (1, 2):
            with pytest.raises(Untrusted):
                _in_waves([export], workers)
        assert _via_eligibility([export]) == reference, case


def test_the_prescan_finds_the_patients_a_part_names(tmp_path: Path) -> None:
    path = F.write_ndjson(tmp_path / "a.ndjson", [
        F.condition("c1", F.ICD, "G89.3", pid="p-1.a"),
        F.condition("c2", F.ICD, "G89.3", subject=F.ref("https://ehr.example/fhir/Patient/p2")),
        F.condition("c3", F.ICD, "G89.3", subject=F.ref("Patient/p3/_history/2")),
        F.condition("c4", F.ICD, "G89.3", subject=F.ref("Group/g1"))])
    chunks = [p.fhir for p in plan([path], fhir_facts=True) if p.fhir is not None]
    found = names(prescan(chunks), F.BASE)
    assert sorted(found) == [F.BASE + "Patient/p-1.a", F.BASE + "Patient/p2", F.BASE + "Patient/p3"]
