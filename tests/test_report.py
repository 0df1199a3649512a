"""``itkg report`` (issue 11): the clinic's HTML page, opened in a real browser.

Debian's Chromium (``/usr/bin/chromium``, installed by ``.ci/run``) is driven by Playwright with
``executable_path`` (no browser download), launched once for the module. The page is opened from
``file://`` as a user would; every request it makes, every console message and page error is
recorded, and the tests read what the browser shows (after CSS), not the HTML source.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import run_forked as itkg_cli
import rdflib
from rdflib.namespace import RDFS

import itkg
from itkg.knowledge import Knowledge, ontology_graph
from itkg.safeio import sha256_file

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "patients.ttl"
RULES = ROOT / "tests" / "data" / "rules.ttl"
CHROMIUM = Path("/usr/bin/chromium")
ITKG = "https://w3id.org/itkg/"

pytestmark = pytest.mark.browser

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed (apt-get install chromium; .ci/run does it)")
    with sync_api.sync_playwright() as playwright:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []  # Chromium refuses root without it
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
        try:
            yield instance
        finally:
            instance.close()


class Opened:
    """A report opened in a fresh browser context, with what it asked for and what it logged."""

    def __init__(self, browser: Any, path: Path, **context: Any) -> None:
        self.context = browser.new_context(**context)
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.console: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("console", lambda message: self.console.append((message.type, message.text)))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        self.url = path.resolve().as_uri()
        self.page.goto(self.url)
        self.page.wait_for_load_state("load")

    def cells(self, selector: str) -> list[str]:
        return [t.strip() for t in self.page.locator(selector).all_inner_texts()]

    def visible_rows(self, table: str) -> int:
        return self.page.locator(f"#{table} tbody tr:visible").count()

    def close(self) -> None:
        self.context.close()


def eligibility_json(*files: Path) -> list[dict[str, Any]]:
    done = itkg_cli("eligibility", "--format", "json", *files)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["results"]


@pytest.fixture(scope="module")
def rules_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of the rules' test patients (every status, every indication), by the CLI."""
    output = tmp_path_factory.mktemp("report") / "report.html"
    done = itkg_cli("report", RULES, "-o", output)
    assert done.returncode == 0, done.stderr
    return output


@pytest.fixture()
def opened(browser: Any, rules_report: Path) -> Iterator[Opened]:
    page = Opened(browser, rules_report)
    yield page
    page.close()


def test_the_page_loads_nothing_beyond_its_own_file_and_logs_no_error(opened: Opened) -> None:
    assert opened.requests == [opened.url]
    assert opened.errors == []
    assert [m for m in opened.console if m[0] in ("error", "warning")] == []
    # No script at all, and a policy that forbids loading anything from anywhere.
    assert opened.page.evaluate("document.scripts.length") == 0
    policy = opened.page.get_attribute('meta[http-equiv="Content-Security-Policy"]', "content")
    assert policy.startswith("default-src 'none';")
    assert "'unsafe-inline'" not in policy and "script-src" not in policy
    # The stylesheet is allowed by its hash: it applied (a refused style would leave the default).
    assert opened.page.evaluate("getComputedStyle(document.body).maxWidth") == "1152px"


def test_counts_equal_itkg_eligibility_json(opened: Opened) -> None:
    rows = eligibility_json(RULES)
    page = opened.page
    for status in ("qualifies", "pending", "excluded"):
        assert int(page.inner_text(f"#total-{status}")) == sum(r["status"] == status for r in rows)
    assert int(page.inner_text("#patients-indicated")) == len({r["patient"] for r in rows})
    assert opened.visible_rows("worklist-table") == sum(r["status"] == "pending" for r in rows)
    assert opened.visible_rows("qualifying-table") == sum(r["status"] == "qualifies" for r in rows)
    assert opened.visible_rows("excluded-table") == sum(r["status"] == "excluded" for r in rows)
    labels = {i.iri: i.label for i in itkg.knowledge.load_knowledge().indications}
    for iri, label in labels.items():
        mine = [r for r in rows if r["indication"] == iri]
        row = page.locator("#attrition tbody tr", has=page.locator(f'th:text-is("{label}")'))
        shown = {key: int(row.locator(f'td[data-count="{key}"]').inner_text())
                 for key in ("met", "consent", "csf", "qualifies", "pending", "excluded")}
        assert shown == {
            "met": len(mine),
            "consent": sum("informed-consent" not in r["unmet"] for r in mine),
            "csf": sum(not r["unmet"] for r in mine),
            "qualifies": sum(r["status"] == "qualifies" for r in mine),
            "pending": sum(r["status"] == "pending" for r in mine),
            "excluded": sum(r["status"] == "excluded" for r in mine),
        }, label
        # The chart draws the same numbers.
        for key, words in (("met", "indication met"), ("qualifies", "qualifies")):
            title = page.locator("svg rect title", has_text=f"{label}, {words}: ").first.text_content()
            assert title.endswith(f": {shown[key]}")


