"""The one reader: every input format parsed and checked once, into one stream of checked triples.

Before, three loaders (:func:`itkg.load`, :func:`itkg.loading.load_store` and the population path
of :mod:`itkg.streaming`) each parsed and checked the input and each promised "the same checks in
the same order"; they drifted (an RDF 1.2 triple term was refused by one and not another, blank
nodes were named differently by each). Now there is one path, and the loaders are *sinks* of it::

    files ──plan──> pieces ──parse_piece──> Checker.check ──> sink.add
    (format,         (whole file, or a      (owl:imports, triple  ├ loading.TripleSink → itkg.load
     size, XML and    cut of a large         terms, schema         ├ loading.StoreSink  → Oxigraph
     JSON-LD gates,   N-Triples/Turtle       statements, ill-typed ├ streaming.IndexBuilder → the
     FHIR mapped to   file)                  literals; counted)    │   rule engine's index
     N-Triples)              ──resolve──> the error itkg.load raises, if any (all or nothing)

* :func:`plan` detects each file's format, applies the gates that must see the whole input
  before any parser does (size, XML DTDs, JSON nesting and contexts, invalid JSON-LD terms), reads
  FHIR input through its own reader (:mod:`itkg.fhir`) into N-Triples, and may cut large
  N-Triples and Turtle files into pieces for several processes (:mod:`itkg.parallel`).
* :func:`parse_piece` parses one piece with pyoxigraph and hands the triples, through the one
  :class:`Checker`, to a sink; what was wrong goes into a :class:`PieceReport`, never raised.
* :func:`resolve` turns the reports into the error :func:`itkg.load` raises (file by file:
  unusable file, syntax error, ``owl:imports``, triple terms, ill-typed values under ``strict``).

Node names (:class:`Namer`) are part of the stream, so every sink sees the same names: an IRI is
itself; a blank node keeps the label written in the file (``_:p1`` stays ``p1``), and a node
written without a label (``[ ... ]``, a collection, a JSON-LD node object without ``@id``, an
RDF/XML node without ``rdf:nodeID``) is numbered in the order the parser meets it in its file
(``_1``, ``_2``, ...) instead of getting the parser's fresh random id. With several files every
name gets the file's number (``f2-p1``), so equal labels in different files stay different
nodes. Two runs, and every engine, give the same names; :mod:`itkg.nodenames` words them for
people (label as written, file and line).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, cast

import pyoxigraph as ox

from . import guards, processes, setaside, vocab
from .errors import InputError, InputTooLargeError, UnsafeInputError
from .loading import (BOM, DEFAULT_MAX_BYTES, IMPORTS_REFUSED, OWL_IMPORTS, TRIPLE_TERMS_REFUSED, Source,
                      checked_size, detect_format, format_name, ill_typed_error, parse_failure, read_checked)

if TYPE_CHECKING:
    from .fhir.index import FhirChunk
    from .fhir.reader import FhirReport

# -- names -----------------------------------------------------------------------------------------

#: The ids pyoxigraph gives nodes written without a label: 128 random bits in lower-case hex,
#: starting with a letter (shorter than 24 digits once in 4 billion). A file that itself writes
#: labels of this form (:data:`_WRITTEN_GENERATED`) is read with every id kept as parsed.
_GENERATED = re.compile(r"[a-f][0-9a-f]{23,31}\Z")
_WRITTEN_GENERATED = {
    ox.RdfFormat.TURTLE: re.compile(rb"_:[a-f][0-9a-f]{23}"),
    ox.RdfFormat.JSON_LD: re.compile(rb"_:[a-f][0-9a-f]{23}"),
    ox.RdfFormat.RDF_XML: re.compile(rb"nodeID\s*=\s*[\"']\s*[a-f][0-9a-f]{23}"),
}
#: Names of nodes written without a label start with it (then a digit); a label written with a
#: leading underscore gets one more, so that no label can take an unlabelled node's name.
ANONYMOUS = "_"
#: Labels remembered with their names (a cache: a label's name never depends on it).
_LABEL_CACHE = 100_000


class Namer:
    """The stable name of every blank node of one file (or piece of a file): see the module
    docstring. ``name`` takes the parser's id and gives the name without ``_:``."""

    def __init__(self, scope: str = "", *, renames: bool = False, statements: bool = False,
                 anonymous_prefix: str = ANONYMOUS) -> None:
        self.scope = scope
        #: whether the parser gives random ids to unlabelled nodes (every format but N-Triples)
        self.renames = renames
        #: Turtle: an unlabelled node is never mentioned after the statement it is written in,
        #: so the ids of finished statements are forgotten (:meth:`subject`), and memory stays
        #: bounded by the largest statement, not by the file.
        self.statements = statements
        self.anonymous = 0
        self._prefix = scope + anonymous_prefix
        self._recent: dict[str, str] = {}
        self._older: dict[str, str] = {}
        self._labels: dict[str, str] = {}
        self._last_named = ""
        #: how the plain names (``_:`` ...) of unlabelled nodes of this file start
        self._anonymous_name = "_:" + scope + ANONYMOUS

    @classmethod
    def identity(cls) -> "Namer":
        """Names as the ids are (an rdflib graph already in memory keeps its own)."""
        namer = cls(renames=True)  # (so that the checker asks name() for every id)
        namer.name = lambda value: value  # type: ignore[method-assign]
        return namer

    def name(self, value: str) -> str:
        """The name of the blank node the parser calls ``value``."""
        if not self.renames:
            return self.scope + value if value[0] != "_" else self.scope + "_" + value
        found = self._recent.get(value)
        if found is None:
            found = self._older.get(value)
            if found is None:
                found = self._labels.get(value)
                if found is None:
                    if _GENERATED.match(value):
                        self.anonymous += 1
                        found = self._recent[value] = f"{self._prefix}{self.anonymous}"
                    else:
                        if len(self._labels) >= _LABEL_CACHE:
                            self._labels.clear()
                        found = self._labels[value] = self.scope + value if value[0] != "_" \
                            else self.scope + "_" + value
        return found

    def subject(self, name: str) -> None:
        """Called by the checker when the subject of the triples changes (Turtle only), with its
        plain name. A new subject written with a name (an IRI or a label) starts a new statement:
        the unlabelled nodes met before the previous named subject's last triple belong to
        finished statements and are forgotten."""
        start = len(self._anonymous_name)
        if name.startswith(self._anonymous_name) and "0" <= name[start:start + 1] <= "9":
            return
        if name != self._last_named:
            self._last_named = name
            self._older.clear()
        if self._recent:
            self._older.update(self._recent)
            self._recent.clear()


