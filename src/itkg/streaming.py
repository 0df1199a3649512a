"""The rule engine's index as a sink of the one reader: the population path of eligibility.

:func:`itkg.load` keeps every triple as a pyoxigraph object, because SPARQL, SHACL and the RDF
outputs need them all; at a million patients (15 million triples) that list alone takes gigabytes.
The rules read only the contract's predicates, so here the checked triples of the one reader
(:mod:`itkg.reader`: the same parsing, checks, errors and node names as every other sink) go
straight into a :class:`~itkg.engine.PatientIndex`, and everything else is dropped as it passes.

Large N-Triples and Turtle files are cut into pieces so that several processes can parse one
file (:mod:`itkg.parallel`); the planning, cutting and checking live in :mod:`itkg.reader` and are
re-exported here for the population path. FHIR input comes here as facts mapped straight from the
resources (:mod:`itkg.fhir.index`), through the same checker (:meth:`IndexBuilder.add_facts`).
"""

from __future__ import annotations

import gc
import hashlib
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyoxigraph as ox

from . import vocab
from .engine import PatientIndex
from .loading import DEFAULT_MAX_BYTES, Source
from .reader import (MIN_PIECE_BYTES, Checked, Checker, Namer, Piece, PieceReport, Untrusted, _PieceReader, fatal_after,
                     file_sha256, parse_piece, plan, resolve, sources_of)

if TYPE_CHECKING:
    from .fhir.index import FhirIndexer
    from .fhir.reader import FhirReport

__all__ = ["MIN_PIECE_BYTES", "IndexBuilder", "Piece", "PieceReport", "Untrusted", "_PieceReader", "build_index",
           "fatal_after", "fhir_sha256", "file_sha256", "finish_fhir", "first_reports", "gc_paused", "parse_piece",
           "plan", "resolve", "sources_of"]

_INDEXED = {ox.NamedNode(p): sys.intern(p) for p in vocab.INDEXED_PREDICATES}


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while millions of dicts, lists and tuples are made.

    None of them form cycles, but every few thousand new containers the collector walks all
    the live ones again: it costs a third of the time of building the index of a population.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class IndexBuilder:
    """The index sink: adds the reader's checked triples to a :class:`PatientIndex`, keeping
    only the predicates the rules read (the checker still checks every triple)."""

    def __init__(self, index: PatientIndex | None = None, predicates: frozenset[str] | None = None) -> None:
        self.index = index if index is not None else PatientIndex(predicates)
        indexed = _INDEXED if predicates is None else {ox.NamedNode(p): sys.intern(p) for p in predicates}
        self.checker = Checker(keys=indexed)
        #: the FHIR reading of this builder's pieces, once it has one (:mod:`itkg.fhir.index`)
        self.fhir: FhirIndexer | None = None

    def add_facts(self, facts: Iterable[tuple[str, str, Any]], report: PieceReport) -> None:
        """Index mapped facts (:data:`itkg.fhir.reader.Fact`: IRIs as valid IRI strings, literals
        as ``(lexical form, datatype)``) through the same checker as parsed triples: the same
        values in the index, the same counts in ``report``."""
        self.add(self.checker.check_facts(facts, report), Namer(), report)

    def add(self, quads: Iterable[Checked], namer: Namer, report: PieceReport) -> None:
        """Index the checked triples (their plain names and values are the checker's). Parsed
        triples are added by the checker itself, as it checks them (:attr:`Checker.into`: its
        :meth:`~itkg.reader.Checker.check` starts only when iterated, here); mapped facts
        (:meth:`add_facts`) come through this loop."""
        nodes = self.index.nodes
        self.checker.into = nodes
        last_subject: object = None
        props: dict[str, list] = {}
        for _quad, subject, predicate, value in quads:
            if subject is not last_subject:  # the checker hands the same string while it lasts
                last_subject = subject
                found = nodes.get(subject)
                if found is None:
                    found = nodes[subject] = {}
                props = found
            values = props.get(predicate)
            if values is None:
                props[predicate] = [value]
            else:
                values.append(value)


def build_index(paths: Sequence[str | Path], *, input_format: str | None = None,
                max_bytes: int = DEFAULT_MAX_BYTES, checksums: bool = False,
                on_read: Callable[[int], None] | None = None,
                strict: bool = False,
                predicates: frozenset[str] | None = None) -> tuple[PatientIndex, tuple[Source, ...]]:
    """Stream ``paths`` into one index, in this process, file by file; raise the first problem
    as :func:`itkg.load` would.

    >>> from itkg.resources import data_root
    >>> index, sources = build_index([data_root() / "examples" / "patients.ttl"])
    >>> len(index.patients()), sources[0].format
    (5, 'turtle')
    """
    pieces = plan(paths, input_format=input_format, max_bytes=max_bytes, fhir_facts=True)
    builder = IndexBuilder(predicates=predicates)
    reports: dict[int, PieceReport] = {}
    fhir = [p for p in pieces if p.fhir is not None]
    with gc_paused():
        # FHIR first: its inputs are read together (references cross files), and its errors
        # come before any RDF file's, as itkg.load reports them.
        for piece in [*fhir, *(p for p in pieces if p.fhir is None)]:
            reports[piece.number] = parse_piece(piece, builder, on_read=on_read, checksum=checksums)
            # One piece per file here: resolving now raises this file's problem before the next
            # file is read, as itkg.load does.
            resolve([piece], {piece.number: reports[piece.number]}, strict)
            if fhir and piece is fhir[-1]:
                finish_fhir(builder, fhir, reports)
    return builder.index, sources_of(pieces, reports, checksums=checksums)


def finish_fhir(builder: IndexBuilder, fhir: Sequence[Piece], reports: dict[int, PieceReport],
                final: FhirReport | None = None) -> None:
    """After every FHIR piece, in one process: what crosses chunks (:mod:`itkg.fhir.index`),
    then the report and the records' notes for the command (:data:`itkg.fhir.hook.LAST`). With
    ``final``, the main process of a parallel run has finished already (then notes stay with
    the workers, which annotate their rows)."""
    from .fhir import hook
    from .fhir.index import run_report
    assert builder.fhir is not None
    alone = final is None
    if final is None:
        final = builder.fhir.finish(first_reports(fhir, reports))
    report = run_report((reports[p.number].fhir for p in fhir), final)
    if hook.LAST is not None:
        hook.LAST.reports.append(report)
        if alone:
            hook.LAST.notes.update(builder.fhir.reader.notes)


def first_reports(fhir: Sequence[Piece], reports: dict[int, PieceReport]) -> list[PieceReport]:
    """The report of each FHIR input's first piece (what finishing adds counts there)."""
    first: dict[int, PieceReport] = {}
    for piece in fhir:
        assert piece.fhir is not None
        first.setdefault(piece.fhir.out, reports[piece.number])
    return [first[out] for out in sorted(first)]


def fhir_sha256(path: Path) -> str:
    """The SHA-256 checksum of a FHIR input, as :func:`itkg.load` gives it: of the file, or of a
    Bulk export directory's ``*.ndjson`` files in name order, one after the other."""
    from .fhir.reader import files_of
    digest = hashlib.sha256()
    for file in files_of(path):
        with open(file, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()
