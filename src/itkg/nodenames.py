"""Node names for people (issue 8): a blank node as written, with its file and line, and back.

The reader (:class:`itkg.reader.Namer`) names every blank node stably: ``_:p1`` for a node written
``_:p1``, ``_:_3`` for the third node written without a label (``[ ... ]``), ``_:f2-p1`` with
several files, ``_:__x`` for a label written ``_:_x``. Those names are the ids in rows, reports
and JSON: stable from run to run and engine to engine. What a person reads (the evidence and
failures of ``explain``, the messages of ``validate``) names the node as it was written, where to
find it::

    _:p1 (patients.ttl line 12)          a labelled node: its label and the first line it is on
    _:_3 (unlabelled, patients.ttl line 8)   a node written without a label, in Turtle
    _:_3 (unlabelled, patients.jsonld)   JSON-LD and RDF/XML: no line for unlabelled nodes

The line of a label is the first line that starts with it (where its statements are, in Turtle
and N-Triples), else the first line that names it (in RDF/XML, its ``rdf:nodeID``);
that of an unlabelled Turtle node is the line where the parser completes its first statement
about it (found by reading the file again, a line at a time). Files over :data:`MAX_LINE_BYTES`
get no lines (the file alone). :func:`find_patient` goes the other way for ``itkg explain``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, cast

import pyoxigraph as ox

from .errors import InputError
from .loading import Source, skip_bom
from .reader import ANONYMOUS, Checker, Namer, PieceReport
from .results import PatientExplanation

if TYPE_CHECKING:
    from .validation import ValidationReport

#: Files larger than this are not searched for lines (the name gives the file alone).
MAX_LINE_BYTES = 64 * 1024**2

_BLANK = re.compile(r"_:([A-Za-z0-9_][A-Za-z0-9_.\-]*[A-Za-z0-9_\-]|[A-Za-z0-9_])")
_SCOPE = re.compile(r"f([0-9]+)-")
_READABLE = re.compile(r"\A\s*(_:\S+)\s*\(\s*(?:unlabelled,\s*)?(.+?)(?:\s+line\s+[0-9]+)?\s*\)\s*\Z")
_FORMATS = {"turtle": ox.RdfFormat.TURTLE, "ntriples": ox.RdfFormat.N_TRIPLES,
            "jsonld": ox.RdfFormat.JSON_LD, "rdfxml": ox.RdfFormat.RDF_XML}


@dataclasses.dataclass(frozen=True)
class Written:
    """A blank node as written: the file it is in, its label (None when written without one) and
    its number among the file's unlabelled nodes."""

    source: Source
    label: str | None
    number: int = 0


def written(name: str, sources: Sequence[Source]) -> Written | None:
    """Where the blank node ``name`` (``_:...``) comes from, or None when it is not one of the
    reader's names for these sources (an IRI, or a graph given in memory)."""
    if not name.startswith("_:") or not sources:
        return None
    body = name[2:]
    source = sources[0]
    if len(sources) > 1:
        scope = _SCOPE.match(body)
        if scope is None or not 1 <= int(scope.group(1)) <= len(sources):
            return None
        source, body = sources[int(scope.group(1)) - 1], body[scope.end():]
    if source.format not in _FORMATS:  # a graph given in memory, or FHIR (whose records are IRIs)
        return None
    if body.startswith(ANONYMOUS) and body[1:].isdigit():
        return Written(source, None, int(body[1:]))
    return Written(source, body[1:] if body.startswith(ANONYMOUS) else body)


class _Lines:
    """A file for pyoxigraph, a line at a time (never more than the parser asks for: a long line
    comes in parts), counting lines, so that each triple the parser gives is known to end on the
    line last read."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle, self.line, self._first, self._at_start = handle, 0, True, True

    def read(self, size: int = -1) -> bytes:
        data = self._handle.readline(size if size > 0 else -1)
        if self._first:
            self._first, data = False, skip_bom(data)
        if data:
            if self._at_start:
                self.line += 1
            self._at_start = data.endswith(b"\n")
        return data


class _LineNamer(Namer):
    """The reader's namer, noting the line on which each unlabelled node is numbered."""

    def __init__(self, lines: _Lines) -> None:
        super().__init__(renames=True, statements=True)
        self.where: dict[int, int] = {}
        self._lines = lines

    def name(self, value: str) -> str:
        before = self.anonymous
        found = super().name(value)
        if self.anonymous != before:
            self.where[self.anonymous] = self._lines.line
        return found


def _unlabelled_lines(path: Path) -> dict[int, int]:
    """The line of each unlabelled node of a Turtle file, by its number (read as the reader
    reads it: the same checks, so the same numbers)."""
    with open(path, "rb") as handle:
        lines = _Lines(handle)
        namer = _LineNamer(lines)
        try:
            for _ in Checker().check(ox.parse(cast(IO[bytes], lines), format=ox.RdfFormat.TURTLE,
                                              base_iri=path.resolve().as_uri(), without_named_graphs=True),
                                     PieceReport(0), namer):
                pass
        except (SyntaxError, ValueError, OSError, MemoryError):
            return {}
    return namer.where


def _label_line(raw: bytes, label: str, fmt: str) -> int | None:
    """The line where the node is described: the first line that starts with its label (in
    Turtle and N-Triples, where its statements are), else the first line that names it."""
    if fmt == "rdfxml":
        needles = [rf"nodeID\s*=\s*[\"']\s*{re.escape(label)}\s*[\"']"]
    else:
        written = rf"_:{re.escape(label)}(?![A-Za-z0-9_\-]|\.[A-Za-z0-9_\-])"
        needles = [rf"(?m)^[ \t]*{written}", written]
    for needle in needles:
        found = re.search(needle.encode("utf-8"), raw)
        if found:
            return raw.count(b"\n", 0, found.start()) + 1 + raw[found.start():found.end()].count(b"\n")
    return None