def namer_for(piece: "Piece") -> Namer:
    """The namer of a piece (see :class:`Namer`)."""
    assert piece.fmt is not None
    renames = piece.fmt != ox.RdfFormat.N_TRIPLES and not piece.written_generated
    # Unlabelled nodes after a cut are numbered from the cut's offset: they never cross it.
    prefix = ANONYMOUS if piece.first else f"{ANONYMOUS}{piece.start}."
    return Namer(piece.scope, renames=renames, statements=piece.fmt == ox.RdfFormat.TURTLE,
                 anonymous_prefix=prefix)


def writes_generated_labels(fmt: ox.RdfFormat, data: bytes | Path) -> bool:
    """Whether the input writes labels of the form pyoxigraph gives unlabelled nodes (then it is
    read with ids as parsed). Searched in blocks, so a large file is never held whole."""
    pattern = _WRITTEN_GENERATED.get(fmt)
    if pattern is None:
        return False
    if isinstance(data, bytes):
        return pattern.search(data) is not None
    tail = b""
    with open(data, "rb") as handle:
        while block := handle.read(1 << 24):
            if pattern.search(tail + block):
                return True
            tail = block[-64:]
    return False


# -- checks ----------------------------------------------------------------------------------------

_PLAIN, _IMPORTS, _SCHEMA, _TYPE, _LINK = range(5)
#: IRI and literal objects remembered with their plain value and verdict. Class IRIs,
#: individuals, dates and codes repeat across a population; the cap bounds the memory it costs.
_OBJECT_CACHE = 200_000
#: Renamed blank nodes remembered by name while a piece is checked (a cache, bounded).
_NODE_CACHE = 100_000


class IllTyped(tuple):
    """The plain value ``(lexical form, datatype)`` of a literal that is not valid for its datatype."""

    __slots__ = ()


#: One checked triple: the parsed quad, the subject's plain name (an IRI, or ``_:`` and the
#: :class:`Namer`'s name; the same string object while the subject stays the same), the sink's key
#: for the predicate, and the object's plain value (an IRI, ``_:name``, or ``(lexical, datatype)``).
Checked = tuple[ox.Quad, str, Any, "str | tuple[str, str]"]


