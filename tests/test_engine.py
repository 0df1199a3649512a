"""The native rule engine and the Python API against the contract's rules (contract §3).

The expected rows in tests/data/rules-expected.json were worked out by hand from the contract;
the same file checks the SPARQL queries (tests/test_queries.py), so the engine and the queries are
two independent implementations held to one answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import benchmark_generator
import rdflib

import itkg
from itkg.engine import PatientIndex, RuleEngine
from itkg.knowledge import Knowledge, load_knowledge
from itkg.resources import ontology_path

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "tests" / "data" / "rules.ttl"
RULES_EXPECTED = ROOT / "tests" / "data" / "rules-expected.json"
EXAMPLES = ROOT / "examples" / "patients.ttl"
SHARED_EXPECTED = ROOT.parent / "shared" / "spec" / "examples" / "expected-eligibility.json"
EX = "https://example.org/patient/"
ITKG = "https://w3id.org/itkg/"


def rows(results):
    return {(r.patient, r.therapy, r.indication, r.status, tuple(r.unmet)) for r in results}


def expected_rows(path: Path):
    return {(r["patient"], r["therapy"], r["indication"], r["status"], tuple(r["unmet"]))
            for r in json.loads(path.read_text())["results"]}


def test_rules_corpus_gives_exactly_the_hand_worked_rows():
    assert rows(itkg.eligibility(RULES)) == expected_rows(RULES_EXPECTED)


def test_bundled_examples_give_the_contract_rows():
    expected = expected_rows(ROOT / "examples" / "expected-eligibility.json")
    assert rows(itkg.eligibility(EXAMPLES)) == expected
    if SHARED_EXPECTED.exists():
        assert expected == expected_rows(SHARED_EXPECTED)


def test_results_are_sorted_and_unmet_follows_contract_order():
    results = itkg.eligibility(RULES)
    assert results == sorted(results)
    for result in results:
        assert list(result.unmet) == [c for c in ("informed-consent", "csf-circulation") if c in result.unmet]
        assert (result.status == "qualifies") == (not result.unmet)


def test_evidence_names_the_facts_that_met_the_indication():
    (anna,) = [r for r in itkg.eligibility(EXAMPLES) if r.patient == EX + "anna"]
    text = " | ".join(anna.evidence)
    assert "cancer pain diagnosis _:" in text
    assert "oral opioid therapy _:" in text and "ended with severe side effects" in text
    assert "latest informed consent covering intrathecal analgesic therapy" in text and "2026-03-02" in text


def test_excluded_row_names_the_record_that_decided_it():
    (dev,) = [r for r in itkg.eligibility(EXAMPLES) if r.patient == EX + "dev"]
    (csf,) = [c for c in dev.prerequisites if c.code == "csf-circulation"]
    assert csf.state == "failed" and len(csf.records) == 1
    assert "impaired CSF circulation" in csf.reason and csf.records[0] in csf.reason


def _graph(turtle: str) -> rdflib.Graph:
    return rdflib.Graph().parse(data="@prefix itkg: <https://w3id.org/itkg/> .\n"
                                     "@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .\n"
                                     "@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .\n"
                                     "@prefix ex: <https://example.org/patient/> .\n" + turtle, format="turtle")


def test_dated_withdrawal_after_grant_excludes_and_names_date():
    graph = _graph("""
      ex:p itkg:hasCondition [ a itkg:FailedBackSurgerySyndrome ] ;
        itkg:hasConsent [ a itkg:InformedConsent ; itkg:consentStatus itkg:ConsentGranted ;
                          itkg:coversTherapy itkg:IntrathecalTherapy ; itkg:consentDate "2026-03-01"^^xsd:date ] ,
                        [ a itkg:InformedConsent ; itkg:consentStatus itkg:ConsentWithdrawn ;
                          itkg:coversTherapy itkg:IntrathecalTherapy ; itkg:consentDate "2026-04-02"^^xsd:date ] ;
        itkg:hasCSFAssessment [ itkg:finding itkg:GoodCSFCirculation ] .""")
    (row,) = itkg.eligibility(graph)
    assert (row.status, row.unmet) == ("excluded", ("informed-consent",))
    assert any("2026-04-02" in e and "consent withdrawn" in e for e in row.evidence)


def test_blank_node_patient_is_reported_with_a_blank_id():
    graph = _graph("[] itkg:hasCondition [ a itkg:LumbarPostLaminectomySyndrome ] .")
    (row,) = itkg.eligibility(graph)
    assert row.patient.startswith("_:") and row.status == "pending"
    assert row.unmet == ("informed-consent", "csf-circulation")


def test_subclass_declared_in_patient_data_is_set_aside():
    """Contract 1.1 §6: patient data cannot change the rules (a site's subclasses go in an
    extension file; see tests/test_extensions.py)."""
    graph = _graph("""
      ex:LeftArmCRPS rdfs:subClassOf itkg:ComplexRegionalPainSyndromeType1 .
      ex:p itkg:hasCondition [ a ex:LeftArmCRPS ] ;
        itkg:receivedTreatment [ a itkg:SpinalSurgery ; itkg:hasOutcome itkg:TreatmentFailure ] .""")
    data = itkg.load(graph)
    assert data.sources[0].schema_set_aside == 1
    assert itkg.eligibility(data) == []


def test_rules_come_from_the_ontology_not_the_code(tmp_path):
    """Adding a condition class to a criterion in the ontology changes the decision."""
    graph = rdflib.Graph().parse(ontology_path())
    graph.add((rdflib.URIRef(ITKG + "FailedSpinalSurgeryPainCriterion"),
               rdflib.URIRef(ITKG + "requiresConditionOf"), rdflib.URIRef(ITKG + "PhantomLimbPain")))
    patients = _graph("ex:p itkg:hasCondition [ a itkg:PhantomLimbPain ] .")
    assert itkg.eligibility(patients) == []
    (row,) = itkg.eligibility(patients, knowledge=Knowledge(graph))
    assert row.indication == ITKG + "NonCancerPainIndication"


def test_explain_lists_every_indication_and_the_failed_criterion():
    explanation = itkg.explain(EXAMPLES, EX + "eli")
    assert [i.indication for i in explanation.indications] == [i.iri for i in load_knowledge().indications]
    assert not any(i.met for i in explanation.indications)
    spasticity = explanation.indications[-1]
    (criterion,) = spasticity.criteria
    assert len(criterion.evidence) == 1 and "severe spasticity diagnosis" in criterion.evidence[0]
    assert criterion.failed[0] == ("no prior dantrolene therapy, oral baclofen therapy or tizanidine therapy"
                                   " with no response at maximum dose or severe side effects")
    assert "ended with adequate response" in criterion.failed[1]
    cancer = explanation.indications[0]
    assert cancer.criteria[0].failed[0] == "no cancer pain diagnosis"


def test_explain_met_indication_carries_the_row():
    explanation = itkg.explain(EXAMPLES, EX + "dev")
    met = [i for i in explanation.indications if i.met]
    assert [i.indication for i in met] == [ITKG + "NonCancerPainIndication"]
    assert met[0].result.status == "excluded"


def test_explain_unknown_patient_is_an_input_error():
    with pytest.raises(itkg.InputError) as caught:
        itkg.explain(EXAMPLES, EX + "nobody")
    assert "nobody" not in str(caught.value)


@pytest.mark.parametrize("engine", ["rdflib", "oxigraph"])
def test_sparql_backends_agree_with_the_native_engine(engine):
    data = itkg.load(RULES)
    assert rows(itkg.eligibility(data, engine=engine)) == rows(itkg.eligibility(data))


@pytest.mark.parametrize("engine", ["rdflib", "oxigraph"])
def test_sparql_backends_give_evidence(engine):
    results = {r.patient: r for r in itkg.eligibility(EXAMPLES, engine=engine)}
    assert any("oral opioid therapy" in e for e in results[EX + "anna"].evidence)


@pytest.mark.parametrize("engine", ["rdflib", "oxigraph"])
def test_native_engine_matches_sparql_on_a_generated_population(engine, tmp_path):
    path = tmp_path / "population.nt"
    path.write_text("".join(benchmark_generator().generate(400, seed=7, fmt="nt")))
    data = itkg.load(path)
    native = itkg.eligibility(data)
    assert rows(native) == rows(itkg.eligibility(data, engine=engine))
    assert {r.status for r in native} == {"qualifies", "pending", "excluded"}


def test_index_ignores_triples_the_rules_do_not_read():
    index = PatientIndex.from_triples(itkg.load(EXAMPLES).triples)
    engine = RuleEngine(load_knowledge(), index)
    assert engine.index.patients() == [EX + n for n in ("anna", "ben", "carla", "dev", "eli")]


def test_table_has_colours_only_when_asked():
    from itkg import render
    results = itkg.eligibility(EXAMPLES)
    coloured = render.eligibility_table(results, color=True)
    plain = render.eligibility_table(results, color=False)
    assert "\x1b[" in coloured and "\x1b[" not in plain
    assert "excluded" in plain and "https://example.org/patient/dev" in plain


def test_reading_the_ontology_leaves_no_cycle_that_keeps_its_callers_locals() -> None:
    """rdflib's SPARQL parser (pyparsing) leaves cycles of exceptions, tracebacks and frames, and
    a frame holds its callers' frames: with the collector paused (``itkg eligibility`` pauses it
    for the whole run), a caller's locals (the rows) outlived it until one collection at the end
    walked and freed them all (0.3 s of CPU at 100,000 FHIR patients)."""
    import gc
    import weakref

    from itkg import knowledge
    from itkg.resources import ontology_path

    class Sentinel:
        pass

    def caller() -> weakref.ref[Sentinel]:
        sentinel = Sentinel()
        knowledge._load.__wrapped__(ontology_path())  # not the cached copy: read again
        return weakref.ref(sentinel)

    collecting = gc.isenabled()
    gc.disable()
    try:
        assert caller()() is None
    finally:
        if collecting:
            gc.enable()
