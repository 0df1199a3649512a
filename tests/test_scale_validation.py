"""Partitioned validation (itkg.partition, itkg.validation) gives whole-graph pySHACL's verdict.

Every case validates the same data twice: once the way contract §4 says (one ``pyshacl.validate``
over the whole graph, the ontology as ``ont_graph``, no inference) and once with
:func:`itkg.validation.validate`, in one and in two workers, with batches small enough to cut the
data into many pieces, with each back-end: pySHACL, Apache Jena SHACL (:mod:`itkg.jena`),
pyshacl-turbo (:mod:`itkg.turbo`) and itkg's own engine (:mod:`itkg.native_shacl`). The results
(focus, path, message, shape, value, severity; a multiset) and ``conforms`` must be identical. No timings are asserted: speed
is for the benchmark.
"""

from __future__ import annotations

import functools
import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyoxigraph as ox
import pyshacl
import pytest
from support import benchmark_generator
import rdflib
from rdflib.namespace import RDF, SH

from itkg.knowledge import ontology_graph
from itkg.loading import PatientData, load
from itkg.partition import fixed_hubs, partition, target_object_predicates
from itkg.validation import _prepared, _QueryCachingGraph, _result, shapes_graph, validate

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
ITKG = "https://w3id.org/itkg/"
EX = "https://example.org/scale/"
XSD_DATE = ox.NamedNode("http://www.w3.org/2001/XMLSchema#date")
RDFS_SUBCLASS = ox.NamedNode("http://www.w3.org/2000/01/rdf-schema#subClassOf")
RDFS_LABEL = ox.NamedNode("http://www.w3.org/2000/01/rdf-schema#label")
TYPE = ox.NamedNode(str(RDF.type))


def itkg(name: str) -> ox.NamedNode:
    return ox.NamedNode(ITKG + name)


def ex(name: str) -> ox.NamedNode:
    return ox.NamedNode(EX + name)


Verdict = tuple[bool, Counter]


def verdict_of(report_graph: rdflib.Graph, conforms: bool) -> Verdict:
    results = Counter()
    for node in report_graph.subjects(RDF.type, SH.ValidationResult):
        r = _result(report_graph, node)
        results[(r.focus, r.path, r.message, r.shape, r.value, r.severity)] += 1
    return conforms, results


def whole_graph(data: PatientData, graph_class: type[rdflib.Graph] = rdflib.Graph) -> Verdict:
    """Contract §4 verbatim: one pySHACL run over the whole data graph."""
    graph = graph_class()
    for triple in data.graph():
        graph.add(triple)
    # A query-caching graph is validated in place: otherwise pySHACL (0.40) copies it into a plain
    # rdflib.Graph before mixing the ontology in, and the cache is never used.
    conforms, report, _ = pyshacl.validate(graph, shacl_graph=shapes_graph(), ont_graph=ontology_graph(),
                                           inference="none", do_owl_imports=False, allow_warnings=True,
                                           inplace=graph_class is _QueryCachingGraph)
    return verdict_of(report, conforms)


def partitioned(data: PatientData, workers: int, batch_triples: int, engine: str = "pyshacl") -> Verdict:
    report = validate(data, workers=workers, batch_triples=batch_triples, engine=engine)
    results = Counter((r.focus, r.path, r.message, r.shape, r.value, r.severity) for r in report.results)
    # The merged report graph is one SHACL report that says the same.
    graph = report.graph
    assert len(list(graph.subjects(RDF.type, SH.ValidationReport))) == 1
    assert [c.toPython() for c in graph.objects(None, SH.conforms)] == [report.conforms]
    assert len(list(graph.objects(None, SH.result))) == len(report.results)
    assert verdict_of(graph, report.conforms) == (report.conforms, results)
    return report.conforms, results


def assert_same_verdict(data: PatientData, reference: Verdict, batch_triples: int, engine: str) -> None:
    assert reference[1], "a case without results would not test much"
    for workers in (1, 2):
        assert partitioned(data, workers, batch_triples, engine) == reference, f"workers={workers}"


def needs(engine: str, request: pytest.FixtureRequest) -> str:
    """The engine, once the Jena and turbo cases have checked that it is usable (see conftest.py)."""
    if engine in ("jena", "turbo"):
        request.getfixturevalue(f"{engine}_required")
    return engine


