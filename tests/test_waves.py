"""N-Triples decided in waves (itkg.waves through itkg.parallel): the rows of the plain rule engine
over the whole file, however the patients' triples are spread over the pieces.

Pieces are made far smaller than in real use (``wave_bytes``, ``min_piece_bytes``) so that files of
a few thousand patients are cut into many waves per process. No test measures time or memory:
benchmarks/ and docs/performance.md do.
"""

from __future__ import annotations

from pathlib import Path

import pyoxigraph as ox
import pytest
from support import benchmark_generator

from itkg import waves
from itkg.engine import PatientIndex, RuleEngine
from itkg.knowledge import load_knowledge
from itkg.parallel import eligibility_rows
from itkg.reader import plan

DATA = Path(__file__).with_name("data")
ITKG = "https://w3id.org/itkg/"
RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
EXT = "https://example.org/site-extension/"


def plain_rows(path: Path, knowledge=None) -> list:
    """The plain rule engine over every triple of ``path`` (labels as in the file)."""
    quads = ox.parse(path=path, format=ox.RdfFormat.N_TRIPLES)
    knowledge = knowledge or load_knowledge()
    index = PatientIndex.from_triples([q.triple for q in quads], knowledge.indexed_predicates())
    return RuleEngine(knowledge, index).eligibility()


def full(rows) -> list[tuple]:
    return [(r.patient, r.therapy, r.indication, r.status, r.unmet, r.evidence, r.prerequisites) for r in rows]


@pytest.fixture(scope="module")
def lines(tmp_path_factory) -> list[str]:
    """A generated population of 2,000 patients as N-Triples lines (about 1.3 MB)."""
    return "".join(benchmark_generator().generate(2000, seed=5, fmt="nt")).splitlines(keepends=True)


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(lines), encoding="utf-8")
    return path


