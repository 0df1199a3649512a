"""The population path of ``itkg eligibility`` (itkg.streaming, itkg.parallel) against the plain
rule engine: the same rows, the same errors, whatever the number of processes and wherever the
input is cut.

The reference is :class:`RuleEngine` over a :class:`PatientIndex` of all the triples of a file,
parsed by pyoxigraph with the file's blank node labels kept, so rows can be compared exactly,
evidence and prerequisite records included. Turtle's anonymous nodes (``[]``) get random names in
every parse; rows over them are compared with the names taken out (and evidence sorted, since it
is ordered by name), and exactly after converting the file to N-Triples or labelled Turtle.
Inputs are cut into pieces far smaller than in real use (``min_piece_bytes``) so that small
files exercise the cuts. No test measures time: benchmarks/ does.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyoxigraph as ox
import pytest
from support import benchmark_generator, invoke as _itkg

import itkg
from itkg.engine import PatientIndex, RuleEngine
from itkg.knowledge import load_knowledge
from itkg.parallel import eligibility_rows
from itkg.streaming import build_index, plan

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "tests" / "data" / "rules.ttl"
EXAMPLES = ROOT / "examples" / "patients.ttl"
ITKG = "https://w3id.org/itkg/"
RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
XSD_DATE = "http://www.w3.org/2001/XMLSchema#date"
FORMATS = {".nt": ox.RdfFormat.N_TRIPLES, ".ttl": ox.RdfFormat.TURTLE}
TINY = 512  # bytes per piece at least: cuts even small test files


def plain_rows(path: Path) -> list[itkg.EligibilityResult]:
    """The plain rule engine over every triple of ``path``, blank node labels as in the file."""
    triples = [q.triple for q in ox.parse(path=path, format=FORMATS[path.suffix],
                                          base_iri=path.resolve().as_uri())]
    return RuleEngine(load_knowledge(), PatientIndex.from_triples(triples)).eligibility()


def full(rows) -> list[tuple]:
    """Everything a row carries, in order."""
    return [(r.patient, r.therapy, r.indication, r.status, r.unmet, r.evidence, r.prerequisites)
            for r in rows]


def _unnamed(text: str) -> str:
    return re.sub(r"_:[A-Za-z0-9_-]+", "_:", text)


def anonymous(rows) -> list[tuple]:
    """The rows with blank node names taken out (for files with anonymous nodes), as a multiset."""
    return sorted((_unnamed(r.patient), r.therapy, r.indication, r.status, r.unmet,
                   tuple(sorted(map(_unnamed, r.evidence))),
                   tuple((c.code, c.state, _unnamed(c.reason), len(c.records)) for c in r.prerequisites))
                  for r in rows)


def to_ntriples(source: Path, target: Path) -> Path:
    """``source`` as N-Triples; made-up blank node names become labels of the new file."""
    quads = ox.parse(path=source, format=FORMATS[source.suffix], base_iri=source.resolve().as_uri())
    target.write_bytes(ox.serialize([q.triple for q in quads], format=ox.RdfFormat.N_TRIPLES))
    return target


def to_labelled_turtle(source: Path, target: Path) -> Path:
    """``source`` as Turtle whose every blank node has a label."""
    quads = ox.parse(path=source, format=FORMATS[source.suffix], base_iri=source.resolve().as_uri())
    target.write_bytes(ox.serialize([q.triple for q in quads], format=ox.RdfFormat.TURTLE,
                                    prefixes={"itkg": ITKG, "xsd": XSD_DATE[:-4]}))
    assert b"[" not in target.read_bytes()
    return target


@pytest.fixture(scope="module")
def population(tmp_path_factory) -> dict[str, Path]:
    """A generated population of 3000 patients in both formats (about 2 MB of N-Triples)."""
    folder = tmp_path_factory.mktemp("population")
    generator = benchmark_generator()
    files = {}
    for fmt in ("nt", "ttl"):
        files[fmt] = folder / f"population.{fmt}"
        files[fmt].write_text("".join(generator.generate(3000, seed=11, fmt=fmt)), encoding="utf-8")
    return files


# -- same rows -------------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("name", ["rules", "examples"])
def test_corpus_gives_the_plain_engines_rows(name, workers, tmp_path):
    source = {"rules": RULES, "examples": EXAMPLES}[name]
    nt = to_ntriples(source, tmp_path / f"{name}.nt")
    labelled = to_labelled_turtle(source, tmp_path / f"{name}-labelled.ttl")
    for path in (nt, labelled):
        assert len(plan([path], parts=workers, min_piece_bytes=TINY)) == workers
        rows, _ = eligibility_rows([path], workers=workers, min_piece_bytes=TINY)
        assert full(rows) == full(plain_rows(path))
    rows, _ = eligibility_rows([source], workers=workers, min_piece_bytes=TINY)
    assert anonymous(rows) == anonymous(plain_rows(source)) == anonymous(itkg.eligibility(source))
    assert rows == sorted(rows)


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.slow
def test_generated_population_gives_the_plain_engines_rows(population, workers):
    nt, ttl = population["nt"], population["ttl"]
    minimum = nt.stat().st_size // 8
    assert len(plan([nt], parts=workers, min_piece_bytes=minimum)) == workers
    assert len(plan([ttl], parts=workers, min_piece_bytes=ttl.stat().st_size // 8)) == workers
    rows, sources = eligibility_rows([nt], workers=workers, min_piece_bytes=minimum)
    assert full(rows) == full(plain_rows(nt))
    assert {r.status for r in rows} == {"qualifies", "pending", "excluded"}
    assert sources[0].triples == sum(1 for _ in ox.parse(path=nt, format=ox.RdfFormat.N_TRIPLES))
    # Turtle: the same population; its records are anonymous. A child process that made up the
    # same names as its parent (a forked random generator) would merge records and fail this.
    ttl_rows, _ = eligibility_rows([ttl], workers=workers, min_piece_bytes=ttl.stat().st_size // 8)
    assert anonymous(ttl_rows) == anonymous(plain_rows(ttl)) == anonymous(rows)


def test_fast_rows_are_the_rows_of_the_full_explanation(population):
    """RuleEngine.rows decides criteria with meets() and explains only met ones; it must give
    exactly the rows explain_indication gives."""
    index, _ = build_index([population["nt"]])
    engine = RuleEngine(load_knowledge(), index)
    for patient in index.patients():
        explained = [i.result for i in engine.explain(patient).indications if i.result is not None]
        assert full(engine.rows(patient)) == full(explained)


def test_a_patient_is_decided_from_its_records_alone(population):
    """The parallel path decides a patient from an index holding only the patient and the nodes
    PatientIndex.records names; that must be all the rules read."""
    index, _ = build_index([population["nt"]])
    knowledge = load_knowledge()
    whole = RuleEngine(knowledge, index)
    for patient in index.patients()[:600]:
        part = PatientIndex()
        part.merge(index.fragment([patient, *index.records(patient)]))
        assert full(RuleEngine(knowledge, part).rows(patient)) == full(whole.rows(patient))


BLANK_PATIENT = [  # (triple, where: "top" / "middle" / "bottom" of the file)
    ("_:pat <{i}hasCondition> _:cond .", "top"),
    ("_:pat <{t}> <{i}Patient> .", "bottom"),
    ("_:cond <{t}> <{i}CancerPain> .", "bottom"),
    ("_:pat <{i}receivedTreatment> _:treat .", "middle"),
    ("_:treat <{t}> <{i}OralOpioidTherapy> .", "top"),
    ("_:treat <{i}hasOutcome> <{i}SevereSideEffects> .", "bottom"),
    ("_:pat <{i}hasConsent> _:consent .", "bottom"),
    ("_:consent <{i}consentStatus> <{i}ConsentGranted> .", "top"),
    ("_:consent <{i}coversTherapy> <{i}IntrathecalTherapy> .", "middle"),
    ('_:consent <{i}consentDate> "2026-03-02"^^<{d}> .', "middle"),
    ("_:pat <{i}hasCSFAssessment> _:csf .", "top"),
    ("_:csf <{i}finding> <{i}ImpairedCSFCirculation> .", "bottom"),
    # a second patient whose own triples sit in one piece and its records' in others
    ("_:other <{i}hasCondition> _:fbss .", "middle"),
    ("_:fbss <{t}> <{i}FailedBackSurgerySyndrome> .", "top"),
]


@pytest.mark.parametrize("workers", [2, 3])
def test_blank_node_patients_spread_over_every_piece(population, workers, tmp_path):
    lines = population["nt"].read_text(encoding="utf-8").splitlines(keepends=True)
    placed = {"top": [], "middle": [], "bottom": []}
    for triple, where in BLANK_PATIENT:
        placed[where].append(triple.format(i=ITKG, t=RDF_TYPE, d=XSD_DATE) + "\n")
    half = len(lines) // 2
    path = tmp_path / "spread.nt"
    path.write_text("".join(placed["top"] + lines[:half] + placed["middle"] + lines[half:] + placed["bottom"]),
                    encoding="utf-8")
    minimum = path.stat().st_size // 8
    pieces = plan([path], parts=workers, min_piece_bytes=minimum)
    assert len(pieces) == workers
    rows, _ = eligibility_rows([path], workers=workers, min_piece_bytes=minimum)
    assert full(rows) == full(plain_rows(path))
    by_patient = {r.patient: r for r in rows}
    assert (by_patient["_:pat"].status, by_patient["_:pat"].unmet) == ("excluded", ("csf-circulation",))
    assert by_patient["_:other"].status == "pending"


def test_input_sorted_by_subject_defers_every_patient_and_still_agrees(population, tmp_path):
    """Sorted N-Triples put every patient's own triples before every record's (IRIs sort before
    blank nodes): no worker holds a patient entirely, and the main process decides them all."""
    path = tmp_path / "sorted.nt"
    path.write_text("".join(sorted(population["nt"].read_text(encoding="utf-8").splitlines(keepends=True))),
                    encoding="utf-8")
    rows, _ = eligibility_rows([path], workers=2, min_piece_bytes=path.stat().st_size // 8)
    assert full(rows) == full(plain_rows(path)) == full(plain_rows(population["nt"]))


def test_equal_labels_in_different_files_are_different_nodes(tmp_path):
    first, second = tmp_path / "a.nt", tmp_path / "b.nt"
    first.write_text(f"_:p <{ITKG}hasCondition> _:c .\n_:q <{ITKG}hasCondition> _:d .\n"
                     f"_:d <{RDF_TYPE}> <{ITKG}LumbarPostLaminectomySyndrome> .\n")
    second.write_text(f"_:c <{RDF_TYPE}> <{ITKG}FailedBackSurgerySyndrome> .\n")
    for workers in (1, 2):
        rows, sources = eligibility_rows([first, second], workers=workers, min_piece_bytes=TINY)
        assert [r.patient for r in rows] == ["_:f1-q"]  # _:c of b.nt is not _:c of a.nt
        assert [s.triples for s in sources] == [3, 1]
    assert len(itkg.eligibility([first, second])) == 1


def test_every_input_format_in_one_parallel_run(tmp_path):
    """JSON-LD and RDF/XML files are parsed whole (after their safety gates), beside cut ones."""
    import rdflib
    graph = rdflib.Graph().parse(RULES)
    files = [to_ntriples(EXAMPLES, tmp_path / "examples.nt")]
    for fmt, suffix in (("json-ld", ".jsonld"), ("xml", ".rdf")):
        files.append(tmp_path / f"rules{suffix}")
        graph.serialize(files[-1], format=fmt, encoding="utf-8")
    files.append(RULES)
    rows, sources = eligibility_rows(files, workers=3, min_piece_bytes=TINY)
    assert [s.format for s in sources] == ["ntriples", "jsonld", "rdfxml", "turtle"]
    assert anonymous(rows) == anonymous(itkg.eligibility(files))


def test_turtle_declaring_prefixes_midway_is_parsed_whole(population, tmp_path):
    """A cut after a prefix is redefined would give the next piece the old prefix: the check at
    the cut notices and the file is parsed in one piece, with the right rows."""
    text = population["ttl"].read_text(encoding="utf-8")
    cut = len(text) // 2
    cut = text.index("\n\n<", cut) + 2
    moved = text[:cut] + f"@prefix itkg: <{ITKG}moved/> .\n@prefix real: <{ITKG}> .\n\n" \
        + text[cut:].replace("itkg:", "real:")
    path = tmp_path / "midway.ttl"
    path.write_text(moved, encoding="utf-8")
    minimum = len(moved) // 8
    assert len(plan([path], parts=2, min_piece_bytes=minimum)) == 2
    rows, _ = eligibility_rows([path], workers=2, min_piece_bytes=minimum)
    assert anonymous(rows) == anonymous(plain_rows(path)) == anonymous(plain_rows(population["ttl"]))


def test_turtle_cut_inside_a_long_string_is_parsed_whole(population, tmp_path):
    text = population["ttl"].read_text(encoding="utf-8")
    cut = text.index("\n\n<", len(text) // 2) + 2
    statements = "".join(f'<https://example.org/note{i}> <{ITKG}note> "x" .\n\n' for i in range(200))
    quoted = text[:cut] + f'<https://example.org/n> <{ITKG}note> """\n{statements}""" .\n\n' + text[cut:]
    path = tmp_path / "string.ttl"
    path.write_text(quoted, encoding="utf-8")
    minimum = len(quoted) // 8
    pieces = plan([path], parts=2, min_piece_bytes=minimum)
    string_at = quoted.encode().index(b'"""')
    assert string_at < pieces[1].start < quoted.encode().rindex(b'"""')  # the cut is in the string
    rows, sources = eligibility_rows([path], workers=2, min_piece_bytes=minimum)
    assert anonymous(rows) == anonymous(plain_rows(population["ttl"]))
    assert sources[0].triples == len(itkg.load(path))