#: Every engine itkg offers (names.SHACL_BACKENDS but "auto"): each must give whole-graph pySHACL's results.
ENGINES = ["pyshacl", pytest.param("jena", marks=pytest.mark.java), "turbo", "native"]


# ------------------------------------------------------------------------------------------------
# Small corpora, in batches of a few triples
# ------------------------------------------------------------------------------------------------


def with_planned_therapy(path: Path) -> PatientData:
    """rules.ttl, with every fourth patient planned for one of the intrathecal therapies."""
    data = load(path, strict_literals=False)
    patients = sorted({t.subject for t in data.triples
                       if t.predicate == TYPE and t.object == itkg("Patient")}, key=str)
    therapies = [itkg("IntrathecalAnalgesicTherapy"), itkg("IntrathecalBaclofenTherapy"),
                 itkg("IntrathecalTherapy")]
    extra = [ox.Triple(p, itkg("plannedTherapy"), therapies[i % 3]) for i, p in enumerate(patients[::4])]
    return PatientData(triples=data.triples + extra)


CORPORA = {
    "examples": lambda: load(ROOT / "examples" / "patients.ttl", strict_literals=False),
    "rules-planned": lambda: with_planned_therapy(TESTS / "data" / "rules.ttl"),
    "shape-fixtures": lambda: load(sorted((TESTS / "data" / "shapes").glob("*.ttl")), strict_literals=False),
}


@functools.lru_cache(maxsize=None)
def corpus_and_reference(name: str) -> tuple[PatientData, Verdict]:
    """A corpus and its whole-graph pySHACL verdict, computed once for the four engines' cases.

    The verdict is pySHACL's over the whole graph in the query-caching graph (validated in place),
    not in a plain ``rdflib.Graph``: a plain run parses each SPARQL constraint again for every focus
    node (95% of its time; 10 s of CPU on the shape fixtures against 0.6 s). That the two graphs
    give the same verdict is :func:`test_query_caching_graph_matches_plain_pyshacl`'s check; here a
    wrong cached verdict would also disagree with Jena, turbo and the native engine, which share no
    code with it."""
    data = CORPORA[name]()
    return data, whole_graph(data, _QueryCachingGraph)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.xdist_group(f"scale-validation-{name}"))
                                  for name in sorted(CORPORA)])  # one worker per corpus: one reference
@pytest.mark.slow
def test_small_corpora_match_whole_graph_pyshacl(name: str, engine: str, request: pytest.FixtureRequest) -> None:
    if name == "shape-fixtures" and not (TESTS / "data" / "shapes").is_dir():
        pytest.skip("no shape fixtures")
    data, reference = corpus_and_reference(name)
    assert_same_verdict(data, reference, batch_triples=40, engine=needs(engine, request))


# ------------------------------------------------------------------------------------------------
# A generated population, broken on purpose, including the cases that cross patient boundaries
# ------------------------------------------------------------------------------------------------


def generated(n: int, seed: int) -> list[ox.Triple]:
    text = "".join(benchmark_generator().generate(n, seed=seed, fmt="nt")).encode()
    return [q.triple for q in ox.parse(text, format=ox.RdfFormat.N_TRIPLES)]


def patient(i: int) -> ox.NamedNode:
    return ox.NamedNode(f"https://example.org/synthetic/p{i:07d}")


#: The mutated population's size and the batch size that cuts it into about a dozen pieces (with
#: about 17 triples a patient): what the cases below need is many batches and patients far apart
#: in them, not a large graph (whole-graph pySHACL on it is most of this module's time).
POPULATION, POPULATION_BATCH = 150, 250