def _predicate_verdict(predicate: str) -> int:
    if predicate == OWL_IMPORTS:
        return _IMPORTS
    if setaside.is_schema_parts(None, predicate, None):
        return _SCHEMA
    if predicate == vocab.RDF_TYPE:
        return _TYPE
    return _LINK if predicate in setaside.PATIENT_LINKS else _PLAIN


class Checker:
    """Every check on parsed triples, in one place, for every sink: ``owl:imports`` and RDF 1.2
    triple terms are noted (the file is refused), statements about classes or ``itkg:`` terms
    are set aside and counted (:mod:`itkg.setaside`), ill-typed literals are counted and set
    aside (or kept, for ``validate``: ``keep_ill_typed``), whether the file holds a patient is
    noted, and every node is named. Verdicts and plain values of predicates, classes and
    literals are remembered.

    :param keys: the predicates a sink keeps, each with the key it wants for it (the rule
        engine's index keeps a few, as interned strings); every triple is checked all the same.
        By default every predicate is kept, as itself.
    """

    def __init__(self, *, keep_ill_typed: bool = False, keys: dict[ox.NamedNode, Any] | None = None,
                 final_terms: bool = False) -> None:
        self.keep_ill_typed = keep_ill_typed
        #: whether the quads handed on carry their final blank nodes (see :meth:`check`)
        self.final_terms = final_terms
        #: the index sink's nodes (subject name -> key -> values), when :meth:`check` is to add
        #: the kept triples to them itself instead of handing them on (see :meth:`check`)
        self.into: dict[str, dict[Any, list]] | None = None
        #: when a list (``final_terms`` only), the literal objects of the statements handed on
        #: are appended to it as they are handed on: a store sink's literal-form watch
        #: (:class:`itkg.lexical.FormWatch`) then looks at them alone, not at every statement
        self.literals: list[ox.Literal] | None = None
        self._keys = keys
        self._predicates: dict[ox.NamedNode, tuple[int, Any]] = {}
        self._types: dict[str, int] = {}
        self._objects: dict[object, Any] = {}
        self._fact_predicates: dict[str, tuple[int, Any]] = {}
        self._fact_literals: dict[tuple[str, str], Any] = {}

    def _predicate(self, predicate: ox.NamedNode) -> tuple[int, Any]:
        key = predicate if self._keys is None else self._keys.get(predicate)
        entry = self._predicates[predicate] = (_predicate_verdict(predicate.value), key)
        return entry

    def check(self, quads: Iterable[ox.Quad], report: "PieceReport", namer: Namer) -> Iterator[Any]:
        """The triples of ``quads`` that are patient data (and that the sink keeps), in order, as
        :data:`Checked` tuples; the rest is counted in ``report``.

        With ``final_terms`` (the sinks that keep pyoxigraph terms: a list, a store), the
        statements alone are handed on, not :data:`Checked` tuples, and each carries the blank
        nodes' final names. It is the parsed quad itself whenever no
        node of it is renamed (every node of one N-Triples file, every labelled node of one Turtle
        file), and rebuilt only otherwise: pyoxigraph's ``Quad(...)`` costs about 3 µs when a
        term is a blank node or a literal (it tries each kind of term in turn), and rebuilding
        every quad with a blank node made ``itkg query --engine oxigraph`` twice as slow
        (docs/performance.md). A renamed node is made once per name (cached).

        With :attr:`into` set when the checking starts (the rule engine's index sink,
        :class:`itkg.streaming.IndexBuilder`), the kept triples are added to those nodes here and
        nothing is handed on: a tuple made, handed on and taken apart again for each of millions
        of triples was a tenth of the index's CPU time (docs/performance.md, session six)."""
        predicates, objects, types = self._predicates, self._objects, self._types
        named, blank, triple, make = ox.NamedNode, ox.BlankNode, ox.Triple, ox.Quad
        itkg, keep_ill_typed, final_terms = vocab.ITKG, self.keep_ill_typed, self.final_terms
        name, renames, recent = namer.name, namer.renames, namer._recent
        scope = namer.scope
        statements = namer.statements and renames
        into, literals, literal = self.into, self.literals, ox.Literal
        props: dict[Any, list] | None = None  # the subject's entry in ``into``, once looked up
        nodes: dict[str, ox.BlankNode] = {}  # renamed nodes by name (final_terms only)
        last_subject: object = None
        subject_name = ""
        subject_term: Any = None  # the subject's renamed node, or None when it keeps its term
        aside_subject = False
        ill_typed_kind, type_verdict, link_verdict = IllTyped, _TYPE, _LINK
        count = 0
        for count, quad in enumerate(quads, 1):  # noqa: B007 - count is used after the loop
            predicate = quad.predicate
            entry = predicates.get(predicate)
            if entry is None:
                entry = self._predicate(predicate)
            verdict, key = entry
            obj: Any = quad.object
            kind = type(obj)
            object_term: Any = None
            ill = False
            # Every node is named, kept or not, so that numbers never depend on what a sink keeps.
            if kind is blank:  # (the namer's common cases inlined: a population has millions)
                label = obj.value
                if renames:
                    found = recent.get(label)
                    if found is None:
                        found = name(label)
                else:  # ("" + label is label itself: one file keeps every label)
                    found = scope + label if label[0] != "_" else scope + "_" + label
                value: Any = "_:" + found
                if final_terms and found != label:
                    object_term = nodes.get(found)
                    if object_term is None:
                        object_term = self._node(nodes, found)
            elif kind is triple:
                report.triple_terms = True
                continue
            else:
                value = objects.get(obj)
                if value is None:
                    if kind is named:
                        value = obj.value
                    else:
                        value = (obj.value, obj.datatype.value)
                        if not guards.is_valid_lexical(*value):
                            value = IllTyped(value)
                    if len(objects) < _OBJECT_CACHE:
                        objects[obj] = value
                if kind is not named and type(value) is ill_typed_kind:
                    ill = True
            subject: Any = quad.subject
            if subject != last_subject:
                last_subject = subject
                subject_term = None
                props = None
                if type(subject) is named:
                    subject_name = subject.value
                    aside_subject = subject_name.startswith(itkg)
                    if statements:
                        namer.subject(subject_name)
                else:
                    label = subject.value
                    if renames:
                        found = recent.get(label)
                        if found is None:
                            numbered = namer.anonymous
                            found = name(label)
                            if statements and namer.anonymous == numbered:  # not a new unlabelled node
                                namer.subject("_:" + found)
                        # (else an unlabelled node of the statement under way)
                    else:
                        found = scope + label if label[0] != "_" else scope + "_" + label
                    subject_name = "_:" + found
                    if final_terms and found != label:
                        subject_term = nodes.get(found)
                        if subject_term is None:
                            subject_term = self._node(nodes, found)
                    aside_subject = False
            if verdict:  # (the common cases inlined: a record's type, a patient's link)
                if verdict == type_verdict and kind is named and types.get(value) == 0:
                    pass
                elif verdict == link_verdict:
                    if not aside_subject and not report.holds_patient:
                        report.holds_patient = True
                elif self._set_aside_by_verdict(verdict, value, kind is named, aside_subject, report):
                    continue
            if aside_subject:
                report.schema_set_aside += 1
                continue
            if ill:
                report.note_ill_typed(predicate.value, *value)
                if not keep_ill_typed:
                    continue
            if key is None:
                continue
            if into is not None:
                if props is None:
                    props = into.get(subject_name)
                    if props is None:
                        props = into[subject_name] = {}
                values = props.get(key)
                if values is None:
                    props[key] = [value]
                else:
                    values.append(value)
                continue
            if final_terms:
                if subject_term is not None or object_term is not None:
                    quad = make(subject if subject_term is None else subject_term, predicate,
                                obj if object_term is None else object_term)
                if literals is not None and kind is literal:
                    literals.append(obj)
                yield quad
                continue
            yield quad, subject_name, key, value
        report.triples += count

    @staticmethod
    def _node(nodes: dict[str, ox.BlankNode], found: str) -> ox.BlankNode:
        """The blank node named ``found`` (remembered in ``nodes``, a cache, bounded)."""
        if len(nodes) >= _NODE_CACHE:
            nodes.clear()
        node = nodes[found] = ox.BlankNode(found)
        return node

    def _set_aside_by_verdict(self, verdict: int, value: Any, named: bool, aside: bool,
                              report: "PieceReport") -> bool:
        """What :meth:`check` and :meth:`check_facts` do with a statement whose predicate has a
        verdict (``owl:imports``, a schema property, ``rdf:type`` or a patient link): count it and
        say whether it is set aside. Only such statements come here, so the common case (a
        record's own property) costs no call. ``value`` is the object's name (an IRI string when
        ``named``); ``aside`` says the subject is an ``itkg:`` term (rules, not data)."""
        if verdict == _IMPORTS:
            report.imports = True
            return True
        if verdict == _SCHEMA:
            report.schema_set_aside += 1
            return True
        if verdict == _TYPE:
            if named:
                kept = self._types.get(value)
                if kept is None:
                    kept = self._types[value] = 2 if value == vocab.PATIENT else int(
                        setaside.is_schema_parts(None, vocab.RDF_TYPE, value))
                if kept == 1:
                    report.schema_set_aside += 1
                    return True
                if kept == 2 and not aside:
                    report.holds_patient = True
        elif not aside:
            report.holds_patient = True
        return False

    def check_facts(self, facts: Iterable[tuple[str, str, Any]], report: "PieceReport") -> Iterator[Checked]:
        """Facts mapped from another format (FHIR: subject and predicate IRIs as strings, the
        object an IRI string or ``(lexical form, datatype)``), through the verdicts of
        :meth:`check`: the same keys, counts and values as the same statements parsed as RDF."""
        predicates, literals = self._fact_predicates, self._fact_literals
        itkg, keep_ill_typed = vocab.ITKG, self.keep_ill_typed
        count = 0
        last: object = None
        aside = False
        for count, (subject, predicate, value) in enumerate(facts, 1):  # noqa: B007 - used after the loop
            if subject is not last:  # a record's facts come together
                last, aside = subject, subject.startswith(itkg)
            entry = predicates.get(predicate)
            if entry is None:
                entry = predicates[predicate] = self._predicate(ox.NamedNode(predicate))
            verdict, key = entry
            named = type(value) is str
            if not named:
                checked = literals.get(value)
                if checked is None:
                    checked = value if guards.is_valid_lexical(*value) else IllTyped(value)
                    if len(literals) < _OBJECT_CACHE:
                        literals[value] = checked
                value = checked
            if verdict and self._set_aside_by_verdict(verdict, value, named, aside, report):
                continue
            if aside:
                report.schema_set_aside += 1
                continue
            if type(value) is IllTyped:
                report.note_ill_typed(predicate, *value)
                if not keep_ill_typed:
                    continue
            if key is not None:
                yield None, subject, key, value  # type: ignore[misc]
        report.triples += count