def _waves_of(path: Path, workers: int, wave: int) -> int:
    size = path.stat().st_size
    pieces = plan([path], parts=max(workers, -(-size // wave)), min_piece_bytes=wave // 2)
    assert waves.eligible(pieces)
    return len(pieces)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_many_waves_give_the_plain_engines_rows(lines, workers, tmp_path):
    path = _write(tmp_path / "population.nt", lines)
    wave = path.stat().st_size // 12
    assert _waves_of(path, workers, wave) >= 12
    rows, sources = eligibility_rows([path], workers=workers, wave_bytes=wave, waves_from=0, min_piece_bytes=wave // 2)
    assert full(rows) == full(plain_rows(path))
    assert sources[0].triples == len(lines)


def test_a_patient_whose_triples_are_in_every_piece(lines, tmp_path):
    """Its own triples at the top, the middle and the bottom, its records elsewhere again."""
    patient = "<https://example.org/spread>"
    own = [f"{patient} <{ITKG}hasCondition> _:spreadc .\n", f"{patient} <{RDF_TYPE}> <{ITKG}Patient> .\n",
           f"{patient} <{ITKG}receivedTreatment> _:spreadt .\n"]
    records = [f"_:spreadc <{RDF_TYPE}> <{ITKG}CancerPain> .\n",
               f"_:spreadt <{RDF_TYPE}> <{ITKG}OralOpioidTherapy> .\n",
               f"_:spreadt <{ITKG}hasOutcome> <{ITKG}SevereSideEffects> .\n"]
    third = len(lines) // 3
    path = _write(tmp_path / "spread.nt", [own[0], *lines[:third], records[0], own[1], *lines[third:2 * third],
                                           records[1], *lines[2 * third:], own[2], records[2]])
    wave = path.stat().st_size // 10
    rows, _ = eligibility_rows([path], workers=2, wave_bytes=wave, waves_from=0, min_piece_bytes=wave // 2)
    assert full(rows) == full(plain_rows(path))
    assert [r.status for r in rows if r.patient == "https://example.org/spread"] == ["pending"]


def test_a_record_shared_by_a_local_patient_and_a_patient_decided_at_the_end(lines, tmp_path):
    """``_:shared`` is a record of ``local`` (whose triples are all in the first piece: decided there,
    and the record dropped) and of ``late`` (written at the end of the file: decided by the main
    process at the end), which must read the record again from the first piece."""
    local = [f"<https://example.org/local> <{ITKG}hasCondition> _:lc .\n",
             f"_:lc <{RDF_TYPE}> <{ITKG}CancerPain> .\n",
             f"<https://example.org/local> <{ITKG}hasConsent> _:shared .\n",
             f"_:shared <{ITKG}consentStatus> <{ITKG}ConsentGranted> .\n",
             f"_:shared <{ITKG}coversTherapy> <{ITKG}IntrathecalTherapy> .\n"]
    late = [f"<https://example.org/late> <{ITKG}hasCondition> _:latec .\n",
            f"_:latec <{RDF_TYPE}> <{ITKG}CancerPain> .\n",
            f"<https://example.org/late> <{ITKG}receivedTreatment> _:latet .\n",
            f"_:latet <{RDF_TYPE}> <{ITKG}OralOpioidTherapy> .\n",
            f"_:latet <{ITKG}hasOutcome> <{ITKG}SevereSideEffects> .\n",
            f"<https://example.org/late> <{ITKG}hasConsent> _:shared .\n"]
    path = _write(tmp_path / "shared.nt", [*local, *lines, *late])
    wave = path.stat().st_size // 8
    rows, _ = eligibility_rows([path], workers=2, wave_bytes=wave, waves_from=0, min_piece_bytes=wave // 2)
    assert full(rows) == full(plain_rows(path))
    late_row = next(r for r in rows if r.patient == "https://example.org/late")
    assert late_row.prerequisites[0].state == "met"  # the shared consent was read again


def test_records_of_a_sites_own_prerequisite_elsewhere_in_the_file(lines, tmp_path):
    """Regression: the parallel path knew only the contract's record links, so a record linked by
    an extension's prerequisite (``ext:hasCSFCytology``) in another piece was not waited for and
    the patient was decided without it (``pending`` instead of ``excluded``)."""
    extension = DATA / "extension-leptomeningeal.ttl"
    knowledge = load_knowledge(extensions=[extension])
    patients = ox.parse(path=DATA / "extension-leptomeningeal-patients.ttl", format=ox.RdfFormat.TURTLE)
    text = ox.serialize([q.triple for q in patients], format=ox.RdfFormat.N_TRIPLES).decode()
    cytology = {line.split()[2] for line in text.splitlines() if "hasCSFCytology" in line}
    moved = [line + "\n" for line in text.splitlines() if line.split()[0] in cytology]
    kept = [line + "\n" for line in text.splitlines() if line.split()[0] not in cytology]
    path = _write(tmp_path / "extension.nt", [*kept, *lines, *moved])
    expected = full(plain_rows(path, knowledge))
    assert ("https://example.org/lm/lm-inconclusive", "excluded") in {(r[0], r[3]) for r in expected}
    wave = path.stat().st_size // 8
    for workers in (1, 2):
        rows, _ = eligibility_rows([path], workers=workers, knowledge=knowledge, wave_bytes=wave, waves_from=0,
                                   min_piece_bytes=wave // 2)
        assert full(rows) == expected
    # the same through the parallel path of other formats (Turtle cut into pieces)
    turtle = tmp_path / "extension.ttl"
    turtle.write_bytes(ox.serialize(ox.parse(path=path, format=ox.RdfFormat.N_TRIPLES), format=ox.RdfFormat.TURTLE))
    rows, _ = eligibility_rows([turtle], workers=2, knowledge=knowledge, min_piece_bytes=turtle.stat().st_size // 8)
    assert full(rows) == expected


def test_a_subject_the_prescan_cannot_see_starts_again_in_one_process(lines, tmp_path):
    """Lines ended by a lone carriage return (one line break for N-Triples) hide subjects from the
    pre-scan; the check against the parser notices, and the run starts again whole."""
    patient = [f"<https://example.org/cr> <{ITKG}hasCondition> _:crc .\r",
               f"_:crc <{RDF_TYPE}> <{ITKG}CancerPain> .\r",
               f"<https://example.org/cr> <{ITKG}hasConsent> _:crk .\n"]
    consent = [f"_:crk <{ITKG}consentStatus> <{ITKG}ConsentGranted> .\r",
               f"_:crk <{ITKG}coversTherapy> <{ITKG}IntrathecalTherapy> .\n"]
    half = len(lines) // 2
    path = tmp_path / "cr.nt"
    path.write_bytes("".join([*lines[:half], *patient, *lines[half:], *consent]).encode())
    wave = path.stat().st_size // 6
    rows, _ = eligibility_rows([path], workers=2, wave_bytes=wave, waves_from=0, min_piece_bytes=wave // 2)
    assert full(rows) == full(plain_rows(path))
    with pytest.raises(waves.Mismatch):
        state = waves.Waves(load_knowledge(), set(), {0: waves.prescan(plan([path])[0])})
        state.wave(plan([path])[0], on_read=None, should_stop=None, decided=lambda n: None)


def test_escaped_iris_and_labels_are_named_as_the_reader_names_them(lines, tmp_path):
    """The pre-scan's names equal the reader's for escaped IRIs, labels starting with ``_`` and
    several files (labels then get the file's scope)."""
    patient = "<https://example.org/caf\\u00E9>"
    first = [f"{patient} <{ITKG}hasCondition> _:_c .\n", *lines[:len(lines) // 2],
             f"_:_c <{RDF_TYPE}> <{ITKG}CancerPain> .\n"]
    second = [*lines[len(lines) // 2:], f"<https://example.org/caf\u00e9> <{ITKG}receivedTreatment> _:t .\n",
              f"_:t <{RDF_TYPE}> <{ITKG}OralOpioidTherapy> .\n", f"_:t <{ITKG}hasOutcome> <{ITKG}SevereSideEffects> .\n"]
    a, b = _write(tmp_path / "a.nt", first), _write(tmp_path / "b.nt", second)
    wave = (a.stat().st_size + b.stat().st_size) // 8
    rows, _ = eligibility_rows([a, b], workers=2, wave_bytes=wave, waves_from=0, min_piece_bytes=wave // 2)
    reference, _ = eligibility_rows([a, b], workers=1, wave_bytes=1 << 40)
    assert full(rows) == full(reference)
    assert [r.status for r in rows if r.patient == "https://example.org/caf\u00e9"] == ["pending"]
    for piece in plan([a, b], parts=4, min_piece_bytes=wave // 2):
        builder_names = _names(piece)
        assert set(map(hash, builder_names)) <= set(waves.prescan(piece))


def _names(piece) -> list[str]:
    from itkg.reader import parse_piece
    from itkg.streaming import IndexBuilder
    builder = IndexBuilder()
    parse_piece(piece, builder)
    return list(builder.index.nodes)


@pytest.mark.parametrize("workers", [1, 2])
def test_waves_only_from_waves_from_bytes_and_both_ways_give_the_same_rows(lines, workers, tmp_path, monkeypatch):
    """Input smaller than ``waves_from`` is decided as other formats are (one index per process,
    no pre-scan: faster, and small enough); from ``waves_from`` bytes in waves. Both ways, and one
    process over the whole file, give the same rows."""
    path = _write(tmp_path / "population.nt", lines)
    size = path.stat().st_size
    wave = size // 6
    scanned: list[int] = []
    real = waves.prescan

    def counted(piece):
        scanned.append(piece.number)
        return real(piece)

    monkeypatch.setattr(waves, "prescan", counted)
    expected = full(plain_rows(path))
    for waves_from, in_waves in ((size + 1, False), (size, True), (0, True)):
        scanned.clear()
        rows, sources = eligibility_rows([path], workers=workers, wave_bytes=wave, waves_from=waves_from,
                                         min_piece_bytes=wave // 2)
        assert bool(scanned) is in_waves  # (this process's own pieces are pre-scanned here)
        assert full(rows) == expected
        assert sources[0].triples == len(lines)
    scanned.clear()
    rows, _ = eligibility_rows([path], workers=workers, min_piece_bytes=wave // 2)  # the default: no waves
    assert not scanned and size < waves.WAVES_FROM
    assert full(rows) == expected


def test_a_row_unpacked_in_the_main_process_is_the_row_packed_in_a_worker() -> None:
    import dataclasses
    import pickle

    from itkg.parallel import _unpack
    from itkg.results import EligibilityResult, PrerequisiteCheck
    from itkg.waves import pack
    row = EligibilityResult("https://fhir.invalid/Patient/p1", "https://w3id.org/itkg/IntrathecalAnalgesicTherapy",
                            "https://w3id.org/itkg/CancerPainIndication", "excluded", ("informed-consent",),
                            ("cancer pain diagnosis <https://fhir.invalid/Condition/c1>",),
                            (PrerequisiteCheck("informed-consent", "failed", "refused", ("_:k1",)),
                             PrerequisiteCheck("csf-circulation", "met", "good")))
    back = _unpack(pack(row))
    assert type(back) is EligibilityResult and back == row and hash(back) == hash(row) and repr(back) == repr(row)
    assert back.prerequisites == row.prerequisites and back.evidence == row.evidence
    assert not back < row and not row < back and sorted([back, row]) == [back, row]
    assert pickle.loads(pickle.dumps(back)) == row and dataclasses.asdict(back) == dataclasses.asdict(row)
    assert dataclasses.replace(back, status="pending").status == "pending"
    with pytest.raises(dataclasses.FrozenInstanceError):
        back.status = "qualifies"  # type: ignore[misc]
