"""Patient files streamed straight into the rule engine's index: the population path of eligibility.

:func:`itkg.load` keeps every triple as a pyoxigraph object, because SPARQL, SHACL and the RDF
outputs need them all; at a million patients (15 million triples) that list alone takes gigabytes.
The rules read only the contract's predicates, so here the parser's output goes straight into a
:class:`~itkg.engine.PatientIndex` and everything else is dropped as it passes. The checks stay
those of :func:`itkg.load`, with the same errors in the same order (file by file: unusable file,
syntax error, ``owl:imports``, ill-typed literals), so a file is accepted here exactly when it is
accepted there.

Large N-Triples and Turtle files are cut into *pieces* at line boundaries so that several
processes can parse one file (:mod:`itkg.parallel`). N-Triples allows that anywhere: each line
stands alone. Turtle does not in general (a cut may fall inside a statement or a long string, and
prefixes declared before the cut apply after it), so a Turtle cut is a guess that is checked: the
piece before it must parse to its end on its own, and end with the prefixes and base the next
piece was given. When a check fails, :func:`resolve` says so and the caller parses the whole
file in one piece instead.

Blank nodes keep the labels of the file (``_:b1`` is reported as ``_:b1``), so that a record named
in the evidence can be found in the input; with several files each file's labels get a prefix
(``_:f2-b1``) so that equal labels in different files stay different nodes, as RDF requires.
"""

from __future__ import annotations

import gc
import hashlib
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

import pyoxigraph as ox

from . import guards, setaside, vocab
from .engine import PatientIndex
from .errors import InputError, UnsafeInputError
from .loading import (BOM, DEFAULT_MAX_BYTES, IMPORTS_REFUSED, OWL_IMPORTS, TRIPLE_TERMS_REFUSED, Source, checked_size,
                      detect_format, format_name, ill_typed_error, parse_failure, read_checked)

if TYPE_CHECKING:
    from .fhir.index import FhirChunk, FhirIndexer
    from .fhir.reader import FhirReport

#: Files smaller than this are never cut: below it a second process costs more than it saves.
MIN_PIECE_BYTES = 16 * 1024**2

#: How far past the wanted position to look for a place to cut a file (else it is not cut there).
_CUT_WINDOW = 4 * 1024**2
#: A likely end of a Turtle statement: a line ending in "." then, after any blank lines, a line
#: that starts in the first column (where pretty-printed Turtle starts its statements).
_TURTLE_CUT = re.compile(rb"\.[ \t]*\r?\n(?:[ \t]*\r?\n)*(?=[^\s#])")

_INDEXED = {ox.NamedNode(p): sys.intern(p) for p in vocab.INDEXED_PREDICATES}
_SUBCLASS_OF = ox.NamedNode(vocab.RDFS_SUBCLASS_OF)
_IMPORTS = ox.NamedNode(OWL_IMPORTS)
#: What :meth:`IndexBuilder._object_value` gives for an ill-typed literal: it is set aside.
_ASIDE = object()
#: Distinct IRI and literal objects remembered with their converted (and checked) value. Class
#: IRIs, individuals and dates repeat across a population; the cap bounds the memory it costs.
_OBJECT_CACHE_LIMIT = 200_000


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


@dataclass(frozen=True)
class Piece:
    """What one parser reads: a whole file, or the bytes ``[start, end)`` of a large N-Triples or
    Turtle file, cut at the start of a line.

    ``number`` orders all pieces of a run (file by file, then by position), which is the order
    their errors count in. ``error`` is a problem found before parsing (missing file, too large,
    unsafe JSON-LD or RDF/XML), reported when its turn comes.
    """

    number: int
    file: int
    path: Path
    fmt: ox.RdfFormat | None
    start: int = 0
    end: int | None = None
    first: bool = True
    last: bool = True
    scope: str = ""
    base_iri: str | None = None
    preamble: bytes = b""
    preamble_lines: int = 0
    context: tuple[dict[str, str], str | None] | None = None
    data: bytes | None = None
    size: int = 0
    error: InputError | None = None
    #: a piece of FHIR input (:mod:`itkg.fhir.index`): mapped straight into the index
    fhir: FhirChunk | None = None

    @property
    def nbytes(self) -> int:
        """How many bytes of the file this piece covers."""
        return (self.size if self.end is None else self.end) - self.start


