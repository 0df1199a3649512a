"""Loading patient graphs: safely, all or nothing, from Turtle, N-Triples, JSON-LD and RDF/XML.

Every file is checked before any RDF parser sees it (size, XML DTDs and entities, JSON nesting and
remote JSON-LD contexts), parsed with pyoxigraph (fast, and it never fetches anything) into a fresh
list, checked for ill-typed literals, and only then added to the result. A failure anywhere raises
an :class:`~itkg.errors.InputError` naming the file and, where the parser knows it, the line; the
message never quotes the input, because it may be patient data.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pyoxigraph as ox
import rdflib

from . import guards
from .errors import (IllTypedLiteralError, InputError, InputTooLargeError, ParseError,
                     UnsafeInputError)

OWL_IMPORTS = "http://www.w3.org/2002/07/owl#imports"
IMPORTS_REFUSED = "owl:imports is not followed; load the imported file explicitly"
TRIPLE_TERMS_REFUSED = "RDF 1.2 triple terms (<<( s p o )>>) are not supported in patient graphs"
_XSD_STRING = "http://www.w3.org/2001/XMLSchema#string"

#: Default cap on one input file, in bytes. A million patients in N-Triples is about 2 GB.
DEFAULT_MAX_BYTES = 8 * 1024**3

#: Formats itkg reads, by file extension.
FORMATS: dict[str, ox.RdfFormat] = {
    ".ttl": ox.RdfFormat.TURTLE,
    ".turtle": ox.RdfFormat.TURTLE,
    ".nt": ox.RdfFormat.N_TRIPLES,
    ".ntriples": ox.RdfFormat.N_TRIPLES,
    ".jsonld": ox.RdfFormat.JSON_LD,
    ".json": ox.RdfFormat.JSON_LD,
    ".rdf": ox.RdfFormat.RDF_XML,
    ".owl": ox.RdfFormat.RDF_XML,
    ".xml": ox.RdfFormat.RDF_XML,
}

#: Names accepted by ``--input-format``.
FORMAT_NAMES: dict[str, ox.RdfFormat] = {
    "turtle": ox.RdfFormat.TURTLE,
    "ntriples": ox.RdfFormat.N_TRIPLES,
    "jsonld": ox.RdfFormat.JSON_LD,
    "rdfxml": ox.RdfFormat.RDF_XML,
}


@dataclass(frozen=True)
class Source:
    """One input file: where it was, its SHA-256 checksum, its format and how many triples it held."""

    path: str
    sha256: str
    format: str
    triples: int


@dataclass
class PatientData:
    """The triples of one or more patient files, loaded all or nothing.

    ``triples`` are pyoxigraph triples. :meth:`graph` and :meth:`store` build (and cache) an rdflib
    graph and a pyoxigraph store of them for the SPARQL and SHACL paths.
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
                add((to_rdflib(triple.subject), to_rdflib(triple.predicate), to_rdflib(triple.object)))
            self._graph = graph
        return self._graph

    @classmethod
    def from_graph(cls, graph: rdflib.Graph) -> "PatientData":
        """Wrap an rdflib graph that is already in memory (it is not copied or modified)."""
        triples = [ox.Triple(to_oxigraph(s), to_oxigraph(p), to_oxigraph(o)) for s, p, o in graph]
        data = cls(triples=triples, sources=(Source("<graph>", "", "rdflib", len(triples)),))
        data._graph = graph
        return data


def to_rdflib(term: ox.NamedNode | ox.BlankNode | ox.Literal) -> rdflib.term.Identifier:
    """Convert a pyoxigraph term to the equivalent rdflib term, keeping literals exactly as written."""
    if isinstance(term, ox.NamedNode):
        return rdflib.URIRef(term.value)
    if isinstance(term, ox.BlankNode):
        return rdflib.BNode(term.value)
    if term.language:
        return rdflib.Literal(term.value, lang=term.language)
    if term.datatype.value == _XSD_STRING:  # RDF 1.1: a simple literal *is* an xsd:string
        return rdflib.Literal(term.value)
    return rdflib.Literal(term.value, datatype=rdflib.URIRef(term.datatype.value))


def to_oxigraph(term: rdflib.term.Identifier) -> ox.NamedNode | ox.BlankNode | ox.Literal:
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


