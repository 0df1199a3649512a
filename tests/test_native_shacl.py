"""itkg's own SHACL engine (itkg.native_shacl): what it refuses, how it runs SPARQL constraints.

That it gives whole-graph pySHACL's results (and Jena's and turbo's) on every shapes test graph,
on fuzzed graphs, on the contract's edge cases and on partitioned populations is checked with the
other engines in tests/test_engines_fuzz.py, tests/test_contract_edges.py and
tests/test_scale_validation.py; this file covers what only this engine does.
"""

from __future__ import annotations

from array import array
from collections import Counter
from pathlib import Path

import pyoxigraph as ox
import pyshacl
import pytest
import rdflib
from support import invoke

import itkg
from itkg import native_shacl, validation
from itkg.errors import ShapesNotSupportedError, ValidationEngineError
from itkg.knowledge import ontology_graph
from itkg.loading import PatientData, load
from itkg.partition import Numbering, Plan
from itkg.resources import data_root, shapes_paths

EXAMPLES = data_root() / "examples" / "patients.ttl"
PREFIXES = """@prefix sh: <http://www.w3.org/ns/shacl#> .
@prefix itkg: <https://w3id.org/itkg/> .
@prefix ex: <https://example.org/shapes/> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
"""

#: A site's shape that uses a SHACL feature the engine does not implement.
QUALIFIED = PREFIXES + """
ex:TwoConsentsShape a sh:NodeShape ; sh:targetClass itkg:Patient ;
  sh:property [ sh:path itkg:hasConsent ; sh:message "two consents"@en ;
    sh:qualifiedValueShape [ sh:datatype xsd:string ] ;
    sh:qualifiedMinCount 2 ] .
"""


def with_extra_shapes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str) -> None:
    """The bundled shapes and one more file (as a site that edits ``shapes/`` would have them)."""
    extra = tmp_path / "zz-site.ttl"
    extra.write_text(text, encoding="utf-8")
    monkeypatch.setattr(validation, "shapes_paths", lambda: [*shapes_paths(), extra])
    validation._bundled_shapes.cache_clear()
    monkeypatch.setattr(validation, "_bundled_shapes", validation._bundled_shapes)


@pytest.fixture
def unsupported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    with_extra_shapes(monkeypatch, tmp_path, QUALIFIED)
    yield
    validation._bundled_shapes.cache_clear()


def test_the_bundled_shapes_compile() -> None:
    program = native_shacl.compile_shapes(validation.shapes_graph())
    assert native_shacl.supports(validation.shapes_graph())
    constraints = [c for shape in program.shapes for c in shape.sparql]
    assert len(constraints) == 2 and all(c.separable and c.binds_this for c in constraints)
    assert {s.name.rsplit("/", 1)[-1] for s in program.shapes if s.checks} >= {
        "ConsentDecisionRequiredShape", "ConsentDateDatatypeShape", "TreatmentOutcomeValueShape"}


def test_a_shape_it_does_not_implement_is_refused_not_skipped(unsupported: None) -> None:
    shapes = validation.shapes_graph()
    with pytest.raises(ShapesNotSupportedError, match="sh:qualified"):
        native_shacl.compile_shapes(shapes)
    assert not native_shacl.supports(shapes)
    data = load(EXAMPLES)
    with pytest.raises(ShapesNotSupportedError) as caught:
        validation.validate(data, engine="native")
    assert isinstance(caught.value, ValidationEngineError) and "--engine pyshacl" in str(caught.value)
    assert validation.engine_for(data, "auto") != "native"


def test_the_command_line_refuses_with_one_line(unsupported: None) -> None:
    run = invoke("validate", str(EXAMPLES), "--engine", "native")
    assert run.returncode == 2 and run.stdout == ""
    assert len(run.stderr.strip().splitlines()) == 1 and "does not implement sh:qualified" in run.stderr


@pytest.mark.parametrize("text, feature", [
    (PREFIXES + "ex:S sh:targetClass itkg:Patient ; sh:property [ sh:path [ sh:inversePath itkg:hasConsent ] ;"
     ' sh:minCount 1 ; sh:message "m" ] .', "sh:inversePath"),
    (PREFIXES + 'ex:S sh:targetClass itkg:Patient ; sh:property [ sh:path itkg:hasConsent ; sh:minCount 1 ] .',
     "without sh:message"),
    (PREFIXES + 'ex:S sh:targetClass itkg:Patient ; sh:property [ sh:path itkg:x ; sh:pattern "a" ; sh:flags "s" ;'
     ' sh:message "m" ] .', "sh:flags"),
    (PREFIXES + 'ex:S sh:targetClass itkg:Patient ; sh:class itkg:Patient ; sh:message "m" .', "sh:class"),
], ids=["inverse-path", "no-message", "flags", "class"])
def test_each_unimplemented_feature_is_named(text: str, feature: str) -> None:
    graph = rdflib.Graph().parse(data=text, format="turtle")
    with pytest.raises(ShapesNotSupportedError, match=feature):
        native_shacl.compile_shapes(graph)


def algebra(select: str):  # type: ignore[no-untyped-def]
    from rdflib.plugins.sparql import prepareQuery
    return prepareQuery("PREFIX itkg: <https://w3id.org/itkg/>\n" + select).algebra.p


