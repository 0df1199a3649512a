"""docs/rules.md, followed to the letter: "Add an indication" and "Add a prerequisite" are one edit
of ``ontology/itkg.ttl`` plus ``python -m itkg.build``, and then every engine knows them.

On a copy of the checkout's ontology, queries and shapes, the test appends what the two recipes say
(an example indication, arachnoiditis pain, and an example prerequisite, a coagulation test, both
marked as examples: not shipped knowledge), runs the documented command, and checks that the rule
engine, the rdflib and Oxigraph engines, the generated queries in plain rdflib and plain pyoxigraph,
and the generated shapes in plain pySHACL all give the same answer for each patient. No itkg code
is told about the new terms: they reach every path through the ontology and the build alone.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pyoxigraph as ox
import pyshacl
import pytest
import rdflib
from rdflib.namespace import SH

import itkg
from itkg import build, rulegen
from itkg.knowledge import Knowledge
from itkg.resources import data_root

ITKG = "https://w3id.org/itkg/"
EX = "https://example.org/howto/"
ANALGESIC = ITKG + "IntrathecalAnalgesicTherapy"

#: "Add an indication", step 1: the condition class, the indication with its therapy, criterion
#: and patient class (declared, not defined: the build defines it), and the criterion.
INDICATION = """
# EXAMPLE ONLY (tests/test_rules_howto.py): not shipped knowledge, not clinical advice.
itkg:ExampleArachnoiditis a owl:Class ;
  rdfs:subClassOf itkg:Condition ;
  rdfs:label "arachnoiditis (example)"@en .

itkg:ExampleArachnoiditisIndication a owl:NamedIndividual , itkg:Indication ;
  rdfs:label "arachnoiditis pain indication (example)"@en ;
  itkg:indicatesTherapy itkg:IntrathecalAnalgesicTherapy ;
  itkg:hasCriterion itkg:ExampleArachnoiditisCriterion ;
  itkg:patientClass itkg:ExampleArachnoiditisIndicationPatient .

itkg:ExampleArachnoiditisCriterion a owl:NamedIndividual , itkg:IndicationCriterion ;
  rdfs:label "refractory arachnoiditis pain (example)"@en ;
  itkg:requiresConditionOf itkg:ExampleArachnoiditis ;
  itkg:requiresPriorTreatmentOf itkg:SystemicAnalgesicTherapy ;
  itkg:requiresOutcomeOf itkg:TreatmentFailure .

itkg:ExampleArachnoiditisIndicationPatient a owl:Class ;
  rdfs:label "patient meeting the arachnoiditis pain indication (example)"@en .
"""

#: "Add a prerequisite", step 1: the prerequisite individual with the properties of the table, and
#: itkg:requiresPrerequisite from the therapy class that needs it.
PREREQUISITE = """
# EXAMPLE ONLY (tests/test_rules_howto.py): not shipped knowledge, not clinical advice.
itkg:exampleHasCoagulationTest a owl:ObjectProperty ; rdfs:label "has coagulation test (example)"@en .
itkg:exampleTestDate a owl:DatatypeProperty ; rdfs:label "test date (example)"@en .
itkg:exampleCoagulation a owl:ObjectProperty ; rdfs:label "coagulation (example)"@en .
itkg:ExampleCoagulationTest a owl:Class ; rdfs:label "coagulation test (example)"@en .
itkg:ExampleNormalCoagulation a owl:NamedIndividual ; rdfs:label "normal coagulation (example)"@en .
itkg:ExampleImpairedCoagulation a owl:NamedIndividual ; rdfs:label "impaired coagulation (example)"@en .

itkg:ExampleCoagulationPrerequisite a owl:NamedIndividual , itkg:Prerequisite ;
  rdfs:label "coagulation prerequisite (example)"@en ;
  skos:notation "coagulation" ;
  itkg:prerequisiteOrder 3 ;
  itkg:recordLink itkg:exampleHasCoagulationTest ;
  itkg:recordClass itkg:ExampleCoagulationTest ;
  itkg:recordDate itkg:exampleTestDate ;
  itkg:decisionProperty itkg:exampleCoagulation ;
  itkg:meetingValue itkg:ExampleNormalCoagulation ;
  itkg:failingValue itkg:ExampleImpairedCoagulation ;
  itkg:stateVariable "coagulation" ;
  itkg:worklistAction "Test coagulation before {therapy}" .