# -- same errors -----------------------------------------------------------------------------------


def _load_error(path: Path, strict: bool = False) -> itkg.InputError:
    with pytest.raises(itkg.InputError) as caught:
        itkg.load(path, strict=strict)
    return caught.value


def _rows_error(path: Path, workers: int, minimum: int, strict: bool = False) -> itkg.InputError:
    with pytest.raises(itkg.InputError) as caught:
        eligibility_rows([path], workers=workers, min_piece_bytes=minimum, strict=strict)
    return caught.value


@pytest.mark.parametrize("workers", [2, 3])
def test_syntax_error_in_a_later_piece_names_its_line_in_the_file(population, workers, tmp_path):
    lines = population["nt"].read_text(encoding="utf-8").splitlines(keepends=True)
    bad_line = len(lines) * 3 // 4
    lines[bad_line - 1] = "<https://example.org/p> <https://example.org/q> .\n"  # no object
    lines[10] = lines[10].replace("\n", "\r\n")  # a CR LF counts as one line break, as the parser counts
    path = tmp_path / "bad.nt"
    path.write_text("".join(lines), encoding="utf-8", newline="")
    minimum = path.stat().st_size // 8
    pieces = plan([path], parts=workers, min_piece_bytes=minimum)
    assert pieces[-1].start < path.read_bytes().index(b"<https://example.org/p> ") and pieces[-1].start > 0
    error = _rows_error(path, workers, minimum)
    assert isinstance(error, itkg.ParseError)
    assert (error.line, error.column) == (bad_line, 49)
    assert str(error) == str(_load_error(path)) == f"{path}:{bad_line}:49: syntax error: not valid ntriples"


