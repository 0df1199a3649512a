"""A site's extension file reaches every engine, query, shape, explain and reason alike.

``tests/data/extension-leptomeningeal.ttl`` (an EXAMPLE, not shipped knowledge) adds a whole
indication - intrathecal chemotherapy for leptomeningeal metastases - with a prerequisite of its
own (a CSF cytology result), through the extension file only: no code, no edit of the ontology.
Every path must give the same rows for the example patients; the ontology's own rules stay as
they were; and the same statements in a patient file change nothing (contract §6).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import _oxigraph_server
from support import run_forked as _cli

import itkg
from itkg import rulegen
from itkg.endpoint import SparqlEndpoint
from itkg.knowledge import load_knowledge
from itkg.parallel import eligibility_rows
from itkg.resources import ontology_path

DATA = Path(__file__).with_name("data")
EXTENSION = DATA / "extension-leptomeningeal.ttl"
PATIENTS = DATA / "extension-leptomeningeal-patients.ttl"
EXT = "https://example.org/site-extension/"
LM = "https://example.org/lm/"
ITKG = "https://w3id.org/itkg/"
CHEMO, LM_INDICATION = EXT + "IntrathecalChemotherapy", EXT + "LeptomeningealMetastasesIndication"

EXPECTED = {
    (LM + "lm-ready", CHEMO, LM_INDICATION, "qualifies", ()),
    (LM + "lm-no-cytology", CHEMO, LM_INDICATION, "pending", ("csf-cytology",)),
    (LM + "lm-inconclusive", CHEMO, LM_INDICATION, "excluded", ("csf-cytology",)),
    (LM + "cancer-pain", ITKG + "IntrathecalAnalgesicTherapy", ITKG + "CancerPainIndication", "qualifies", ()),
}


def _keyed(rows: Any) -> set[tuple]:
    return {(r.patient, r.therapy, r.indication, r.status, r.unmet) for r in rows}


def test_the_example_is_marked_as_an_example() -> None:
    assert EXTENSION.read_text(encoding="utf-8").startswith("# EXAMPLE ONLY")
    assert "LeptomeningealMetastases" not in ontology_path().read_text(encoding="utf-8")


@pytest.mark.parametrize("engine", ["native", "rdflib", "oxigraph"])
def test_every_api_engine_gives_the_same_rows(engine: str) -> None:
    assert _keyed(itkg.eligibility(PATIENTS, engine=engine, extensions=[EXTENSION])) == EXPECTED


def test_the_population_path_too() -> None:
    rows, _ = eligibility_rows([PATIENTS], workers=1, knowledge=load_knowledge(extensions=[EXTENSION]))
    assert _keyed(rows) == EXPECTED


def test_without_the_extension_only_the_ontology_rules_apply() -> None:
    assert _keyed(itkg.eligibility(PATIENTS)) == {r for r in EXPECTED if r[1] != CHEMO}


def test_the_same_statements_in_a_patient_file_change_nothing(tmp_path: Path) -> None:
    mixed = tmp_path / "mixed.ttl"
    mixed.write_text(EXTENSION.read_text(encoding="utf-8") + PATIENTS.read_text(encoding="utf-8")
                     .replace("@prefix itkg: <https://w3id.org/itkg/> .\n@prefix ext: <https://example.org/site-extension/> .\n", ""),
                     encoding="utf-8")
    data = itkg.load(mixed)
    assert data.sources[0].schema_set_aside > 20
    for engine in ("native", "rdflib", "oxigraph"):
        assert _keyed(itkg.eligibility(data, engine=engine)) == {r for r in EXPECTED if r[1] != CHEMO}


def test_explain_uses_the_site_prerequisite() -> None:
    explanation = itkg.explain(PATIENTS, LM + "lm-no-cytology", extensions=[EXTENSION])
    (met,) = [i for i in explanation.indications if i.met]
    assert met.indication == LM_INDICATION and met.result is not None
    assert "csf-cytology: no CSF cytology (example) is recorded" in met.result.evidence


def test_the_generated_queries_carry_the_site_prerequisite() -> None:
    knowledge = load_knowledge(extensions=[EXTENSION])
    text = rulegen.query("worklist", knowledge)
    assert "site-extension" not in rulegen.query("worklist", load_knowledge())
    assert "<https://example.org/site-extension/hasCSFCytology>" in text
    rows = itkg.sparql.select(text, itkg.load(PATIENTS), engine="oxigraph", ontology=knowledge.graph).rows
    assert {(str(r["patient"]), str(r["action"])) for r in rows} == {
        (LM + "lm-no-cytology", "Obtain CSF cytology before intrathecal chemotherapy (example)")}


def test_validate_checks_the_site_prerequisite_of_a_planned_therapy() -> None:
    report = itkg.validate(PATIENTS, extensions=[EXTENSION], engine="pyshacl")
    planned = {(r.focus, r.value) for r in report.results if r.path == ITKG + "plannedTherapy"}
    assert [f for f, _ in planned] == [LM + "lm-no-cytology"]
    assert any("no CSF cytology (example) is recorded" in r.message for r in report.results)
    assert not [r for r in report.results if r.path == ITKG + "coversTherapy"]  # the site's therapy is known
    # The ontology alone knows no cytology prerequisite, and no intrathecal chemotherapy: a consent
    # to it names a therapy that is not intrathecal (contract 1.1 §6), and nothing else is reported.
    alone = itkg.validate(PATIENTS, engine="pyshacl")
    assert {(r.path, r.shape) for r in alone.results} == {
        (ITKG + "coversTherapy", "https://w3id.org/itkg/shapes/InformedConsentScopeValueShape")}


def test_the_command_line_takes_extensions() -> None:
    done = _cli("eligibility", "--format", "json", "--extension", EXTENSION, PATIENTS)
    assert done.returncode == 0, done.stderr
    rows = {(r["patient"], r["therapy"], r["indication"], r["status"], tuple(r["unmet"]))
            for r in json.loads(done.stdout)["results"]}
    assert rows == EXPECTED


@pytest.mark.server
def test_the_endpoint_path_with_itkg_load() -> None:
    with _oxigraph_server.OxigraphServer() as server:
        loaded = _cli("load", ontology_path(), PATIENTS, "--extension", EXTENSION, "--endpoint", server.query_url)
        assert loaded.returncode == 0, loaded.stderr
        with SparqlEndpoint(server.query_url) as client:
            rows = itkg.eligibility(None, endpoint=client, knowledge=load_knowledge(extensions=[EXTENSION]))
    assert _keyed(rows) == EXPECTED


@pytest.mark.java
def test_reason_classifies_with_the_generated_class_of_the_site_indication() -> None:
    if shutil.which("java") is None:
        pytest.skip("java is not installed")
    report = itkg.reason(PATIENTS, extensions=[EXTENSION])
    members = {p for p, found in report.memberships.items() if LM_INDICATION in found}
    assert members == {LM + "lm-ready", LM + "lm-no-cytology", LM + "lm-inconclusive"}
