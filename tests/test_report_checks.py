"""ROBOT's default report profile, run as SPARQL over the ontology (``itkg.qc``).

The ontology must be clean for every ERROR and WARN check, in its Turtle source and in the
generated RDF/XML. Every check of the profile also runs on a deliberately broken copy and must
report the break, so a check that can never return a row (a typo, an rdflib quirk) cannot pass
unnoticed. Definitions have one source, IAO:0000115: no skos:definition is left to drift.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from rdflib import Graph, URIRef
from rdflib.namespace import SKOS

from itkg import qc
from itkg.resources import ontology_owl_path, ontology_path

ITKG = "https://w3id.org/itkg/"
PREFIXES = """
@prefix itkg: <https://w3id.org/itkg/> .
@prefix owl: <http://www.w3.org/2002/07/owl#> .
@prefix rdf: <http://www.w3.org/1999/02/22-rdf-syntax-ns#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix obo: <http://purl.obolibrary.org/obo/> .
@prefix oboInOwl: <http://www.geneontology.org/formats/oboInOwl#> .
@prefix dcterms: <http://purl.org/dc/terms/> .
@prefix skos: <http://www.w3.org/2004/02/skos/core#> .
"""
RDFS_LABEL = "http://www.w3.org/2000/01/rdf-schema#label"
DEFINITION = "http://purl.obolibrary.org/obo/IAO_0000115"
HEADER = "https://w3id.org/itkg/ontology"

#: For each check: triples to remove (subject, predicate), Turtle to add, and the entity the check
#: must then report. Copies of real labels and definitions are spelled {label:Term} / {def:Term}.
BREAKAGES: dict[str, tuple[list[tuple[str, str]], str, str]] = {
    "annotation_whitespace": ([], 'itkg:CancerPain skos:notation "cancer-pain " .', ITKG + "CancerPain"),
    "deprecated_boolean_datatype": ([], 'itkg:Stroke owl:deprecated "yes" .', ITKG + "Stroke"),
    "deprecated_class_reference": ([], "itkg:Stroke owl:deprecated true .", ITKG + "Stroke"),
    "deprecated_property_reference": ([], "itkg:indicatesTherapy owl:deprecated true .",
                                      ITKG + "CancerPainIndication"),
    "duplicate_definition": ([(ITKG + "Spasticity", DEFINITION)], "itkg:Spasticity obo:IAO_0000115 {def:CancerPain} .",
                             ITKG + "Spasticity"),
    "duplicate_exact_synonym": ([], ('itkg:CancerPain oboInOwl:hasExactSynonym "pain" .\n'
                                    'itkg:Spasticity oboInOwl:hasExactSynonym "PAIN" .'), ITKG + "Spasticity"),
    "duplicate_label": ([], "itkg:Spasticity rdfs:label {label:CancerPain} .", ITKG + "Spasticity"),
    "duplicate_label_synonym": ([], "itkg:Spasticity oboInOwl:hasExactSynonym {label:CancerPain} .",
                                ITKG + "CancerPain"),
    "duplicate_scoped_synonym": ([], 'itkg:CancerPain oboInOwl:hasExactSynonym "x" ; oboInOwl:hasBroadSynonym "x" .',
                                 ITKG + "CancerPain"),
    "equivalent_pair": ([], "itkg:Stroke owl:equivalentClass itkg:AcquiredBrainInjury .", ITKG + "Stroke"),
    "equivalent_class_axiom_no_genus": (
        [], ("itkg:Stroke owl:equivalentClass [ a owl:Restriction ; owl:onProperty itkg:hasCondition ;"
            " owl:someValuesFrom itkg:CancerPain ] ."), ITKG + "Stroke"),
    "illegal_use_of_built_in_vocabulary": ([], 'rdf:type rdfs:comment "a type" .',
                                           "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"),
    "invalid_xref": ([], 'itkg:CancerPain oboInOwl:hasDbXref "G89.3" .', ITKG + "CancerPain"),
    "label_formatting": ([(ITKG + "Spasticity", RDFS_LABEL)], 'itkg:Spasticity rdfs:label "spas\\tticity"@en .',
                         ITKG + "Spasticity"),
    "label_whitespace": ([(ITKG + "Spasticity", RDFS_LABEL)], 'itkg:Spasticity rdfs:label " spasticity"@en .',
                         ITKG + "Spasticity"),
    "lowercase_definition": ([(ITKG + "Spasticity", DEFINITION)],
                             'itkg:Spasticity obo:IAO_0000115 "a condition of stiff muscles."@en .',
                             ITKG + "Spasticity"),
    "missing_definition": ([(ITKG + "hasCondition", DEFINITION)], "", ITKG + "hasCondition"),
    "missing_label": ([(ITKG + "CancerPain", RDFS_LABEL)], "", ITKG + "CancerPain"),
    "missing_obsolete_label": ([], "itkg:Stroke owl:deprecated true .", ITKG + "Stroke"),
    "missing_ontology_description": ([(HEADER, "http://purl.org/dc/terms/description")], "", HEADER),
    "missing_ontology_license": ([(HEADER, "http://purl.org/dc/terms/license")], "", HEADER),
    "missing_ontology_title": ([(HEADER, "http://purl.org/dc/terms/title")], "", HEADER),
    "missing_subset_declaration": ([], "itkg:CancerPain oboInOwl:inSubset itkg:painSubset .", ITKG + "painSubset"),
    "missing_superclass": ([(ITKG + "Plexopathy", "http://www.w3.org/2000/01/rdf-schema#subClassOf")], "",
                           ITKG + "Plexopathy"),
    "missing_synonymtype_declaration": ([], '[] oboInOwl:hasSynonymType itkg:Abbreviation .',
                                        ITKG + "Abbreviation"),
    "misused_obsolete_label": ([(ITKG + "Spasticity", RDFS_LABEL)],
                               'itkg:Spasticity rdfs:label "obsolete spasticity"@en .', ITKG + "Spasticity"),
    "misused_replaced_by": ([], "itkg:Stroke obo:IAO_0100001 itkg:AcquiredBrainInjury .", ITKG + "Stroke"),
    "multiple_definitions": ([], 'itkg:CancerPain obo:IAO_0000115 "Another definition."@en .', ITKG + "CancerPain"),
    "multiple_equivalent_classes": ([], "itkg:Stroke owl:equivalentClass itkg:CerebralPalsy , itkg:SpinalCordInjury .",
                                    ITKG + "Stroke"),
    "multiple_equivalent_class_definitions": (
        [], ("itkg:Stroke owl:equivalentClass [ owl:intersectionOf ( itkg:Condition itkg:Disorder ) ] ,"
            " [ owl:intersectionOf ( itkg:Condition itkg:Treatment ) ] ."), ITKG + "Stroke"),
    "multiple_labels": ([], 'itkg:CancerPain rdfs:label "tumour pain"@en .', ITKG + "CancerPain"),
    "invalid_entity_uri": ([], "<http://purl.org/obo/GO_0000001> a owl:Class .", "http://purl.org/obo/GO_0000001"),
}


@pytest.fixture(scope="module")
def ontology() -> Graph:
    """The Turtle source, parsed once; breakage tests work on copies."""
    return Graph().parse(ontology_path(), format="turtle")


@pytest.fixture(scope="module")
def checks() -> dict[str, qc.ReportCheck]:
    return {check.name: check for check in qc.report_checks()}


@pytest.fixture(scope="module")
def findings(ontology: Graph) -> list[qc.Finding]:
    """The whole report on the Turtle source, computed once."""
    return qc.report(ontology)


def _copy(graph: Graph) -> Graph:
    copy = Graph()
    for triple in graph:
        copy.add(triple)
    return copy


def _fill(turtle: str, graph: Graph) -> str:
    """Replace {label:X} / {def:X} with the N3 form of X's real label or definition."""
    def value(match: re.Match[str]) -> str:
        prop = RDFS_LABEL if match[1] == "label" else DEFINITION
        found = graph.value(URIRef(ITKG + match[2]), URIRef(prop))
        assert found is not None, match[0]
        return found.n3()
    return re.sub(r"\{(label|def):(\w+)\}", value, turtle)


