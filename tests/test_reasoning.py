"""HermiT on demand (itkg.reasoning): results on the example patients, agreement with the rules,
and the safety wrapper around owlready2 (no imports fetched, no temp files left, a deadline that
kills Java, a size limit)."""

from __future__ import annotations

import random
import shutil
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import rdflib

import itkg
from itkg.errors import ReasonerError
from itkg.reasoning import Disagreement, ReasoningReport, agreement, reason
from itkg.resources import data_root, ontology_path


def needs_java(test):
    """Mark a test ``java`` and skip it only when there is no Java runtime."""
    skip = pytest.mark.skipif(shutil.which("java") is None, reason="needs a Java runtime")
    return pytest.mark.java(skip(test))


ITKG = "https://w3id.org/itkg/"
EX = "https://example.org/patient/"
PREFIXES = """@prefix itkg: <https://w3id.org/itkg/> .
@prefix owl: <http://www.w3.org/2002/07/owl#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix ex: <https://example.org/> .
"""


def examples() -> rdflib.Graph:
    return rdflib.Graph().parse(data_root() / "examples" / "patients.ttl")


def turtle(text: str) -> rdflib.Graph:
    return rdflib.Graph().parse(data=PREFIXES + text, format="turtle")


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """Point tempfile (and TMPDIR, which the child would otherwise inherit) at an empty folder,
    so that 'nothing left behind' can be checked exactly."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setenv("TMPDIR", str(tmp))
    assert tempfile.gettempdir() == str(tmp)
    return tmp


@pytest.fixture(scope="module")
def example_report() -> ReasoningReport:
    if shutil.which("java") is None:
        pytest.skip("needs a Java runtime")
    return reason(examples())


@needs_java
def test_example_patients(example_report):
    assert example_report.consistent
    assert example_report.unsatisfiable == ()
    assert example_report.patients == 5
    assert example_report.memberships == {
        EX + "anna": (ITKG + "CancerPainIndication",),
        EX + "ben": (ITKG + "NonCancerPainIndication",),
        EX + "carla": (ITKG + "SevereSpasticityIndication",),
        EX + "dev": (ITKG + "NonCancerPainIndication",),
        EX + "eli": (),
    }
    assert example_report.to_dict()["memberships"][EX + "eli"] == []


@needs_java
def test_agreement_finds_a_planted_disagreement(example_report):
    rows = [(r.patient, r.indication) for r in itkg.eligibility(examples())]
    assert agreement(example_report, rows) == []
    planted = [row for row in rows if row[0] != EX + "ben"]
    planted.append((EX + "eli", ITKG + "CancerPainIndication"))
    assert agreement(example_report, planted) == [
        Disagreement(EX + "ben", ITKG + "NonCancerPainIndication", "reasoner"),
        Disagreement(EX + "eli", ITKG + "CancerPainIndication", "rules"),
    ]


def cohort(size: int, seed: int) -> rdflib.Graph:
    """Random patients mixing every condition, treatment and outcome, records as blank nodes."""
    rnd = random.Random(seed)
    conditions = ["CancerPain", "FailedBackSurgerySyndrome", "LumbarPostLaminectomySyndrome",
                  "ComplexRegionalPainSyndrome", "ComplexRegionalPainSyndromeType1", "Causalgia",
                  "PhantomLimbPain", "Plexopathy", "BrachialPlexopathy",
                  "RadiationInducedPlexopathy",
                  "Spasticity", "SevereSpasticity", "PainCondition"]
    treatments = ["SystemicAnalgesicTherapy", "OralOpioidTherapy", "TransdermalOpioidTherapy",
                  "InterventionalPainProcedure", "SpinalSurgery", "OralBaclofenTherapy",
                  "TizanidineTherapy", "DantroleneTherapy", "PhysicalTherapy",
                  "BotulinumToxinTherapy", "OralAntispasticDrugTherapy"]
    outcomes = ["AdequateResponse", "InadequatePainRelief", "SevereSideEffects", "TreatmentFailure",
                "NoResponseAtMaximumDose"]
    lines = []
    for k in range(size):
        records = [f"itkg:hasCondition [ a itkg:{rnd.choice(conditions)} ]"
                   for _ in range(rnd.randint(1, 2))]
        records += [f"itkg:receivedTreatment [ a itkg:{rnd.choice(treatments)} ; "
                    f"itkg:hasOutcome itkg:{rnd.choice(outcomes)} ]"
                    for _ in range(rnd.randint(0, 2))]
        lines.append(f"ex:c{k} a itkg:Patient ; " + " ; ".join(records) + " .")
    return turtle("\n".join(lines))


@needs_java
def test_hermit_and_the_rules_agree_on_a_random_cohort():
    """The defined classes (for HermiT) and the indication facts (for SPARQL and the rule engine)
    state the same rules twice; any drift between them shows up here."""
    patients = cohort(300, seed=7)
    report = reason(patients)
    assert report.consistent and report.patients == 300
    assert sum(1 for found in report.memberships.values() if found) > 50
    for engine in ("native", "oxigraph"):
        rows = [(r.patient, r.indication) for r in itkg.eligibility(patients, engine=engine)]
        assert agreement(report, rows) == [], engine


@needs_java
def test_blank_node_patient_and_unsatisfiable_class():
    graph = turtle("""
        [] itkg:hasCondition [ a itkg:FailedBackSurgerySyndrome ] .
        ex:Impossible rdfs:subClassOf itkg:Patient , [ owl:complementOf itkg:Patient ] .
    """)
    patient = next(graph.subjects(rdflib.URIRef(ITKG + "hasCondition"), None))
    report = reason(graph)
    assert report.memberships == {"_:" + str(patient): (ITKG + "NonCancerPainIndication",)}
    assert report.unsatisfiable == ("https://example.org/Impossible",)


@needs_java
def test_inconsistent_input_is_a_result_and_leaves_no_file(private_tmp):
    graph = examples() + turtle("""
        ex:x itkg:receivedTreatment [ a itkg:SpinalSurgery ; itkg:hasOutcome ex:y ] .
        ex:y owl:sameAs itkg:AdequateResponse , itkg:SevereSideEffects .
    """)
    report = reason(graph)
    assert report.consistent is False
    assert report.memberships == {}
    assert report.patients == 6
    assert list(private_tmp.iterdir()) == []


def _alive_processes(marker: str) -> dict[int, str]:
    """pid -> command line of the live (not zombie) processes whose command line has ``marker``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found[int(entry.name)] = cmdline
    return found