class Sink(Protocol):
    """Where checked triples go: a list of triples, an Oxigraph store, the rule engine's index."""

    checker: Checker

    def add(self, quads: Iterable[Checked], namer: Namer, report: "PieceReport") -> None:
        """Take the checked triples of one piece (blank nodes named by ``namer``): :data:`Checked`
        tuples, or the statements alone from a checker with ``final_terms``."""


#: Files smaller than this are never cut: below it a second process costs more than it saves.
MIN_PIECE_BYTES = 16 * 1024**2

#: How far past the wanted position to look for a place to cut a file (else it is not cut there).
_CUT_WINDOW = 4 * 1024**2
#: A likely end of a Turtle statement: a line ending in "." then, after any blank lines, a line
#: that starts in the first column (where pretty-printed Turtle starts its statements).
_TURTLE_CUT = re.compile(rb"\.[ \t]*\r?\n(?:[ \t]*\r?\n)*(?=[^\s#])")

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
    #: the ``--input-format`` name of the input (``fhir`` for FHIR mapped to N-Triples)
    label: str = ""
    #: the input writes labels of the form pyoxigraph gives unlabelled nodes (:class:`Namer`)
    written_generated: bool = False
    #: the size limit, enforced on the bytes read too (the file may grow after the check)
    limit: int = DEFAULT_MAX_BYTES
    #: the SHA-256 of the input when known before parsing (FHIR), else computed while reading
    sha256: str = ""
    #: a chunk of FHIR input mapped straight into the rule engine's index (:mod:`itkg.fhir.index`)
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
    #: nodes written without a label, numbered by the :class:`Namer`
    anonymous: int = 0
    #: the SHA-256 of a whole file, when asked and read here
    sha256: str = ""
    #: a FHIR piece: what reading it found, and the error that stopped it
    fhir: FhirReport | None = None
    fhir_error: InputError | None = None

    def note_ill_typed(self, predicate: str, lexical: str, datatype: str) -> None:
        """Count an ill-typed literal (its predicate and datatype; its text only to find its line)."""
        if self.ill_typed is None:
            self.ill_typed = guards.IllTypedLiteral(predicate, datatype)
            self.ill_typed_lexicals = []
        self.ill_typed_count += 1
        if len(self.ill_typed_lexicals) < 20:  # type: ignore[arg-type]
            self.ill_typed_lexicals.append(lexical)  # type: ignore[union-attr]


