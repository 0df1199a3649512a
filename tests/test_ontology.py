"""Release checks of the itkg ontology: the ODK-style QC a release must pass, run in Python.

Why here and not in ROBOT: ROBOT and the ODK images cannot be installed in this project's CI, so
the same checks run as rdflib SPARQL (queries/qc), the OWL API from Debian (the library Protégé
uses) and HermiT through owlready2. Each QC query is also run on a deliberately broken copy, so a
query that can never return a row cannot pass unnoticed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path

import pytest
import _owlapi
from rdflib import Graph, Literal, Namespace, URIRef
from rdflib.compare import isomorphic
from rdflib.namespace import DCTERMS, OWL, RDF, RDFS, SKOS, XSD

from itkg import build_owl
from itkg.resources import ontology_owl_path, ontology_path, queries_dir

ITKG = Namespace("https://w3id.org/itkg/")
ONTOLOGY = URIRef("https://w3id.org/itkg/ontology")
DEFINITION = URIRef("http://purl.obolibrary.org/obo/IAO_0000115")  # IAO "definition", what ROBOT reads
REPO = Path(__file__).resolve().parents[1]
EXAMPLE_PATIENTS = REPO / "examples" / "patients.ttl"
DOCS = REPO / "docs" / "ontology.md"

# --- contract section 2: every term a patient graph may use --------------------------------------

CONTRACT_OBJECT_PROPERTIES = [
    "hasCondition", "receivedTreatment", "hasConsent", "hasCSFAssessment", "plannedTherapy",
    "hasOutcome", "consentStatus", "coversTherapy", "finding", "hasEtiology",
]
CONTRACT_DATATYPE_PROPERTIES = ["consentDate", "assessmentDate"]
CONTRACT_CLASSES = [
    "Patient",
    "CancerPain", "FailedBackSurgerySyndrome", "LumbarPostLaminectomySyndrome",
    "ComplexRegionalPainSyndrome", "ComplexRegionalPainSyndromeType1", "Causalgia",
    "PhantomLimbPain", "Plexopathy", "BrachialPlexopathy", "LumbosacralPlexopathy",
    "RadiationInducedPlexopathy", "Spasticity", "SevereSpasticity",
    "MultipleSclerosis", "SpinalCordInjury", "CerebralPalsy", "AcquiredBrainInjury", "Stroke",
    "SystemicAnalgesicTherapy", "OralOpioidTherapy", "TransdermalOpioidTherapy",
    "InterventionalPainProcedure", "SpinalSurgery", "OralBaclofenTherapy", "TizanidineTherapy",
    "DantroleneTherapy", "PhysicalTherapy", "BotulinumToxinTherapy",
    "InformedConsent", "CSFCirculationAssessment",
    "IntrathecalTherapy", "IntrathecalAnalgesicTherapy", "IntrathecalBaclofenTherapy",
]
CONTRACT_INDIVIDUALS = {
    "TreatmentOutcome": ["AdequateResponse", "InadequatePainRelief", "SevereSideEffects",
                         "TreatmentFailure", "NoResponseAtMaximumDose"],
    "ConsentStatus": ["ConsentGranted", "ConsentRefused", "ConsentWithdrawn"],
    "CSFCirculationFinding": ["GoodCSFCirculation", "ImpairedCSFCirculation"],
    "Indication": ["CancerPainIndication", "NonCancerPainIndication", "SevereSpasticityIndication"],
    # Etiologies are values of itkg:hasEtiology, so they are individuals too (punning).
    "Disorder": ["MultipleSclerosis", "SpinalCordInjury", "CerebralPalsy", "AcquiredBrainInjury",
                 "Stroke"],
}
CONTRACT_SUBCLASSES = [
    ("ComplexRegionalPainSyndromeType1", "ComplexRegionalPainSyndrome"),
    ("Causalgia", "ComplexRegionalPainSyndrome"),
    ("BrachialPlexopathy", "Plexopathy"), ("LumbosacralPlexopathy", "Plexopathy"),
    ("RadiationInducedPlexopathy", "Plexopathy"),
    ("SevereSpasticity", "Spasticity"), ("Stroke", "AcquiredBrainInjury"),
    ("OralOpioidTherapy", "SystemicAnalgesicTherapy"),
    ("TransdermalOpioidTherapy", "SystemicAnalgesicTherapy"),
    ("IntrathecalAnalgesicTherapy", "IntrathecalTherapy"),
    ("IntrathecalBaclofenTherapy", "IntrathecalTherapy"),
]

# --- cross-references: only codes marked V (verified) in /work/shared/reference/domain.md ----------
# Copied by hand; S and U rows are left out on purpose (e.g. SNOMED 50642008 for CRPS I, where the
# sources conflict; ChEBI 63631 tizanidine; ATC M03AX01; HP:0012531/HP:0012532; ICD-10-CM G35).

_OBO = "http://purl.obolibrary.org/obo/"
_SCT = "http://snomed.info/id/"
_ICD = "http://purl.bioontology.org/ontology/ICD10CM/"
_ATC = "http://purl.bioontology.org/ontology/ATC/"
_RXNORM = "http://purl.bioontology.org/ontology/RXNORM/"
VERIFIED_XREFS = frozenset(
    [_OBO + f"MONDO_{n}" for n in (
        "0005301", "0006497", "0000396", "0043797", "0005098", "0011057", "0003757", "0001590",
        "0019369", "0011441", "0020572", "0006683", "0001829", "0024432", "0033838", "0024317")]
    # HP_0100021 and HP_0001297 are MONDO's own xrefs in its verified mapping rows.
    + [_OBO + f"HP_{n}" for n in ("0001257", "0100021", "0001297")]
    + [_OBO + f"CHEBI_{n}" for n in ("2972", "17303", "119915", "7852")]
    + [_OBO + t for t in ("OGMS_0000031", "OGMS_0000073", "OGMS_0000090", "OAE_0000001",
                          "OBI_0000810", "ICO_0000001", "ICO_0000005", "ICO_0000015", "ICO_0000150")]
    + [_SCT + n for n in (
        "24700007", "128188000", "230773005", "90584004", "230690007", "62914000", "60389000",
        "11538006", "221360009", "27151001", "202725007", "202723000", "202724006", "128200000",
        "408751001", "3548001", "76691009", "4062006", "2231001", "373621006", "72607000")]
    + [_ICD + c for c in (
        "G89.3", "G89.4", "G89.29", "M96.1", "G90.50", "G90.511", "G90.513", "G90.521", "G90.59",
        "G56.40", "G56.41", "G56.42", "G56.43", "G57.70", "G57.71", "G57.72", "G57.73",
        "G54.6", "G54.7", "G54.0", "G54.1", "G62.82", "G80.0", "G80.1", "G80.2",
        "G81.10", "G81.11", "G81.12", "G81.13", "G81.14", "S14.115A", "G82.2", "G82.5", "G82.53",
        "I63.9", "I69.351", "I69.354")]
    + [_ATC + c for c in (
        "M03BX01", "M03BX02", "M03CA01", "N02BG08", "N02AA01", "N02AG01", "N02AA03", "N02AA05",
        "N01AH01", "N01AH03", "N01BB01", "C02AC01", "N02CX02",
        "N02A")]  # the opioids group, parent of the verified N02AA01/03/05
    # ICD-10-CM categories whose verified codes (above) they cover by prefix (fhir.md §3).
    + [_ICD + c for c in ("G90.5", "G56.4", "G57.7", "I63", "I69.3")]
    # RxNorm ingredients (CDC/AHRQ OMTK) and verified oral antispasmodic products.
    + [_RXNORM + c for c in ("7052", "4337", "3423", "7804", "197391", "313413", "856652")]
    # Severity "Severe" and the routes oral, transdermal, intrathecal (fhir.md §2; issue 10).
    + [_SCT + c for c in ("24484000", "26643006", "45890007")]
)
DRUG_CODE_PREFIXES = (_OBO + "CHEBI_", _ATC, _RXNORM)


@pytest.fixture(scope="module")
def ontology() -> Graph:
    """The Turtle source, parsed once; tests that change it work on a copy."""
    return Graph().parse(ontology_path(), format="turtle")


def _copy(graph: Graph) -> Graph:
    copy = Graph()
    for prefix, namespace in graph.namespaces():
        copy.bind(prefix, namespace)
    for triple in graph:
        copy.add(triple)
    return copy


# --- itkg.owl is the Turtle, regenerated --------------------------------------------------------

def test_owl_file_has_the_same_triples_as_the_turtle(ontology: Graph) -> None:
    owl = Graph().parse(ontology_owl_path(), format="xml")
    assert isomorphic(ontology, owl)


def test_build_check_finds_the_owl_file_up_to_date() -> None:
    assert build_owl.main(["--check"]) == 0


def test_build_output_does_not_depend_on_hash_seed() -> None:
    """rdflib's own RDF/XML output changes with PYTHONHASHSEED; ours must not, or --check flaps."""
    env = {**os.environ, "PYTHONHASHSEED": "4242"}
    done = subprocess.run([sys.executable, "-m", "itkg.build_owl", "--check"], env=env,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_build_check_fails_on_a_stale_copy_and_build_repairs_it(tmp_path: Path) -> None:
    stale = tmp_path / "itkg.owl"
    stale.write_text(ontology_owl_path().read_text(encoding="utf-8").replace(
        "cancer pain", "cancer pains", 1), encoding="utf-8")
    assert build_owl.main(["--check", "--owl", str(stale)]) == 1
    assert "cancer pains" in stale.read_text(encoding="utf-8")  # --check never writes
    assert build_owl.main(["--owl", str(stale)]) == 0
    assert stale.read_bytes() == ontology_owl_path().read_bytes()


# --- QC queries (queries/qc/*-violation.rq): none returns a row; each catches its breakage ----------

def _remove(subject: URIRef, predicate: URIRef) -> Callable[[Graph], None]:
    return lambda g: g.remove((subject, predicate, None))


def _add(subject: URIRef, predicate: URIRef, obj: URIRef | Literal) -> Callable[[Graph], None]:
    return lambda g: g.add((subject, predicate, obj))


def _remove_provenance(g: Graph) -> None:
    g.remove((ITKG.TizanidineTherapy, DCTERMS.source, None))
    g.remove((ITKG.TizanidineTherapy, RDFS.comment, None))


#: For each QC query: how to break a copy of the ontology, and the IRI the query must then report.
BREAKAGES: dict[str, tuple[Callable[[Graph], None], str]] = {
    "missing-label-violation": (_remove(ITKG.CancerPain, RDFS.label), str(ITKG.CancerPain)),
    "missing-definition-violation": (_remove(ITKG.hasCondition, DEFINITION), str(ITKG.hasCondition)),
    "duplicate-label-violation": (_add(ITKG.Spasticity, RDFS.label, Literal("Cancer Pain", lang="en")),
                                  str(ITKG.Spasticity)),
    "orphan-class-violation": (_remove(ITKG.Plexopathy, RDFS.subClassOf), str(ITKG.Plexopathy)),
    "dangling-reference-violation": (_add(ITKG.CancerPain, RDFS.seeAlso, ITKG.CancerPian),
                                     str(ITKG.CancerPian)),
    "missing-header-violation": (_remove(ONTOLOGY, DCTERMS.license), str(DCTERMS.license)),
    "missing-source-violation": (_remove_provenance, str(ITKG.TizanidineTherapy)),
    "indication-without-patient-class-violation": (_remove(ITKG.SevereSpasticityIndication, ITKG.patientClass),
                                                   str(ITKG.SevereSpasticityIndication)),
}


def _qc_queries() -> dict[str, str]:
    return {path.stem: path.read_text(encoding="utf-8")
            for path in sorted((queries_dir() / "qc").glob("*-violation.rq"))}


def _rows(graph: Graph, query: str) -> list[tuple[str, ...]]:
    return [tuple(str(value) for value in row) for row in graph.query(query)]


def test_every_qc_query_has_a_breakage_and_says_what_it_returns() -> None:
    queries = _qc_queries()
    assert set(queries) == set(BREAKAGES)
    for name, text in queries.items():
        assert text.startswith("# Returns "), name


@pytest.mark.parametrize("name", sorted(BREAKAGES))
def test_qc_query_finds_no_violation(ontology: Graph, name: str) -> None:
    assert _rows(ontology, _qc_queries()[name]) == []


@pytest.mark.parametrize("name", sorted(BREAKAGES))
def test_qc_query_catches_a_broken_copy(ontology: Graph, name: str) -> None:
    broken = _copy(ontology)
    breakage, reported = BREAKAGES[name]
    breakage(broken)
    rows = _rows(broken, _qc_queries()[name])
    assert any(reported in row for row in rows), rows


def test_missing_header_query_reports_everything_without_an_ontology(ontology: Graph) -> None:
    broken = _copy(ontology)
    broken.remove((ONTOLOGY, RDF.type, OWL.Ontology))
    assert len(_rows(broken, _qc_queries()["missing-header-violation"])) == 5


# --- header and contract terms --------------------------------------------------------------------

def test_header_names_title_description_license_and_the_package_version(ontology: Graph) -> None:
    release = version("itkg")  # the one version source: pyproject.toml
    assert (ONTOLOGY, RDF.type, OWL.Ontology) in ontology
    assert str(ontology.value(ONTOLOGY, DCTERMS.title) or "").strip()
    assert str(ontology.value(ONTOLOGY, DCTERMS.description) or "").strip()
    assert set(ontology.objects(ONTOLOGY, DCTERMS.license)) == {
        URIRef("https://creativecommons.org/licenses/by/4.0/")}
    assert set(ontology.objects(ONTOLOGY, OWL.versionIRI)) == {
        URIRef(f"https://w3id.org/itkg/ontology/{release}")}
    assert [str(v) for v in ontology.objects(ONTOLOGY, OWL.versionInfo)] == [release]


def _declared(graph: Graph, name: str, kind: URIRef) -> bool:
    return (ITKG[name], RDF.type, kind) in graph


def test_contract_terms_are_declared_with_label_and_definition(ontology: Graph) -> None:
    expected = ([(n, OWL.ObjectProperty) for n in CONTRACT_OBJECT_PROPERTIES]
                + [(n, OWL.DatatypeProperty) for n in CONTRACT_DATATYPE_PROPERTIES]
                + [(n, OWL.Class) for n in CONTRACT_CLASSES]
                + [(n, OWL.NamedIndividual) for names in CONTRACT_INDIVIDUALS.values() for n in names])
    wrong = [n for n, kind in expected if not _declared(ontology, n, kind)]
    unlabelled = [n for n, _ in expected
                  if ontology.value(ITKG[n], RDFS.label) is None
                  or ontology.value(ITKG[n], DEFINITION) is None]
    untyped = [n for cls, names in CONTRACT_INDIVIDUALS.items() for n in names
               if (ITKG[n], RDF.type, ITKG[cls]) not in ontology]
    assert (wrong, unlabelled, untyped) == ([], [], [])


def test_contract_class_hierarchy(ontology: Graph) -> None:
    missing = [(c, p) for c, p in CONTRACT_SUBCLASSES if (ITKG[c], RDFS.subClassOf, ITKG[p]) not in ontology]
    assert missing == []


def test_no_xsd_date_anywhere_in_the_ontology(ontology: Graph) -> None:
    """xsd:date is outside the OWL 2 datatype map: HermiT rejects it and the DL profile flags it."""
    assert not [t for t in ontology if XSD.date in t or getattr(t[2], "datatype", None) == XSD.date]


# --- cross-references -----------------------------------------------------------------------------

def _xrefs(graph: Graph) -> list[tuple[URIRef, URIRef, URIRef]]:
    return [(s, p, o) for p in (SKOS.exactMatch, SKOS.narrowMatch, SKOS.closeMatch, SKOS.broadMatch,
                                SKOS.relatedMatch) for s, o in graph.subject_objects(p)]


def test_xrefs_use_only_verified_codes(ontology: Graph) -> None:
    xrefs = _xrefs(ontology)
    assert xrefs, "the ontology lost its cross-references"
    assert [(s, o) for s, _, o in xrefs if str(o) not in VERIFIED_XREFS] == []
    assert [s for s, _, _ in xrefs if not str(s).startswith(str(ITKG))] == []


def test_drug_codes_are_only_close_matches_of_therapies(ontology: Graph) -> None:
    """A therapy is not its drug: ChEBI and ATC codes may never be exact matches."""
    exact = [o for o in ontology.objects(None, SKOS.exactMatch) if str(o).startswith(DRUG_CODE_PREFIXES)]
    assert exact == []


def test_no_code_is_an_exact_match_of_two_terms(ontology: Graph) -> None:
    """skos:exactMatch is transitive: one code on two terms would make the two terms the same."""
    seen: dict[URIRef, URIRef] = {}
    clashes = []
    for subject, code in ontology.subject_objects(SKOS.exactMatch):
        if seen.setdefault(code, subject) != subject:
            clashes.append(code)
    assert clashes == []


# --- epidemiology and treatment goals: the SPARQL examples in docs/ontology.md ------------------------

def _docs_query(marker: str) -> str:
    blocks = re.findall(r"```sparql\n(.*?)```", DOCS.read_text(encoding="utf-8"), flags=re.S)
    matching = [b for b in blocks if marker in b]
    assert len(matching) == 1, f"docs/ontology.md needs one sparql example using {marker}"
    return matching[0]


def test_docs_epidemiology_query_returns_the_source_figures(ontology: Graph) -> None:
    rows = list(ontology.query(_docs_query("itkg:EpidemiologicalStatistic")))
    assert sorted(Decimal(str(row.value)) for row in rows) == [
        Decimal("38.0"), Decimal("39.3"), Decimal("55.0"), Decimal("66.4")]
    assert all(row.value.datatype == XSD.decimal and str(row.population) for row in rows)


def test_docs_treatment_goal_query_returns_the_goals_of_spasticity_treatment(ontology: Graph) -> None:
    rows = list(ontology.query(_docs_query("itkg:TreatmentGoal")))
    assert sorted(str(row.goal) for row in rows) == [
        "better movement", "better walking", "greater autonomy", "less energy expenditure",
        "less pain", "less spasticity"]


# --- OWL API (Debian libowlapi-java): no unparsed triples, OWL 2 DL -----------------------------------

@pytest.fixture(scope="module")
def owlapi_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, dict[str, int]], str]:
    """Counts per file, and the checker's output, from one JVM run over itkg.owl, itkg.ttl and a
    deliberately broken copy."""
    broken = tmp_path_factory.mktemp("owlapi") / "broken.ttl"
    broken.write_text(ontology_path().read_text(encoding="utf-8") + (
        "\n[] a owl:AllDisjointClasses .\n"              # no members: an unparsed triple
        "itkg:consentDate rdfs:range xsd:date .\n"),     # outside the OWL 2 datatype map
        encoding="utf-8")
    return _owlapi.check_or_skip({"owl": ontology_owl_path(), "ttl": ontology_path(), "broken": broken})