itkg:IntrathecalTherapy itkg:requiresPrerequisite itkg:ExampleCoagulationPrerequisite .
"""

READY = """  itkg:plannedTherapy itkg:IntrathecalAnalgesicTherapy ;
  itkg:hasConsent [ itkg:consentStatus itkg:ConsentGranted ; itkg:coversTherapy itkg:IntrathecalTherapy ] ;
  itkg:hasCSFAssessment [ itkg:finding itkg:GoodCSFCirculation ] """
CANCER = """  itkg:hasCondition [ a itkg:CancerPain ] ;
  itkg:receivedTreatment [ a itkg:OralOpioidTherapy ; itkg:hasOutcome itkg:SevereSideEffects ] ;
"""
ARACHNOIDITIS = """  itkg:hasCondition [ a itkg:ExampleArachnoiditis ] ;
  itkg:receivedTreatment [ a itkg:OralOpioidTherapy ; itkg:hasOutcome itkg:TreatmentFailure ] ;
"""


def _test(result: str, day: str = "2026-03-01") -> str:
    return (f'[ itkg:exampleCoagulation itkg:Example{result}Coagulation ;'
            f' itkg:exampleTestDate "{day}"^^xsd:date ]')


PATIENTS = {
    # patient: (triples, {indication local name: status})
    "no-test": (CANCER + READY + ".", {"CancerPainIndication": "pending"}),
    "normal": (CANCER + READY + f";\n  itkg:exampleHasCoagulationTest {_test('Normal')} .",
               {"CancerPainIndication": "qualifies"}),
    "impaired": (CANCER + READY + f";\n  itkg:exampleHasCoagulationTest {_test('Impaired')} .",
                 {"CancerPainIndication": "excluded"}),
    "tie": (CANCER + READY + f";\n  itkg:exampleHasCoagulationTest {_test('Normal')} , {_test('Impaired')} .",
            {"CancerPainIndication": "excluded"}),
    "later-normal": (CANCER + READY + f";\n  itkg:exampleHasCoagulationTest {_test('Impaired')} ,"
                     f" {_test('Normal', '2026-03-02')} .", {"CancerPainIndication": "qualifies"}),
    "arachnoiditis": (ARACHNOIDITIS + READY + f";\n  itkg:exampleHasCoagulationTest {_test('Normal')} .",
                      {"ExampleArachnoiditisIndication": "qualifies"}),
    "arachnoiditis-untested": (ARACHNOIDITIS + READY + ".", {"ExampleArachnoiditisIndication": "pending"}),
}
EXPECTED = {(EX + p, ITKG + i, status) for p, (_, found) in PATIENTS.items() for i, status in found.items()}


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the checkout with the two recipes of docs/rules.md followed: one edit of the
    ontology each, then ``python -m itkg.build`` (the documented command)."""
    root = tmp_path_factory.mktemp("howto")
    for folder in ("ontology", "queries", "shapes", "docs/ontology"):
        shutil.copytree(data_root() / folder, root / folder)
    ttl = root / "ontology" / "itkg.ttl"
    ttl.write_text(ttl.read_text(encoding="utf-8") + INDICATION + PREREQUISITE, encoding="utf-8")
    command = [sys.executable, "-m", "itkg.build", "--root", str(root)]
    assert subprocess.run(command + ["--check"], capture_output=True, timeout=300).returncode == 1
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert build.build(root, check=True) == []
    return root


