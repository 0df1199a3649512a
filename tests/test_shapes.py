"""Contract §4: the SHACL shapes in shapes/*.ttl, run with plain pySHACL.

The shapes must give the same verdict in every SHACL engine, so they are tested the way a user runs
them: ``pyshacl.validate`` on rdflib graphs, the ontology as ``ont_graph``, no inference. The expected
results of each fixture in tests/data/shapes/ are listed here, next to the rule they pin down. One
Java test repeats every fixture in Apache Jena SHACL, a second engine, to keep the shapes standard.

The rdflib graph validated is itkg's query-caching one (:class:`itkg.validation._QueryCachingGraph`,
validated in place), which parses each SPARQL text once instead of once per focus node: four to
fifteen times faster here, and nothing else differs. That it gives plain ``rdflib.Graph``'s results
is held by tests/test_scale_validation.py, on these very fixtures (merged), the examples and the
planned rules corpus, where a plain graph is the reference.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Callable, NamedTuple

import pytest
from pyshacl import validate
from rdflib import BNode, Graph, Literal, Namespace, URIRef
from rdflib.namespace import RDF, RDFS, SH

from itkg import jena
from itkg.validation import _QueryCachingGraph
from itkg.resources import ontology_path

ITKG = Namespace("https://w3id.org/itkg/")
SHAPE = Namespace("https://w3id.org/itkg/shapes/")
EX = Namespace("https://example.org/patient/")

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "data" / "shapes"
EXAMPLES = TESTS.parent / "examples" / "patients.ttl"
RULES = TESTS / "data" / "rules.ttl"
RULES_EXPECTED = TESTS / "data" / "rules-expected.json"

ANALGESIC = ITKG.IntrathecalAnalgesicTherapy
BACLOFEN = ITKG.IntrathecalBaclofenTherapy
CONSENT = SHAPE.PlannedTherapyInformedConsentShape
CSF = SHAPE.PlannedTherapyCSFCirculationShape
PREREQUISITE_OF_SHAPE = {CONSENT: "informed-consent", CSF: "csf-circulation"}
BLANK = BNode("any-blank-node")  # stands for "the focus node is a blank node" in expectations


class Result(NamedTuple):
    """One sh:ValidationResult, reduced to what a clinician or a test looks at."""

    focus: URIRef | BNode
    shape: URIRef
    path: URIRef | None
    value: URIRef | BNode | Literal | None
    message: str
    severity: URIRef


class Expected(NamedTuple):
    """A result a fixture must give: focus, source shape, path, value (None: any) and message part."""

    focus: URIRef | BNode
    shape: URIRef
    path: URIRef
    value: URIRef | None
    message: str


def planned(patient: str, shape: URIRef, problem: str, therapy: URIRef = ANALGESIC,
            label: str = "intrathecal analgesic therapy") -> Expected:
    """A prerequisite result, with the whole message pySHACL renders for an IRI patient."""
    focus = EX[patient]
    return Expected(focus, shape, ITKG.plannedTherapy, therapy,
                    f"Patient {focus} is planned for {label} but {problem}")


def record(node: str, shape: str, path: URIRef, message_part: str) -> Expected:
    """A record-shape result on the record ``ex:node``."""
    return Expected(EX[node], SHAPE[shape], path, None, message_part)


def run_shacl(data: Graph, shapes: Graph, ontology: Graph) -> tuple[bool, list[Result]]:
    """Validate ``data`` as contract §4 says (in a query-caching copy: see the module's docstring),
    and read the results out of the report graph."""
    graph = _QueryCachingGraph()
    graph += data
    conforms, report, _ = validate(graph, shacl_graph=shapes, ont_graph=ontology, inference="none",
                                   do_owl_imports=False, inplace=True)
    results = []
    for node in report.subjects(RDF.type, SH.ValidationResult):
        messages = list(report.objects(node, SH.resultMessage))
        assert len(messages) == 1, f"expected one message per result, got {messages}"
        results.append(Result(report.value(node, SH.focusNode), report.value(node, SH.sourceShape),
                              report.value(node, SH.resultPath), report.value(node, SH.value),
                              str(messages[0]), report.value(node, SH.resultSeverity)))
    assert conforms == (not results)
    return conforms, results


@pytest.fixture(scope="module")
def validated(shapes: Graph, ontology: Graph) -> Callable[[str], list[Result]]:
    """Results for a fixture file by stem (or the examples, ``"examples"``), validated once per module."""
    cache: dict[str, list[Result]] = {}

    def results_of(stem: str) -> list[Result]:
        if stem not in cache:
            path = EXAMPLES if stem == "examples" else FIXTURES / f"{stem}.ttl"
            cache[stem] = run_shacl(Graph().parse(path), shapes, ontology)[1]
        return cache[stem]

    return results_of


def matches(result: Result, expected: Expected) -> bool:
    focus_ok = isinstance(result.focus, BNode) if expected.focus == BLANK else result.focus == expected.focus
    return (focus_ok and result.shape == expected.shape and result.path == expected.path
            and (expected.value is None or result.value == expected.value)
            and expected.message in result.message)


def assert_results(results: list[Result], expected: list[Expected]) -> None:
    """Each expected result appears exactly once, and nothing else does."""
    unmatched = list(results)
    for exp in expected:
        found = [r for r in unmatched if matches(r, exp)]
        assert len(found) == 1, f"expected one result like {exp}, got {found}; all results: {results}"
        unmatched.remove(found[0])
    assert not unmatched, f"unexpected results: {unmatched}"
    assert all(r.severity == SH.Violation for r in results)


# ------------------------------------------------------------------------------------------------
# The ontology, the contract's example patients
# ------------------------------------------------------------------------------------------------


def test_ontology_alone_conforms(shapes: Graph, ontology: Graph) -> None:
    conforms, results = run_shacl(Graph() + ontology, shapes, ontology)
    assert conforms, results


def test_example_patients_give_one_violation_for_dev(validated: Callable[[str], list[Result]]) -> None:
    results = validated("examples")
    assert results  # run_shacl checked that conforms is (not results)
    assert_results(results, [planned("dev", CSF, "the latest CSF circulation assessment (undated) records "
                                                 "impaired CSF circulation")])
    assert "impaired CSF circulation" in results[0].message and "CSF" in results[0].message


# ------------------------------------------------------------------------------------------------
# Planned intrathecal therapy: both prerequisites, with the "latest" rules of contract §3
# ------------------------------------------------------------------------------------------------

NO_CONSENT = "no informed consent covering it is recorded"
NO_CSF = "no CSF circulation assessment is recorded"


def consent_is(date: str, status: str) -> str:
    return f"the latest informed consent covering it ({date}) records consent {status}"


def csf_impaired(date: str) -> str:
    return f"the latest CSF circulation assessment ({date}) records impaired CSF circulation"


PLANNED_CASES: dict[str, list[Expected]] = {
    "pt-consent-missing": [planned("no-consent", CONSENT, NO_CONSENT)],
    "pt-consent-refused": [planned("refused", CONSENT, consent_is("2026-03-01", "refused"))],
    "pt-consent-withdrawn-latest": [planned("withdrawn-latest", CONSENT, consent_is("2026-04-02", "withdrawn"))],
    "pt-consent-granted-after-withdrawal": [],
    "pt-consent-coverage": [
        planned("covers-other", CONSENT, NO_CONSENT),
        planned("planned-parent", CONSENT, NO_CONSENT, ITKG.IntrathecalTherapy, "intrathecal therapy"),
        planned("general-withdrawal", CONSENT, consent_is("2026-03-01", "withdrawn")),
    ],
    "pt-consent-undated": [
        planned("undated-grant-dated-refusal", CONSENT, consent_is("2026-02-01", "refused")),
        planned("only-undated-withdrawal", CONSENT, consent_is("undated", "withdrawn")),
    ],
    "pt-consent-tie": [
        planned("tie-grant-withdrawal", CONSENT, consent_is("2026-02-01", "withdrawn")),
        planned("tie-undated-grant-refusal", CONSENT, consent_is("undated", "refused")),
        # A refusal and a withdrawal tie too: one result, naming the refusal (the first in word order).
        planned("tie-three", CONSENT, consent_is("2026-02-01", "withdrawn")),  # MAX of the words: either failing value wins
    ],
    "pt-consent-no-decision": [
        planned("latest-without-decision", CONSENT, "the latest informed consent covering it (2026-03-01) does "
                                                    "not record a decision"),
        planned("latest-maybe", CONSENT, "the latest informed consent covering it (2026-03-01) does not "
                                         "record a decision"),
        record("consent-without-decision", "ConsentDecisionRequiredShape", ITKG.consentStatus, "does not say"),
        record("consent-maybe", "ConsentDecisionValueShape", ITKG.consentStatus, "a decision other than"),
        record("consent-tied-without-decision", "ConsentDecisionRequiredShape", ITKG.consentStatus, "does not say"),
    ],
    "pt-csf-missing": [planned("no-csf", CSF, NO_CSF)],
    "pt-csf-impaired-latest": [planned("impaired-latest", CSF, csf_impaired("2026-01-12"))],
    "pt-csf-good-after-impaired": [],
    "pt-csf-undated": [
        planned("undated-good-dated-impaired", CSF, csf_impaired("2026-01-12")),
        planned("only-undated-impaired", CSF, csf_impaired("undated")),
    ],
    "pt-csf-tie": [
        planned("tie-good-impaired", CSF, csf_impaired("2026-01-12")),
        planned("tie-undated-good-impaired", CSF, csf_impaired("undated")),
    ],
    "pt-csf-no-finding": [
        planned("latest-without-finding", CSF, "the latest CSF circulation assessment (2026-01-12) does not "
                                               "record a decision"),
        record("csf-without-finding", "CSFFindingRequiredShape", ITKG.finding, "does not say"),
        record("csf-tied-without-finding", "CSFFindingRequiredShape", ITKG.finding, "does not say"),
    ],
    "pt-both-missing": [
        planned("nothing-documented", CONSENT, NO_CONSENT),
        planned("nothing-documented", CSF, NO_CSF),
        Expected(BLANK, CONSENT, ITKG.plannedTherapy, BACLOFEN,
                 f"is planned for intrathecal baclofen therapy but {NO_CONSENT}"),
        Expected(BLANK, CSF, ITKG.plannedTherapy, BACLOFEN,
                 f"is planned for intrathecal baclofen therapy but {NO_CSF}"),
    ],
    "pt-not-planned": [],
    "pt-two-therapies": [planned("two-plans", CONSENT, NO_CONSENT, BACLOFEN, "intrathecal baclofen therapy")],
    # A therapy class without a label is named by its IRI.
    "pt-local-subclass": [planned("pump-trial", CSF, NO_CSF, EX.PumpTrialTherapy, str(EX.PumpTrialTherapy))],
}


@pytest.mark.parametrize("stem", sorted(PLANNED_CASES))
def test_planned_therapy_prerequisites(stem: str, validated: Callable[[str], list[Result]]) -> None:
    assert_results(validated(stem), PLANNED_CASES[stem])


def test_every_planned_therapy_fixture_is_listed() -> None:
    assert {p.stem for p in FIXTURES.glob("pt-*.ttl")} == set(PLANNED_CASES)


def test_patient_without_planned_therapy_is_not_checked(shapes: Graph, ontology: Graph,
                                                       validated: Callable[[str], list[Result]]) -> None:
    """ex:not-planned has a refusal and an impaired finding; only planning therapy brings them into play."""
    assert validated("pt-not-planned") == []  # conforms (run_shacl checks conforms is (not results))
    data = Graph().parse(FIXTURES / "pt-not-planned.ttl")
    data.add((EX["not-planned"], ITKG.plannedTherapy, ANALGESIC))
    _, results = run_shacl(data, shapes, ontology)
    assert_results(results, [planned("not-planned", CONSENT, consent_is("2026-03-01", "refused")),
                             planned("not-planned", CSF, csf_impaired("2026-01-12"))])


def test_prerequisite_messages_are_english_sentences_about_the_patient(
        validated: Callable[[str], list[Result]]) -> None:
    results = [r for stem in PLANNED_CASES for r in validated(stem) if r.shape in PREREQUISITE_OF_SHAPE]
    assert results
    for result in results:
        assert result.message.startswith(f"Patient {result.focus} is planned for ")
        assert "{" not in result.message and "}" not in result.message  # every template variable filled


# ------------------------------------------------------------------------------------------------
# Record shapes: one failing and one passing record for each constraint
# ------------------------------------------------------------------------------------------------

# shape -> (fixture, path, records that must fail it, records that carry the property and pass it)
RECORD_CONSTRAINTS: dict[str, tuple[str, URIRef, set[str], set[str]]] = {
    "ConsentDecisionRequiredShape": ("rec-consent", ITKG.consentStatus, {"consent-no-status"},
                                     {"consent-ok", "consent-undated-ok"}),
    "ConsentDecisionSingleShape": ("rec-consent", ITKG.consentStatus, {"consent-two-statuses"}, {"consent-ok"}),
    "ConsentDecisionValueShape": ("rec-consent", ITKG.consentStatus, {"consent-maybe", "consent-wrong-status"},
                                  {"consent-ok", "consent-undated-ok", "consent-two-therapies-ok"}),
    "ConsentCoversTherapyShape": ("rec-consent", ITKG.coversTherapy, {"consent-no-therapy"},
                                  {"consent-ok", "consent-two-therapies-ok"}),
    "ConsentDateSingleShape": ("rec-consent", ITKG.consentDate, {"consent-two-dates"}, {"consent-ok"}),
    "ConsentDateDatatypeShape": ("rec-consent", ITKG.consentDate, {"consent-ill-typed-date", "consent-string-date"},
                                 {"consent-ok", "consent-two-therapies-ok"}),
    "CSFFindingRequiredShape": ("rec-csf", ITKG.finding, {"csf-no-finding"}, {"csf-ok", "csf-undated-ok"}),
    "CSFFindingSingleShape": ("rec-csf", ITKG.finding, {"csf-two-findings"}, {"csf-ok"}),
    "CSFFindingValueShape": ("rec-csf", ITKG.finding, {"csf-literal-finding", "csf-wrong-finding"},
                             {"csf-ok", "csf-undated-ok"}),
    "CSFAssessmentDateSingleShape": ("rec-csf", ITKG.assessmentDate, {"csf-two-dates"}, {"csf-ok"}),
    "CSFAssessmentDateDatatypeShape": ("rec-csf", ITKG.assessmentDate, {"csf-ill-typed-date", "csf-five-digit-year"},
                                       {"csf-ok", "csf-datetime-date"}),
    "TreatmentOutcomeRequiredShape": ("rec-treatment", ITKG.hasOutcome,
                                      {"treatment-no-outcome", "treatment-untyped-no-outcome"},
                                      {"treatment-ok", "treatment-untyped-ok"}),
    "TreatmentOutcomeSingleShape": ("rec-treatment", ITKG.hasOutcome, {"treatment-two-outcomes"},
                                    {"treatment-ok", "treatment-untyped-ok"}),
}


@pytest.mark.parametrize("shape_name", sorted(RECORD_CONSTRAINTS))
def test_record_constraint(shape_name: str, shapes: Graph, validated: Callable[[str], list[Result]]) -> None:
    stem, path, failing, passing = RECORD_CONSTRAINTS[shape_name]
    shape = SHAPE[shape_name]
    results = [r for r in validated(stem) if r.shape == shape]
    assert {r.focus for r in results} == {EX[n] for n in failing}
    assert len(results) == len(failing)
    assert not {EX[n] for n in passing} & {r.focus for r in results}
    message = str(shapes.value(shape, SH.message))
    for result in results:
        assert result.path == path
        assert result.message == message


@pytest.mark.parametrize("stem", ["rec-consent", "rec-csf", "rec-treatment"])
def test_record_fixture_has_only_the_listed_results(stem: str, validated: Callable[[str], list[Result]]) -> None:
    expected = Counter((SHAPE[name], EX[node]) for name, (s, _, failing, _) in RECORD_CONSTRAINTS.items()
                       if s == stem for node in failing)
    assert Counter((r.shape, r.focus) for r in validated(stem)) == expected
    assert not [r for r in validated(stem) if str(r.focus).endswith("-ok")]


# ------------------------------------------------------------------------------------------------
# The shapes themselves: documented, clinician messages, standard SHACL only
# ------------------------------------------------------------------------------------------------

# SHACL Core and SHACL-SPARQL terms the shapes may use; anything else (SHACL-AF rules, SHACL-JS,
# SPARQL targets, custom functions) is not understood by every engine.
ALLOWED_SH_TERMS = {
    SH.NodeShape, SH.PropertyShape, SH.SPARQLConstraint, SH.targetClass, SH.targetSubjectsOf,
    SH.targetObjectsOf, SH.targetNode, SH.property, SH.path, SH.minCount, SH.maxCount, SH["in"],
    SH.datatype, SH.severity, SH.Violation, SH.message, SH.sparql, SH.select, SH.prefixes,
    SH.declare, SH.prefix, SH.namespace,
    SH["or"], SH.pattern,  # SHACL Core: a date is an xsd:date or an xsd:dateTime with a 4-digit year
}


def english(graph: Graph, node: URIRef, predicate: URIRef) -> list[Literal]:
    return [o for o in graph.objects(node, predicate) if isinstance(o, Literal) and o.language == "en"]


def test_shapes_use_only_shacl_core_and_sparql(shapes: Graph) -> None:
    used = {t for triple in shapes for t in triple if isinstance(t, URIRef) and t.startswith(str(SH))}
    assert used <= ALLOWED_SH_TERMS, used - ALLOWED_SH_TERMS


def test_every_shape_is_documented_and_a_violation(shapes: Graph) -> None:
    nodes = set(shapes.subjects(RDF.type, SH.NodeShape)) | set(shapes.subjects(RDF.type, SH.PropertyShape))
    assert {SHAPE[name] for name in RECORD_CONSTRAINTS} | {CONSENT, CSF} <= nodes
    for node in nodes:
        assert english(shapes, node, RDFS.label) and english(shapes, node, RDFS.comment), node
        assert set(shapes.objects(node, SH.severity)) == {SH.Violation}, node


def test_every_constraint_has_one_english_message(shapes: Graph) -> None:
    """Property shapes hold one Core constraint each; node shapes hold SPARQL constraints or sh:property."""
    constrained = set(shapes.subjects(RDF.type, SH.PropertyShape)) | set(shapes.objects(None, SH.sparql))
    assert constrained
    for node in constrained:
        messages = list(shapes.objects(node, SH.message))
        assert len(messages) == 1 and english(shapes, node, SH.message), node
    for node in shapes.subjects(RDF.type, SH.NodeShape):
        own = {p for p in shapes.predicates(node) if p.startswith(str(SH))}
        assert own <= {SH.targetClass, SH.targetSubjectsOf, SH.targetObjectsOf, SH.severity, SH.property,
                       SH.sparql}, node


def test_sparql_constraints_keep_to_the_shacl_sparql_restrictions(shapes: Graph) -> None:
    """SHACL-SPARQL forbids MINUS, VALUES and SERVICE; subqueries would need $this in their projection."""
    queries = [str(q) for q in shapes.objects(None, SH.select)]
    assert len(queries) == 2
    for query in queries:
        code = re.sub(r"#[^\n]*|\"[^\"]*\"", "", query)
        assert "$this" in code
        assert not re.search(r"\b(MINUS|VALUES|SERVICE)\b", code, re.IGNORECASE)
        assert len(re.findall(r"\bSELECT\b", code, re.IGNORECASE)) == 1


# ------------------------------------------------------------------------------------------------
# Cross-check with the rules corpus: a planned therapy violates exactly when it does not qualify
# ------------------------------------------------------------------------------------------------


class PlannedRules(NamedTuple):
    """rules.ttl with itkg:plannedTherapy added for every expected row, and its pySHACL results."""

    data: Graph
    rows: list[dict]
    results: list[Result]


@pytest.fixture(scope="module")
def planned_rules(shapes: Graph, ontology: Graph) -> PlannedRules | None:
    """None until the rules corpus (written by another part of the project) exists."""
    if not (RULES.is_file() and RULES_EXPECTED.is_file()):
        return None
    rows = json.loads(RULES_EXPECTED.read_text(encoding="utf-8"))["results"]
    data = Graph().parse(RULES)
    for row in rows:
        data.add((URIRef(row["patient"]), ITKG.plannedTherapy, URIRef(row["therapy"])))
    return PlannedRules(data, rows, run_shacl(data, shapes, ontology)[1])


@pytest.mark.slow
def test_planned_rules_patients_violate_exactly_when_not_qualifying(planned_rules: PlannedRules | None) -> None:
    if planned_rules is None:
        pytest.skip("tests/data/rules.ttl and rules-expected.json are not there yet")
    failed: dict[tuple[str, str], set[str]] = {}
    for r in planned_rules.results:
        if r.shape in PREREQUISITE_OF_SHAPE:
            failed.setdefault((str(r.focus), str(r.value)), set()).add(PREREQUISITE_OF_SHAPE[r.shape])
    assert {row["status"] for row in planned_rules.rows} == {"qualifies", "pending", "excluded"}
    for row in planned_rules.rows:
        unmet = failed.get((row["patient"], row["therapy"]), set())
        assert (row["status"] == "qualifies") == (not unmet), row
        assert unmet == set(row["unmet"]), row


# ------------------------------------------------------------------------------------------------
# Second engine: Apache Jena SHACL (Debian package libapache-jena-java) gives the same results
# ------------------------------------------------------------------------------------------------

JENA_SHACL_JAVA = r"""
import org.apache.jena.graph.Graph;
import org.apache.jena.graph.GraphUtil;
import org.apache.jena.graph.Node;
import org.apache.jena.riot.RDFDataMgr;
import org.apache.jena.shacl.ShaclValidator;
import org.apache.jena.shacl.Shapes;
import org.apache.jena.shacl.ValidationReport;
import org.apache.jena.shacl.validation.ReportEntry;
import org.apache.jena.sparql.graph.GraphFactory;

/** Validates each data file merged with the ontology; one tab-separated line per file and per result. */
public class JenaShacl {
    static String term(Node n) {
        if (n == null) return "";
        if (n.isURI()) return n.getURI();
        if (n.isBlank()) return "_";
        return n.getLiteralLexicalForm();
    }

    public static void main(String[] args) {
        Shapes shapes = Shapes.parse(RDFDataMgr.loadGraph(args[0]));
        Graph ontology = RDFDataMgr.loadGraph(args[1]);
        for (int i = 2; i < args.length; i++) {
            Graph data = GraphFactory.createDefaultGraph();
            GraphUtil.addInto(data, ontology);
            RDFDataMgr.read(data, args[i]);
            ValidationReport report = ShaclValidator.get().validate(shapes, data);
            System.out.println("FILE\t" + args[i] + "\t" + report.conforms());
            for (ReportEntry e : report.getEntries()) {
                String path = e.resultPath() == null ? "" : e.resultPath().toString().replaceAll("^<|>$", "");
                System.out.println("RESULT\t" + args[i] + "\t" + term(e.focusNode()) + "\t" + term(e.source())
                    + "\t" + path + "\t" + term(e.value()) + "\t" + e.message().replace('\n', ' '));
            }
        }
    }
}
"""


def jena_classpath(workdir: Path) -> str:
    """The classpath itkg's own Jena back-end uses (:func:`itkg.jena.classpath`)."""
    setup = jena.find()
    if setup is None:
        pytest.fail("Jena jars missing; install the Debian package libapache-jena-java")
    return jena.classpath(setup, workdir)


def comparable(focus: str, shape: str, path: str, value: str, message: str) -> tuple[str, ...]:
    """Engine-neutral form of a result: blank nodes are "_", IRIs in messages lose Jena's angle brackets."""
    message = re.sub(r"<([^<>\s]+)>", r"\1", message)
    message = re.sub(r"^Patient \S+ is planned", "Patient _ is planned", message) if focus == "_" else message
    return focus, shape, path, value, message


def pyshacl_term(node: URIRef | BNode | Literal | None) -> str:
    if node is None:
        return ""
    return "_" if isinstance(node, BNode) else str(node)


@pytest.mark.java
@pytest.mark.slow
def test_jena_shacl_gives_the_same_results(tmp_path: Path, shapes: Graph, ontology: Graph,
                                           validated: Callable[[str], list[Result]],
                                           planned_rules: PlannedRules | None) -> None:
    java = shutil.which("java")
    if java is None:
        pytest.skip("java is not installed")
    files = {str(p): validated(p.stem) for p in sorted(FIXTURES.glob("*.ttl"))}
    files[str(EXAMPLES)] = validated("examples")
    if planned_rules is not None:
        rules_file = tmp_path / "rules-planned.nt"
        planned_rules.data.serialize(rules_file, format="nt", encoding="utf-8")
        files[str(rules_file)] = planned_rules.results
    shapes_file = tmp_path / "shapes.nt"
    shapes.serialize(shapes_file, format="nt", encoding="utf-8")
    (tmp_path / "JenaShacl.java").write_text(JENA_SHACL_JAVA, encoding="utf-8")
    completed = subprocess.run(
        [java, "-cp", jena_classpath(tmp_path), str(tmp_path / "JenaShacl.java"), str(shapes_file),
         str(ontology_path()), *files],
        capture_output=True, text=True, check=False, timeout=300)
    assert completed.returncode == 0, completed.stderr

    jena_conforms: dict[str, bool] = {}
    jena_results: dict[str, Counter] = {file: Counter() for file in files}
    for line in completed.stdout.splitlines():
        kind, file, *rest = line.split("\t")
        if kind == "FILE":
            jena_conforms[file] = rest[0] == "true"
        else:
            jena_results[file][comparable(*rest)] += 1
    assert set(jena_conforms) == set(files)
    for file, results in files.items():
        ours = Counter(comparable(pyshacl_term(r.focus), str(r.shape), pyshacl_term(r.path), pyshacl_term(r.value),
                                  r.message) for r in results)
        assert jena_conforms[file] == (not results), file
        assert jena_results[file] == ours, file
