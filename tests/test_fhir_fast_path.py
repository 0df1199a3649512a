"""The decision path of FHIR input (facts straight into the rule engine's index, in one process or
in several over NDJSON chunks: :mod:`itkg.fhir.index`) against the reference path (the mapped
triples of :func:`itkg.load`, indexed and decided by the same engine): the same index, rows,
evidence, report and sources, on the R4 specification's examples, Synthea bundles and generated
Bulk exports with what crosses chunks."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from support import FHIR_EXAMPLES, SYNTHEA, external_data, load_by_path

import itkg
from itkg.engine import PatientIndex, RuleEngine
from itkg.fhir import hook
from itkg.knowledge import load_knowledge
from itkg.parallel import eligibility_rows
from itkg.streaming import build_index

import _fhir_helpers as F  # noqa: N812

ROOT = Path(__file__).resolve().parents[1]
RX = F.RX


def _bulk() -> Any:
    return load_by_path("itkg_benchmarks_fhir_bulk", ROOT / "benchmarks" / "fhir_bulk.py")


def _reference(paths: list[Path]) -> tuple[list, PatientIndex, list[list[str]], tuple]:
    """Rows (annotated), index, report lines and sources of the reference path."""
    knowledge = load_knowledge()
    with hook.configured() as run:
        data = itkg.load(paths)
        index = PatientIndex.from_triples(data.triples, knowledge.indexed_predicates())
        rows = hook.annotate(sorted(RuleEngine(knowledge, index).eligibility()), run.notes)
    return rows, index, [r.lines() for r in run.reports], data.sources


#: How often a parallel run started again in one process (see the fixture ``one_process``).
FALLBACKS: list[int] = []


@pytest.fixture(autouse=True)
def one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Count the runs in one process (itkg.parallel falls back to build_index)."""
    from itkg import parallel
    original = parallel.build_index

    def counted(*args: Any, **kwargs: Any) -> Any:
        FALLBACKS.append(1)
        return original(*args, **kwargs)
    FALLBACKS.clear()
    monkeypatch.setattr(parallel, "build_index", counted)


def _fast(paths: list[Path], workers: int, min_piece_bytes: int = 1 << 30) -> tuple[list, list[list[str]], tuple]:
    with hook.configured() as run:
        rows, sources = eligibility_rows(paths, workers=workers, min_piece_bytes=min_piece_bytes)
        rows = hook.annotate(sorted(rows), run.notes)
    return rows, [r.lines() for r in run.reports], sources


def _same_index(one: PatientIndex, other: PatientIndex) -> None:
    """Equal indexes, the order of a predicate's values aside."""
    assert one.nodes.keys() == other.nodes.keys()
    for node, props in one.nodes.items():
        assert {p: Counter(v) for p, v in props.items()} == \
            {p: Counter(v) for p, v in other.nodes[node].items()}, node


def _check(paths: list[Path], *, min_piece_bytes: int, parallel: bool = True) -> list:
    """The fast path against the reference; ``parallel``: whether two workers must have shared
    the run (else it must have started again in one process)."""
    reference, index, lines, sources = _reference(paths)
    knowledge = load_knowledge()
    with hook.configured():
        fast_index, fast_sources = build_index(paths, predicates=knowledge.indexed_predicates())
    _same_index(fast_index, index)
    assert [s.triples for s in fast_sources] == [s.triples for s in sources]
    assert [(s.path, s.format) for s in fast_sources] == [(s.path, s.format) for s in sources]
    for workers in (1, 2):
        FALLBACKS.clear()
        rows, fast_lines, fast_sources = _fast(paths, workers, min_piece_bytes)
        assert rows == reference
        assert fast_lines == lines
        assert [s.triples for s in fast_sources] == [s.triples for s in sources]
        assert len(FALLBACKS) == (1 if workers == 1 or not parallel else 0)
    return reference


def _export(tmp_path: Path, patients: int = 400) -> Path:
    return _bulk().generate(patients, tmp_path / "export", seed=5)


def test_a_generated_bulk_export_gives_the_reference_rows_in_one_process_and_several(tmp_path: Path) -> None:
    rows = _check([_export(tmp_path)], min_piece_bytes=4096)
    assert {r.status for r in rows} == {"qualifies", "pending", "excluded"}
    assert any("(MedicationStatement/m" in e for r in rows for e in r.evidence)