class Untrusted(Exception):
    """Cutting a file into pieces went wrong (a Turtle cut inside a statement, or prefixes
    declared mid-file): parse the files whole instead. Never escapes :mod:`itkg`."""


# -- planning ------------------------------------------------------------------------------------


def plan(paths: Sequence[str | Path], *, input_format: str | None = None,
         max_bytes: int = DEFAULT_MAX_BYTES, parts: int = 1,
         min_piece_bytes: int = MIN_PIECE_BYTES, fhir_facts: bool = False,
         first_share: float = 1.0) -> list[Piece]:
    """The pieces to parse for ``paths``: each file whole, or N-Triples and Turtle files of at
    least twice ``min_piece_bytes`` cut into up to ``parts`` pieces of about equal size (FHIR
    NDJSON chunks for the index: the first ``first_share`` of the others' size, see
    :func:`itkg.fhir.index.plan`)."""
    if not paths:
        raise InputError("<none>", "no input files given")
    pieces: list[Piece] = []
    chunks = _fhir_chunks(paths, input_format, max_bytes, parts, min_piece_bytes, first_share) if fhir_facts else {}
    fhir = {} if fhir_facts else _fhir_pieces(paths, input_format, max_bytes)
    for file_index, raw in enumerate(paths):
        path = Path(raw)
        scope = f"f{file_index + 1}-" if len(paths) > 1 else ""
        if path in chunks:  # FHIR R4, mapped to §2 facts straight into the index (itkg.fhir.index)
            pieces += [Piece(len(pieces) + k, file=file_index, path=path, fmt=None, size=c.end - c.start,
                             scope=scope, fhir=c, label="fhir") for k, c in enumerate(chunks[path])]
            continue
        if path in fhir:  # FHIR R4 JSON, mapped to §2 triples (itkg.fhir): parsed as N-Triples
            data, digest = fhir[path]
            pieces.append(Piece(len(pieces), fmt=ox.RdfFormat.N_TRIPLES, data=data, label="fhir",
                                size=len(data), file=file_index, path=path, scope=scope,
                                sha256=digest, limit=max(max_bytes, len(data))))
            continue
        try:
            fmt = detect_format(path, input_format)
            if fmt not in (ox.RdfFormat.N_TRIPLES, ox.RdfFormat.TURTLE):
                data = read_checked(path, fmt, max_bytes)
                pieces.append(Piece(len(pieces), fmt=fmt, data=data, size=len(data),
                                    base_iri=path.resolve().as_uri(), file=file_index, path=path,
                                    scope=scope, label=format_name(fmt), limit=max_bytes,
                                    written_generated=writes_generated_labels(fmt, data)))
                continue
            size = checked_size(path, max_bytes)
        except InputError as error:
            pieces.append(Piece(len(pieces), fmt=None, error=error, file=file_index, path=path, scope=scope))
            continue
        written = fmt == ox.RdfFormat.TURTLE and writes_generated_labels(fmt, path)
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
                scope=scope, label=format_name(fmt), written_generated=written, limit=max_bytes))
    return pieces


