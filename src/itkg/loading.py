"""Loading patient graphs: safely, all or nothing, from Turtle, N-Triples, JSON-LD and RDF/XML.

Every file is checked before any RDF parser sees it (size, XML DTDs and entities, JSON nesting and
remote JSON-LD contexts), parsed with pyoxigraph (fast, and it never fetches anything) into a fresh
list, checked for ill-typed literals, and only then added to the result. A failure anywhere raises
an :class:`~itkg.errors.InputError` naming the file and, where the parser knows it, the line; the
message never quotes the input, because it may be patient data.

:func:`load_store` is the same loader for the Oxigraph SPARQL path: the parsed triples go straight
into a pyoxigraph ``Store``, checked batch by batch on the way, and are never kept as Python
objects. A million patients is about 16 million triples; as a list of pyoxigraph objects they take
more memory than the store itself, so keeping both (as :func:`load` followed by building a store
did) roughly doubled the memory of ``itkg query --engine oxigraph``.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator, Sequence, cast

import pyoxigraph as ox
import rdflib

from . import guards, names, setaside
from .errors import (IllTypedLiteralError, InputError, InputTooLargeError, ParseError,
                     UnsafeInputError)

OWL_IMPORTS = "http://www.w3.org/2002/07/owl#imports"
IMPORTS_REFUSED = "owl:imports is not followed; load the imported file explicitly"
TRIPLE_TERMS_REFUSED = "RDF 1.2 triple terms (<<( s p o )>>) are not supported in patient graphs"
_XSD_STRING = "http://www.w3.org/2001/XMLSchema#string"

#: Default cap on one input file, in bytes. A million patients in N-Triples is about 2 GB.
DEFAULT_MAX_BYTES = 8 * 1024**3

#: Names accepted by ``--input-format`` (:data:`itkg.names.INPUT_FORMATS`).
FORMAT_NAMES: dict[str, ox.RdfFormat] = {
    "turtle": ox.RdfFormat.TURTLE,
    "ntriples": ox.RdfFormat.N_TRIPLES,
    "jsonld": ox.RdfFormat.JSON_LD,
    "rdfxml": ox.RdfFormat.RDF_XML,
}
assert tuple(FORMAT_NAMES) == names.INPUT_FORMATS

#: Formats itkg reads, by file extension (:data:`itkg.names.EXTENSIONS`).
FORMATS: dict[str, ox.RdfFormat] = {ext: FORMAT_NAMES[name] for ext, name in names.EXTENSIONS.items()}


@dataclass(frozen=True)
class Source:
    """One input file: where it was, its SHA-256 checksum, its format and how many triples it held."""

    path: str
    sha256: str
    format: str
    triples: int
    #: Statements about classes or itkg: terms set aside (contract §6; :mod:`itkg.setaside`).
    schema_set_aside: int = 0
    #: Ill-typed values found (set aside, or kept for ``validate``), and the lines they are on.
    ill_typed: int = 0
    ill_typed_lines: tuple[int, ...] = ()
    #: Whether the file holds a patient (a node typed itkg:Patient or linking to a record).
    holds_patient: bool = True


@dataclass
class PatientData:
    """The triples of one or more patient files, loaded all or nothing.

    ``triples`` are pyoxigraph triples. :meth:`graph` builds (and caches) an rdflib graph of them
    for the rdflib SPARQL and SHACL paths. For Oxigraph queries over large inputs use
    :func:`load_store`, which never holds the triples as Python objects.
    """

    triples: list[ox.Triple]
    sources: tuple[Source, ...] = ()
    _graph: rdflib.Graph | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.triples)

    def graph(self) -> rdflib.Graph:
        """The triples as an rdflib graph (built once)."""
        if self._graph is None:
            graph = rdflib.Graph()
            add = graph.add
            for triple in self.triples:
                add(to_rdflib_triple(triple))
            self._graph = graph
        return self._graph

    @classmethod
    def from_graph(cls, graph: rdflib.Graph) -> "PatientData":
        """Wrap an rdflib graph that is already in memory (it is not copied or modified)."""
        triples = [to_oxigraph_triple(t) for t in graph]
        tally = setaside.Tally()
        kept = setaside.split(triples, tally)
        data = cls(triples=kept, sources=(Source("<graph>", "", "rdflib", len(triples), tally.schema,
                                                 len(tally.ill_typed), (), setaside.holds_patient(kept)),))
        if len(kept) == len(triples):
            data._graph = graph  # nothing set aside: the caller's graph serves as it is
        return data


@dataclass
class PatientStore:
    """Patient files loaded straight into a pyoxigraph store (see :func:`load_store`).

    ``store`` holds the patients' triples in its default graph, and the ontology too when it was
    loaded with one (``with_ontology``); queries over it must ask for the same, because the two
    cannot be told apart once merged. ``sources`` are as in :class:`PatientData`.
    """

    store: ox.Store
    sources: tuple[Source, ...] = ()
    with_ontology: bool = False

    def __len__(self) -> int:
        """The number of triples parsed from the files (as :class:`PatientData` counts them)."""
        return sum(source.triples for source in self.sources)

    def iter_triples(self) -> Iterator[ox.Triple]:
        """The triples of the default graph (ontology included if it was loaded), one at a time."""
        for quad in self.store.quads_for_pattern(None, None, None, ox.DefaultGraph()):
            yield quad.triple


def to_rdflib(term: ox.NamedNode | ox.BlankNode | ox.Literal | ox.Triple) -> rdflib.term.Identifier:
    """Convert a pyoxigraph term to the equivalent rdflib term, keeping literals exactly as written.
    Triple terms (RDF 1.2) have no rdflib equivalent; the loaders refuse them before this."""
    if isinstance(term, ox.NamedNode):
        return rdflib.URIRef(term.value)
    if isinstance(term, ox.BlankNode):
        return rdflib.BNode(term.value)
    if isinstance(term, ox.Triple):
        raise TypeError("a triple term has no rdflib equivalent")
    if term.language:
        return rdflib.Literal(term.value, lang=term.language)
    if term.datatype.value == _XSD_STRING:  # RDF 1.1: a simple literal *is* an xsd:string
        return rdflib.Literal(term.value)
    return rdflib.Literal(term.value, datatype=rdflib.URIRef(term.datatype.value))


def ntriples(triples: Iterable[ox.Triple]) -> bytes:
    """``triples`` as N-Triples bytes (pyoxigraph returns bytes when given no output)."""
    data = ox.serialize(triples, format=ox.RdfFormat.N_TRIPLES)
    assert data is not None
    return data


def to_rdflib_triple(triple: ox.Triple | ox.Quad) -> tuple[rdflib.term.Identifier, rdflib.term.Identifier,
                                                          rdflib.term.Identifier]:
    """:func:`to_rdflib` of a triple's three terms."""
    return to_rdflib(triple.subject), to_rdflib(triple.predicate), to_rdflib(triple.object)