def pigeonhole(holes: int) -> rdflib.Graph:
    """holes + 1 different pigeons, each in one of ``holes`` single-member classes: inconsistent,
    and exponentially hard for a tableau reasoner (9 holes take HermiT over a minute)."""
    union = " ".join(f"ex:H{i}" for i in range(holes))
    lines = [f"ex:Pigeon rdfs:subClassOf [ a owl:Class ; owl:unionOf ( {union} ) ] ."]
    lines += [f"ex:H{i} a owl:Class ; owl:equivalentClass [ a owl:Class ; owl:oneOf ( ex:h{i} ) ] ."
              for i in range(holes)]
    pigeons = " ".join(f"ex:p{j}" for j in range(holes + 1))
    lines += [f"ex:p{j} a ex:Pigeon , owl:NamedIndividual ." for j in range(holes + 1)]
    lines.append(f"[] a owl:AllDifferent ; owl:distinctMembers ( {pigeons} ) .")
    return turtle("\n".join(lines))


@needs_java
def test_deadline_kills_java_and_cleans_up(private_tmp):
    seen: dict[int, str] = {}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.update({pid: cmd for pid, cmd in _alive_processes(str(private_tmp)).items()
                         if "HermiT" in cmd})
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with pytest.raises(ReasonerError, match="did not finish within 4 s"):
            reason(pigeonhole(10), timeout=4)
    finally:
        done.set()
        watcher.join()
    assert seen, "HermiT never started, so the test proved nothing"
    assert set(seen) & set(_alive_processes(str(private_tmp))) == set()
    assert list(private_tmp.iterdir()) == []


class _LoggingHandler(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@needs_java
def test_owl_imports_are_never_fetched():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LoggingHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        patients = examples() + turtle(
            f"<urn:x:patients> a owl:Ontology ; owl:imports <{url}/patients> .")
        ontology = rdflib.Graph().parse(ontology_path())
        ontology.add((rdflib.URIRef("https://w3id.org/itkg/ontology"), rdflib.OWL.imports,
                      rdflib.URIRef(f"{url}/ontology")))
        report = reason(patients, ontology=ontology)
    finally:
        server.shutdown()
    assert report.consistent and report.memberships[EX + "anna"] == (ITKG + "CancerPainIndication",)
    assert _LoggingHandler.hits == []


def test_too_many_patients_points_to_eligibility():
    with pytest.raises(ReasonerError, match="itkg eligibility") as error:
        reason(examples(), max_patients=4)
    assert "5 patients exceed the reasoning limit of 4" in str(error.value)


def test_missing_java_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # the worker starts (absolute path), java does not
    with pytest.raises(ReasonerError, match="Java was not found"):
        reason(examples())


def test_inconsistent_report_cannot_be_compared():
    with pytest.raises(ReasonerError, match="inconsistent"):
        agreement(ReasoningReport(False, (), {}, 1, 0.0), [("p", "i")])