def test_worklist_says_the_next_step_in_words(opened: Opened) -> None:
    rows = [r for r in eligibility_json(RULES) if r["status"] == "pending"]
    steps = opened.cells("#worklist-table tbody td:nth-child(5)")
    assert len(steps) == len(rows)
    for row, step in zip(rows, steps):
        if "informed-consent" in row["unmet"]:
            assert "Obtain informed consent for intrathecal" in step
        if "csf-circulation" in row["unmet"]:
            assert "Assess CSF circulation" in step


def test_excluded_patients_have_a_reason(opened: Opened) -> None:
    reasons = opened.cells("#excluded-table tbody td:nth-child(5)")
    assert reasons and all(re.search(r"refused|withdrawn|impaired", r, re.IGNORECASE) for r in reasons)


def test_worklist_filters_work_without_javascript(browser: Any, rules_report: Path) -> None:
    opened = Opened(browser, rules_report, java_script_enabled=False)
    try:
        rows = [r for r in eligibility_json(RULES) if r["status"] == "pending"]
        spasticity = ITKG + "SevereSpasticityIndication"
        label = itkg.knowledge.load_knowledge().label(spasticity)
        opened.page.get_by_label(re.compile("^" + re.escape(label))).check()
        assert opened.visible_rows("worklist-table") == sum(r["indication"] == spasticity for r in rows) > 0
        opened.page.get_by_label("all").first.check()
        opened.page.get_by_label("Assess CSF circulation", exact=True).check()
        assert opened.visible_rows("worklist-table") == sum("csf-circulation" in r["unmet"] for r in rows) > 0
        opened.page.get_by_label("Obtain informed consent", exact=True).check()
        assert opened.visible_rows("worklist-table") == sum("informed-consent" in r["unmet"] for r in rows) > 0
        assert opened.errors == [] and opened.requests == [opened.url]
    finally:
        opened.close()


def _blank(text: str) -> str:
    """Blank-node names differ between two loads of a file: compare the rest."""
    return re.sub(r"_:[0-9A-Za-z]+", "_:b", text)


def test_per_patient_section_is_the_explain_api(opened: Opened) -> None:
    data = itkg.load(RULES)
    sections = opened.page.locator("section.patient")
    patients = sorted({r.patient for r in itkg.eligibility(data)})
    assert sections.count() == len(patients)
    for number in (0, len(patients) - 1):
        section = sections.nth(number)
        assert section.locator("h3").inner_text() == f"Patient {patients[number]}"
        explanation = itkg.explain(data, patients[number])
        headings = section.locator("h4").all_inner_texts()
        assert len(headings) == len(explanation.indications)
        text = _blank(section.inner_text())
        for indication, heading in zip(explanation.indications, headings):
            assert heading.startswith(indication.label)
            assert ("not met" not in heading.split(":", 1)[1]) == indication.met
            for criterion in indication.criteria:
                for line in criterion.evidence + criterion.failed:
                    assert _blank(line) in text
            for check in indication.result.prerequisites if indication.result else ():
                assert _blank(check.reason) in text
                for record in check.records:
                    assert _blank(record) in text


def test_accessible_tables_and_status_in_words(opened: Opened) -> None:
    page = opened.page
    assert page.locator("h1").count() == 1 and page.locator("main h2").count() == 5
    tables = page.locator("table")
    assert tables.count() > 0
    assert page.locator("table:not(:has(> caption))").count() == 0
    assert page.locator("th:not([scope])").count() == 0
    # Status is a word in the cell, not only a colour.
    statuses = opened.cells("#qualifying-table tbody td:nth-child(4)")
    assert statuses and all(s.endswith("qualifies") for s in statuses)
    assert page.locator("svg[role=img] > title").text_content() == "Attrition chart"