def mutated_population(n: int = POPULATION, seed: int = 11) -> PatientData:
    """Generated patients with broken records, plus every kind of node that joins or escapes patients."""
    rng = random.Random(seed)
    triples: list[ox.Triple] = []
    for t in generated(n, seed):
        p = t.predicate.value.removeprefix(ITKG)
        roll = rng.random()
        if p == "hasOutcome" and roll < 0.05:
            continue  # a treatment without outcome
        if p in ("consentDate", "assessmentDate") and roll < 0.05:
            bad = ox.Literal(rng.choice(["2026-13-45", "soon"]), datatype=XSD_DATE)
            t = ox.Triple(t.subject, t.predicate, bad)  # an ill-typed date
        triples.append(t)
        if p == "consentStatus" and roll < 0.04:
            triples.append(ox.Triple(t.subject, t.predicate, itkg("ConsentRefused")))  # a second decision
        if p == "finding" and roll < 0.03:
            triples.append(ox.Triple(t.subject, itkg("assessmentDate"),
                                     ox.Literal("2025-06-01", datatype=XSD_DATE)))  # maybe a second date
    for i in range(0, n, 7):  # more planned therapies than the generator makes
        therapy = rng.choice(["IntrathecalAnalgesicTherapy", "IntrathecalBaclofenTherapy"])
        triples.append(ox.Triple(patient(i), itkg("plannedTherapy"), itkg(therapy)))
    far = n - 5

    def consent(node: ox.NamedNode, status: str, date: str) -> list[ox.Triple]:
        return [ox.Triple(node, TYPE, itkg("InformedConsent")),
                ox.Triple(node, itkg("consentStatus"), itkg(status)),
                ox.Triple(node, itkg("coversTherapy"), itkg("IntrathecalTherapy")),
                ox.Triple(node, itkg("consentDate"), ox.Literal(date, datatype=XSD_DATE))]

    triples += [
        # orphan consent records, one broken, one fine, one blank
        *consent(ex("orphan-ok"), "ConsentGranted", "2026-01-01"),
        ox.Triple(ex("orphan-broken"), TYPE, itkg("InformedConsent")),
        ox.Triple(ox.BlankNode("orphan"), TYPE, itkg("CSFCirculationAssessment")),
        # one consent record (refused, latest) shared by two patients far apart, both planned
        *consent(ex("shared-consent"), "ConsentRefused", "2027-01-01"),
        ox.Triple(patient(1), itkg("hasConsent"), ex("shared-consent")),
        ox.Triple(patient(far), itkg("hasConsent"), ex("shared-consent")),
        ox.Triple(patient(1), itkg("plannedTherapy"), itkg("IntrathecalAnalgesicTherapy")),
        ox.Triple(patient(far), itkg("plannedTherapy"), itkg("IntrathecalAnalgesicTherapy")),
        # one treatment without outcome received by two patients
        ox.Triple(ex("shared-treatment"), TYPE, itkg("OralOpioidTherapy")),
        ox.Triple(patient(2), itkg("receivedTreatment"), ex("shared-treatment")),
        ox.Triple(patient(far + 1), itkg("receivedTreatment"), ex("shared-treatment")),
        # focus nodes that are not records: an ontology term, an undescribed IRI, a literal, each twice
        ox.Triple(patient(3), itkg("receivedTreatment"), itkg("AdequateResponse")),
        ox.Triple(patient(far + 2), itkg("receivedTreatment"), itkg("AdequateResponse")),
        ox.Triple(patient(4), itkg("receivedTreatment"), ex("never-described")),
        ox.Triple(patient(far + 3), itkg("receivedTreatment"), ex("never-described")),
        ox.Triple(patient(5), itkg("receivedTreatment"), ox.Literal("physiotherapy")),
        ox.Triple(patient(far + 4), itkg("receivedTreatment"), ox.Literal("physiotherapy")),
        # data about an ontology term makes it a focus node
        ox.Triple(itkg("ConsentGranted"), TYPE, itkg("InformedConsent")),
        # local classes, declared in the data: a kind of consent record and a planned therapy
        ox.Triple(ex("LocalConsent"), RDFS_SUBCLASS, itkg("InformedConsent")),
        ox.Triple(ex("local-consent-1"), TYPE, ex("LocalConsent")),
        ox.Triple(patient(6), itkg("hasConsent"), ex("local-consent-1")),
        ox.Triple(ex("LocalPump"), RDFS_SUBCLASS, itkg("IntrathecalAnalgesicTherapy")),
        ox.Triple(ex("LocalPump"), RDFS_LABEL, ox.Literal("local pump therapy", language="en")),
        ox.Triple(patient(7), itkg("plannedTherapy"), ex("LocalPump")),
        ox.Triple(patient(far), itkg("plannedTherapy"), ex("LocalPump")),
        # hubs pointing into patients' pieces, which every batch must then see whole: a class that
        # is (oddly) planned for therapy itself, with the refused consent of a far patient
        ox.Triple(ex("LocalPump"), ex("example"), patient(8)),
        ox.Triple(patient(8), itkg("plannedTherapy"), itkg("IntrathecalBaclofenTherapy")),
        ox.Triple(ex("LocalPump"), itkg("plannedTherapy"), itkg("IntrathecalAnalgesicTherapy")),
        ox.Triple(ex("LocalPump"), itkg("hasConsent"), ex("hub-consent")),
        ox.Triple(patient(far - 2), itkg("hasConsent"), ex("hub-consent")),
        *consent(ex("hub-consent"), "ConsentRefused", "2027-02-02"),
        # a record pointing to another patient (joins the two pieces)
        ox.Triple(ex("local-consent-1"), ex("seeAlso"), patient(far - 1)),
    ]
    return PatientData(triples=triples)