@pytest.fixture(scope="module")
def patients(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("howto-patients") / "patients.ttl"
    path.write_text("@prefix itkg: <https://w3id.org/itkg/> .\n@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .\n"
                    + "".join(f"<{EX}{p}>\n{body}\n" for p, (body, _) in PATIENTS.items()), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def knowledge(checkout: Path) -> Knowledge:
    return Knowledge(rdflib.Graph().parse(checkout / "ontology" / "itkg.ttl"))


def test_the_build_wrote_the_new_rules_into_every_generated_file(checkout: Path, knowledge: Knowledge) -> None:
    ttl = (checkout / "ontology" / "itkg.ttl").read_text(encoding="utf-8")
    generated = ttl[ttl.index(rulegen.BEGIN_OWL):ttl.index(rulegen.END_OWL)]
    assert "itkg:ExampleArachnoiditisIndicationPatient a owl:Class" in generated
    for name in rulegen.QUERIES:
        text = (checkout / "queries" / f"{name}.rq").read_text(encoding="utf-8")
        assert "itkg:exampleHasCoagulationTest" in text, name
    assert "?coagulation" in (checkout / "queries" / "eligibility-status.rq").read_text(encoding="utf-8")
    shapes = (checkout / "shapes" / "planned-therapy.ttl").read_text(encoding="utf-8")
    assert "itkgsh:PlannedTherapyExampleCoagulationShape" in shapes
    assert [p.code for p in knowledge.prerequisites_of(ITKG + "IntrathecalAnalgesicTherapy")] == [
        "informed-consent", "csf-circulation", "coagulation"]


@pytest.mark.parametrize("engine", ["native", "rdflib", "oxigraph"])
def test_every_engine_knows_the_new_indication_and_prerequisite(patients: Path, knowledge: Knowledge,
                                                                engine: str) -> None:
    rows = itkg.eligibility(patients, engine=engine, knowledge=knowledge)
    assert {(r.patient, r.indication, r.status) for r in rows} == EXPECTED
    untested = [r for r in rows if r.patient == EX + "no-test"]
    assert [r.unmet for r in untested] == [("coagulation",)]


def _plain_rdflib(checkout: Path, patients: Path, name: str) -> set[tuple[str, ...]]:
    graph = rdflib.Graph().parse(checkout / "ontology" / "itkg.ttl")
    graph.parse(patients)
    rows = graph.query((checkout / "queries" / f"{name}.rq").read_text(encoding="utf-8"))
    return {tuple(str(v) for v in row) for row in rows}  # type: ignore[union-attr]


def _plain_oxigraph(checkout: Path, patients: Path, name: str) -> set[tuple[str, ...]]:
    store = ox.Store()
    store.load(path=str(checkout / "ontology" / "itkg.ttl"), format=ox.RdfFormat.TURTLE)
    store.load(path=str(patients), format=ox.RdfFormat.TURTLE)
    result = store.query((checkout / "queries" / f"{name}.rq").read_text(encoding="utf-8"))
    variables = result.variables  # type: ignore[union-attr]
    return {tuple(s[v].value for v in variables) for s in result}  # type: ignore[union-attr]


@pytest.mark.parametrize("run", [_plain_rdflib, _plain_oxigraph], ids=["plain-rdflib", "plain-oxigraph"])
def test_the_generated_queries_know_them_in_any_engine(checkout: Path, patients: Path, run: object) -> None:
    status = run(checkout, patients, "eligibility-status")  # type: ignore[operator]
    assert {row[:4] for row in status} == {(p, ANALGESIC, i, s) for p, i, s in EXPECTED}
    assert run(checkout, patients, "eligible-therapies") == {  # type: ignore[operator]
        (p, ANALGESIC, i) for p, i, s in EXPECTED if s == "qualifies"}
    worklist = run(checkout, patients, "worklist")  # type: ignore[operator]
    assert {(row[0], row[3]) for row in worklist} == {
        (EX + "no-test", "Test coagulation before intrathecal analgesic therapy"),
        (EX + "arachnoiditis-untested", "Test coagulation before intrathecal analgesic therapy")}


def test_the_generated_shapes_check_the_new_prerequisite(checkout: Path, patients: Path) -> None:
    """Plain pySHACL, as contract §4 says a user runs it: the copy's shapes and ontology."""
    shapes = rdflib.Graph()
    for path in sorted((checkout / "shapes").glob("*.ttl")):
        shapes.parse(path)
    report = pyshacl.validate(rdflib.Graph().parse(patients), shacl_graph=shapes,
                              ont_graph=rdflib.Graph().parse(checkout / "ontology" / "itkg.ttl"),
                              inference="none", do_owl_imports=False)[1]
    foci = {str(report.value(r, SH.focusNode)) for r in report.subjects(SH.sourceShape, None)
            if "Coagulation" in str(report.value(r, SH.sourceShape))}
    assert foci == {p for p, _, s in EXPECTED if s != "qualifies"}