def test_print_layout_hides_the_controls(opened: Opened) -> None:
    page = opened.page
    assert page.locator(".filters").is_visible()
    page.emulate_media(media="print")
    assert not page.locator(".filters").is_visible() and not page.locator("nav.toc").is_visible()
    assert page.locator("#worklist-table").is_visible()
    assert len(page.pdf()) > 1000  # Chromium lays the page out for print without error
    assert opened.errors == []


def test_written_owner_only_atomically_and_never_over_an_input(rules_report: Path, tmp_path: Path) -> None:
    assert stat.S_IMODE(rules_report.stat().st_mode) == 0o600
    copy = tmp_path / "patients.ttl"
    shutil.copy(EXAMPLES, copy)
    before = sha256_file(copy)
    done = itkg_cli("report", copy, "-o", copy)
    assert done.returncode == 2 and "refusing to write over an input file" in done.stderr
    assert sha256_file(copy) == before
    # Bad input: exit 2, one line, and no page at all.
    bad = tmp_path / "bad.ttl"
    bad.write_text("<https://example.org/p> a\n")
    out = tmp_path / "bad.html"
    done = itkg_cli("report", bad, "-o", out)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and not out.exists()
    assert sorted(tmp_path.iterdir()) == sorted([copy, bad])  # no temporary file left behind


HOSTILE_LABEL = 'cancer <script>alert("label")</script> & "pain" <img src=x onerror=alert(2)>'


def test_hostile_input_is_shown_as_text_and_never_run(browser: Any, tmp_path: Path) -> None:
    """IRIs with quotes and ampersands (and an escaped tag that a double unescape would turn into
    markup), and markup in a label of the knowledge (as an extension file could bring)."""
    patient = "https://example.org/p?a='1'&b=\"&amp;lt;script&amp;gt;alert(1)&amp;lt;/script&amp;gt;"
    iri = patient.replace('"', "%22")
    source = tmp_path / "hostile.ttl"
    source.write_text(f"""@prefix itkg: <{ITKG}> .
<{iri}> a itkg:Patient ; itkg:hasCondition [ a itkg:CancerPain ] ;
  itkg:receivedTreatment [ a itkg:OralOpioidTherapy ; itkg:hasOutcome itkg:SevereSideEffects ] ;
  itkg:hasConsent <https://example.org/consent?x=1&y='2'> .
<https://example.org/consent?x=1&y='2'> a itkg:InformedConsent ; itkg:consentStatus itkg:ConsentRefused ;
  itkg:coversTherapy itkg:IntrathecalTherapy .
""")
    graph = rdflib.Graph()
    for triple in ontology_graph():
        graph.add(triple)
    cancer = rdflib.URIRef(ITKG + "CancerPainIndication")
    graph.remove((cancer, RDFS.label, None))
    graph.add((cancer, RDFS.label, rdflib.Literal(HOSTILE_LABEL, lang="en")))
    output = tmp_path / "hostile.html"
    written = itkg.report(source, output, knowledge=Knowledge(graph))
    assert written.rows == 1
    opened = Opened(browser, output)
    try:
        page = opened.page
        assert opened.dialogs == [] and opened.errors == [] and opened.requests == [opened.url]
        assert page.evaluate("document.scripts.length") == 0
        assert page.locator("img").count() == 0
        assert page.locator("#excluded-table tbody th").inner_text() == iri
        assert page.locator("#attrition tbody th").first.inner_text() == HOSTILE_LABEL
        assert HOSTILE_LABEL in page.locator("section.patient h4").first.inner_text()
        assert "https://example.org/consent?x=1&y='2'" in page.locator("#excluded-table").inner_text()
    finally:
        opened.close()