def test_profile_is_robots_default_with_a_query_per_check(checks: dict[str, qc.ReportCheck]) -> None:
    """Every ERROR and WARN check of ROBOT's default profile is here, with ROBOT's name and level."""
    levels = {name: check.level for name, check in checks.items()}
    assert sum(level == "ERROR" for level in levels.values()) == 17
    assert sum(level == "WARN" for level in levels.values()) == 13
    assert levels["missing_label"] == "ERROR" and levels["missing_definition"] == "WARN"
    assert {p.stem for p in qc.report_dir().glob("*.rq")} == set(levels) == set(BREAKAGES)


def test_every_query_says_what_it_returns_and_cites_robot(checks: dict[str, qc.ReportCheck]) -> None:
    for name, check in checks.items():
        assert check.query.startswith("# Returns "), name
        assert f"level {check.level} " in check.query.split("\n\n")[0], name
        assert f"report_queries/{name}.rq at commit " in check.query, name
    assert "Redistribution and use in source and binary forms" in (
        qc.report_dir() / "LICENSE-ROBOT.txt").read_text(encoding="utf-8")


def test_turtle_is_clean_for_every_error_and_warn_check(findings: list[qc.Finding]) -> None:
    assert qc.failures(findings, fail_on="WARN") == []


def test_rdf_xml_is_clean_for_every_error_and_warn_check() -> None:
    graph = Graph().parse(ontology_owl_path(), format="xml")
    assert qc.failures(qc.report(graph), fail_on="WARN") == []