def test_turtle_syntax_error_in_a_later_piece(population, tmp_path):
    text = population["ttl"].read_text(encoding="utf-8")
    at = text.index("\n\n<", len(text) * 3 // 4) + 2
    path = tmp_path / "bad.ttl"
    path.write_text(text[:at] + "<https://example.org/p> itkg:x .\n\n" + text[at:], encoding="utf-8")
    error = _rows_error(path, 2, len(text) // 8)
    assert isinstance(error, itkg.ParseError) and error.line == text[:at].count("\n") + 1
    assert str(error) == str(_load_error(path))


@pytest.mark.parametrize("workers", [1, 2])
def test_ill_typed_literals_anywhere_are_counted_as_load_counts_them(population, workers, tmp_path):
    text = population["nt"].read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    for at in (len(lines) // 3, len(lines) - 5):
        lines.insert(at, f'<https://example.org/x> <{ITKG}consentDate> "2026-02-30"^^<{XSD_DATE}> .\n')
    path = tmp_path / "ill.nt"
    path.write_text("".join(lines), encoding="utf-8")
    error = _rows_error(path, workers, len(text) // 8, strict=True)
    assert isinstance(error, itkg.IllTypedLiteralError)
    assert str(error) == str(_load_error(path, strict=True))
    assert "(and 1 more)" in str(error) and "2026" not in str(error)
    # without strict (contract 1.1 §6) both are set aside, counted with their lines, as load counts them
    rows, (source,) = eligibility_rows([path], workers=workers, min_piece_bytes=len(text) // 8)
    (loaded,) = itkg.load(path).sources
    assert (source.ill_typed, source.ill_typed_lines) == (loaded.ill_typed, loaded.ill_typed_lines) == \
        (2, tuple(n for n, line in enumerate(lines, 1) if "2026-02-30" in line))


def test_owl_imports_in_a_later_piece_is_refused(population, tmp_path):
    text = population["nt"].read_text(encoding="utf-8")
    path = tmp_path / "imports.nt"
    path.write_text(text + "<https://example.org/o> <http://www.w3.org/2002/07/owl#imports> <https://example.org/x> .\n")
    error = _rows_error(path, 2, len(text) // 8)
    assert isinstance(error, itkg.UnsafeInputError) and str(error) == str(_load_error(path))


def test_errors_come_in_file_order(population, tmp_path):
    """A syntax error in the first file wins over a missing second file, as in itkg.load."""
    bad = tmp_path / "bad.ttl"
    bad.write_text("<https://example.org/a> <https://example.org/b> .\n")
    for paths in ([bad, tmp_path / "missing.nt"], [tmp_path / "missing.nt", bad]):
        with pytest.raises(itkg.InputError) as caught:
            eligibility_rows(paths, workers=2, min_piece_bytes=TINY)
        with pytest.raises(itkg.InputError) as expected:
            itkg.load(paths)
        assert str(caught.value) == str(expected.value)


# -- the command line ------------------------------------------------------------------------------


def test_cli_workers_and_quiet_give_the_same_output(population, tmp_path):
    outputs = []
    for extra in ([], ["--workers", "1"], ["--workers", "2", "--quiet"]):
        out = tmp_path / f"out{len(outputs)}.json"
        done = _itkg("eligibility", "--format", "json", "-o", out, *extra, population["nt"])
        assert done.returncode == 0 and done.stderr == ""  # no progress display off a terminal
        outputs.append(out.read_text())
    assert outputs[0] == outputs[1] == outputs[2]


def test_cli_bad_input_writes_nothing(population, tmp_path):
    path = tmp_path / "bad.nt"
    path.write_text(population["nt"].read_text() + "<https://example.org/p> .\n")
    out = tmp_path / "out.json"
    done = _itkg("eligibility", "--format", "json", "--workers", "2", "-o", out, path)
    assert done.returncode == 2 and not out.exists()
    assert done.stderr.startswith(f"itkg: error: {path}:") and done.stderr.count("\n") == 1