def to_oxigraph_triple(triple: tuple[rdflib.term.Node, rdflib.term.Node, rdflib.term.Node]) -> ox.Triple:
    """:func:`to_oxigraph` of an rdflib triple (a graph's subject is never a literal and its
    predicate always an IRI; anything else is a programming error)."""
    s, p, o = (to_oxigraph(t) for t in triple)
    if isinstance(s, ox.Literal) or not isinstance(p, ox.NamedNode):
        raise TypeError("not an RDF triple: literal subject or non-IRI predicate")
    return ox.Triple(s, p, o)


def to_oxigraph(term: rdflib.term.Node) -> ox.NamedNode | ox.BlankNode | ox.Literal:
    """Convert an rdflib term to the equivalent pyoxigraph term."""
    if isinstance(term, rdflib.URIRef):
        return ox.NamedNode(str(term))
    if isinstance(term, rdflib.BNode):
        return ox.BlankNode(str(term))
    if isinstance(term, rdflib.Literal):
        if term.language:
            return ox.Literal(str(term), language=term.language)
        if term.datatype is not None:
            return ox.Literal(str(term), datatype=ox.NamedNode(str(term.datatype)))
        return ox.Literal(str(term))
    raise TypeError(f"not an RDF term: {type(term).__name__}")


def node_id(term: ox.NamedNode | ox.BlankNode | ox.Triple | rdflib.term.Node) -> str:
    """How itkg names a node in its results: the IRI, or ``_:`` and the blank node's id."""
    if isinstance(term, (ox.BlankNode, rdflib.BNode)):
        return "_:" + (term.value if isinstance(term, ox.BlankNode) else str(term))
    return term.value if isinstance(term, ox.NamedNode) else str(term)