def test_large_input_lists_are_capped_with_the_full_csv_beside(browser: Any, tmp_path: Path) -> None:
    source = tmp_path / "population.nt"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "generate.py"), "600", "--seed", "3",
                    "--format", "nt", "-o", str(source)], check=True, timeout=120)
    output = tmp_path / "population.html"
    done = itkg_cli("report", source, "-o", output, "--max-listed", "25", "--max-details", "10")
    assert done.returncode == 0, done.stderr
    rows = eligibility_json(source)
    full = list(csv.DictReader(io.StringIO((tmp_path / "population.csv").read_text())))
    assert [(r["patient"], r["indication"], r["status"]) for r in full] == \
        [(r["patient"], r["indication"], r["status"]) for r in rows]
    assert stat.S_IMODE((tmp_path / "population.csv").stat().st_mode) == 0o600
    opened = Opened(browser, output)
    try:
        page = opened.page
        assert opened.visible_rows("worklist-table") == 25
        assert page.locator("section.patient").count() == 10
        notes = page.locator(".note").all_inner_texts()
        assert any(f"of {sum(r['status'] == 'pending' for r in rows)} pending rows" in n
                   and "population.csv" in n for n in notes)
        # The summary stays whole.
        assert int(page.inner_text("#total-pending")) == sum(r["status"] == "pending" for r in rows)
        assert int(page.inner_text("#patients-read")) == 600
        assert opened.requests == [opened.url] and opened.errors == []
    finally:
        opened.close()
    # Bounded: the same caps on 600 or 100,000 patients give a page of about the same size.
    assert output.stat().st_size < 200_000


def test_one_patient_cannot_make_the_page_unbounded(tmp_path: Path) -> None:
    """A 5,000-character IRI and a patient with 300 qualifying diagnoses: texts are cut and long
    lists say how many more there are; the page stays small."""
    long_iri = "https://example.org/" + "x" * 5000
    conditions = " , ".join(f"[ a itkg:CancerPain ; itkg:note {n} ]" for n in range(300))
    source = tmp_path / "big.ttl"
    source.write_text(f"""@prefix itkg: <{ITKG}> .
<{long_iri}> a itkg:Patient ; itkg:hasCondition {conditions} ;
  itkg:receivedTreatment [ a itkg:OralOpioidTherapy ; itkg:hasOutcome itkg:SevereSideEffects ] .
""")
    output = tmp_path / "big.html"
    written = itkg.report(source, output)
    text = output.read_text()
    assert written.rows == 1 and written.size == len(text.encode()) < 60_000
    assert long_iri not in text and long_iri[:300] in text
    assert "\u2026 and 281 more" in text  # 300 diagnoses + 1 treatment, 20 shown


@pytest.mark.server
def test_report_from_an_endpoint_has_the_same_counts(browser: Any, tmp_path: Path) -> None:
    import _oxigraph_server as module
    if module.oxigraph_executable() is None:
        pytest.skip("the oxigraph server binary is not installed (pip install oxigraph)")
    server = module.OxigraphServer(extra_args=["--union-default-graph"]).start()
    try:
        loaded = itkg_cli("load", ROOT / "ontology" / "itkg.ttl", RULES, "--endpoint", server.query_url)
        assert loaded.returncode == 0, loaded.stderr
        output = tmp_path / "remote.html"
        done = itkg_cli("report", "--endpoint", server.query_url, "-o", output)
        assert done.returncode == 0, done.stderr
    finally:
        server.stop()
    rows = eligibility_json(RULES)
    opened = Opened(browser, output)
    try:
        page = opened.page
        for status in ("qualifies", "pending", "excluded"):
            assert int(page.inner_text(f"#total-{status}")) == sum(r["status"] == status for r in rows)
        local = itkg.report(RULES, tmp_path / "local.html")
        assert int(page.inner_text("#patients-read")) == local.patients > 0
        assert page.locator("section.patient").count() == len({r["patient"] for r in rows})
        assert server.query_url.split("//")[1].split("/")[0] in page.inner_text("#summary")
        assert opened.requests == [opened.url] and opened.errors == []
    finally:
        opened.close()


def _fhir_helpers() -> Any:
    import _fhir_helpers
    return _fhir_helpers


