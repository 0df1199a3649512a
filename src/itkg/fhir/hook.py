"""The small hook by which every loader (:mod:`itkg.loading`, :mod:`itkg.streaming`) takes FHIR.

A loader calls :func:`split` on its paths: the FHIR ones (told by content, :func:`is_fhir`) are read
together by one :class:`~itkg.fhir.reader.FhirReader` (:func:`read_fhir`), whose triples the loader
then treats as it treats parsed RDF; the others go on as before. :data:`SETTINGS` holds what the
command line or the API chose (site mappings, IRI base, strictness), and :data:`LAST` what the last
read found (the report and the records' notes for the evidence), so that a command can print it.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections import ChainMap
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..loading import DEFAULT_MAX_BYTES, Source
from ..results import EligibilityResult, PatientExplanation
from .reader import DEFAULT_BASE, FhirGraph, FhirReport, is_fhir, read


@dataclass
class Settings:
    """How FHIR input is read in this process: site mapping files, the IRI base, strictness."""

    mappings: tuple[str, ...] = ()
    base: str = DEFAULT_BASE
    strict: bool = False
    progress: bool = False
    workers: int = 1


@dataclass
class Run:
    """What the FHIR reads of this process found: reports, and notes on records for the evidence."""

    reports: list[FhirReport] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)


SETTINGS = Settings()
#: What the reads inside the current :func:`configured` block found (None outside one: nothing is
#: kept, so a long-running process does not accumulate notes).
LAST: Run | None = None


@contextmanager
def configured(*, mappings: Sequence[str | os.PathLike[str]] = (), base: str | None = None,
               strict: bool = False, progress: bool = False, workers: int | None = None) -> Iterator[Run]:
    """Read FHIR with these settings (added to those already in force) inside the block, and
    collect what the reads found."""
    global SETTINGS, LAST
    saved = SETTINGS, LAST
    SETTINGS = Settings(SETTINGS.mappings + tuple(str(m) for m in mappings),
                        base or SETTINGS.base, strict or SETTINGS.strict, progress or SETTINGS.progress,
                        workers or SETTINGS.workers)
    LAST = run = Run()
    try:
        yield run
    finally:
        SETTINGS, LAST = saved
        if LAST is not None:  # an inner block (an API call inside a command's): the outer sees it too
            LAST.reports.extend(run.reports)
            LAST.notes.update(run.notes)


def split(paths: Sequence[str | os.PathLike[str]], input_format: str | None) -> tuple[list[Path], list[Path]]:
    """The FHIR paths and the others (RDF), each in the order given."""
    fhir: list[Path] = []
    rdf: list[Path] = []
    for raw in paths:
        path = Path(raw)
        (fhir if is_fhir(path, input_format) else rdf).append(path)
    return fhir, rdf


def read_fhir(paths: Sequence[Path], max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[FhirGraph, list[Source]]:
    """Read the FHIR paths with :data:`SETTINGS`; record the report and notes in :data:`LAST`."""
    meter = None
    if SETTINGS.progress:  # the RDF path's display: bytes of FHIR read (in this process)
        from ..progress import Meter
        total = sum(size for _, size, _ in stamp(paths))
        meter = Meter(1, total, visible=True).show()
    try:
        graph = read(paths, base=SETTINGS.base, mappings=SETTINGS.mappings, strict=SETTINGS.strict,
                     max_bytes=max_bytes, on_read=meter.on_read(0) if meter is not None else None,
                     workers=SETTINGS.workers)
    finally:
        if meter is not None:
            meter.close()
    if LAST is not None:
        LAST.reports.append(graph.report)
        LAST.notes.update(graph.notes)
    sources = [Source(str(path), digest, "fhir", graph.count(index))
               for index, (path, _triples, digest) in enumerate(graph.files)]
    return graph, sources


_RECORD = re.compile(r"<([^<>\s]+)>")


def annotate_text(text: str, notes: Mapping[str, str]) -> str:
    """``text`` with every record IRI in it followed by the FHIR resource and codes it came from."""
    return _RECORD.sub(_noter(notes), text) if "<" in text else text


def _noter(notes: Mapping[str, str]) -> Callable[[re.Match[str]], str]:
    """The replacement of one record IRI (a match of ``_RECORD``) by :func:`annotate_text`. A
    :class:`~collections.ChainMap` is read map by map with ``dict.get`` (its own lookups are
    Python code, asked once per IRI of every row)."""
    maps = notes.maps if isinstance(notes, ChainMap) else [notes]
    if len(maps) == 2 and all(type(m) is dict for m in maps):
        first, second = maps[0].get, maps[1].get

        def lookup(iri: str) -> str | None:
            found = first(iri)
            return second(iri) if found is None else found
    else:
        def lookup(iri: str) -> str | None:
            return notes.get(iri)

    def note(match: re.Match[str]) -> str:
        found = lookup(match.group(1))
        if found is None:
            return match.group(0)
        name, _, codes = found.partition(", ")
        return f"{match.group(0)} ({name}{'; ' + codes if codes else ''})"
    return note


def annotate_explanation(explanation: PatientExplanation, notes: dict[str, str]) -> PatientExplanation:
    """:func:`annotate` for ``itkg explain``: the evidence, failures and prerequisite reasons."""
    if not notes:
        return explanation
    from ..nodenames import map_texts
    return map_texts(explanation, lambda text: annotate_text(text, notes))


def annotate(results: Sequence[EligibilityResult], notes: Mapping[str, str]) -> list[EligibilityResult]:
    """``results`` with every record IRI in the evidence followed by the FHIR resource and codes
    it came from: ``<https://fhir.invalid/Condition/c1> (Condition/c1; ICD-10-CM G89.3)``."""
    return annotate_in_place(list(results), notes)


def annotate_in_place(rows: list[EligibilityResult], notes: Mapping[str, str]) -> list[EligibilityResult]:
    """:func:`annotate`, each row of ``rows`` replaced as it is annotated, so that the old row
    goes at once (a parallel run annotates while its index is still held: two copies of the
    rows' evidence would add to its peak). Returns ``rows``."""
    if notes:
        sub, note = _RECORD.sub, _noter(notes)  # (once for all the rows)
        for number, row in enumerate(rows):
            if any("<" in e for e in row.evidence):
                rows[number] = dataclasses.replace(
                    row, evidence=tuple(sub(note, e) if "<" in e else e for e in row.evidence))
    return rows


def stamp(paths: Sequence[Path]) -> tuple:
    """Size and modification time of every file of ``paths`` (a directory's files too): equal
    stamps mean the same content was read."""
    out = []
    for path in paths:
        for file in sorted(path.iterdir()) if path.is_dir() else [path]:
            try:
                info = file.stat()
            except OSError:
                continue
            out.append((str(file), info.st_size, info.st_mtime_ns))
    return tuple(out)
