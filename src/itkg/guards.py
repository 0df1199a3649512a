"""Input-safety gates that run before any RDF, JSON-LD or SPARQL engine sees user input.

The plain stack (rdflib, pyoxigraph, owlready2) will, by default, fetch remote JSON-LD contexts,
expand XML entities into gigabytes, crash on deep JSON, send query bindings to a ``SERVICE``
endpoint, rewrite ``"maybe"^^xsd:boolean`` to ``false`` and log patient values. Each function here
closes one of those doors (measured in ``reference/security.md``). They are pure checks: they look
at the input, raise an :mod:`itkg.errors` class with a one-line message that never quotes the
input, and otherwise leave it alone.
"""

from __future__ import annotations

import codecs
import functools
import ipaddress
import json
import logging
import re
import socket
import sys
import warnings
from calendar import monthrange
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from itkg.errors import (
    EndpointError,
    InputTooLargeError,
    ParseError,
    QueryError,
    UnsafeInputError,
)

XSD = "http://www.w3.org/2001/XMLSchema#"
ITKG = "https://w3id.org/itkg/"

# --------------------------------------------------------------------------------------------
# Library defaults
# --------------------------------------------------------------------------------------------

#: Loggers whose records may carry raw literal values, IRIs or parser excerpts.
_REDACTED_LOGGERS = ("rdflib", "owlready2", "pyshacl", "owlrl")
_REDACTED_MESSAGE = "message from %s redacted by itkg (it may quote input data)"
#: Modules whose ``warnings.warn`` texts quote input ("Parsing weird boolean, 'maybe' ...").
_QUIET_WARNING_MODULES = r"(rdflib|owlready2|pyshacl|owlrl)(\..*)?\Z"


def _redacts(name: str) -> bool:
    return any(name == root or name.startswith(root + ".") for root in _REDACTED_LOGGERS)


def _install_redacting_record_factory() -> None:
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_itkg_redacting", False):
        return

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if _redacts(record.name):
            record.msg = _REDACTED_MESSAGE
            record.args = (record.name,)
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
        return record

    factory._itkg_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def _rdflib_defaults(module: Any) -> None:
    """itkg's settings of rdflib (``module``) or of its SPARQL package, once that is imported."""
    if module.__name__ == "rdflib":
        module.NORMALIZE_LITERALS = False
        logging.getLogger("rdflib.term").setLevel(logging.ERROR)
    else:
        module.SPARQL_LOAD_GRAPHS = False


class _WhenImported:
    """A finder on ``sys.meta_path`` that gives rdflib and its SPARQL package itkg's settings
    (:func:`_rdflib_defaults`) as soon as they are imported, by whom ever: a command that never
    uses rdflib (``itkg eligibility`` of local files) does not import it (a third of a second),
    and whatever imports it later gets it set as :func:`install_library_defaults` says."""

    names = ("rdflib", "rdflib.plugins.sparql")

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in self.names:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is not None and hasattr(loader, "exec_module"):
            run = loader.exec_module

            def exec_module(module: Any) -> None:
                run(module)
                _rdflib_defaults(module)

            loader.exec_module = exec_module
        return spec


_WHEN_IMPORTED = _WhenImported()


def install_library_defaults() -> None:
    """Switch the libraries to the behaviour itkg relies on. Idempotent and cheap: call it before
    every load, because test runners and callers may reset warning filters in between.

    - ``rdflib.NORMALIZE_LITERALS = False`` keeps ``"maybe"^^xsd:boolean`` as written instead of
      rewriting it to ``"false"``, so it can be reported as ill-typed.
    - ``SPARQL_LOAD_GRAPHS = False`` stops rdflib from fetching ``FROM <url>`` / ``FROM <file:>``.
      Both are set now if rdflib (its SPARQL package) is imported, else the moment it is
      (:class:`_WhenImported`): itkg imports rdflib only where it is used.
    - Log records of rdflib, owlready2, pyshacl and owlrl are redacted (their texts quote literal
      values and parser excerpts), ``rdflib.term`` drops its per-literal warnings, and the
      ``warnings`` those libraries issue (``"Parsing weird boolean, 'maybe'"``) are ignored.
    - owlready2, once imported, prints nothing about what it loads (itkg itself runs owlready2
      only in HermiT's worker process, :mod:`itkg._hermit_worker`; importing it here for every
      command cost about 20 ms).
    """
    for name in _WhenImported.names:
        module = sys.modules.get(name)
        if module is not None:
            _rdflib_defaults(module)
    if any(module not in sys.modules for module in _WhenImported.names) and _WHEN_IMPORTED not in sys.meta_path:
        sys.meta_path.insert(0, _WHEN_IMPORTED)
    _install_redacting_record_factory()
    if not any(f[0] == "ignore" and f[3] is not None and f[3].pattern == _QUIET_WARNING_MODULES
               for f in warnings.filters):
        warnings.filterwarnings("ignore", module=_QUIET_WARNING_MODULES)
    owlready2 = sys.modules.get("owlready2")
    if owlready2 is not None and hasattr(owlready2, "set_log_level"):
        owlready2.set_log_level(0)