def _fhir_pieces(paths: Sequence[str | Path], input_format: str | None,
                 max_bytes: int) -> dict[Path, tuple[bytes, str]]:
    """The FHIR inputs among ``paths``, read together (references cross files), each as the
    N-Triples of the facts it gave, with the SHA-256 of what was read: for the sinks that keep
    RDF terms, the FHIR reader's triples enter the one stream here, checked like any other
    input's (its errors come before any other input's)."""
    from .fhir import hook
    fhir_paths, _ = hook.split(paths, input_format)
    if not fhir_paths:
        return {}
    graph, _sources = hook.read_fhir(fhir_paths, max_bytes)
    return {path: (graph.ntriples(index), digest) for index, (path, _triples, digest) in enumerate(graph.files)}


def _fhir_chunks(paths: Sequence[str | Path], input_format: str | None, max_bytes: int, parts: int,
                 min_piece_bytes: int, first_share: float = 1.0) -> dict[Path, list[FhirChunk]]:
    """The FHIR inputs among ``paths`` and their chunks, for the rule engine's index
    (:func:`itkg.fhir.index.plan`; its errors, a missing or too large file, come before any
    other input's)."""
    from .fhir import hook
    from .fhir.index import plan as fhir_plan
    fhir_paths, _ = hook.split(paths, input_format)
    if not fhir_paths:
        return {}
    chunks = fhir_plan(fhir_paths, parts=parts, min_piece_bytes=min_piece_bytes, max_bytes=max_bytes,
                       first_share=first_share)
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
                 should_stop: Callable[[], bool] | None, checksum: bool = False) -> None:
        # (a large buffer: the parser asks for about 2 KB at a time)
        self._file = open(piece.path, "rb", buffering=1 << 20)  # noqa: SIM115 - closed by close()
        # A whole file may be hashed as it is read (the checksum covers a byte order mark too).
        self.sha256 = hashlib.sha256() if checksum and piece.first and piece.last else None
        start = piece.start
        if start == 0:
            head = self._file.read(len(BOM))
            if head == BOM:  # a UTF-8 byte order mark is skipped
                start = len(BOM)
            if self.sha256 is not None:
                self.sha256.update(head[:start] if start else b"")
        self._file.seek(start)
        #: bytes read; for a whole file at most one past the size limit (the file may grow)
        self.nbytes = start
        self._left = piece.limit + 1 - start if piece.end is None else max(0, piece.end - start)
        # Handed out by offset: slicing off the front of the bytes at every read copied the rest
        # each time, quadratic in the prefix block (10^6 prefixes took minutes).
        self._preamble = memoryview(piece.preamble or b"")
        self._preamble_at = 0
        self._on_read = on_read
        self._should_stop = should_stop
        #: bytes handed out since the memory budget was last checked (:meth:`read`)
        self._unchecked = 0
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
        size = min(size, self._left)
        data = self._file.read(size) if size > 0 else b""
        if not data:
            return b""
        self._left -= len(data)
        self.nbytes += len(data)
        self._unchecked += len(data)
        if self._unchecked >= _BUDGET_CHECK_BYTES:  # a budget ends the read cleanly, under any load
            self._unchecked = 0
            processes.check_memory()
        if self.sha256 is not None:
            self.sha256.update(data)
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