def test_fhir_input_names_the_resources_and_its_markup_stays_text(browser: Any, tmp_path: Path) -> None:
    """FHIR input (issue 11 with fhir.md): the per-patient part names each record's FHIR resource,
    the inputs table gives the file's own SHA-256, and display texts holding markup run nothing."""
    fhir = _fhir_helpers()
    markup = '<script>alert("display")</script><img src=x onerror=alert(3)>'
    resources = fhir.cancer_patient("p1") + [
        fhir.patient("p2"), fhir.condition("c-p2", fhir.ICD, "G89.3", "p2"),
        fhir.med_statement("m-p2", fhir.cc(fhir.RX, "7052"), "p2", route="26643006")]
    for resource in resources:
        for key in ("code", "medicationCodeableConcept"):
            if key in resource:
                resource[key]["text"] = markup
                resource[key]["coding"][0]["display"] = markup
    source = fhir.write_ndjson(tmp_path / "export.ndjson", resources)
    output = tmp_path / "fhir.html"
    done = itkg_cli("report", source, "-o", output)
    assert done.returncode == 0, done.stderr
    rows = eligibility_json(source)
    assert {r["status"] for r in rows} == {"qualifies", "pending"}
    opened = Opened(browser, output)
    try:
        page = opened.page
        assert opened.dialogs == [] and opened.errors == [] and opened.requests == [opened.url]
        assert page.evaluate("document.scripts.length") == 0 and page.locator("img").count() == 0
        assert page.locator("#inputs tbody td").nth(0).inner_text() == "fhir"
        assert page.locator("#inputs tbody td").nth(2).inner_text() == sha256_file(source)
        for status in ("qualifies", "pending"):
            assert int(page.inner_text(f"#total-{status}")) == sum(r["status"] == status for r in rows)
        details = page.locator("#details").inner_text()
        # Each record's IRI is followed by its resource (and codes), as in the evidence of eligibility.
        for resource_id in ("Condition/c-p1; ICD-10-CM G89.3", "MedicationStatement/m-p1", "Consent/k-p1",
                            "Observation/o-p1", "Condition/c-p2; ICD-10-CM G89.3"):
            assert f"({resource_id}" in details, resource_id
    finally:
        opened.close()
    # The API, twice in one process (FHIR is read once and cached): the resources are named both times.
    for attempt in range(2):
        itkg.report(source, tmp_path / f"api{attempt}.html")
        assert "(Consent/k-p1" in (tmp_path / f"api{attempt}.html").read_text()


EXTENSION = ROOT / "tests" / "data" / "extension-leptomeningeal.ttl"
EXTENSION_PATIENTS = ROOT / "tests" / "data" / "extension-leptomeningeal-patients.ttl"


def test_a_site_extension_shows_its_indication_and_its_step(browser: Any, tmp_path: Path) -> None:
    """--extension: the site's indication has its attrition row, and its own prerequisite its
    next step in words (the prerequisite's itkg:worklistAction), with the same counts as
    eligibility given the same extension."""
    output = tmp_path / "extension.html"
    done = itkg_cli("report", EXTENSION_PATIENTS, "--extension", EXTENSION, "-o", output)
    assert done.returncode == 0, done.stderr
    done = itkg_cli("eligibility", "--format", "json", EXTENSION_PATIENTS, "--extension", EXTENSION)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["results"]
    indication = "https://example.org/site-extension/LeptomeningealMetastasesIndication"
    mine = [r for r in rows if r["indication"] == indication]
    assert mine
    opened = Opened(browser, output)
    try:
        page = opened.page
        row = page.locator("#attrition tbody tr", has=page.locator(
            'th:text-is("leptomeningeal metastases indication (example)")'))
        assert int(row.locator('td[data-count="met"]').inner_text()) == len(mine)
        assert int(row.locator('td[data-count="qualifies"]').inner_text()) == \
            sum(r["status"] == "qualifies" for r in mine)
        for status in ("qualifies", "pending", "excluded"):
            assert int(page.inner_text(f"#total-{status}")) == sum(r["status"] == status for r in rows)
        steps = opened.cells("#worklist-table tbody td:nth-child(5)")
        assert steps == ["Obtain CSF cytology before intrathecal chemotherapy (example)"]
        page.get_by_label("Obtain CSF cytology", exact=True).check()
        assert opened.visible_rows("worklist-table") == 1
        assert "extension-leptomeningeal.ttl" in page.inner_text("#summary")
        assert opened.requests == [opened.url] and opened.errors == []
    finally:
        opened.close()


def test_no_patient_is_said_and_strict_refuses_it(tmp_path: Path) -> None:
    source = tmp_path / "nobody.nt"
    source.write_text('<https://example.org/x> <https://example.org/p> "1" .\n')
    done = itkg_cli("report", source, "-o", tmp_path / "nobody.html")
    assert done.returncode == 0 and "holds no patient" in done.stderr
    assert "holds no patient" in (tmp_path / "nobody.html").read_text()
    done = itkg_cli("report", source, "-o", tmp_path / "strict.html", "--strict")
    assert done.returncode == 2 and "holds no patient" in done.stderr
    assert not (tmp_path / "strict.html").exists()