def node_id(term: ox.NamedNode | ox.BlankNode | rdflib.term.Identifier) -> str:
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
) -> PatientData:
    """Load patient graphs from files (or wrap an rdflib graph) for the other itkg functions.

    :param sources: a path, a list of paths, or an rdflib graph already in memory.
    :param input_format: ``turtle``, ``ntriples``, ``jsonld`` or ``rdfxml`` for every file;
        by default the format comes from each file's extension.
    :param max_bytes: refuse any file larger than this.
    :param strict_literals: raise :class:`~itkg.errors.IllTypedLiteralError` for a literal that
        is not valid for its datatype (``"2026-13-45"^^xsd:date``). ``itkg validate`` turns this
        off so that SHACL reports such values as violations instead.
    :raises InputError: (or a subclass) when any file cannot be used; nothing is returned then.

    >>> from itkg.resources import data_root
    >>> data = load(data_root() / "examples" / "patients.ttl")
    >>> len(data) > 0, data.sources[0].format
    (True, 'turtle')
    """
    guards.install_library_defaults()
    if isinstance(sources, rdflib.Graph):
        return PatientData.from_graph(sources)
    paths = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    if not paths:
        raise InputError("<none>", "no input files given")
    triples: list[ox.Triple] = []
    loaded: list[Source] = []
    for raw in paths:
        path = Path(raw)
        file_triples, source = _load_file(path, input_format, max_bytes, strict_literals)
        triples.extend(file_triples)
        loaded.append(source)
    return PatientData(triples=triples, sources=tuple(loaded))


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


def read_checked(path: Path, fmt: ox.RdfFormat, max_bytes: int) -> bytes:
    """The bytes of ``path``, after the size check and, for RDF/XML and JSON-LD, the gates that
    must see the whole input before any parser does (XML DTDs; JSON nesting and contexts)."""
    checked_size(path, max_bytes)
    try:
        with path.open("rb") as handle:  # read at most one byte past the limit: the file may grow
            data = handle.read(max_bytes + 1)
    except OSError as error:
        raise InputError(path, f"cannot read file ({error.strerror or type(error).__name__})") from None
    guards.check_size(len(data), str(path), max_bytes)
    if fmt == ox.RdfFormat.RDF_XML:
        guards.reject_xml_dtd(data, str(path))
    elif fmt == ox.RdfFormat.JSON_LD:
        guards.load_json_safely(data, str(path))
    return data


def parse_failure(path: Path, fmt: ox.RdfFormat, error: Exception) -> InputError:
    """The :class:`InputError` for an exception pyoxigraph raised while parsing ``path``: where it
    happened and what kind of problem it was, never the parser's message (it quotes the input)."""
    if isinstance(error, SyntaxError):
        return ParseError(path, _syntax_problem(fmt), getattr(error, "lineno", None),
                          getattr(error, "offset", None))
    if isinstance(error, MemoryError):
        return InputTooLargeError(path, "a literal is larger than the parser's 16 MiB limit")
    return ParseError(path, f"cannot parse as {format_name(fmt)} ({type(error).__name__})")


def _load_file(path: Path, input_format: str | None, max_bytes: int,
               strict_literals: bool) -> tuple[list[ox.Triple], Source]:
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
    if strict_literals:
        bad = guards.find_ill_typed(triples)
        if bad:
            raise ill_typed_error(path, bad[0], len(bad))
    digest = hashlib.sha256(data).hexdigest()
    return triples, Source(str(path), digest, format_name(fmt), len(triples))


def ill_typed_error(path: Path, first: guards.IllTypedLiteral, count: int) -> IllTypedLiteralError:
    """The error for ``count`` ill-typed literals in ``path``, naming the first one found."""
    more = f" (and {count - 1} more)" if count > 1 else ""
    return IllTypedLiteralError(path, first.describe() + more)


def format_name(fmt: ox.RdfFormat) -> str:
    """The ``--input-format`` name of ``fmt``."""
    return {v: k for k, v in FORMAT_NAMES.items()}.get(fmt, str(fmt))


def _syntax_problem(fmt: ox.RdfFormat) -> str:
    return f"syntax error: not valid {format_name(fmt)}"