@pytest.mark.java
@pytest.mark.parametrize("name", ["owl", "ttl"])
def test_owlapi_loads_the_ontology_fully_and_in_owl2_dl(owlapi_report: tuple, name: str) -> None:
    counts, output = owlapi_report
    assert counts[name] == {"unparsed": 0, "guessed": 0, "violations": 0}, output


@pytest.mark.java
def test_owlapi_check_catches_a_broken_copy(owlapi_report: tuple) -> None:
    counts, output = owlapi_report
    assert counts["broken"]["unparsed"] > 0 and counts["broken"]["violations"] > 0, output


# --- HermiT through owlready2 -------------------------------------------------------------------------

requires_java = pytest.mark.skipif(shutil.which("java") is None, reason="java is not installed")


@contextmanager
def _private_tempdir() -> Iterator[Path]:
    """owlready2 hands HermiT its input through tempfile; keep those files in a directory of our own
    and remove it afterwards, whatever happens."""
    saved = tempfile.tempdir
    with tempfile.TemporaryDirectory(prefix="itkg-hermit-") as private:
        tempfile.tempdir = private
        try:
            yield Path(private)
        finally:
            tempfile.tempdir = saved


def _reason(*extra: Path):
    """A fresh owlready2 world holding itkg.owl (and ``extra`` N-Triples files), after HermiT ran."""
    from owlready2 import World, sync_reasoner

    world = World()
    world.get_ontology(ontology_owl_path().as_uri()).load()
    for path in extra:
        world.get_ontology(path.as_uri()).load()
    sync_reasoner(world, infer_property_values=False, debug=0)
    return world