def test_info_findings_are_only_top_classes_without_a_superclass(findings: list[qc.Finding]) -> None:
    """INFO never fails; missing_superclass finds the top classes and PROV-O's two."""
    info = {f.entity for f in findings if f.check == "missing_superclass"}
    assert info >= {ITKG + "Patient", ITKG + "Condition", "http://www.w3.org/ns/prov#Entity"}
    assert ITKG + "CancerPain" not in info


@pytest.mark.parametrize("name", sorted(BREAKAGES))
def test_check_catches_a_broken_copy(ontology: Graph, checks: dict[str, qc.ReportCheck], name: str) -> None:
    removals, turtle, entity = BREAKAGES[name]
    assert qc.run_check(ontology, checks[name]) == [] or checks[name].level == "INFO"
    broken = _copy(ontology)
    for subject, predicate in removals:
        assert (URIRef(subject), URIRef(predicate), None) in broken, (subject, predicate)
        broken.remove((URIRef(subject), URIRef(predicate), None))
    if turtle:
        broken.parse(data=PREFIXES + _fill(turtle, ontology), format="turtle")
    findings = qc.run_check(broken, checks[name])
    assert entity in {f.entity for f in findings}, findings
    if checks[name].level != "INFO":
        assert qc.failures(findings, "WARN"), name


def test_warn_fails_only_at_warn_level_and_error_always() -> None:
    warn = qc.Finding("WARN", "equivalent_pair", ITKG + "A", "p", "v")
    error = qc.Finding("ERROR", "missing_label", ITKG + "A", "p", "")
    assert qc.failures([warn, error], "ERROR") == [error]
    assert qc.failures([warn, error], "WARN") == [warn, error]
    assert qc.failures([warn, error], "none") == []


def test_definitions_have_one_source(ontology: Graph) -> None:
    """IAO:0000115 is the definition; a leftover skos:definition would be a second copy to drift."""
    assert list(ontology.triples((None, SKOS.definition, None))) == []
    assert len(set(ontology.subjects(URIRef(DEFINITION), None))) > 80


def test_command_line_reports_and_fails_on_a_broken_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.ttl"
    broken.write_text(ontology_path().read_text(encoding="utf-8") + PREFIXES
                      + 'itkg:CancerPain rdfs:label "tumour pain"@en .\n', encoding="utf-8")
    capsys.readouterr()
    assert qc.main([str(broken)]) == 1
    out = capsys.readouterr().out
    assert f"ERROR\tmultiple_labels\t{ITKG}CancerPain\t{RDFS_LABEL}\t" in out