def detect_format(path: Path, name: str | None = None) -> ox.RdfFormat:
    """The RDF format of ``path``: ``name`` if given, else from the file extension."""
    if name is not None:
        try:
            return FORMAT_NAMES[name]
        except KeyError:
            raise InputError(path, f"unknown input format {name!r}; use one of {', '.join(FORMAT_NAMES)}") from None
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise InputError(
            path, "unknown file type; use .ttl, .nt, .jsonld or .rdf (or --input-format)"
        ) from None


def load(
    sources: str | os.PathLike[str] | rdflib.Graph | Sequence[str | os.PathLike[str]],
    *,
    input_format: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    strict_literals: bool = True,
    strict: bool = False,
) -> PatientData:
    """Load patient graphs from files (or wrap an rdflib graph) for the other itkg functions.

    :param sources: a path, a list of paths, or an rdflib graph already in memory.
    :param input_format: ``turtle``, ``ntriples``, ``jsonld`` or ``rdfxml`` for every file;
        by default the format comes from each file's extension.
    :param max_bytes: refuse any file larger than this.
    :param strict_literals: set aside a literal that is not valid for its datatype
        (``"2026-13-45"^^xsd:date``) as absent, counted on its :class:`Source` (contract §6).
        ``itkg validate`` turns this off so that SHACL reports such values as violations instead.
    :param strict: refuse such a literal instead (:class:`~itkg.errors.IllTypedLiteralError`).

    Statements about classes or ``itkg:`` terms are always set aside and counted
    (:mod:`itkg.setaside`): patient data cannot change the rules.
    :raises InputError: (or a subclass) when any file cannot be used; nothing is returned then.

    >>> from itkg.resources import data_root
    >>> data = load(data_root() / "examples" / "patients.ttl")
    >>> len(data) > 0, data.sources[0].format
    (True, 'turtle')
    """
    guards.install_library_defaults()
    if isinstance(sources, rdflib.Graph):
        return PatientData.from_graph(sources)
    paths: Sequence[str | os.PathLike[str]] = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    if not paths:
        raise InputError("<none>", "no input files given")
    triples: list[ox.Triple] = []
    loaded: list[Source] = []
    fhir_paths, paths = _fhir_split(paths, input_format)
    if fhir_paths:  # FHIR R4 JSON (itkg.fhir): mapped to §2 triples, then treated as parsed RDF
        from .fhir.hook import read_fhir
        graph, fhir_sources = read_fhir(fhir_paths, max_bytes)
        triples.extend(graph.triples)
        loaded.extend(fhir_sources)
    for raw in paths:
        path = Path(raw)
        file_triples, source = _load_file(path, input_format, max_bytes, strict_literals, strict)
        triples.extend(file_triples)
        loaded.append(source)
    return PatientData(triples=triples, sources=tuple(loaded))