# --------------------------------------------------------------------------------------------
# Size, XML and JSON gates
# --------------------------------------------------------------------------------------------

def check_size(nbytes: int, source: str, limit: int) -> None:
    """Refuse inputs over ``limit`` bytes before reading them into any parser.

    >>> check_size(10, "a.ttl", 100)
    >>> check_size(101, "a.ttl", 100)
    Traceback (most recent call last):
    itkg.errors.InputTooLargeError: a.ttl: input is 101 bytes, over the limit of 100 bytes
    """
    if nbytes > limit:
        raise InputTooLargeError(source, f"input is {nbytes} bytes, over the limit of {limit} bytes")


_XML_DECLARED_ENCODING = re.compile(
    rb"\s*<\?xml[^>]*?\sencoding\s*=\s*[\"']([A-Za-z][A-Za-z0-9._-]*)[\"']")
_DTD_MARKERS = ("<!DOCTYPE", "<!ENTITY")


def _xml_views(data: bytes, source: str) -> Iterator[bytes | str]:
    """Every reading of ``data`` an XML parser might use, so a DTD cannot hide behind an encoding.

    The raw bytes cover UTF-8 and every ASCII-compatible encoding. Dropping NUL bytes turns
    UTF-16 and UTF-32 (either byte order, with or without BOM) back into ASCII for the markers.
    A declared encoding (UTF-7, EBCDIC, ...) is decoded with Python's codec for that name.
    """
    yield data
    ascii_view = data.replace(b"\0", b"") if b"\0" in data else data
    if ascii_view is not data:
        yield ascii_view
    declared = _XML_DECLARED_ENCODING.match(ascii_view.lstrip(codecs.BOM_UTF8 + b"\xff\xfe"))
    if declared:
        try:
            codec = codecs.lookup(declared.group(1).decode("ascii")).name
        except LookupError:
            raise UnsafeInputError(source, "declares an unknown character encoding") from None
        if codec not in ("utf-8", "ascii"):
            yield data.decode(codec, errors="replace")


def reject_xml_dtd(data: bytes, source: str) -> None:
    """Refuse RDF/XML (or TriX) carrying a DTD or entity declaration, before any parser sees it.

    RDF/XML never needs one; with one, 900 bytes expand to a 3 GB literal in pyoxigraph or cost
    rdflib four minutes of CPU, and external entities read files or URLs.

    >>> reject_xml_dtd(b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/>', "a.rdf")
    >>> reject_xml_dtd(b'<?xml version="1.0"?><!DOCTYPE r []><r/>', "a.rdf")
    Traceback (most recent call last):
    itkg.errors.UnsafeInputError: a.rdf: XML DTD or entity declarations are not allowed in RDF/XML input
    """
    for view in _xml_views(data, source):
        for marker in _DTD_MARKERS:
            needle = marker if isinstance(view, str) else marker.encode("ascii")
            if needle in view:  # type: ignore[operator]
                raise UnsafeInputError(
                    source, "XML DTD or entity declarations are not allowed in RDF/XML input")


class _DuplicateKey(Exception):
    """Internal signal: a JSON object repeats a key (engines disagree on which one wins)."""


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateKey
    return obj