#: Input bytes between two tests of the memory budget while reading (:func:`itkg.processes.check_memory`).
_BUDGET_CHECK_BYTES = 1 << 20


def parse_piece(piece: Piece, sink: Sink, *, on_read: Callable[[int], None] | None = None,
                should_stop: Callable[[], bool] | None = None, checksum: bool = False) -> PieceReport:
    """Parse one piece, through the :class:`Checker`, into ``sink``, and report what was found.
    Never raises for bad input: the report carries it, and :func:`resolve` decides what counts."""
    report = PieceReport(piece.number)
    if piece.error is not None:
        return report
    if piece.fhir is not None:  # FHIR facts, for the index sink only (plan(fhir_facts=True))
        builder: Any = sink
        if builder.fhir is None:
            from .fhir.index import FhirIndexer
            builder.fhir = FhirIndexer(builder, piece.fhir.job)
        try:
            builder.fhir.read(piece.fhir, report, on_read)
        except InputError as error:
            report.fhir_error = error
        return report
    assert piece.fmt is not None
    reader = None if piece.data is not None else _PieceReader(piece, on_read, should_stop, checksum)
    namer = namer_for(piece)
    try:
        parser = ox.parse(piece.data if reader is None else cast(BinaryIO, reader), format=piece.fmt,
                          base_iri=piece.base_iri, without_named_graphs=True)
        sink.add(sink.checker.check(parser, report, namer), namer, report)
        if piece.fmt == ox.RdfFormat.TURTLE and not piece.last:
            report.turtle_state = (dict(parser.prefixes), parser.base_iri)
    except (SyntaxError, MemoryError, ValueError, OSError) as error:
        failure = parse_failure(piece.path, piece.fmt, error)
        report.failure = (type(failure), failure.problem, failure.line, failure.column)
    finally:
        report.anonymous = namer.anonymous
        if reader is not None:
            reader.close()
            report.lines, report.stopped = reader.lines, reader.stopped
            if reader.sha256 is not None:
                report.sha256 = reader.sha256.hexdigest()
            if piece.end is None and reader.nbytes > piece.limit:  # it grew past the limit
                try:
                    guards.check_size(reader.nbytes, str(piece.path), piece.limit)
                except InputTooLargeError as too_large:
                    report.failure = (InputTooLargeError, too_large.problem, None, None)
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