def load_store(
    sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    input_format: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    strict_literals: bool = True,
    strict: bool = False,
    store: ox.Store | None = None,
    with_ontology: bool = False,
    watch: Callable[[Sequence[ox.Triple | ox.Quad]], None] | None = None,
) -> PatientStore:
    """Load patient files into a pyoxigraph store, with exactly the checks and errors of :func:`load`.

    The parser's output goes into the store in batches, each checked first (``owl:imports``,
    RDF 1.2 triple terms, ill-typed literals); nothing is kept as Python objects, so the data is
    held once, in the store. N-Triples and Turtle are read from the file as they are parsed (the
    size limit is enforced on the bytes actually read); RDF/XML and JSON-LD are read whole first,
    because their gates must see the whole input. The first problem found still lets the parser
    run to the end of its file, so that a file with a syntax error anywhere is reported as such,
    as :func:`load` does; nothing more is added to the store after a problem.

    :param store: add to this store (for instance one that already holds the ontology) instead of
        a new one. On an error it may hold part of the input: discard it then.
    :param with_ontology: recorded in the result: whether ``store`` already holds the ontology.
    :param watch: called with each batch of statements just before it goes into the store (it
        may raise to stop the load: :class:`itkg.lexical.FormWatch`).
    :raises InputError: (or a subclass) when any file cannot be used; nothing is returned then.

    >>> from itkg.resources import data_root
    >>> data = load_store(data_root() / "examples" / "patients.ttl")
    >>> len(data) == len(load(data_root() / "examples" / "patients.ttl")) == len(data.store)
    True
    """
    guards.install_library_defaults()
    paths: Sequence[str | os.PathLike[str]] = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    if not paths:
        raise InputError("<none>", "no input files given")
    target = ox.Store() if store is None else store
    fhir_paths, paths = _fhir_split(paths, input_format)
    loaded = []
    if fhir_paths:  # FHIR R4 JSON (itkg.fhir): mapped to §2 triples, then stored as parsed RDF
        from .fhir.hook import read_fhir
        graph, fhir_sources = read_fhir(fhir_paths, max_bytes)
        if watch is not None:
            watch(graph.triples)
        target.extend(ox.Quad(t.subject, t.predicate, t.object, ox.DefaultGraph()) for t in graph.triples)
        loaded.extend(fhir_sources)
    loaded += [_stream_file(Path(raw), target, input_format, max_bytes, strict_literals, strict, watch)
               for raw in paths]
    return PatientStore(store=target, sources=tuple(loaded), with_ontology=with_ontology)


def _fhir_split(paths: Sequence[str | os.PathLike[str]],
                input_format: str | None) -> tuple[list[Path], list[Path]]:
    """The FHIR inputs (told by content, or ``--input-format fhir``) and the RDF ones."""
    from .fhir.hook import split
    return split(paths, input_format)


def checked_size(path: Path, max_bytes: int) -> int:
    """The size of ``path`` in bytes, after checking that it is a readable regular file no larger
    than ``max_bytes``."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except OSError as error:
        raise InputError(path, f"cannot read file ({error.strerror or type(error).__name__})") from None
    if not path.is_file():
        raise InputError(path, "not a regular file")
    guards.check_size(size, str(path), max_bytes)
    return size


#: The UTF-8 byte order mark some editors put first. RDF/XML and JSON-LD parsers skip it; the
#: Turtle and N-Triples parser does not, so itkg does (:func:`skip_bom`).
BOM = b"\xef\xbb\xbf"


def skip_bom(data: bytes) -> bytes:
    """``data`` without a leading UTF-8 byte order mark."""
    return data[len(BOM):] if data.startswith(BOM) else data


def read_at_most(handle: IO[bytes], limit: int, expected: int) -> bytes:
    """At most ``limit`` bytes of ``handle``, which should hold ``expected``. Not
    ``handle.read(limit)``: Python allocates a buffer of ``limit`` bytes first, so the 8 GiB
    default limit needs 8 GiB of memory budget (``--max-memory``) even for a small file."""
    data = handle.read(min(limit, expected + 1))
    if len(data) <= expected or len(data) >= limit:
        return data
    parts = [data]  # the file grew since it was measured: read on, in pieces, to the limit
    left = limit - len(data)
    while left > 0 and (part := handle.read(min(left, 1 << 24))):
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def read_checked(path: Path, fmt: ox.RdfFormat, max_bytes: int) -> bytes:
    """The bytes of ``path``, after the size check and, for RDF/XML and JSON-LD, the gates that
    must see the whole input before any parser does (XML DTDs; JSON nesting and contexts)."""
    size = checked_size(path, max_bytes)
    try:
        with path.open("rb") as handle:  # read at most one byte past the limit: the file may grow
            data = read_at_most(handle, max_bytes + 1, size)
    except OSError as error:
        raise InputError(path, f"cannot read file ({error.strerror or type(error).__name__})") from None
    guards.check_size(len(data), str(path), max_bytes)
    if fmt in (ox.RdfFormat.TURTLE, ox.RdfFormat.N_TRIPLES):
        data = skip_bom(data)
    if fmt == ox.RdfFormat.RDF_XML:
        guards.reject_xml_dtd(data, str(path))
    elif fmt == ox.RdfFormat.JSON_LD:
        guards.load_json_safely(data, str(path))
        refuse_invalid_jsonld_terms(data, path)
    return data


_HAS_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def _bad_iri(value: str) -> bool:
    try:
        ox.NamedNode(value)
    except ValueError:
        # Without a scheme it is an undefined term (a key the context does not map), which JSON-LD
        # drops by design; with one, it is an IRI that cannot be valid.
        return _HAS_SCHEME.match(value) is not None
    return False


def refuse_invalid_jsonld_terms(data: bytes, path: Path) -> None:
    """Refuse JSON-LD holding an invalid IRI (``"@id": ".../zoe smith"``) or language tag.

    The JSON-LD algorithms drop such a node, property or value without a word, so a patient would
    silently vanish from the data (and validation say "Conforms"), where the same IRI in Turtle,
    N-Triples or RDF/XML is a syntax error. pyoxigraph's lenient mode keeps what the strict mode
    drops, unchecked; any term of its output that is not valid marks the file as bad input. The
    message names the file only.
    """
    try:
        for quad in ox.parse(data, format=ox.RdfFormat.JSON_LD, base_iri=path.resolve().as_uri(),
                             without_named_graphs=True, lenient=True):
            for term in (quad.subject, quad.predicate, quad.object):
                if isinstance(term, ox.NamedNode):
                    bad = _bad_iri(term.value)
                elif isinstance(term, ox.Literal) and term.language is not None:
                    try:
                        ox.Literal(term.value, language=term.language)
                        bad = False
                    except ValueError:
                        bad = True
                else:
                    bad = False
                if bad:
                    raise ParseError(path, "invalid IRI or language tag in JSON-LD (the node or "
                                           "value holding it would be silently dropped)")
    except (SyntaxError, ValueError, MemoryError, OSError):
        return  # the strict parse that follows reports it


def parse_failure(path: Path, fmt: ox.RdfFormat, error: Exception) -> InputError:
    """The :class:`InputError` for an exception pyoxigraph raised while parsing ``path``: where it
    happened and what kind of problem it was, never the parser's message (it quotes the input)."""
    if isinstance(error, SyntaxError):
        return ParseError(path, _syntax_problem(fmt), getattr(error, "lineno", None),
                          getattr(error, "offset", None))
    if isinstance(error, MemoryError):
        if "maximal size" not in str(error):  # not the parser's own limit: the memory budget
            raise MemoryError from None
        return InputTooLargeError(path, "a literal is larger than the parser's 16 MiB limit")
    return ParseError(path, f"cannot parse as {format_name(fmt)} ({type(error).__name__})")