def _holds_string(value: object) -> bool:
    """True when a ``@context``/``@import`` value is, or lists, a string: a URL or file path
    that a JSON-LD processor would fetch or read. Embedded objects are walked by the caller."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            return True
        if isinstance(item, list):
            stack.extend(item)
    return False


def load_json_safely(data: bytes, source: str, max_depth: int = 64) -> object:
    """Decode JSON(-LD) so that no JSON-LD processor can crash on it or fetch anything for it.

    ``json.loads`` runs first because pyoxigraph's JSON-LD parser overflows the C stack (SIGSEGV,
    uncatchable) at depth 5000, where ``json.loads`` raises a catchable ``RecursionError``. Then
    one iterative walk enforces ``max_depth`` and refuses ``@context``/``@import`` values that
    name a document (rdflib fetches URLs and reads file paths with no way to turn it off).
    Duplicate keys are refused because engines disagree on which one counts. Hand the *returned*
    object (``json.dumps`` of it) to the RDF parser, so the parser reads what was checked.

    >>> load_json_safely(b'{"@context": {"name": "http://schema.org/name"}, "name": "x"}', "a.jsonld")
    {'@context': {'name': 'http://schema.org/name'}, 'name': 'x'}
    >>> load_json_safely(b'{"@context": "https://schema.org/"}', "a.jsonld")
    Traceback (most recent call last):
    itkg.errors.UnsafeInputError: a.jsonld: remote or file JSON-LD contexts are not allowed; inline the context
    """
    try:
        obj = json.loads(data, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as error:
        # error.msg is one of json's fixed phrases; error.doc (the input) is never shown.
        raise ParseError(source, f"not valid JSON ({error.msg})", error.lineno,
                         error.colno) from None
    except UnicodeDecodeError:
        raise ParseError(source, "not valid UTF-8, UTF-16 or UTF-32 text") from None
    except RecursionError:
        raise InputTooLargeError(source, f"JSON nested deeper than {max_depth} levels") from None
    except _DuplicateKey:
        raise UnsafeInputError(source, "a JSON object repeats a key; its meaning is ambiguous") from None
    except ValueError:  # e.g. an integer beyond Python's digit limit
        raise InputTooLargeError(source, "a JSON number has too many digits") from None
    if not isinstance(obj, (dict, list)):
        raise ParseError(source, "a JSON-LD document must be a JSON object or array")
    stack: list[tuple[object, int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise InputTooLargeError(source, f"JSON nested deeper than {max_depth} levels")
        if isinstance(node, dict):
            for key in ("@context", "@import"):
                if key in node and _holds_string(node[key]):
                    raise UnsafeInputError(
                        source, "remote or file JSON-LD contexts are not allowed; inline the context")
            children: Iterable[object] = node.values()
        else:
            children = node  # type: ignore[assignment]
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return obj


# --------------------------------------------------------------------------------------------
# SPARQL gate
# --------------------------------------------------------------------------------------------

_UPDATE_REFUSED = ("SPARQL updates (INSERT, DELETE, LOAD, CLEAR, DROP, CREATE, ADD, MOVE, COPY) "
                   "are refused; itkg runs read-only queries")
_SERVICE_REFUSED = ("SERVICE (federated query) is refused; itkg never sends a query or its "
                    "bindings to another endpoint")
_DATASET_REFUSED = ("FROM / FROM NAMED dataset clauses are refused; itkg queries only the "
                    "files it was given")

_ESCAPE_REFUSED = ("\\u and \\U escapes are refused in query text (SPARQL engines expand them "
                   "differently); write the character itself")
_BARE_CR_REFUSED = ("a carriage return not followed by a line feed is refused in query text "
                    "(SPARQL engines disagree on where it ends a comment)")

# The two lexical differences between rdflib (which the gate parses with) and Oxigraph (which
# runs most queries) that change where strings and comments end: rdflib expands \u escapes in the
# whole text before parsing, Oxigraph only inside strings and IRIs; rdflib's comment runs to the
# line feed, Oxigraph's stops at a carriage return too. Both are refused, so that every engine
# reads the same tokens the gate checked.
_ENGINE_DEPENDENT = re.compile(r"\\[uU]|\r(?!\n)")

# Strings, IRIs, comments and escaped characters of prefixed names (``ex:a\#b``) are blanked out
# before looking for the SERVICE keyword, so the lexical check below cannot be fooled by, or trip
# over, "SERVICE" inside them. Each token ends where Oxigraph's lexer ends it; a ``<`` that does
# not open a well-formed IRI is left as it is (Oxigraph refuses the same IRIs).
_SPARQL_OPAQUE = re.compile(
    r"'''(?:(?:'|'')?(?:[^'\\]|\\.))*'''"
    r'|"""(?:(?:"|"")?(?:[^"\\]|\\.))*"""'
    r"|'(?:[^'\\\n\r]|\\.)*'"
    r'|"(?:[^"\\\n\r]|\\.)*"'
    r"|<[^<>\"{}|^`\\\x00-\x20]*>"
    r"|#[^\n\r]*"
    r"|\\.",
    re.DOTALL)
_SERVICE_KEYWORD = re.compile(r"(?<![\w:?$@-])SERVICE(?![\w:-])", re.IGNORECASE)


def mentions_service(text: str) -> bool:
    """Whether the SERVICE keyword appears outside strings, IRIs, comments and names.

    A lexical second opinion beside rdflib's algebra, so that a query which rdflib and
    pyoxigraph would parse differently still cannot reach an endpoint.

    >>> mentions_service("SELECT * { ?s ?p ?o .SERVICE <urn:x> { ?s ?p ?o } }")
    True
    >>> mentions_service('SELECT ?service { ?service ex:SERVICE "SERVICE <urn:x>" } # SERVICE')
    False
    """
    return _SERVICE_KEYWORD.search(_SPARQL_OPAQUE.sub(" ", text)) is not None


def _is_update(text: str) -> bool:
    from pyparsing import ParseBaseException
    from rdflib.plugins.sparql.parser import parseUpdate
    try:
        parseUpdate(text)
    except (ParseBaseException, RecursionError):
        return False
    except Exception:  # noqa: BLE001 - any failure to parse as an update means "not an update"
        return False
    return True


def _algebra_nodes(root: object) -> Iterator[object]:
    """Every node of a prepared query's algebra, iteratively (deep queries must not recurse)."""
    stack, seen = [root], set()
    while stack:
        node = stack.pop()
        yield node
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, (list, tuple, set, frozenset)):
            stack.extend(node)