def read(paths: Sequence[str | Path], sink: Sink, *, input_format: str | None = None,
         max_bytes: int = DEFAULT_MAX_BYTES, strict: bool = False, checksums: bool = True,
         on_read: Callable[[int], None] | None = None) -> tuple[Source, ...]:
    """Read ``paths`` into ``sink`` in this process, file by file, and return one
    :class:`~itkg.loading.Source` per file; raise the first problem as :func:`itkg.load` does
    (the sink may then hold part of the input: discard it).

    :param strict: refuse ill-typed literals (else they are counted, and set aside or kept as
        the sink's :class:`Checker` says).
    :param checksums: the SHA-256 of every file, computed while it is read.
    """
    pieces = plan(paths, input_format=input_format, max_bytes=max_bytes)
    reports: dict[int, PieceReport] = {}
    for piece in pieces:
        reports[piece.number] = parse_piece(piece, sink, on_read=on_read, checksum=checksums)
        # One piece per file here: resolving now raises this file's problem before the next
        # file is read.
        resolve([piece], {piece.number: reports[piece.number]}, strict)
    return sources_of(pieces, reports, checksums=checksums)


def sources_of(pieces: Sequence[Piece], reports: dict[int, PieceReport], *,
               checksums: bool) -> tuple[Source, ...]:
    """One :class:`Source` per file; the SHA-256 checksums only when asked (it means reading
    every file once more)."""
    sources = []
    for file_index in sorted({p.file for p in pieces}):
        file_pieces = [p for p in pieces if p.file == file_index]
        first = file_pieces[0]
        file_reports = [reports[p.number] for p in file_pieces]
        digest = first.sha256 or file_reports[0].sha256
        if checksums and not digest:
            if first.fhir is not None:
                from .streaming import fhir_sha256
                digest = fhir_sha256(first.path)
            else:
                digest = hashlib.sha256(first.data).hexdigest() if first.data is not None \
                    else file_sha256(first.path)
        lines = _lines(file_pieces, file_reports)
        sources.append(Source(str(first.path), digest, first.label,
                              sum(r.triples for r in file_reports),
                              sum(r.schema_set_aside for r in file_reports),
                              sum(r.ill_typed_count for r in file_reports), lines,
                              any(r.holds_patient for r in file_reports)))
    return tuple(sources)


def file_sha256(path: Path) -> str:
    """The SHA-256 checksum of a file, read in blocks (hashlib releases the GIL meanwhile)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


_LOCAL_ANONYMOUS = re.compile(r"_:((?:f[0-9]+-)?)" + ANONYMOUS + r"([0-9]+)\.([0-9]+)")


def renumbering(pieces: Sequence[Piece], reports: dict[int, PieceReport]) -> Callable[[str], str] | None:
    """After a parallel run: the function that gives the names of unlabelled nodes in pieces after
    a cut (``_<offset>.<k>``, numbered in their piece) the numbers they have when the file is
    read whole (``_<n>``), so that names never depend on how many processes read the file. None
    when no such node was met."""
    table: dict[tuple[str, int], int] = {}
    counted: dict[int, int] = {}
    for piece in pieces:
        report = reports.get(piece.number)
        if not piece.first:
            table[(piece.scope, piece.start)] = counted.get(piece.file, 0)
        counted[piece.file] = counted.get(piece.file, 0) + (report.anonymous if report is not None else 0)
    if not any(reports[p.number].anonymous for p in pieces if not p.first and p.number in reports):
        return None

    def rename(match: re.Match[str]) -> str:
        base = table.get((match.group(1), int(match.group(2))))
        if base is None:
            return match.group(0)
        return f"_:{match.group(1)}{ANONYMOUS}{base + int(match.group(3))}"

    return lambda text: _LOCAL_ANONYMOUS.sub(rename, text) if "." in text else text
