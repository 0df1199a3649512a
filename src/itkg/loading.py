"""Loading patient graphs: safely, all or nothing, from Turtle, N-Triples, JSON-LD, RDF/XML and FHIR.

The reading itself is :mod:`itkg.reader` (one parser and one set of checks for every input and
every consumer); this module holds the gates it applies before any parser sees a file (size, XML
DTDs and entities, JSON nesting and remote JSON-LD contexts, the BOM rule), the data classes, the
term conversions, and two sinks of the reader:

* :func:`load` (:class:`TripleSink`) keeps the checked triples as a list, for SHACL, rdflib
  SPARQL and the RDF outputs;
* :func:`load_store` (:class:`StoreSink`) puts them straight into a pyoxigraph ``Store``, batch by
  batch, never keeping them as Python objects. A million patients is about 16 million triples; as
  a list of pyoxigraph objects they take more memory than the store itself, so keeping both
  roughly doubled the memory of ``itkg query --engine oxigraph``.

A failure anywhere raises an :class:`~itkg.errors.InputError` naming the file and, where the
parser knows it, the line; the message never quotes the input, because it may be patient data.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import pyoxigraph as ox

from . import guards, names
from .errors import IllTypedLiteralError, InputError, InputTooLargeError, ParseError
from .lazyimport import is_rdflib_graph, lazy

if TYPE_CHECKING:
    from .reader import Checker, Namer, PieceReport
if TYPE_CHECKING:
    import rdflib
else:  # imported when first used (itkg.lazyimport)
    rdflib = lazy("rdflib", globals())

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
        """Wrap an rdflib graph that is already in memory (it is not copied or modified). Its
        triples pass the reader's checks; its blank nodes keep the graph's ids."""
        from .reader import Namer, PieceReport
        triples = [to_oxigraph_triple(t) for t in graph]
        sink, report = TripleSink(), PieceReport(0)
        namer = Namer.identity()
        sink.add(sink.checker.check(triples, report, namer), namer, report)  # type: ignore[arg-type]
        data = cls(triples=sink.triples, sources=(Source("<graph>", "", "rdflib", report.triples,
                                                         report.schema_set_aside, report.ill_typed_count,
                                                         (), report.holds_patient),))
        if report.triple_terms:
            raise InputError("<graph>", TRIPLE_TERMS_REFUSED)
        if len(sink.triples) == len(triples):
            data._graph = graph  # nothing set aside: the caller's graph serves as it is
        return data


class TripleSink:
    """The reader's sink for :func:`load`: the checked triples as a list of pyoxigraph triples."""

    def __init__(self, *, keep_ill_typed: bool = False) -> None:
        from .reader import Checker
        self.checker: Checker = Checker(keep_ill_typed=keep_ill_typed, final_terms=True)
        self.triples: list[ox.Triple] = []

    def add(self, quads: Iterable[Any], namer: "Namer", report: "PieceReport") -> None:
        """Keep the checked triples as pyoxigraph triples (their blank nodes already carry the
        names ``namer`` gave them: the checker's ``final_terms``). The checked statements are
        quads when parsed, triples when they come from a graph (:meth:`PatientData.from_graph`)."""
        quad = ox.Quad
        self.triples.extend(s.triple if type(s) is quad else s for s in quads)


class StoreSink:
    """The reader's sink for :func:`load_store`: the checked triples into a pyoxigraph store, in
    batches of :data:`_STREAM_BATCH`; once a file is known to be refused nothing more of it is
    added (the parser still runs to the end of the file, so that a later syntax error is what
    is reported, as :func:`load` does)."""

    def __init__(self, store: ox.Store, *, keep_ill_typed: bool = False, strict: bool = False,
                 watch: Callable[[Sequence[ox.Literal]], None] | None = None) -> None:
        from .reader import Checker
        self.checker: Checker = Checker(keep_ill_typed=keep_ill_typed, final_terms=True)
        self.store, self.strict, self.watch = store, strict, watch
        #: the literal objects of the batch under way (the checker appends them), for ``watch``
        self.literals: list[ox.Literal] = []
        if watch is not None:
            self.checker.literals = self.literals

    def add(self, quads: Iterable[Any], namer: "Namer", report: "PieceReport") -> None:
        """Add the checked statements to the store, in batches (their blank nodes already carry
        the names ``namer`` gave them: the checker's ``final_terms``)."""
        quads = iter(quads)
        while batch := list(islice(quads, _STREAM_BATCH)):
            self._flush(batch, report)

    def _flush(self, batch: list[ox.Quad], report: "PieceReport") -> None:
        if not (report.imports or report.triple_terms or (self.strict and report.ill_typed is not None)):
            if self.watch is not None:  # it may raise to stop the load (itkg.lexical.FormWatch)
                self.watch(self.literals)
            self.store.extend(batch)
        batch.clear()
        self.literals.clear()


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
    if isinstance(term, ox.BlankNode):
        return "_:" + term.value
    if isinstance(term, ox.NamedNode):
        return term.value
    library = sys.modules.get("rdflib")  # (an rdflib term comes from an imported rdflib)
    if library is not None and isinstance(term, library.BNode):
        return "_:" + str(term)
    return str(term)


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
    if is_rdflib_graph(sources):
        return PatientData.from_graph(sources)
    from .reader import read
    paths: Sequence[str | os.PathLike[str]] = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    sink = TripleSink(keep_ill_typed=not strict_literals)
    loaded = read([Path(p) for p in paths], sink, input_format=input_format, max_bytes=max_bytes,
                  strict=strict)
    return PatientData(triples=sink.triples, sources=loaded)


def load_store(
    sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    input_format: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    strict_literals: bool = True,
    strict: bool = False,
    store: ox.Store | None = None,
    with_ontology: bool = False,
    watch: Callable[[Sequence[ox.Literal]], None] | None = None,
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
    :param watch: called with the literal objects of each batch just before the batch goes
        into the store; it may raise to stop the load (:meth:`itkg.lexical.FormWatch.observe_literals`).
    :raises InputError: (or a subclass) when any file cannot be used; nothing is returned then.

    >>> from itkg.resources import data_root
    >>> data = load_store(data_root() / "examples" / "patients.ttl")
    >>> len(data) == len(load(data_root() / "examples" / "patients.ttl")) == len(data.store)
    True
    """
    guards.install_library_defaults()
    from .reader import read
    paths: Sequence[str | os.PathLike[str]] = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    target = ox.Store() if store is None else store
    sink = StoreSink(target, keep_ill_typed=not strict_literals, strict=strict, watch=watch)
    loaded = read([Path(p) for p in paths], sink, input_format=input_format, max_bytes=max_bytes,
                  strict=strict)
    return PatientStore(store=target, sources=loaded, with_ontology=with_ontology)


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


#: Triples added to the store at a time by :class:`StoreSink`.
_STREAM_BATCH = 50_000


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