def gate_query(text: str, source: str = "<query>") -> None:
    """Refuse any SPARQL text that is not a plain read-only query over the given data.

    Run it on every query, whichever engine then executes it: pyoxigraph has no switch to turn
    ``SERVICE`` off and its HTTP client is invisible to Python audit hooks, and rdflib ships the
    bindings (patient values) to the ``SERVICE`` URL and reads ``FROM <file:...>``. Refused:
    updates, ``SERVICE`` (also ``SILENT``, also inside ``EXISTS`` or sub-queries), ``FROM`` and
    ``FROM NAMED``. Messages say what was refused and never quote the query.

    >>> gate_query("SELECT ?s WHERE { ?s ?p ?o }")
    >>> gate_query("SELECT * FROM <file:///etc/passwd> WHERE { ?s ?p ?o }")
    Traceback (most recent call last):
    itkg.errors.QueryError: <query>: FROM / FROM NAMED dataset clauses are refused; itkg queries only the files it was given

    Text that rdflib and Oxigraph would read differently is refused before parsing (``\\u``
    escapes, a lone carriage return), so the engine runs the tokens the gate checked:

    >>> gate_query('SELECT ?v WHERE { BIND("a\\\\u0022#" AS ?v) }')
    Traceback (most recent call last):
    itkg.errors.QueryError: <query>: \\u and \\U escapes are refused in query text (SPARQL engines expand them differently); write the character itself
    """
    gated_algebra(text, source)


def gated_algebra(text: str, source: str = "<query>") -> Any:
    """:func:`gate_query`, and the algebra of the query it let through (rdflib's), for a caller
    that reads it too (its ``ORDER BY``: :func:`itkg.ordering.keys_of`) and need not parse the
    text again (a contract query's parse takes a quarter of a second)."""
    odd = _ENGINE_DEPENDENT.search(text)
    if odd is not None:
        raise QueryError(f"{source}: {_ESCAPE_REFUSED if odd.group().startswith(chr(92)) else _BARE_CR_REFUSED}")
    install_library_defaults()
    from pyparsing import ParseBaseException
    from rdflib.plugins.sparql import prepareQuery
    try:
        prepared = prepareQuery(text)
    except RecursionError:
        raise QueryError(f"{source}: query is nested too deeply") from None
    except ParseBaseException as error:
        if _is_update(text):
            raise QueryError(f"{source}: {_UPDATE_REFUSED}") from None
        raise QueryError(f"{source}:{error.lineno}:{error.col}: SPARQL syntax error") from None
    except Exception as error:  # noqa: BLE001 - rdflib raises bare Exception for semantic errors
        kind = ("uses an undeclared prefix" if str(error).startswith("Unknown namespace prefix")
                else "is not a valid SPARQL query")
        raise QueryError(f"{source}: query {kind}") from None
    algebra = prepared.algebra
    if any(getattr(node, "name", None) == "ServiceGraphPattern"
           for node in _algebra_nodes(algebra)):
        raise QueryError(f"{source}: {_SERVICE_REFUSED}")
    if mentions_service(text):
        raise QueryError(f"{source}: {_SERVICE_REFUSED}")
    if algebra.get("datasetClause"):
        raise QueryError(f"{source}: {_DATASET_REFUSED}")
    return algebra


