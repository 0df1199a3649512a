"""Validation's input read in several processes (itkg.spooled) is the input read in one.

The spool a parallel read gives must be the one-process spool exactly: the same lines, node
numbers, flags and classes (so the same partition and results); its errors must be the same
(file and line counted from the start of the file, no value); its sources the same counts.
Pieces are made tiny here (a few kilobytes) so that patients, shared records and blank nodes
fall across cuts.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

import pyoxigraph as ox
import pytest
from test_scale_validation import mutated_population

from itkg import api, spooled
from itkg.errors import InputError, UnsafeInputError
from itkg.partition import Spool, target_object_predicates
from itkg.validation import _spool, read, shapes_graph

SECRET = "Zyxwvut-secret"


def _make() -> spooled.SpoolMaker:
    return functools.partial(_spool, target_object_predicates(shapes_graph()))


def _in_pieces(paths: list[Path], workers: int = 2, piece_bytes: int = 3000) -> tuple[Spool, tuple]:
    found = spooled.read(paths, _make(), workers=workers, piece_bytes=piece_bytes, parallel_from=1)
    assert found is not None, "read in one process: the test would prove nothing"
    return found


def _population_files(tmp_path: Path) -> list[Path]:
    """The mutated population (shared records, hubs, ill-typed dates, literals as records) in two
    files, each with blank nodes, one labelled as an unlabelled node's name would be."""
    text = ox.serialize(mutated_population(n=60, seed=4).triples, format=ox.RdfFormat.N_TRIPLES)
    lines = text.splitlines(keepends=True)
    blank = (b'_:b1 <https://w3id.org/itkg/consentStatus> <https://w3id.org/itkg/ConsentGranted> .\n'
             b'_:_1 <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> <https://w3id.org/itkg/InformedConsent> .\n'
             b'<https://example.org/synthetic/p0000003> <https://w3id.org/itkg/hasConsent> _:b1 .\n')
    first, second = tmp_path / "a.nt", tmp_path / "b.nt"
    first.write_bytes(b"".join(lines[: len(lines) // 2]) + blank)
    second.write_bytes(blank + b"".join(lines[len(lines) // 2:]))
    return [first, second]


@pytest.mark.parametrize("workers", [2, 3])
def test_a_file_read_in_pieces_gives_the_spool_of_one_process(tmp_path: Path, workers: int) -> None:
    paths = _population_files(tmp_path)
    one, one_sources = read(paths)
    many, many_sources = _in_pieces(paths, workers)
    try:
        assert len(one) > 500
        for name in ("ids", "numbers", "subjects", "objects", "flags", "is_subject", "classes", "starts"):
            assert getattr(many, name) == getattr(one, name), name
        assert many.lines(range(len(many))) == one.lines(range(len(one)))
        assert many.triples([0, 5, len(many) - 1]) == one.triples([0, 5, len(one) - 1])
        assert many_sources == tuple(replace(s, sha256="") for s in one_sources)  # no checksums
        assert one_sources[0].ill_typed > 0  # the ill-typed dates were kept and counted alike
    finally:
        one.close()
        many.close()


def test_validate_reads_large_input_in_pieces_with_the_same_results(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _population_files(tmp_path)
    expected = api.validate(paths, workers=1).to_dict()
    monkeypatch.setattr(spooled, "PARALLEL_FROM", 1)
    monkeypatch.setattr(spooled, "PIECE_BYTES", 4000)
    assert api.validate(paths, workers=2).to_dict() == expected
    assert expected["results"] and expected["conforms"] is False


def _broken(tmp_path: Path, bad: bytes) -> Path:
    """A population file whose line 300 (after several cuts) is ``bad``."""
    text = ox.serialize(mutated_population(n=40, seed=2).triples, format=ox.RdfFormat.N_TRIPLES)
    lines = text.splitlines(keepends=True)
    lines[299] = bad
    path = tmp_path / "broken.nt"
    path.write_bytes(b"".join(lines))
    return path


@pytest.mark.parametrize("bad,kind", [
    (f'<https://example.org/x> <https://example.org/p> "{SECRET} .\n'.encode(), InputError),
    (f'<https://example.org/{SECRET}> <http://www.w3.org/2002/07/owl#imports> <https://example.org/o> .\n'.encode(),
     UnsafeInputError),
])
def test_an_error_in_a_later_piece_is_the_one_process_error(tmp_path: Path, bad: bytes, kind: type) -> None:
    path = _broken(tmp_path, bad)
    with pytest.raises(kind) as one:
        read([path])
    with pytest.raises(kind) as many:
        _in_pieces([path], piece_bytes=2000)
    # the same file, line and problem (the parser's column may differ: it depends on where its
    # reads of the file end, which differ in a piece)
    assert (many.value.source, many.value.line, many.value.problem) == (one.value.source, one.value.line, one.value.problem)
    assert str(path) in str(many.value) and SECRET not in str(many.value)
    if kind is InputError:
        assert many.value.line == 300


def test_small_or_other_input_is_read_in_one_process(tmp_path: Path) -> None:
    paths = _population_files(tmp_path)
    assert spooled.read(paths, _make(), workers=2, piece_bytes=3000) is None  # below PARALLEL_FROM
    assert spooled.read(paths, _make(), workers=1, piece_bytes=3000, parallel_from=1) is None
    turtle = tmp_path / "a.ttl"
    turtle.write_bytes(paths[0].read_bytes())
    assert spooled.read([turtle], _make(), workers=2, piece_bytes=3000, parallel_from=1) is None