def test_what_crosses_chunks_gives_the_reference_rows(tmp_path: Path) -> None:
    export = _export(tmp_path)
    # a Medication after its statement in another file, an intolerance of another file for a
    # treatment of the export, an etiology far from its spasticity, a Bundle, an unmapped code
    extra = F.write_ndjson(tmp_path / "extra.ndjson", [
        {"resourceType": "AllergyIntolerance", "id": "ai", "patient": F.ref("Patient/p3"),
         "type": "intolerance", "category": ["medication"], "code": F.cc(RX, "7052"),
         "reaction": [{"severity": "severe"}]},
        {"resourceType": "Medication", "id": "late", "code": F.cc(RX, "7804")},
        F.condition("late-etiology", F.SCT, "24700007", pid="p1"),
        F.condition("odd", "https://hospital.example/codes", "X-1", pid="p2")])
    early = F.write_ndjson(tmp_path / "early.ndjson", [
        {**F.med_statement("ms-late", None, pid="p7", route="26643006"),
         "medicationReference": F.ref("Medication/late")},
        F.condition("spastic", F.SCT, "221360009", pid="p1", severity=F.cc(F.SCT, "24484000"))])
    doc = F.write_json(tmp_path / "b.json", F.bundle(F.cancer_patient("pb"), kind="collection"))
    _check([early, export, extra, doc], min_piece_bytes=4096)


def test_a_duplicate_across_chunks_or_a_record_without_id_falls_back_to_one_process(tmp_path: Path) -> None:
    lines = [r for n in range(150) for r in F.cancer_patient(f"p{n}")]
    dup = F.write_ndjson(tmp_path / "dup.ndjson", [*lines, F.condition("c-p1", F.ICD, "M96.1", pid="p1")])
    _check([dup], min_piece_bytes=2048, parallel=False)
    unnamed = {k: v for k, v in F.condition("x", F.ICD, "G89.3", pid="p2").items() if k != "id"}
    anonymous = F.write_ndjson(tmp_path / "anon.ndjson", [unnamed, *lines, unnamed])
    _check([anonymous], min_piece_bytes=2048, parallel=False)


def test_an_error_in_a_later_chunk_is_reported_with_its_line_as_one_process_does(tmp_path: Path) -> None:
    lines = [r for n in range(150) for r in F.cancer_patient(f"p{n}")]
    bad = F.write_ndjson(tmp_path / "bad.ndjson", lines)
    bad.write_text(bad.read_text(encoding="utf-8") + "{oops\n", encoding="utf-8")
    for workers in (1, 2):
        with pytest.raises(itkg.InputError) as caught:
            eligibility_rows([bad], workers=workers, min_piece_bytes=2048)
        assert (caught.value.source, caught.value.line) == (str(bad), len(lines) + 1)


def test_the_checksum_of_a_fhir_input_is_that_of_its_files_as_load_gives_it(tmp_path: Path) -> None:
    export = _export(tmp_path, 30)
    _, sources = eligibility_rows([export], workers=1, checksums=True)
    assert [(s.format, s.sha256) for s in sources] == [(s.format, s.sha256) for s in itkg.load([export]).sources]


@pytest.mark.slow
def test_the_specification_examples_and_synthea_give_the_reference_index_and_rows() -> None:
    examples = external_data(FHIR_EXAMPLES)
    synthea = external_data(SYNTHEA)
    files = sorted(p for p in examples.glob("*.json") if p.name != "package.json"
                   and p.name.split("-")[0].lower() in {"condition", "medicationstatement", "medicationrequest",
                                                "medicationadministration", "procedure", "consent",
                                                "observation", "servicerequest", "allergyintolerance",
                                                "patient", "medication", "bundle"})
    assert len(files) > 100
    _check([*files, *sorted(synthea.glob("*.json"))], min_piece_bytes=4096)


def test_reading_fhir_into_the_index_leaves_no_cycle_for_the_garbage_collector() -> None:
    # Regression: the FHIR reading and the index builder held each other (builder.fhir, the
    # sinks' builder), and the reader its contexts that held it: everything read stayed alive
    # until a full collection walked it all (about half a second at 100,000 patients).
    import gc
    example = ROOT / "examples" / "fhir-bulk"
    with hook.configured():
        build_index([example])  # what is loaded once (ontology, mappings) is loaded now
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        with hook.configured():
            index, sources = build_index([example])
        assert index.patients()
        del index, sources
        assert gc.collect() == 0
    finally:
        if enabled:
            gc.enable()


@pytest.mark.parametrize("case", ["usual", "patient type", "schema type", "ill-typed date", "itkg record",
                                  "itkg patient", "no types", "repeated node"])