def _load_file(path: Path, input_format: str | None, max_bytes: int,
               strict_literals: bool, strict: bool = False) -> tuple[list[ox.Triple], Source]:
    fmt = detect_format(path, input_format)
    data = read_checked(path, fmt, max_bytes)
    try:
        triples = [
            quad.triple
            for quad in ox.parse(data, format=fmt, base_iri=path.resolve().as_uri(),
                                 without_named_graphs=True, rename_blank_nodes=True)
        ]
    except (SyntaxError, MemoryError, ValueError, OSError) as error:
        raise parse_failure(path, fmt, error) from None
    if any(t.predicate.value == OWL_IMPORTS for t in triples):
        raise UnsafeInputError(path, IMPORTS_REFUSED)
    if any(type(t.object) is ox.Triple for t in triples):
        raise InputError(path, TRIPLE_TERMS_REFUSED)
    parsed = len(triples)
    tally = setaside.Tally()
    triples = setaside.split(triples, tally, keep_ill_typed=not strict_literals)
    if strict and tally.ill_typed:
        raise ill_typed_error(path, tally.ill_typed[0], len(tally.ill_typed), tally.lines(data))
    digest = hashlib.sha256(data).hexdigest()
    return triples, Source(str(path), digest, format_name(fmt), parsed, tally.schema,
                           len(tally.ill_typed), tally.lines(data), setaside.holds_patient(triples))


#: Triples parsed, checked and added to the store at a time by :func:`load_store`.
_STREAM_BATCH = 50_000


