"""The ``itkg`` command line (contract §5) on real files: exit codes, standard output and error,
and files on disk. Most tests run the command in this process through click's ``CliRunner``
(``support.invoke``); the smoke tests at the end run the installed console script as a user does."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from pathlib import Path

import pytest
import rdflib
from support import invoke, run_forked, run_itkg

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "patients.ttl"
EXPECTED = json.loads((ROOT / "examples" / "expected-eligibility.json").read_text())["results"]
RULES = ROOT / "tests" / "data" / "rules.ttl"
RULES_EXPECTED = json.loads((ROOT / "tests" / "data" / "rules-expected.json").read_text())["results"]
ITKG = "https://w3id.org/itkg/"


itkg = invoke


def keyed(rows):
    return {(r["patient"], r["therapy"], r["indication"], r["status"], tuple(r["unmet"])) for r in rows}


@pytest.fixture(scope="module")
def example_formats(tmp_path_factory) -> dict[str, Path]:
    """The bundled examples in each contract format, written by rdflib."""
    folder = tmp_path_factory.mktemp("formats")
    graph = rdflib.Graph().parse(EXAMPLES)
    files = {"turtle": EXAMPLES}
    for name, fmt, suffix in [("ntriples", "nt", ".nt"), ("jsonld", "json-ld", ".jsonld"), ("rdfxml", "xml", ".rdf")]:
        path = folder / f"patients{suffix}"
        graph.serialize(path, format=fmt, encoding="utf-8")
        files[name] = path
    return files


@pytest.mark.parametrize("fmt", ["turtle", "ntriples", "jsonld", "rdfxml"])
def test_eligibility_json_in_every_input_format(example_formats, fmt):
    done = itkg("eligibility", "--format", "json", example_formats[fmt])
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)["results"]
    assert keyed(results) == keyed(EXPECTED)
    assert all(r["evidence"] and isinstance(r["evidence"], list) for r in results)


@pytest.mark.parametrize("engine", ["native", "rdflib", "oxigraph"])
def test_eligibility_engines_agree_on_the_rules_corpus(engine):
    done = itkg("eligibility", "--format", "json", "--engine", engine, RULES)
    assert done.returncode == 0, done.stderr
    assert keyed(json.loads(done.stdout)["results"]) == keyed(RULES_EXPECTED)


def test_eligibility_table_and_csv():
    table = itkg("eligibility", EXAMPLES)
    assert table.returncode == 0
    assert "https://example.org/patient/dev" in table.stdout and "excluded" in table.stdout
    assert "\x1b[" not in table.stdout  # no colours when not a terminal
    done = itkg("eligibility", "--format", "csv", EXAMPLES)
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert {(r["patient"], r["status"]) for r in rows} == {(r["patient"], r["status"]) for r in EXPECTED}


def test_eligibility_turtle_records_provenance(tmp_path):
    out = tmp_path / "results.ttl"
    done = itkg("eligibility", "--format", "turtle", "-o", out, EXAMPLES)
    assert done.returncode == 0, done.stderr
    graph = rdflib.Graph().parse(out)
    prov = rdflib.Namespace("http://www.w3.org/ns/prov#")
    (run,) = graph.subjects(rdflib.RDF.type, prov.Activity)
    assert graph.value(run, prov.startedAtTime) is not None
    digest = hashlib.sha256(EXAMPLES.read_bytes()).hexdigest()
    used = {str(o) for o in graph.objects(run, prov.used)}
    assert f"urn:sha256:{digest}" in used
    assert any(u.startswith("https://w3id.org/itkg/ontology/") for u in used)
    result = graph.query("""
        PREFIX itkg: <https://w3id.org/itkg/>
        SELECT ?patient ?status WHERE { ?a a itkg:EligibilityAssessment ; itkg:assessedPatient ?patient ;
                                          itkg:eligibilityStatus ?status }""")
    statuses = {(str(p), str(s).rsplit("/", 1)[1].lower()) for p, s in result}
    assert statuses == {(r["patient"], {"qualifies": "qualifies", "pending": "pending",
                                        "excluded": "excluded"}[r["status"]]) for r in EXPECTED}


def test_validate_exit_codes_and_message(tmp_path):
    done = itkg("validate", EXAMPLES)
    assert done.returncode == 1
    assert "https://example.org/patient/dev" in done.stdout
    assert "impaired" in done.stdout.lower()
    conforming = tmp_path / "ok.ttl"
    conforming.write_text("@prefix itkg: <https://w3id.org/itkg/> .\n"
                          "<https://example.org/p> itkg:hasCondition [ a itkg:CancerPain ] .\n")
    assert itkg("validate", conforming).returncode == 0
    report = itkg("validate", "--format", "json", EXAMPLES)
    payload = json.loads(report.stdout)
    assert payload["conforms"] is False
    assert {r["focus"] for r in payload["results"]} == {"https://example.org/patient/dev"}
    turtle = itkg("validate", "--format", "turtle", EXAMPLES)
    assert (rdflib.URIRef("http://www.w3.org/ns/shacl#conforms") in
            {p for _, p, _ in rdflib.Graph().parse(data=turtle.stdout, format="turtle")})


def test_query_by_name_and_by_path_in_both_engines():
    expected = {(r["patient"], r["therapy"], r["indication"]) for r in EXPECTED if r["status"] == "qualifies"}
    for engine in ("oxigraph", "rdflib"):
        done = itkg("query", "eligible-therapies", EXAMPLES, "--format", "json", "--engine", engine)
        assert done.returncode == 0, done.stderr
        bindings = json.loads(done.stdout)["results"]["bindings"]
        assert {(b["patient"]["value"], b["therapy"]["value"], b["indication"]["value"]) for b in bindings} == expected
    by_path = itkg("query", ROOT / "queries" / "eligible-therapies.rq", EXAMPLES, "--format", "csv")
    assert by_path.returncode == 0 and by_path.stdout.splitlines()[0] == "patient,therapy,indication"


@pytest.mark.parametrize("command", [
    ["query", "eligible-therapies", "--format", "csv"],
    ["query", "eligibility-status", "--format", "json", "--timeout", "60"],
    ["eligibility", "--format", "json"],
])
@pytest.mark.parametrize("data", [EXAMPLES, RULES])
def test_oxigraph_engine_holds_the_data_only_in_its_store(command, data, monkeypatch):
    """Regression: ``--engine oxigraph`` used to load the files into a list of Python triples (a
    PatientData) and then copy them into the store, holding a million-patient input twice (killed
    above 12 GB). It must now load the files straight into the store, with the same output.

    The command runs here, with every PatientData (the list of parsed triples) and every rdflib
    conversion of patient triples made to fail; the query's child (``--timeout``) is forked from
    this process, so it cannot build them either."""
    from itkg import loading

    def refuse(*args, **kwargs):
        raise RuntimeError("the oxigraph path built a Python copy of the data")

    with monkeypatch.context() as patched:
        patched.setattr(loading.PatientData, "__init__", refuse)
        patched.setattr(loading.PatientData, "graph", refuse)
        done = itkg(*command, data, "--engine", "oxigraph")
    assert done.returncode == 0, done.stderr
    reference = itkg(*command, data, "--engine", "rdflib")
    assert reference.returncode == 0, reference.stderr
    if command[0] == "eligibility":  # rdflib's blank node labels differ; compare the decisions
        assert keyed(json.loads(done.stdout)["results"]) == keyed(json.loads(reference.stdout)["results"])
    else:
        assert done.stdout == reference.stdout


def test_query_refuses_service_and_from(tmp_path):
    for text in ["SELECT * WHERE { SERVICE <http://127.0.0.1:9/sparql> { ?s ?p ?o } }",
                 "SELECT * FROM <file:///etc/passwd> WHERE { ?s ?p ?o }"]:
        path = tmp_path / "q.rq"
        path.write_text(text)
        done = itkg("query", path, EXAMPLES)
        assert done.returncode == 2
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_explain_text_and_json():
    done = itkg("explain", "https://example.org/patient/eli", EXAMPLES)
    assert done.returncode == 0, done.stderr
    assert "no prior dantrolene therapy, oral baclofen therapy or tizanidine therapy" in done.stdout
    assert done.stdout.count("not met") == 3
    data = json.loads(itkg("explain", "--format", "json", "https://example.org/patient/anna", EXAMPLES).stdout)
    assert [i["met"] for i in data["indications"]] == [True, False, False]
    assert data["indications"][0]["status"] == "qualifies"


SECRET = "Alice-Confidential-4711"


@pytest.mark.parametrize("name, content", [
    ("broken.ttl", f'@prefix ex: <http://e/> .\nex:a ex:name "{SECRET}" .\nex:b ex:name "{SECRET}" ex:c .\n'),
    ("broken.nt", f'<http://e/a> <http://e/n> "{SECRET}" .\n<http://e/a> <http://e/n> "{SECRET} .\n'),
    ("broken.jsonld", '{"@id": "http://e/a", "http://e/n": "' + SECRET + '",,}'),
    ("broken.rdf", f'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description><x>{SECRET}</y></rdf:RDF>'),
    ("notrdf.ttl", f"{SECRET} is not RDF at all\n"),
])
def test_bad_input_is_one_line_exit_2_without_patient_values(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    for command in (["eligibility"], ["validate"], ["explain", "http://e/a"], ["query", "eligible-therapies"]):
        done = run_forked(*command, path)  # a real process: nothing else may reach standard error
        assert done.returncode == 2, (command, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in done.stderr
        assert str(path) in lines[0]
        assert SECRET not in done.stderr and SECRET not in done.stdout
    assert path.read_text() == content


def test_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "broken.ttl"
    path.write_text('@prefix ex: <http://e/> .\nex:a ex:p ex:b .\nex:c ex:p "unterminated .\n')
    done = itkg("eligibility", path)
    assert done.returncode == 2
    assert f"{path}:3" in done.stderr


def test_missing_file_and_unknown_extension(tmp_path):
    done = itkg("eligibility", tmp_path / "nope.ttl")
    assert done.returncode == 2 and "nope.ttl" in done.stderr
    odd = tmp_path / "data.txt"
    odd.write_text("x")
    done = itkg("eligibility", odd)
    assert done.returncode == 2 and "data.txt" in done.stderr


def test_ill_typed_literal_is_reported_not_rewritten(tmp_path):
    path = tmp_path / "dates.ttl"
    content = ("@prefix itkg: <https://w3id.org/itkg/> .\n@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .\n"
               "<https://example.org/p> itkg:hasCondition [ a itkg:FailedBackSurgerySyndrome ] ;\n"
               '  itkg:hasConsent [ a itkg:InformedConsent ; itkg:consentStatus itkg:ConsentGranted ;\n'
               '    itkg:coversTherapy itkg:IntrathecalTherapy ; itkg:consentDate "2026-13-45"^^xsd:date ] .\n')
    path.write_text(content)
    done = itkg("eligibility", "--strict", path)
    assert done.returncode == 2 and "2026-13-45" not in done.stderr and "ill-typed" in done.stderr
    assert "dates.ttl:5:" in done.stderr  # the line, never the value
    # without --strict the value is set aside as absent, counted with its line (contract §6)
    done = itkg("eligibility", "--format", "json", path)
    assert done.returncode == 0 and "2026-13-45" not in done.stderr + done.stdout
    assert "set aside 1 ill-typed value (line 5)" in done.stderr
    assert '"pending"' in done.stdout
    validated = itkg("validate", path)
    assert validated.returncode == 1
    assert path.read_text() == content


def test_output_file_is_written_whole_and_never_over_an_input(tmp_path):
    copy = tmp_path / "patients.ttl"
    shutil.copy(EXAMPLES, copy)
    before = copy.read_bytes()
    done = itkg("eligibility", "--format", "json", "-o", copy, copy)
    assert done.returncode == 2
    assert copy.read_bytes() == before
    out = tmp_path / "out.json"
    assert itkg("eligibility", "--format", "json", "-o", out, copy).returncode == 0
    assert keyed(json.loads(out.read_text())["results"]) == keyed(EXPECTED)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "patients.ttl"]


def test_version_and_help():
    done = run_itkg("--version")
    assert done.returncode == 0 and "itkg" in done.stdout
    assert "eligibility" in run_itkg("--help").stdout


@pytest.mark.java
def test_reason_check_agreement_on_the_examples():
    if shutil.which("java") is None:
        pytest.skip("java is not installed")
    done = itkg("reason", "--check-agreement", "--format", "json", EXAMPLES)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["consistent"] is True and report["agreement"]["agrees"] is True
    memberships = report["memberships"]
    assert memberships["https://example.org/patient/anna"] == [ITKG + "CancerPainIndication"]
    assert memberships["https://example.org/patient/eli"] == []
    table = itkg("reason", EXAMPLES)
    assert table.returncode == 0 and "consistent" in table.stdout