@dataclass
class PieceReport:
    """What parsing one piece found: how much, and what was wrong. Plain data (it crosses
    process boundaries); :func:`resolve` turns it into an error, if any."""

    number: int
    triples: int = 0
    lines: int = 0
    stopped: bool = False
    failure: tuple[type[InputError], str, int | None, int | None] | None = None
    imports: bool = False
    triple_terms: bool = False
    ill_typed: guards.IllTypedLiteral | None = None
    ill_typed_count: int = 0
    #: the first ill-typed lexical forms, only to find their lines (never printed)
    ill_typed_lexicals: list[str] | None = None
    schema_set_aside: int = 0
    holds_patient: bool = False
    turtle_state: tuple[dict[str, str], str | None] | None = None
    #: a FHIR piece: what reading it found, and the error that stopped it
    fhir: FhirReport | None = None
    fhir_error: InputError | None = None


class Untrusted(Exception):
    """Cutting a file into pieces went wrong (a Turtle cut inside a statement, or prefixes
    declared mid-file): parse the files whole instead. Never escapes :mod:`itkg`."""


# -- planning ------------------------------------------------------------------------------------


def plan(paths: Sequence[str | Path], *, input_format: str | None = None,
         max_bytes: int = DEFAULT_MAX_BYTES, parts: int = 1,
         min_piece_bytes: int = MIN_PIECE_BYTES) -> list[Piece]:
    """The pieces to parse for ``paths``: each file whole, or N-Triples and Turtle files of at
    least twice ``min_piece_bytes`` cut into up to ``parts`` pieces of about equal size."""
    if not paths:
        raise InputError("<none>", "no input files given")
    pieces: list[Piece] = []
    fhir = _fhir_chunks(paths, input_format, max_bytes, parts, min_piece_bytes)
    for file_index, raw in enumerate(paths):
        path = Path(raw)
        scope = f"f{file_index + 1}-" if len(paths) > 1 else ""
        if path in fhir:  # FHIR R4 JSON, mapped to §2 facts straight into the index (itkg.fhir.index)
            pieces += [Piece(len(pieces) + k, file=file_index, path=path, fmt=None, size=c.end - c.start,
                             scope=scope, fhir=c) for k, c in enumerate(fhir[path])]
            continue
        try:
            fmt = detect_format(path, input_format)
            if fmt not in (ox.RdfFormat.N_TRIPLES, ox.RdfFormat.TURTLE):
                data = read_checked(path, fmt, max_bytes)
                pieces.append(Piece(len(pieces), fmt=fmt, data=data, size=len(data),
                                    base_iri=path.resolve().as_uri(), file=file_index, path=path,
                                    scope=scope))
                continue
            size = checked_size(path, max_bytes)
        except InputError as error:
            pieces.append(Piece(len(pieces), fmt=None, error=error, file=file_index, path=path, scope=scope))
            continue
        base = path.resolve().as_uri()
        cuts: list[int] = []
        context: tuple[dict[str, str], str | None] | None = None
        if parts > 1 and size >= 2 * min_piece_bytes:
            cuts = _cut_points(path, fmt, size, min(parts, size // min_piece_bytes))
            if cuts and fmt == ox.RdfFormat.TURTLE:
                context = _turtle_header(path, base, size // (len(cuts) + 1) // 2)
                if context is None:
                    cuts = []
        preamble = _directives(context[0]) if context is not None and cuts else b""
        if len(preamble) > size // (len(cuts) + 1) // 2:
            # A prefix block larger than half a piece would be parsed again by every piece (and
            # the cut check fails when a cut falls inside it): one piece is faster.
            cuts, context = [], None
        bounds = [0, *cuts, size]
        for k in range(len(bounds) - 1):
            later = k > 0 and context is not None
            pieces.append(Piece(
                len(pieces), fmt=fmt, start=bounds[k], end=bounds[k + 1] if k + 2 < len(bounds) else None,
                first=k == 0, last=k + 2 == len(bounds), size=size,
                base_iri=context[1] if later and context is not None else base,
                preamble=preamble if later else b"", context=context if later else None,
                preamble_lines=preamble.count(b"\n") if later else 0, file=file_index, path=path,
                scope=scope))
    return pieces


def _fhir_chunks(paths: Sequence[str | Path], input_format: str | None, max_bytes: int, parts: int,
                 min_piece_bytes: int) -> dict[Path, list[FhirChunk]]:
    """The FHIR inputs among ``paths`` and their chunks (:func:`itkg.fhir.index.plan`; its
    errors, a missing or too large file, come before any other input's)."""
    from .fhir import hook
    from .fhir.index import plan as fhir_plan
    fhir_paths, _ = hook.split(paths, input_format)
    if not fhir_paths:
        return {}
    chunks = fhir_plan(fhir_paths, parts=parts, min_piece_bytes=min_piece_bytes, max_bytes=max_bytes)
    return dict(zip(fhir_paths, chunks))


def _cut_points(path: Path, fmt: ox.RdfFormat, size: int, count: int) -> list[int]:
    """Byte offsets, each at the start of a line, that cut ``path`` into about ``count`` parts."""
    cuts: list[int] = []
    with open(path, "rb") as file:
        for k in range(1, count):
            target = max(size * k // count, cuts[-1] if cuts else 0)
            cut = _line_start_after(file, target) if fmt == ox.RdfFormat.N_TRIPLES \
                else _turtle_cut_after(file, target)
            if cut is not None and (not cuts or cut > cuts[-1]) and cut < size:
                cuts.append(cut)
    return cuts


def _line_start_after(file: BinaryIO, position: int) -> int | None:
    file.seek(position)
    newline = file.read(_CUT_WINDOW).find(b"\n")
    return position + newline + 1 if newline >= 0 else None


def _turtle_cut_after(file: BinaryIO, position: int) -> int | None:
    file.seek(position)
    match = _TURTLE_CUT.search(file.read(_CUT_WINDOW))
    return position + match.end() if match else None


class _Head:
    """The first ``limit`` bytes of a file, as a file-like object for pyoxigraph."""

    def __init__(self, handle: BinaryIO, limit: int) -> None:
        self._handle, self._left = handle, limit

    def read(self, size: int = -1) -> bytes:
        size = self._left if size < 0 else min(size, self._left)
        data = self._handle.read(size) if size > 0 else b""
        self._left -= len(data)
        return data


def _turtle_header(path: Path, base: str,
                   limit: int | None = None) -> tuple[dict[str, str], str | None] | None:
    """The prefixes and base in force at the first triple of a Turtle file (None if it has none
    or the parser fails before it; then the file is parsed whole and the error found there).
    With ``limit``, also None when the first triple does not come within the first ``limit``
    bytes: a prefix block that long is not worth cutting the file for (every piece would parse
    it again), and reading it here would cost as much as parsing the file."""
    try:
        with open(path, "rb") as handle:
            source = handle if limit is None else cast(BinaryIO, _Head(handle, limit))
            parser = ox.parse(source, format=ox.RdfFormat.TURTLE, base_iri=base,
                              without_named_graphs=True)
            next(iter(parser))
            return dict(parser.prefixes), parser.base_iri
    except (StopIteration, SyntaxError, ValueError, OSError, MemoryError):
        return None


def _directives(prefixes: dict[str, str]) -> bytes:
    """Turtle ``@prefix`` lines, one per prefix, to put before a piece cut from the middle."""
    return "".join(f"@prefix {name}: <{iri}> .\n" for name, iri in prefixes.items()).encode("utf-8")


# -- parsing -------------------------------------------------------------------------------------


class _PieceReader:
    """A file-like view of one piece for pyoxigraph: the preamble, then the piece's bytes.

    It counts line breaks the way the parser does (CR LF, CR and LF each end a line) so that a
    later piece's line numbers can be made absolute, reports bytes read, and ends the input early
    (as if at the end of the file) when ``should_stop`` says the piece no longer matters.
    """

    def __init__(self, piece: Piece, on_read: Callable[[int], None] | None,
                 should_stop: Callable[[], bool] | None) -> None:
        self._file = open(piece.path, "rb")  # noqa: SIM115 - closed by close()
        start = piece.start
        if start == 0 and self._file.read(len(BOM)) == BOM:  # a UTF-8 byte order mark is skipped
            start = len(BOM)
        self._file.seek(start)
        self._left = None if piece.end is None else max(0, piece.end - start)
        # Handed out by offset: slicing off the front of the bytes at every read copied the rest
        # each time, quadratic in the prefix block (10^6 prefixes took minutes).
        self._preamble = memoryview(piece.preamble or b"")
        self._preamble_at = 0
        self._on_read = on_read
        self._should_stop = should_stop
        self._cr = False
        self.lines = 0
        self.stopped = False

    def read(self, size: int = -1) -> bytes:
        if self._preamble_at < len(self._preamble):
            start = self._preamble_at
            end = len(self._preamble) if size < 0 else min(len(self._preamble), start + size)
            self._preamble_at = end
            return bytes(self._preamble[start:end])
        if self._should_stop is not None and self._should_stop():
            self.stopped = True
            return b""
        if size < 0:
            size = 1 << 20
        if self._left is not None:
            size = min(size, self._left)
        data = self._file.read(size) if size > 0 else b""
        if not data:
            return b""
        if self._left is not None:
            self._left -= len(data)
        lines = data.count(b"\n")
        if b"\r" in data:
            lines += data.count(b"\r") - data.count(b"\r\n")
        if self._cr and data[:1] == b"\n":
            lines -= 1
        self._cr = data[-1:] == b"\r"
        self.lines += lines
        if self._on_read is not None:
            self._on_read(len(data))
        return data

    def close(self) -> None:
        self._file.close()


class IndexBuilder:
    """Adds parsed triples to a :class:`PatientIndex`, checking them on the way as
    :func:`itkg.load` does (``owl:imports``, ill-typed literals)."""

    def __init__(self, index: PatientIndex | None = None, predicates: frozenset[str] | None = None) -> None:
        self.index = index if index is not None else PatientIndex(predicates)
        self._indexed = _INDEXED if predicates is None else \
            {ox.NamedNode(p): sys.intern(p) for p in predicates}
        self._objects: dict[object, object] = {}
        self._schema_types: dict[object, bool] = {}
        self._schema_predicates: dict[object, bool] = {}
        self._indexed_names = {p.value: name for p, name in self._indexed.items()}
        #: the FHIR reading of this builder's pieces, once it has one (:mod:`itkg.fhir.index`)
        self.fhir: FhirIndexer | None = None

    def add(self, quads: Iterable[ox.Quad], scope: str, report: PieceReport) -> None:
        """Index ``quads``; blank node labels get the prefix ``scope``. What is wrong with them
        goes into ``report`` (the first ill-typed literal, how many, whether owl:imports occurs).
        Statements about classes or ``itkg:`` terms and ill-typed values are set aside, counted
        (:mod:`itkg.setaside`)."""
        nodes, objects, indexed = self.index.nodes, self._objects, self._indexed
        named, blank = ox.NamedNode, ox.BlankNode
        schema_types, links, rdf_type = self._schema_types, setaside.PATIENT_LINKS, sys.intern(vocab.RDF_TYPE)
        itkg, patient = vocab.ITKG, vocab.PATIENT
        last_subject: object = None
        aside_subject = False
        props: dict[str, list] = {}
        count = 0
        for count, quad in enumerate(quads, 1):  # noqa: B007 - count is used after the loop
            predicate = indexed.get(quad.predicate)
            obj = quad.object
            value = objects.get(obj)
            if predicate is None:
                if value is None and type(obj) is not named:
                    # literals are checked and triple terms noted here too, whatever the predicate
                    if self._object_value(quad, obj, scope, report) is _ASIDE:
                        continue
                self._other(quad, report)
                continue
            if value is None:
                value = "_:" + scope + obj.value if type(obj) is blank else \
                    self._object_value(quad, obj, scope, report)
                if value is _ASIDE:
                    continue
            subject = quad.subject
            if subject != last_subject:
                last_subject = subject
                kind = type(subject)
                # ``type() is`` narrows faster than isinstance; mypy cannot follow it.
                key = (subject.value if kind is named  # type: ignore[union-attr]
                       else "_:" + scope + subject.value if kind is blank  # type: ignore[union-attr]
                       else str(subject))
                aside_subject = kind is named and key.startswith(itkg)
                if not aside_subject:
                    found = nodes.get(key)
                    if found is None:
                        found = nodes[key] = {}
                    props = found
            if aside_subject:
                report.schema_set_aside += 1
                continue
            if predicate is rdf_type:
                verdict = schema_types.get(value)
                if verdict is None:
                    verdict = schema_types[value] = isinstance(value, str) and \
                        setaside.is_schema_parts(None, rdf_type, value)
                if verdict:
                    report.schema_set_aside += 1
                    continue
                if value == patient:
                    report.holds_patient = True
            elif predicate in links:
                report.holds_patient = True
            values = props.get(predicate)
            if values is None:
                props[predicate] = [value]
            else:
                values.append(value)
        report.triples += count

    def add_facts(self, facts: Iterable[tuple[str, str, object]], report: PieceReport) -> None:
        """Index mapped facts (:data:`itkg.fhir.reader.Fact`: IRIs as valid IRI strings,
        literals as ``(lexical form, datatype)``) exactly as :meth:`add` indexes the same
        statements parsed as RDF: the same values in the index, the same counts in ``report``."""
        nodes, indexed, schema_types = self.index.nodes, self._indexed_names, self._schema_types
        links, rdf_type = setaside.PATIENT_LINKS, sys.intern(vocab.RDF_TYPE)
        itkg, patient, valid = vocab.ITKG, vocab.PATIENT, guards.is_valid_lexical
        last: object = None
        aside = False
        props: dict[str, list] | None = None
        count = 0
        for subject, predicate, obj in facts:
            count += 1
            if type(obj) is tuple and not valid(obj[0], obj[1]):
                if report.ill_typed is None:
                    report.ill_typed = guards.IllTypedLiteral(predicate, obj[1])
                    report.ill_typed_lexicals = []
                report.ill_typed_count += 1
                if len(report.ill_typed_lexicals) < 20:  # type: ignore[arg-type]
                    report.ill_typed_lexicals.append(obj[0])  # type: ignore[union-attr]
                continue
            name = indexed.get(predicate)
            if name is None:  # as :meth:`_other`
                if predicate == OWL_IMPORTS:
                    report.imports = True
                verdict = self._schema_predicates.get(predicate)
                if verdict is None:
                    verdict = self._schema_predicates[predicate] = setaside.is_schema_parts(None, predicate, None)
                if verdict or subject.startswith(itkg):
                    report.schema_set_aside += 1
                continue
            if subject is not last:  # a record's facts come together: its node is found once
                last, aside, props = subject, subject.startswith(itkg), None
            if aside:
                report.schema_set_aside += 1
                continue
            if name is rdf_type:
                verdict = schema_types.get(obj)
                if verdict is None:
                    verdict = schema_types[obj] = isinstance(obj, str) and \
                        setaside.is_schema_parts(None, rdf_type, obj)
                if verdict:
                    report.schema_set_aside += 1
                    continue
                if obj == patient:
                    report.holds_patient = True
            elif name in links:
                report.holds_patient = True
            if props is None:
                props = nodes.get(subject)
                if props is None:
                    props = nodes[subject] = {}
            values = props.get(name)
            if values is None:
                props[name] = [obj]
            else:
                values.append(obj)
        report.triples += count

    def _object_value(self, quad: ox.Quad, obj: object, scope: str, report: PieceReport) -> object:
        """An object as the index stores it (IRI, ``_:label`` or ``(lexical, datatype)``), after
        checking a literal against its datatype; IRIs and valid literals are remembered. An
        ill-typed literal is counted in ``report`` and gives :data:`_ASIDE`."""
        kind = type(obj)
        if kind is ox.BlankNode:
            return "_:" + scope + obj.value  # type: ignore[attr-defined]
        if kind is ox.Literal:
            lexical, datatype = obj.value, obj.datatype.value  # type: ignore[attr-defined]
            value: object = (lexical, datatype)
            if not guards.is_valid_lexical(lexical, datatype):
                if report.ill_typed is None:
                    report.ill_typed = guards.IllTypedLiteral(quad.predicate.value, datatype)
                    report.ill_typed_lexicals = []
                report.ill_typed_count += 1
                if len(report.ill_typed_lexicals) < 20:  # type: ignore[arg-type]
                    report.ill_typed_lexicals.append(lexical)  # type: ignore[union-attr]
                return _ASIDE
        else:
            if kind is ox.Triple:
                report.triple_terms = True
            value = obj.value if kind is ox.NamedNode else str(obj)  # type: ignore[attr-defined]
        if len(self._objects) < _OBJECT_CACHE_LIMIT:
            self._objects[obj] = value
        return value

    def _other(self, quad: ox.Quad, report: PieceReport) -> None:
        """A triple outside the index: only schema statements (counted) and owl:imports matter."""
        predicate = quad.predicate
        if predicate == _IMPORTS:
            report.imports = True
        verdict = self._schema_predicates.get(predicate)
        if verdict is None:
            verdict = self._schema_predicates[predicate] = setaside.is_schema_parts(
                None, predicate.value, None)
        if verdict or (type(quad.subject) is ox.NamedNode and quad.subject.value.startswith(vocab.ITKG)):
            report.schema_set_aside += 1


def parse_piece(piece: Piece, builder: IndexBuilder, *, on_read: Callable[[int], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> PieceReport:
    """Parse one piece into ``builder``'s index and report what was found. Never raises for bad
    input: the report carries it, and :func:`resolve` decides what counts."""
    report = PieceReport(piece.number)
    if piece.error is not None:
        return report
    if piece.fhir is not None:
        if builder.fhir is None:
            from .fhir.index import FhirIndexer
            builder.fhir = FhirIndexer(builder, piece.fhir.job)
        try:
            builder.fhir.read(piece.fhir, report, on_read)
        except InputError as error:
            report.fhir_error = error
        return report
    assert piece.fmt is not None
    reader = None if piece.data is not None else _PieceReader(piece, on_read, should_stop)
    try:
        parser = ox.parse(piece.data if reader is None else cast(BinaryIO, reader), format=piece.fmt,
                          base_iri=piece.base_iri, without_named_graphs=True)
        builder.add(parser, piece.scope, report)
        if piece.fmt == ox.RdfFormat.TURTLE and not piece.last:
            report.turtle_state = (dict(parser.prefixes), parser.base_iri)
    except (SyntaxError, MemoryError, ValueError, OSError) as error:
        failure = parse_failure(piece.path, piece.fmt, error)
        report.failure = (type(failure), failure.problem, failure.line, failure.column)
    finally:
        if reader is not None:
            reader.close()
            report.lines, report.stopped = reader.lines, reader.stopped
        elif on_read is not None:
            on_read(piece.nbytes)
    return report


# -- deciding --------------------------------------------------------------------------------------


def fatal_after(pieces: Sequence[Piece], report: PieceReport, strict: bool = False) -> int | None:
    """The last piece number whose report can still matter once ``report`` is in (later pieces
    may be skipped), or None when ``report`` found nothing that will be raised."""
    piece = pieces[report.number]
    if report.fhir_error is not None:
        return -1  # one process reads the run again, to report the first error with its line
    if piece.error is not None or report.failure is not None:
        return report.number
    if report.imports or report.triple_terms or (strict and report.ill_typed is not None):
        return max(p.number for p in pieces if p.file == piece.file)
    return None


def resolve(pieces: Sequence[Piece], reports: dict[int, PieceReport], strict: bool = False) -> None:
    """Raise the error :func:`itkg.load` would raise for these files, if any (ill-typed values
    only when ``strict``: otherwise they are set aside and counted).

    :raises Untrusted: when a cut piece cannot be trusted; parse its file whole to find out.
    """
    by_file: dict[int, list[Piece]] = {}
    for piece in pieces:
        by_file.setdefault(piece.file, []).append(piece)
    for file_pieces in by_file.values():
        lines_before = 0
        for piece in file_pieces:
            if piece.error is not None:
                raise piece.error
            report = reports.get(piece.number)
            if report is not None and report.fhir_error is not None:
                raise report.fhir_error
            if report is None or report.stopped:
                raise Untrusted("a piece that matters was not parsed to its end")
            if piece.context is not None:
                state = reports[piece.number - 1].turtle_state
                if state is None or state != piece.context:
                    raise Untrusted("the Turtle context at a cut is not what the next piece assumed")
            if report.failure is not None:
                raise _absolute(piece, report, lines_before)
            lines_before += report.lines
        reports_of_file = [reports[p.number] for p in file_pieces]
        if any(r.imports for r in reports_of_file):
            raise UnsafeInputError(file_pieces[0].path, IMPORTS_REFUSED)
        if any(r.triple_terms for r in reports_of_file):
            raise InputError(file_pieces[0].path, TRIPLE_TERMS_REFUSED)
        bad = [r for r in reports_of_file if r.ill_typed is not None]
        if bad and strict:
            raise ill_typed_error(file_pieces[0].path, bad[0].ill_typed,  # type: ignore[arg-type]
                                  sum(r.ill_typed_count for r in bad), _lines(file_pieces, bad))


def _lines(file_pieces: Sequence[Piece], reports: Sequence[PieceReport]) -> tuple[int, ...]:
    """The lines of a file's ill-typed values (found by their text; never printed with them)."""
    lexicals = [x for r in reports for x in (r.ill_typed_lexicals or ())][:20]
    if not lexicals:
        return ()
    first = file_pieces[0]
    try:
        raw = first.data if first.data is not None else first.path.read_bytes()
    except OSError:
        return ()
    return setaside.find_lines(raw, lexicals)


def _absolute(piece: Piece, report: PieceReport, lines_before: int) -> InputError:
    """The error of a piece with its line counted from the start of the file."""
    kind, problem, line, column = report.failure  # type: ignore[misc]
    if line is None or piece.first and piece.last:
        return kind(piece.path, problem, line, column)
    line -= piece.preamble_lines
    # In Turtle, an error in a piece that is not the file's last may be the cut after it (a
    # statement or long string that goes on in the next piece; the parser may report it where
    # the string began): parse the file whole. The last piece's start is a proven boundary.
    if piece.fmt == ox.RdfFormat.TURTLE and (line < 1 or not piece.last):
        raise Untrusted("a Turtle error in a piece before a cut")
    return kind(piece.path, problem, lines_before + line, column)


# -- one process -----------------------------------------------------------------------------------


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
    pieces = plan(paths, input_format=input_format, max_bytes=max_bytes)
    builder = IndexBuilder(predicates=predicates)
    reports: dict[int, PieceReport] = {}
    fhir = [p for p in pieces if p.fhir is not None]
    with gc_paused():
        # FHIR first: its inputs are read together (references cross files), and its errors
        # come before any RDF file's, as itkg.load reports them.
        for piece in [*fhir, *(p for p in pieces if p.fhir is None)]:
            reports[piece.number] = parse_piece(piece, builder, on_read=on_read)
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


def sources_of(pieces: Sequence[Piece], reports: dict[int, PieceReport], *,
               checksums: bool) -> tuple[Source, ...]:
    """One :class:`Source` per file; the SHA-256 checksums only when asked (it means reading
    every file once more)."""
    sources = []
    for file_index in sorted({p.file for p in pieces}):
        file_pieces = [p for p in pieces if p.file == file_index]
        first = file_pieces[0]
        digest = ""
        if checksums:
            digest = fhir_sha256(first.path) if first.fhir is not None \
                else hashlib.sha256(first.data).hexdigest() if first.data is not None \
                else file_sha256(first.path)
        file_reports = [reports[p.number] for p in file_pieces]
        lines = _lines(file_pieces, file_reports)
        sources.append(Source(str(first.path), digest, "fhir" if first.fhir is not None
                              else format_name(first.fmt),  # type: ignore[arg-type]
                              sum(r.triples for r in file_reports),
                              sum(r.schema_set_aside for r in file_reports),
                              sum(r.ill_typed_count for r in file_reports), lines,
                              any(r.holds_patient for r in file_reports)))
    return tuple(sources)


def fhir_sha256(path: Path) -> str:
    """The SHA-256 checksum of a FHIR input, as :func:`itkg.load` gives it: of the file, or of a
    Bulk export directory's ``*.ndjson`` files in name order, one after the other."""
    from .fhir.index import files_of
    digest = hashlib.sha256()
    for file in files_of(path):
        with open(file, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """The SHA-256 checksum of a file, read in blocks (hashlib releases the GIL meanwhile)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