class _CountingReader:
    """A file-like view of a file for pyoxigraph that hashes what it reads and stops one byte past
    ``max_bytes`` (as :func:`read_checked` does: the file may grow after the size check)."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        try:
            self._file = path.open("rb")  # closed by close()
        except OSError as error:
            raise InputError(path, f"cannot read file ({error.strerror or type(error).__name__})") from None
        self._left = max_bytes + 1
        self.nbytes = 0
        self.sha256 = hashlib.sha256()
        self._pending = b""
        self._pending = skip_bom(self.read(len(BOM)))  # the checksum still covers the mark

    def read(self, size: int = -1) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        if size < 0:
            size = 1 << 20
        data = self._file.read(min(size, self._left)) if self._left > 0 else b""
        self._left -= len(data)
        self.nbytes += len(data)
        self.sha256.update(data)
        return data

    def close(self) -> None:
        self._file.close()


def _stream_file(path: Path, store: ox.Store, input_format: str | None, max_bytes: int,
                 strict_literals: bool, strict: bool = False,
                 watch: Callable[[Sequence[ox.Triple | ox.Quad]], None] | None = None) -> Source:
    """Parse one file into ``store`` (see :func:`load_store`); the same checks, in the same order,
    and the same errors as :func:`_load_file`."""
    fmt = detect_format(path, input_format)
    reader: _CountingReader | None = None
    if fmt in (ox.RdfFormat.RDF_XML, ox.RdfFormat.JSON_LD):
        data: bytes | _CountingReader = read_checked(path, fmt, max_bytes)
    else:
        checked_size(path, max_bytes)
        data = reader = _CountingReader(path, max_bytes)
    count = 0
    imports = triple_terms = patient = False
    tally = setaside.Tally()
    try:
        quads = ox.parse(data if isinstance(data, bytes) else cast(IO[bytes], data), format=fmt,
                         base_iri=path.resolve().as_uri(), without_named_graphs=True, rename_blank_nodes=True)
        while batch := list(islice(quads, _STREAM_BATCH)):
            count += len(batch)
            # Once anything is wrong the file is refused, but only after the parser has run to its
            # end: a syntax error later in the file is what load() reports then.
            imports = imports or any(q.predicate.value == OWL_IMPORTS for q in batch)
            triple_terms = triple_terms or any(type(q.object) is ox.Triple for q in batch)
            kept = setaside.split(batch, tally, keep_ill_typed=not strict_literals)
            patient = patient or setaside.holds_patient(kept)
            if not (imports or triple_terms or (strict and tally.ill_typed)):
                if watch is not None:
                    watch(kept)
                store.extend(kept)
    except (SyntaxError, MemoryError, ValueError, OSError) as error:
        failure: InputError | None = parse_failure(path, fmt, error)
    else:
        failure = None
    finally:
        if reader is not None:
            reader.close()
    if reader is not None:  # a file that grew past the limit: its cut end may not parse
        guards.check_size(reader.nbytes, str(path), max_bytes)
    if failure is not None:
        raise failure
    if imports:
        raise UnsafeInputError(path, IMPORTS_REFUSED)
    if triple_terms:
        raise InputError(path, TRIPLE_TERMS_REFUSED)
    if strict and tally.ill_typed:
        raise ill_typed_error(path, tally.ill_typed[0], len(tally.ill_typed),
                              tally.lines(path if reader is not None else data))  # type: ignore[arg-type]
    digest = reader.sha256.hexdigest() if reader is not None else hashlib.sha256(data).hexdigest()  # type: ignore[arg-type]
    return Source(str(path), digest, format_name(fmt), count, tally.schema, len(tally.ill_typed),
                  tally.lines(path if reader is not None else data), patient)  # type: ignore[arg-type]


def ill_typed_error(path: Path, first: guards.IllTypedLiteral, count: int,
                    lines: tuple[int, ...] = ()) -> IllTypedLiteralError:
    """The error for ``count`` ill-typed literals in ``path``, naming the first one found (and
    its line, when it was found: never its value)."""
    more = f" (and {count - 1} more)" if count > 1 else ""
    return IllTypedLiteralError(path, first.describe() + more, lines[0] if lines else None)


def format_name(fmt: ox.RdfFormat) -> str:
    """The ``--input-format`` name of ``fmt``."""
    return {v: k for k, v in FORMAT_NAMES.items()}.get(fmt, str(fmt))


def _syntax_problem(fmt: ox.RdfFormat) -> str:
    return f"syntax error: not valid {format_name(fmt)}"