# --------------------------------------------------------------------------------------------
# Ill-typed literals
# --------------------------------------------------------------------------------------------

class IllTypedLiteral(NamedTuple):
    """Where an ill-typed literal sits, without its value: the predicate and the datatype IRIs."""

    predicate: str
    datatype: str

    def describe(self) -> str:
        """One phrase for an error message.

        >>> IllTypedLiteral(ITKG + "consentDate", XSD + "date").describe()
        'ill-typed xsd:date literal (object of itkg:consentDate)'
        """
        return f"ill-typed {_compact(self.datatype)} literal (object of {_compact(self.predicate)})"


def _compact(iri: str) -> str:
    for prefix, namespace in (("xsd:", XSD), ("itkg:", ITKG)):
        if iri.startswith(namespace):
            return prefix + iri[len(namespace):]
    return f"<{iri}>"


# XSD 1.1 lexical spaces (Part 2, section 3). Written out because rdflib's checks are lax: it
# accepts "1e5" as xsd:decimal, "1_000" as xsd:integer and a dateTime as an xsd:date.
_YEAR = r"(-?(?:[1-9][0-9]{3,}|0[0-9]{3}))"
_MONTH = r"(0[1-9]|1[0-2])"
_DAY = r"(0[1-9]|[12][0-9]|3[01])"
_TZ = r"(?:Z|[+-](?:(?:0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
_TIME = r"(?:(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?|24:00:00(?:\.0+)?)"
_DATE = re.compile(rf"{_YEAR}-{_MONTH}-{_DAY}{_TZ}?")
_DATETIME = re.compile(rf"{_YEAR}-{_MONTH}-{_DAY}T{_TIME}{_TZ}?")
_DATETIMESTAMP = re.compile(rf"{_YEAR}-{_MONTH}-{_DAY}T{_TIME}{_TZ}")
_TIME_ONLY = re.compile(rf"{_TIME}{_TZ}?")
_GYEAR = re.compile(rf"{_YEAR}{_TZ}?")
_GYEARMONTH = re.compile(rf"{_YEAR}-{_MONTH}{_TZ}?")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_DOUBLE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?INF|NaN")

_INTEGER_BOUNDS: dict[str, tuple[int | None, int | None]] = {
    "integer": (None, None),
    "nonPositiveInteger": (None, 0),
    "negativeInteger": (None, -1),
    "long": (-2**63, 2**63 - 1),
    "int": (-2**31, 2**31 - 1),
    "short": (-2**15, 2**15 - 1),
    "byte": (-2**7, 2**7 - 1),
    "nonNegativeInteger": (0, None),
    "unsignedLong": (0, 2**64 - 1),
    "unsignedInt": (0, 2**32 - 1),
    "unsignedShort": (0, 2**16 - 1),
    "unsignedByte": (0, 2**8 - 1),
    "positiveInteger": (1, None),
}


def _real_day(match: re.Match[str] | None) -> bool:
    """A date pattern matched and its day exists in that month (2024-02-29 yes, 2023-02-29 no)."""
    if match is None:
        return False
    if match.group(3) < "29":  # every month has 28 days; skip the calendar for most dates
        return True
    year, month, day = (int(group) for group in match.group(1, 2, 3))
    # calendar counts years 1..9999; leap years repeat every 400 years, so shift into range.
    return day <= monthrange(year % 400 + 2000, month)[1]


def _integer_in(lexical: str, low: int | None, high: int | None) -> bool:
    if not _INTEGER.fullmatch(lexical):
        return False
    if low is None and high is None:
        return True
    if len(lexical.lstrip("+-").lstrip("0")) > 20:  # beyond every bounded type; avoid int()
        negative = lexical.startswith("-")
        return (low is None) if negative else (high is None)
    value = int(lexical)
    return (low is None or value >= low) and (high is None or value <= high)