@pytest.mark.java
@requires_java
def test_hermit_finds_the_ontology_consistent_without_unsatisfiable_classes() -> None:
    with _private_tempdir():
        world = _reason()  # raises OwlReadyInconsistentOntologyError when inconsistent
        assert list(world.inconsistent_classes()) == []


@pytest.mark.java
@requires_java
def test_hermit_classifies_the_example_patients() -> None:
    patients = Graph().parse(EXAMPLE_PATIENTS, format="turtle")
    for triple in [t for t in patients if getattr(t[2], "datatype", None) == XSD.date]:
        patients.remove(triple)  # HermiT rejects xsd:date; dates play no part in the defined classes
    with _private_tempdir() as private:
        data = private / "patients.nt"
        patients.serialize(data, format="nt", encoding="utf-8")
        world = _reason(data)
        found = {}
        for name in ("anna", "ben", "carla", "dev", "eli"):
            individual = world[f"https://example.org/patient/{name}"]
            found[name] = sorted(c.name for c in individual.INDIRECT_is_a
                                 if str(getattr(c, "iri", "")).endswith("IndicationPatient"))
    assert found == {
        "anna": ["CancerPainIndicationPatient"],
        "ben": ["NonCancerPainIndicationPatient"],
        "carla": ["SevereSpasticityIndicationPatient"],
        "dev": ["NonCancerPainIndicationPatient"],
        "eli": [],
    }