class Describer:
    """Words the blank-node names of these sources for people (see the module docstring);
    files are read at most once each."""

    def __init__(self, sources: Sequence[Source]) -> None:
        self.sources = tuple(sources)
        self._raw: dict[str, bytes | None] = {}
        self._unlabelled: dict[str, dict[int, int]] = {}
        self._cache: dict[str, str] = {}

    def _bytes(self, source: Source) -> bytes | None:
        if source.path not in self._raw:
            path = Path(source.path)
            try:
                self._raw[source.path] = path.read_bytes() if path.stat().st_size <= MAX_LINE_BYTES else None
            except OSError:
                self._raw[source.path] = None
        return self._raw[source.path]

    def _line(self, node: Written) -> int | None:
        if node.label is not None:
            raw = self._bytes(node.source)
            return _label_line(raw, node.label, node.source.format) if raw is not None else None
        if node.source.format != "turtle" or self._bytes(node.source) is None:
            return None
        if node.source.path not in self._unlabelled:
            self._unlabelled[node.source.path] = _unlabelled_lines(Path(node.source.path))
        return self._unlabelled[node.source.path].get(node.number)

    def describe(self, name: str) -> str:
        """``name`` as a person finds it: ``_:p1 (patients.ttl line 12)``; other names as they are."""
        found = self._cache.get(name)
        if found is None:
            node = written(name, self.sources)
            if node is None:
                found = name
            else:
                line = self._line(node)
                where = Path(node.source.path).name + (f" line {line}" if line is not None else "")
                found = (f"_:{node.label} ({where})" if node.label is not None
                         else f"_:{ANONYMOUS}{node.number} (unlabelled, {where})")
            self._cache[name] = found
        return found

    def text(self, text: str) -> str:
        """``text`` with every blank-node name in it described."""
        return _BLANK.sub(lambda m: self.describe(m.group(0)), text) if "_:" in text else text


def readable_explanation(explanation: PatientExplanation, sources: Sequence[Source]) -> PatientExplanation:
    """``explanation`` with the blank nodes in its evidence, failures and reasons described
    (the patient stays as its id)."""
    describer = Describer(sources)
    return map_texts(explanation, describer.text)


def map_texts(explanation: PatientExplanation, change: Callable[[str], str]) -> PatientExplanation:
    """``explanation`` with ``change`` applied to every text in it (evidence, failures, reasons)."""
    def texts(values: Iterable[str]) -> tuple[str, ...]:
        return tuple(change(v) for v in values)

    indications = []
    for item in explanation.indications:
        criteria = tuple(dataclasses.replace(c, evidence=texts(c.evidence), failed=texts(c.failed))
                         for c in item.criteria)
        result = item.result
        if result is not None:
            checks = tuple(dataclasses.replace(p, reason=change(p.reason)) for p in result.prerequisites)
            result = dataclasses.replace(result, evidence=texts(result.evidence), prerequisites=checks)
        indications.append(dataclasses.replace(item, criteria=criteria, result=result))
    return dataclasses.replace(explanation, indications=tuple(indications))


def find_patient(given: str, sources: Sequence[Source], is_patient: Callable[[str], bool]) -> str:
    """The id of the patient a person names: an IRI; a blank node's id (``_:_3``, ``_:f2-p1``);
    its label as written (``_:p1``), with its file when several files hold one
    (``_:p1 (b.ttl)``, the form :class:`Describer` prints, line optional).

    :raises InputError: when no patient, or more than one, answers to ``given``.
    """
    where = ",".join(s.path for s in sources) or "<graph>"
    text, file = given.strip(), None
    readable = _READABLE.match(text)
    if readable is not None:
        text, file = readable.group(1), readable.group(2).strip()
    if not text.startswith("_:"):
        if is_patient(text):
            return text
        raise InputError(where, "no such patient in the input")
    label = text[2:]
    scopes = [(s, f"f{k}-" if len(sources) > 1 else "") for k, s in enumerate(sources, 1)]
    if file is not None:
        scopes = [(s, scope) for s, scope in scopes if file in (s.path, Path(s.path).name)]
    escaped = (ANONYMOUS + label) if label.startswith(ANONYMOUS) else label
    found = [f"_:{scope}{escaped}" for _, scope in scopes if is_patient(f"_:{scope}{escaped}")]
    if not found and file is None and is_patient(text):  # an id as itkg prints it
        return text
    if not found and file is not None and label.startswith(ANONYMOUS) and label[1:].isdigit():
        found = [f"_:{scope}{label}" for _, scope in scopes if is_patient(f"_:{scope}{label}")]
    if len(found) == 1:
        return found[0]
    if found:
        raise InputError(where, f"several files hold a blank node {text}; name the file, as in "
                                f"'{text} ({Path(scopes[0][0].path).name})'")
    raise InputError(where, "no such patient in the input")


def readable_report(report: "ValidationReport", sources: Sequence[Source]) -> "ValidationReport":
    """``report`` with the blank nodes in its messages described, and the focus node and patient
    of each result worded for people beside their ids (:attr:`ValidationResult.text`)."""
    if not any("_:" in r.focus or "_:" in r.message or (r.patient or "").count("_:") for r in report.results):
        return report
    describer = Describer(sources)
    results = tuple(dataclasses.replace(
        r, message=describer.text(r.message), focus_text=describer.text(r.focus),
        patient_text=describer.text(r.patient) if r.patient is not None else None) for r in report.results)
    return dataclasses.replace(report, results=results)