_VALIDATORS: dict[str, Callable[[str], object]] = {  # each returns something truthy if valid
    XSD + "boolean": frozenset({"true", "false", "1", "0"}).__contains__,
    XSD + "decimal": _DECIMAL.fullmatch,
    XSD + "double": _DOUBLE.fullmatch,
    XSD + "float": _DOUBLE.fullmatch,
    XSD + "date": lambda lex: _real_day(_DATE.fullmatch(lex)),
    XSD + "dateTime": lambda lex: _real_day(_DATETIME.fullmatch(lex)),
    XSD + "dateTimeStamp": lambda lex: _real_day(_DATETIMESTAMP.fullmatch(lex)),
    XSD + "time": _TIME_ONLY.fullmatch,
    XSD + "gYear": _GYEAR.fullmatch,
    XSD + "gYearMonth": _GYEARMONTH.fullmatch,
    **{XSD + name: functools.partial(_integer_in, low=lo, high=hi) for name, (lo, hi) in _INTEGER_BOUNDS.items()},
}
#: Skipped at once: any text a parser accepts is a valid xsd:string, and language-tagged
#: strings have no lexical space to check.
_NOT_JUDGED = frozenset({XSD + "string", "http://www.w3.org/1999/02/22-rdf-syntax-ns#langString"})


def _rdflib_accepts(lexical: str, datatype: str) -> bool:
    """Fallback for the rarer XSD types (duration, hexBinary, ...): rdflib's own check."""
    install_library_defaults()  # rdflib logs and warns with the value otherwise
    import rdflib
    return rdflib.Literal(lexical, datatype=rdflib.URIRef(datatype)).ill_typed is not True


def is_valid_lexical(lexical: str, datatype: str) -> bool:
    """Whether ``lexical`` is in the lexical space of ``datatype``; non-XSD types are not judged.

    >>> is_valid_lexical("2024-02-29", XSD + "date"), is_valid_lexical("2024-02-30", XSD + "date")
    (True, False)
    >>> is_valid_lexical("maybe", XSD + "boolean")
    False
    """
    if datatype in _NOT_JUDGED or not datatype.startswith(XSD):
        return True
    validator = _VALIDATORS.get(datatype)
    return bool(validator(lexical)) if validator is not None else _rdflib_accepts(lexical, datatype)


def find_ill_typed(triples: Iterable[object]) -> list[IllTypedLiteral]:
    """Every literal object whose text is invalid for its XSD datatype, in input order.

    Accepts pyoxigraph ``Triple``/``Quad`` objects (``Literal.value`` is the lexical form) and
    rdflib triples (``str(literal)`` is). Built for millions of triples: strings, IRIs and
    non-XSD types are skipped at once, the common XSD types are checked by one compiled pattern
    (cheaper than a cache when most values are distinct), and rdflib's slower verdict for the
    rare types is cached per (lexical form, datatype) for the call. The result names the
    predicate and datatype, never the value, so it can go into an error message.

    >>> import pyoxigraph as ox
    >>> bad = ox.Literal("maybe", datatype=ox.NamedNode(XSD + "boolean"))
    >>> triple = ox.Triple(ox.NamedNode("urn:s"), ox.NamedNode(ITKG + "hivStatus"), bad)
    >>> [x.describe() for x in find_ill_typed([triple])]
    ['ill-typed xsd:boolean literal (object of itkg:hivStatus)']
    """
    import pyoxigraph

    ox_literal, ox_iri = pyoxigraph.Literal, pyoxigraph.NamedNode
    ox_other = (ox_iri, pyoxigraph.BlankNode, pyoxigraph.Triple)
    rdflib = sys.modules.get("rdflib")  # an rdflib literal comes from an imported rdflib
    rdf_literal = rdflib.Literal if rdflib is not None else ox_literal
    rare: dict[tuple[str, str], bool] = {}
    found: list[IllTypedLiteral] = []
    for triple in triples:
        obj = triple[2]  # type: ignore[index]
        kind = type(obj)
        if kind is ox_literal:
            datatype = obj.datatype.value
        elif kind in ox_other or not isinstance(obj, rdf_literal) or obj.datatype is None:
            continue
        else:
            datatype = str(obj.datatype)
        if datatype in _NOT_JUDGED or not datatype.startswith(XSD):
            continue
        lexical = obj.value if kind is ox_literal else str(obj)
        validator = _VALIDATORS.get(datatype)
        if validator is not None:
            valid = bool(validator(lexical))
        else:
            key = (lexical, datatype)
            cached = rare.get(key)
            valid = rare[key] = _rdflib_accepts(lexical, datatype) if cached is None else cached
        if not valid:
            predicate = triple[1]  # type: ignore[index]
            iri = predicate.value if type(predicate) is ox_iri else str(predicate)
            found.append(IllTypedLiteral(iri, datatype))
    return found