@pytest.fixture(scope="module")
def population() -> PatientData:
    return mutated_population()


@pytest.fixture(scope="module")
def population_reference(population: PatientData) -> Verdict:
    # pySHACL parses each SPARQL constraint again for every focus node, which makes plain runs over
    # a few thousand patients take minutes; the query-caching graph is checked against plain below.
    return whole_graph(population, _QueryCachingGraph)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.slow
def test_mutated_population_matches_whole_graph_pyshacl(population: PatientData,
                                                        population_reference: Verdict, engine: str,
                                                        request: pytest.FixtureRequest) -> None:
    conforms, results = population_reference
    kinds = {shape.rsplit("/", 1)[-1] for (_, _, _, shape, _, _) in results}
    assert {"PlannedTherapyInformedConsentShape", "PlannedTherapyCSFCirculationShape", "TreatmentOutcomeRequiredShape",
            "ConsentDecisionSingleShape", "ConsentDateDatatypeShape"} <= kinds
    foci = {focus for (focus, *_) in results}
    assert {EX + "shared-treatment", ITKG + "AdequateResponse", EX + "never-described", "physiotherapy",
            ITKG + "ConsentGranted", EX + "orphan-broken", EX + "LocalPump"} <= foci
    assert_same_verdict(population, population_reference, batch_triples=POPULATION_BATCH,
                        engine=needs(engine, request))


@pytest.mark.slow
def test_query_caching_graph_matches_plain_pyshacl() -> None:
    data = mutated_population(n=50, seed=5)
    before = _prepared.cache_info()
    cached = whole_graph(data, _QueryCachingGraph)
    after = _prepared.cache_info()
    # the graph pySHACL queried was the query-caching one (until session six it was a plain copy,
    # and this compared plain pySHACL with itself): each planned therapy's two queries are cache
    # hits, but the first of each text
    assert after.hits - before.hits >= 20
    assert cached == whole_graph(data)
    # the anchor of the small corpora's references too (they are computed in the query-caching
    # graph): the contract's examples, plain and cached (the other two corpora cost 16 s plain)
    examples = CORPORA["examples"]()
    assert whole_graph(examples, _QueryCachingGraph) == whole_graph(examples)


