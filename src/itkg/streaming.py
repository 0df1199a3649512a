"""The rule engine's index as a sink of the one reader: the population path of eligibility.

:func:`itkg.load` keeps every triple as a pyoxigraph object, because SPARQL, SHACL and the RDF
outputs need them all; at a million patients (15 million triples) that list alone takes gigabytes.
The rules read only the contract's predicates, so here the checked triples of the one reader
(:mod:`itkg.reader`: the same parsing, checks, errors and node names as every other sink) go
straight into a :class:`~itkg.engine.PatientIndex`, and everything else is dropped as it passes.

Large N-Triples and Turtle files are cut into pieces so that several processes can parse one
file (:mod:`itkg.parallel`); the planning, cutting and checking live in :mod:`itkg.reader` and are
re-exported here for the population path.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pyoxigraph as ox

from . import vocab
from .engine import PatientIndex
from .loading import DEFAULT_MAX_BYTES, Source
from .reader import (MIN_PIECE_BYTES, Checked, Checker, Namer, Piece, PieceReport, Untrusted, _PieceReader, fatal_after,
                     file_sha256, parse_piece, plan, read, resolve, sources_of)

__all__ = ["MIN_PIECE_BYTES", "IndexBuilder", "Piece", "PieceReport", "Untrusted", "_PieceReader", "build_index",
           "fatal_after", "file_sha256", "gc_paused", "parse_piece", "plan", "resolve", "sources_of"]

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

    def add(self, quads: Iterable[Checked], namer: Namer, report: PieceReport) -> None:
        """Index the checked triples (their plain names and values are the checker's)."""
        nodes = self.index.nodes
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
    builder = IndexBuilder(predicates=predicates)
    with gc_paused():
        sources = read(paths, builder, input_format=input_format, max_bytes=max_bytes, strict=strict,
                       checksums=checksums, on_read=on_read)
    return builder.index, sources