# --------------------------------------------------------------------------------------------
# Network guard (backstop)
# --------------------------------------------------------------------------------------------

_NETWORK_EVENTS = frozenset({
    "urllib.Request", "socket.connect", "socket.sendto", "socket.sendmsg",
    "socket.getaddrinfo", "socket.gethostbyname",
})
_DEFAULT_PORTS = {"http": 80, "https": 443}


class _NetworkPolicy:
    """The endpoints one may reach while the guard is on; everything else is refused."""

    def __init__(self, urls: Iterable[str]) -> None:
        self.endpoints: set[tuple[str, int]] = set()
        for url in urls:
            parts = urlsplit(url)
            try:
                port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
            except ValueError:
                port = None
            if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or port is None:
                raise EndpointError("an endpoint must be an http:// or https:// URL with a host")
            self.endpoints.add((_normal_host(parts.hostname), port))
        self.hosts = {host for host, _ in self.endpoints}
        self.resolved: set[tuple[str, int]] = set()

    def allows(self, host: str, port: int) -> bool:
        host = _normal_host(host)
        if (host, port) in self.endpoints or (host, port) in self.resolved:
            return True
        # An IP we have not seen: resolve the named hosts on that port (DNS may have changed).
        for name, named_port in list(self.endpoints):
            if named_port != port:
                continue
            try:
                infos = socket.getaddrinfo(name, port, proto=socket.IPPROTO_TCP)
            except OSError:
                continue
            self.resolved.update((_normal_host(str(info[4][0])), port) for info in infos)
        return (host, port) in self.resolved


def _normal_host(host: str) -> str:
    host = host.strip("[]").split("%")[0].lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


_policy: _NetworkPolicy | None = None
_hook_installed = False


def _refuse() -> UnsafeInputError:
    return UnsafeInputError(
        "<network>", "network access refused; itkg reaches only an endpoint named by the user")


def _network_audit(event: str, args: tuple[object, ...]) -> None:
    policy = _policy
    if policy is None or event not in _NETWORK_EVENTS:
        return
    if event == "urllib.Request":
        parts = urlsplit(str(args[0]))
        try:
            port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
        except ValueError:
            port = None
        if parts.scheme in _DEFAULT_PORTS and parts.hostname and port is not None \
                and policy.allows(parts.hostname, port):
            return
        raise _refuse()
    if event in ("socket.getaddrinfo", "socket.gethostbyname"):
        host = args[0]
        if host is None:
            return
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        host = _normal_host(str(host))
        if host in policy.hosts or _is_ip(host):  # an IP literal needs no DNS query
            return
        raise _refuse()
    sock, address = args[0], args[1]
    if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6) or address is None:
        return  # Unix sockets and socket pairs are local IPC; a connected socket was checked
    if isinstance(address, tuple) and len(address) >= 2 and policy.allows(str(address[0]),
                                                                          int(address[1])):
        return
    raise _refuse()


def install_network_guard(allow: Iterable[str] = ()) -> None:
    """Refuse, process-wide, every outgoing connection, DNS lookup and ``urllib`` request except
    to the endpoint URLs in ``allow`` (loopback included: a local service is not exempt).

    A backstop behind the gates above, for code paths in Python (rdflib JSON-LD contexts,
    owlready2 ``owl:imports``, httpx). It cannot see pyoxigraph's or Java's own HTTP clients.
    Audit hooks cannot be removed, so the hook stays and this call only sets the policy; calling
    it again replaces the allowed endpoints. If an HTTP proxy is in use, name it too.
    """
    global _policy, _hook_installed
    policy = _NetworkPolicy(allow)
    if not _hook_installed:
        sys.addaudithook(_network_audit)
        _hook_installed = True
    _policy = policy


@contextmanager
def network_guard(allow: Iterable[str] = ()) -> Iterator[None]:
    """The guard of :func:`install_network_guard` for the duration of a ``with`` block; the
    previous policy (usually none) is restored afterwards."""
    global _policy
    previous = _policy
    install_network_guard(allow)
    try:
        yield
    finally:
        _policy = previous