def test_a_record_indexed_at_once_is_indexed_and_counted_as_its_facts(case: str) -> None:
    # itkg.fhir.index._Sink.record asks the checker once per predicate and value, and indexes a
    # usual record without its facts; else it says no and the facts go the general way.
    from itkg import vocab
    from itkg.fhir.index import _Sink
    from itkg.fhir.reader import DCTERMS_IDENTIFIER, XSD_STRING
    from itkg.reader import PieceReport
    from itkg.streaming import IndexBuilder
    base = "https://fhir.invalid/"
    patient, iri = base + "Patient/p1", base + "Consent/k1"
    types: tuple[str, ...] = (vocab.ITKG + "InformedConsent", "http://snomed.info/id/1")
    values: list[tuple[str, Any]] = [(vocab.CONSENT_STATUS, vocab.CONSENT_GRANTED),
                                     (vocab.CONSENT_DATE, ("2026-03-01", vocab.XSD_DATE))]
    if case == "patient type":
        types = (*types, vocab.PATIENT)
    elif case == "schema type":
        types = (*types, "http://www.w3.org/2002/07/owl#Class")
    elif case == "ill-typed date":
        values.append((vocab.ASSESSMENT_DATE, ("2026-02-30", vocab.XSD_DATE)))
    elif case == "itkg record":
        iri = vocab.ITKG + "Consent/k1"
    elif case == "itkg patient":
        patient = vocab.ITKG + "Patient/p1"
    elif case == "no types":
        types = ()
    facts = [(patient, vocab.HAS_CONSENT, iri), *((iri, vocab.RDF_TYPE, t) for t in types),
             *((iri, p, v) for p, v in values), (iri, DCTERMS_IDENTIFIER, ("Consent/k1", XSD_STRING))]
    predicates = load_knowledge().indexed_predicates()
    at_once, general = IndexBuilder(predicates=predicates), IndexBuilder(predicates=predicates)
    reports = PieceReport(0), PieceReport(0)
    sink = _Sink(at_once)
    sink.report = reports[0]
    for _ in range(2 if case == "repeated node" else 1):
        general.add_facts(facts, reports[1])
        if not sink.record(patient, vocab.HAS_CONSENT, iri, types, values):
            sink.extend(facts)
        sink.flush()
    assert at_once.index.nodes == general.index.nodes
    assert list(at_once.index.nodes) == list(general.index.nodes)
    assert reports[0] == reports[1]
    # asked once: a statement the checker would not keep as it is sends every such record the general way
    assert sink.record(base + "Patient/p2", vocab.HAS_CONSENT, base + "Consent/k2", types, values) \
        == (case not in ("schema type", "ill-typed date"))


def test_the_fhir_sink_does_not_keep_an_index_the_run_lets_go() -> None:
    # Regression: the sink kept the index's nodes, so a parallel run's "the indexes go before the
    # rows travel" (itkg.parallel) freed nothing of an index read from FHIR.
    import gc
    from itkg import vocab
    from itkg.engine import PatientIndex as Index
    from itkg.fhir.index import _Sink
    from itkg.reader import PieceReport
    from itkg.streaming import IndexBuilder
    predicates = load_knowledge().indexed_predicates()
    builder = IndexBuilder(predicates=predicates)
    sink = _Sink(builder)
    sink.report = PieceReport(0)
    assert sink.record("https://fhir.invalid/Patient/p1", vocab.HAS_CONDITION, "https://fhir.invalid/Condition/c1",
                       (vocab.ITKG + "CancerPain",), [])
    old = builder.index.nodes
    builder.index = Index(predicates)
    assert not any(referrer is sink for referrer in gc.get_referrers(old))
    assert sink.record("https://fhir.invalid/Patient/p2", vocab.HAS_CONDITION, "https://fhir.invalid/Condition/c2",
                       (vocab.ITKG + "CancerPain",), [])
    assert "https://fhir.invalid/Patient/p2" in builder.index.nodes and "https://fhir.invalid/Patient/p2" not in old


def test_the_first_part_of_every_file_takes_its_share(tmp_path: Path) -> None:
    """The main process's part (part 0 of every NDJSON file) is ``first_share`` of each other
    part's size, cut at a line start; its lines and the rest's are the file's lines."""
    from itkg.fhir.index import plan
    export = _export(tmp_path, 300)
    with hook.configured():
        for share in (1.0, 0.5):
            chunks = plan([export], parts=3, min_piece_bytes=1024, max_bytes=1 << 30, first_share=share)[0]
            for file in sorted(export.glob("*.ndjson")):
                mine = [c for c in chunks if c.file == file]
                size = file.stat().st_size
                assert [c.part for c in mine] == [0, 1, 2] and mine[0].start == 0 and mine[-1].end == size
                assert all(a.end == b.start for a, b in zip(mine, mine[1:]))
                data = file.read_bytes()
                assert all(data[c.start - 1:c.start] == b"\n" for c in mine[1:])
                longest = max(len(line) + 1 for line in data.splitlines())
                wanted = size * share / (2 + share)
                assert abs(mine[0].end - wanted) <= longest, (file.name, share)