def test_every_triple_is_kept_and_shared_nodes_stay_together(population: PatientData) -> None:
    shapes = shapes_graph()
    plan = partition(population.triples, fixed_hubs(ontology_graph(), shapes),
                     target_object_predicates(shapes), batch_triples=POPULATION_BATCH * 3 // 5)
    assert len(plan) > 15
    # Each triple is in one batch or shared, except that a triple making a hub or a literal a focus
    # node is also shared.
    placed = Counter(t for batch in plan.batches for t in batch) + Counter(plan.shared)
    focus_objects = ("physiotherapy", ITKG + "AdequateResponse", EX + "never-described")
    for triple, count in Counter(population.triples).items():
        also_shared = triple.subject in plan.replicated and triple.object.value in focus_objects
        assert placed[triple] == count + also_shared, triple
    batch_of = {t.subject: i for i, batch in enumerate(plan.batches) for t in batch}
    far = POPULATION - 5
    assert batch_of[patient(1)] == batch_of[patient(far)] == batch_of[ex("shared-consent")]
    assert batch_of[patient(2)] == batch_of[patient(far + 1)] == batch_of[ex("shared-treatment")]
    assert batch_of[patient(6)] == batch_of[patient(far - 1)]
    shared_subjects = {t.subject for t in plan.shared}
    assert {ex("LocalPump"), patient(8), ex("hub-consent"), patient(far - 2),
            itkg("ConsentGranted")} <= shared_subjects
    assert patient(8) not in batch_of and patient(3) in plan.replicated
    assert patient(9) not in shared_subjects


# ------------------------------------------------------------------------------------------------
# The command line
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["pyshacl", "turbo", "native"])
@pytest.mark.slow
def test_cli_workers_give_the_same_json(tmp_path: Path, engine: str, request: pytest.FixtureRequest) -> None:
    """Two pySHACL or native worker processes (spawned from the command's deadline child) or two
    turbo threads."""
    path = tmp_path / "population.nt"
    path.write_bytes(ox.serialize(mutated_population(n=200, seed=3).triples, format=ox.RdfFormat.N_TRIPLES))
    runs = [subprocess.run([sys.executable, "-m", "itkg.cli", "validate", str(path), "--format", "json",
                            "--workers", workers, "--quiet", "--engine", needs(engine, request)],
                           capture_output=True, text=True, timeout=600)
            for workers in ("1", "2")]
    assert [r.returncode for r in runs] == [1, 1], runs[0].stderr
    # the population's own subclass axioms are patient data: set aside and counted (contract 1.1 §6)
    assert runs[0].stderr == runs[1].stderr
    assert all(line.startswith("itkg: note: ") for line in runs[0].stderr.splitlines())

    def results(run: subprocess.CompletedProcess) -> Counter:
        """The results, blank node ids aside (each load names blank nodes afresh)."""
        return Counter(tuple((k, "_:" if str(v).startswith("_:") else v) for k, v in sorted(r.items()))
                       for r in json.loads(run.stdout)["results"])

    assert results(runs[0]) == results(runs[1]) and results(runs[0])


# ------------------------------------------------------------------------------------------------
# Populations read into a spool (itkg.validation.read), never held as Python triples
# ------------------------------------------------------------------------------------------------


def without_blank_labels(verdict: Verdict) -> Verdict:
    """The verdict with blank-node labels reduced to ``_:`` (each load names blank nodes afresh)."""
    def plain(value: object) -> object:
        return "_:" if isinstance(value, str) and value.startswith("_:") else value
    return verdict[0], Counter({tuple(plain(v) for v in key): n for key, n in verdict[1].items()})


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.slow
def test_a_spooled_population_gives_the_loaded_populations_results(tmp_path: Path, population: PatientData,
                                                                     engine: str,
                                                                     request: pytest.FixtureRequest) -> None:
    """Read into a spool or loaded as Python triples (which the tests above hold to whole-graph
    pySHACL), the same file gives the same report, in one and two workers."""
    from itkg.validation import read
    path = tmp_path / "population.nt"
    path.write_bytes(ox.serialize(population.triples, format=ox.RdfFormat.N_TRIPLES))
    loaded = load(path, strict_literals=False)
    expected = without_blank_labels(partitioned(loaded, 1, POPULATION_BATCH, needs(engine, request)))
    spool, sources = read([path])
    try:
        assert len(spool) == len(loaded.triples) == sources[0].triples - sources[0].schema_set_aside
        for workers in (1, 2):
            assert without_blank_labels(partitioned(spool, workers, POPULATION_BATCH, engine)) == expected  # type: ignore[arg-type]
    finally:
        spool.close()


def test_the_spool_gives_back_each_triple_as_written(tmp_path: Path) -> None:
    from itkg.partition import Spool
    s, p = ex("s"), ex("p")
    triples = [ox.Triple(s, p, ox.Literal(text)) for text in ("a\nb", "ü \"q\" \\", "x")]
    triples += [ox.Triple(ox.BlankNode("b1"), p, ox.Literal("t", language="de")), ox.Triple(s, TYPE, ox.BlankNode("b1"))]
    spool = Spool()
    try:
        spool.extend(ox.Quad(t.subject, t.predicate, t.object) for t in triples[:2])
        spool.extend(ox.Quad(t.subject, t.predicate, t.object) for t in triples[2:])
        spool.finish()
        assert spool.triples(range(len(triples))) == triples
        for subset in ([0], [1, 2], [0, 2, 4], [3, 4], []):
            assert spool.triples(subset) == [triples[i] for i in subset]
        # nodes are numbered as they come (predicates are not): s is 0, _:b1 is 1
        assert list(spool.subjects) == [0, 0, 0, 1, 0] and list(spool.objects)[3:] == [-1, 1]
        assert spool.classes == {1}  # the object of rdf:type
    finally:
        spool.close()