@pytest.mark.parametrize("select, separable", [
    ("SELECT $this ?value WHERE { $this itkg:plannedTherapy ?value }", True),
    ("SELECT $this (COUNT(?r) AS ?n) WHERE { $this itkg:hasConsent ?r } GROUP BY $this HAVING (COUNT(?r) > 1)", True),
    ("SELECT $this ?value WHERE { $this itkg:plannedTherapy ?value } LIMIT 1", False),
    ("SELECT $this (COUNT(?r) AS ?n) WHERE { $this itkg:hasConsent ?r }", False),  # one group for every focus
    ("SELECT $this ?r WHERE { ?r itkg:consentStatus ?s OPTIONAL { $this itkg:hasConsent ?r } }", False),
    ("SELECT $this ?r WHERE { $this itkg:hasConsent ?r FILTER NOT EXISTS { ?r itkg:consentStatus ?s } }", False),
])
def test_which_queries_run_once_per_batch(select: str, separable: bool) -> None:
    assert native_shacl.separable(algebra(select)) is separable


def one_batch(data: PatientData, shapes: rdflib.Graph) -> Counter:
    numbering = Numbering(source=data.triples)
    numbering.add(data.triples)
    cut = Plan(array("q"), [array("q", range(len(data.triples)))], frozenset())
    batches = native_shacl.judge(numbering, cut, workers=1, progress=None, shapes=shapes, ontology=ontology_graph())
    return Counter((r.focus, r.path, r.value, r.shape, r.message) for b in batches for r in b.results)


def pyshacl_results(data: PatientData, shapes: rdflib.Graph) -> Counter:
    graph = data.graph()
    _, report, _ = pyshacl.validate(graph, shacl_graph=shapes, ont_graph=ontology_graph(), inference="none",
                                    do_owl_imports=False, allow_warnings=True)
    results = [validation._result(report, node) for node in report.subjects(rdflib.RDF.type,
                                                                             validation.SH.ValidationResult)]
    return Counter((r.focus, r.path, r.value, r.shape, r.message) for r in results)


#: SPARQL constraints that cannot run once per batch (a limit; NOT EXISTS), on blank-node and IRI
#: patients: run once per focus node, with ``$this`` substituted.
PER_FOCUS = PREFIXES + '''
ex:RefusedShape a sh:NodeShape ; sh:targetSubjectsOf itkg:hasConsent ;
  sh:sparql [ sh:message "Patient {$this} refused in {?value}"@en ;
    sh:select """PREFIX itkg: <https://w3id.org/itkg/>
SELECT $this ?value WHERE { $this itkg:hasConsent ?value . ?value itkg:consentStatus itkg:ConsentRefused } LIMIT 1""" ] .
ex:UndatedShape a sh:NodeShape ; sh:targetClass itkg:Patient ; sh:severity sh:Warning ;
  sh:sparql [ sh:message "{?value} of {$this} is undated"@en ;
    sh:select """PREFIX itkg: <https://w3id.org/itkg/>
SELECT $this ?value WHERE { $this itkg:hasConsent ?value FILTER NOT EXISTS { ?value itkg:consentDate ?d } }""" ] .
'''


def test_queries_that_cannot_share_a_run_give_pyshacls_results_per_focus_node(tmp_path: Path) -> None:
    shapes = rdflib.Graph().parse(data=PER_FOCUS, format="turtle")
    program = native_shacl.compile_shapes(shapes)
    assert [c.separable for s in program.shapes for c in s.sparql] == [False, False]
    blank = tmp_path / "blank.ttl"
    blank.write_text("@prefix itkg: <https://w3id.org/itkg/> .\n_:p1 a itkg:Patient ; itkg:hasConsent "
                     "[ itkg:consentStatus itkg:ConsentGranted ] , [ itkg:consentStatus itkg:ConsentRefused ] .\n",
                     encoding="utf-8")
    data = load(sorted((Path(__file__).parent / "data" / "shapes").glob("pt-*.ttl"))[:6] + [EXAMPLES, blank],
                strict_literals=False)
    expected = pyshacl_results(data, shapes)
    assert expected and any(focus.startswith("_:") for focus, *_ in expected)
    assert one_batch(data, shapes) == expected


def test_a_failing_batch_is_an_engine_error_that_quotes_no_data() -> None:
    native_shacl._enter(native_shacl.compile_shapes(validation.shapes_graph()))
    try:
        with pytest.raises(ValidationEngineError) as caught:
            native_shacl._judge_batch(b'<https://example.org/secret-patient>"Jane"\n', True)
    finally:
        native_shacl._enter(None)
    assert "secret" not in str(caught.value) and "Jane" not in str(caught.value)


def test_native_is_a_validation_engine_of_the_api_and_the_command_line() -> None:
    from itkg import names
    assert "native" in names.VALIDATION_BACKENDS and "native" in names.DECISION_BACKENDS
    report = itkg.validate(EXAMPLES, engine="native")
    assert [r.focus for r in report.results] == ["https://example.org/patient/dev"]
    run = invoke("validate", "--help")
    assert run.returncode == 0 and "native" in run.stdout


def test_literal_terms_are_read_back_as_written() -> None:
    for literal in (ox.Literal('a "b" \\ c\nd\te\u0001 ü'), ox.Literal("x", language="en"),
                    ox.Literal("2026-13-45", datatype=ox.NamedNode("http://www.w3.org/2001/XMLSchema#date"))):
        nt = str(literal)
        lexical, datatype, language = native_shacl.literal_parts(nt)
        assert (lexical, datatype, language) == (literal.value, literal.datatype.value, literal.language)
        assert native_shacl.name_of(nt) == literal.value
