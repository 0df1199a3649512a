"""itkg's own SHACL engine (``--engine native``): the shapes graph compiled once into a plan of
checks, run over the batches of :mod:`itkg.partition` in worker processes.

Why: pySHACL spends about a millisecond of Python per patient, Jena about 0.15 ms of CPU and
pyshacl-turbo about 0.18 ms, while what the shapes ask of a patient's records is a few
dictionary look-ups. This engine *interprets* the shapes (rules are knowledge, not code): it reads
``shapes/*.ttl`` (and the shapes generated for a site's extensions) and compiles each shape into
its targets and checks, so a changed shape changes what it checks, never this module.

What it implements, with the results pySHACL gives (focus node, path, value, source shape,
source constraint component, severity, message; ``tests/test_engines_fuzz.py`` and
``tests/test_scale_validation.py`` hold it to whole-graph pySHACL, Jena and turbo):

* targets ``sh:targetClass`` (instances through ``rdfs:subClassOf*`` in the data graph, the
  ontology included), ``sh:targetSubjectsOf``, ``sh:targetObjectsOf``, ``sh:targetNode``;
* node and property shapes with a predicate path, ``sh:property``, ``sh:deactivated``,
  ``sh:severity``, ``sh:message``;
* ``sh:minCount``, ``sh:maxCount``, ``sh:in``, ``sh:datatype`` (an ill-typed literal does not
  match its datatype, judged as pySHACL judges it: by rdflib's reading of the literal),
  ``sh:pattern`` with ``sh:flags`` ``i`` and ``m``, and ``sh:or`` of such shapes;
* SHACL-SPARQL constraints (``sh:sparql`` with ``sh:select``, ``sh:prefixes``/``sh:declare``,
  message templates), run by pyoxigraph. ``$this`` is pre-bound as SHACL-SPARQL says; for a query
  whose solutions for one focus node cannot depend on the others (:func:`separable`: every part
  that mentions ``$this`` binds it, groups by it, no ``LIMIT``, subqueries, ``MINUS``,
  ``VALUES``, ``EXISTS``), the query runs once per batch with ``$this`` free and its rows are
  read per focus node, which gives the same rows as one run per focus node (a pyoxigraph query
  costs milliseconds however little it reads); other queries run once per focus node with
  ``$this`` substituted.

Anything else in the shapes graph (``sh:qualifiedValueShape``, ``sh:class``, other paths, SPARQL
targets, rules, ...) makes :func:`compile_shapes` raise :class:`~itkg.errors.ShapesNotSupportedError`
before any data is read: the engine refuses, it never skips a check, and ``auto`` does not choose
it for such shapes.

A batch arrives as the N-Triples lines :class:`~itkg.partition.Numbering` holds (canonical, as
pyoxigraph writes them), and the engine keeps terms as that text: a triple is split at its first
two spaces and indexed by subject and predicate, with no term objects built. The ontology and the
partition's shared triples are indexed once per worker, and loaded once into a pyoxigraph store;
for the SPARQL constraints each batch adds only the pieces (patients with their records) of its
focus nodes, in a named graph dropped after the batch.
"""

from __future__ import annotations

import functools
import re
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence, cast

import pyoxigraph as ox
import rdflib
from rdflib.collection import Collection
from rdflib.namespace import RDF, RDFS, SH, XSD

from .errors import ShapesNotSupportedError, ValidationEngineError
from .graphmemo import GraphMemo

if TYPE_CHECKING:
    from .partition import Numbering, Plan
    from .validation import _Batch

#: Local triples per batch. The engine's cost per triple does not grow with the batch, so batches
#: are as large as pySHACL's: fewer batches, fewer round trips to the workers.
BATCH_TRIPLES = 20_000

_RDF_TYPE = f"<{RDF.type}>"
_SUBCLASS_OF = f"<{RDFS.subClassOf}>"
_XSD_STRING = str(XSD.string)
_LANG_STRING = str(RDF.langString)
_SPARQL_COMPONENT = str(SH.SPARQLConstraintComponent)
_THIS = ox.Variable("this")
_PIECES = ox.NamedNode("urn:itkg:native-shacl:batch")

#: The constraint components implemented, by parameter.
_COMPONENTS = {SH.minCount: SH.MinCountConstraintComponent, SH.maxCount: SH.MaxCountConstraintComponent,
               SH["in"]: SH.InConstraintComponent, SH.datatype: SH.DatatypeConstraintComponent,
               SH.pattern: SH.PatternConstraintComponent, SH["or"]: SH.OrConstraintComponent}
#: Other predicates of the SHACL namespace a shape may carry (what they mean is implemented, or
#: they change no result).
_SHAPE_TERMS = {SH.targetClass, SH.targetNode, SH.targetObjectsOf, SH.targetSubjectsOf, SH.path, SH.property,
                SH.severity, SH.message, SH.deactivated, SH.flags, SH.sparql, SH.name, SH.description,
                SH.order, SH.group, SH.defaultValue}
#: Predicates of the SHACL namespace allowed elsewhere in the shapes graph (SPARQL constraints,
#: prefix declarations, list members).
_OTHER_TERMS = {SH.select, SH.prefixes, SH.declare, SH.prefix, SH.namespace}
_SHAPE_TYPES = {SH.NodeShape, SH.PropertyShape}


# -- terms as N-Triples text --------------------------------------------------------------------

_ESCAPE = re.compile(r"\\(?:u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|(.))", re.DOTALL)
_ECHAR = {"t": "\t", "b": "\b", "n": "\n", "r": "\r", "f": "\f", '"': '"', "'": "'", "\\": "\\"}


def _unescaped(match: re.Match[str]) -> str:
    code = match[1] or match[2]
    return chr(int(code, 16)) if code else _ECHAR.get(match[3], match[3])


def literal_parts(nt: str) -> tuple[str, str, str | None]:
    """The lexical form, datatype IRI and language of a literal written as N-Triples."""
    end = nt.rfind('"')
    lexical = nt[1:end]
    if "\\" in lexical:
        lexical = _ESCAPE.sub(_unescaped, lexical)
    rest = nt[end + 1:]
    if not rest:
        return lexical, _XSD_STRING, None
    if rest[0] == "@":
        return lexical, _LANG_STRING, rest[1:]
    return lexical, rest[3:-1], None


def name_of(nt: str) -> str:
    """How itkg names a term in results (:func:`itkg.loading.node_id`; a literal by its text)."""
    first = nt[0]
    if first == "<":
        return nt[1:-1]
    if first == "_":
        return nt
    return literal_parts(nt)[0]


def _text_of(nt: str) -> str:
    """``str()`` of the rdflib term (what pySHACL puts into messages and matches patterns on)."""
    first = nt[0]
    if first == "<":
        return nt[1:-1]
    if first == "_":
        return nt[2:]
    return literal_parts(nt)[0]


def to_rdflib(nt: str) -> rdflib.term.Identifier:
    """The rdflib term of an N-Triples term (literals as :func:`itkg.loading.to_rdflib` makes them)."""
    first = nt[0]
    if first == "<":
        return rdflib.URIRef(nt[1:-1])
    if first == "_":
        return rdflib.BNode(nt[2:])
    lexical, datatype, language = literal_parts(nt)
    if language is not None:
        return rdflib.Literal(lexical, lang=language)
    if datatype == _XSD_STRING:
        return rdflib.Literal(lexical)
    return rdflib.Literal(lexical, datatype=rdflib.URIRef(datatype))


def _nt(term: rdflib.term.Node) -> str:
    """An rdflib term as canonical N-Triples text (as pyoxigraph writes it)."""
    from .loading import to_oxigraph
    return str(to_oxigraph(term))


def _ox_term(nt: str) -> Any:
    """The pyoxigraph term of an N-Triples term."""
    line = f"<urn:itkg:s> <urn:itkg:p> {nt} .\n".encode()
    return next(iter(ox.parse(line, format=ox.RdfFormat.N_TRIPLES))).object


# -- the compiled shapes ------------------------------------------------------------------------

MIN_COUNT, MAX_COUNT, IN, DATATYPE, PATTERN, OR = range(6)
#: An ``sh:or`` whose shapes judge a value by the value alone (:func:`_value_only`), in flattened
#: checks: its verdicts are remembered by value (dates repeat).
OR_OF_VALUES = 6


@dataclass(frozen=True)
class Check:
    """One constraint of a shape: its kind (:data:`MIN_COUNT` ...), component IRI and argument."""

    kind: int
    component: str
    argument: Any


@dataclass(frozen=True)
class SparqlConstraint:
    """One ``sh:sparql`` constraint: its node, query text (prefixes declared), message templates,
    and whether one run per batch gives each focus node's rows (:func:`separable`)."""

    node: str
    text: str
    messages: tuple[str, ...]
    separable: bool
    binds_this: bool


@dataclass(frozen=True)
class Shape:
    """A shape compiled: its node, path (a predicate, as N-Triples; None for a node shape),
    severity, messages, checks, property shapes (indices) and SPARQL constraints."""

    node: str
    name: str
    path: str | None
    severity: str
    messages: tuple[str, ...]
    checks: tuple[Check, ...]
    properties: tuple[int, ...]
    sparql: tuple[SparqlConstraint, ...]
    deactivated: bool


@dataclass(frozen=True)
class Targets:
    """The targets of a shape (N-Triples terms)."""

    classes: frozenset[str]
    subjects_of: frozenset[str]
    objects_of: frozenset[str]
    nodes: frozenset[str]


@dataclass(frozen=True)
class Program:
    """The shapes graph compiled: every shape, and the shapes that have targets."""

    shapes: tuple[Shape, ...]
    targeted: tuple[tuple[int, Targets], ...]

    @property
    def has_sparql(self) -> bool:
        return any(self.shapes[i].sparql for i, _ in self.targeted)

    def watched(self) -> frozenset[str]:
        """The predicates whose triples the targets read."""
        found = {_RDF_TYPE, _SUBCLASS_OF}
        for _, targets in self.targeted:
            found |= targets.subjects_of | targets.objects_of
        return frozenset(found)


def _refuse(feature: str) -> ShapesNotSupportedError:
    return ShapesNotSupportedError(
        f"the native SHACL engine does not implement {feature}, which the shapes use; "
        "use --engine pyshacl, jena or turbo (engine='pyshacl', 'jena' or 'turbo')")


def _short(term: rdflib.term.Node) -> str:
    text = str(term)
    return "sh:" + text[len(str(SH)):] if text.startswith(str(SH)) else text


def _one(graph: rdflib.Graph, node: rdflib.term.Node, predicate: rdflib.URIRef) -> rdflib.term.Node | None:
    values = list(graph.objects(node, predicate))
    if len(values) > 1:
        raise _refuse(f"more than one {_short(predicate)} on one shape")
    return values[0] if values else None


class _Compiler:
    def __init__(self, graph: rdflib.Graph) -> None:
        self.graph = graph
        self.shapes: list[Shape | None] = []
        self.index: dict[rdflib.term.Node, int] = {}

    def shape(self, node: rdflib.term.Node, nested: bool = False) -> int:
        if node in self.index:
            return self.index[node]
        number = self.index[node] = len(self.shapes)
        self.shapes.append(None)
        graph = self.graph
        for predicate in sorted(set(graph.predicates(node, None)), key=str):
            if str(predicate).startswith(str(SH)) and predicate not in _SHAPE_TERMS and predicate not in _COMPONENTS:
                raise _refuse(_short(predicate))
        types = set(graph.objects(node, RDF.type))
        classes = {RDFS.Class, *graph.subjects(RDFS.subClassOf, RDFS.Class)}
        if types & classes:
            raise _refuse("implicit class targets (a shape that is also a class)")
        deactivated_value = _one(graph, node, SH.deactivated)
        deactivated = isinstance(deactivated_value, rdflib.Literal) and bool(deactivated_value.value)
        path = _one(graph, node, SH.path)
        if path is not None and not isinstance(path, rdflib.URIRef):
            raise _refuse("property paths other than a predicate (sequence, inverse, alternative, ...)")
        severity = _one(graph, node, SH.severity) or SH.Violation
        if nested and severity != SH.Violation:
            raise _refuse("a severity on a shape inside sh:or (engines differ on it)")
        messages = tuple(sorted(str(m) for m in graph.objects(node, SH.message)))
        checks: list[Check] = []
        for parameter, component in _COMPONENTS.items():
            value = _one(graph, node, parameter)
            if value is None:
                continue
            checks.append(self.check(node, parameter, str(component), value))
        properties = tuple(self.shape(p) for p in graph.objects(node, SH.property))
        sparql = tuple(c for c in (self.sparql(node, c, path) for c in graph.objects(node, SH.sparql))
                       if c is not None)
        if nested and sparql:
            raise _refuse("SPARQL constraints in a shape inside sh:or")
        if not deactivated and not nested and ((checks and not messages)
                                               or any(not (c.messages or messages) for c in sparql)):
            raise _refuse("a constraint without sh:message (pySHACL and Jena word their own messages differently)")
        if any("{$" in m or "{?" in m for m in messages) and checks:
            raise _refuse("message templates in a SHACL Core shape")
        self.shapes[number] = Shape(
            node=_nt(node), name=_shape_name(node), path=_nt(path) if path is not None else None,
            severity=str(severity), messages=messages, checks=tuple(checks), properties=properties,
            sparql=sparql, deactivated=deactivated)
        return number

    def check(self, node: rdflib.term.Node, parameter: rdflib.URIRef, component: str, value: rdflib.term.Node) -> Check:
        graph = self.graph
        if parameter in (SH.minCount, SH.maxCount):
            if not isinstance(value, rdflib.Literal) or not isinstance(value.value, int) or isinstance(value.value, bool):
                raise _refuse(f"a {_short(parameter)} that is not an integer")
            if _one(graph, node, SH.path) is None:
                raise _refuse(f"{_short(parameter)} on a node shape")
            return Check(MIN_COUNT if parameter == SH.minCount else MAX_COUNT, component, int(value.value))
        if parameter == SH["in"]:
            members = list(Collection(graph, value))
            if any(isinstance(m, rdflib.Literal) and m.datatype == XSD.string for m in members):
                raise _refuse('an sh:in member written "..."^^xsd:string (engines differ on it)')
            return Check(IN, component, frozenset(_nt(m) for m in members))
        if parameter == SH.datatype:
            if not isinstance(value, rdflib.URIRef):
                raise _refuse("an sh:datatype that is not an IRI")
            return Check(DATATYPE, component, str(value))
        if parameter == SH.pattern:
            flags_value = _one(graph, node, SH.flags)
            flags_text = str(flags_value) if flags_value is not None else ""
            if set(flags_text.lower()) - {"i", "m"}:
                raise _refuse("sh:flags other than i and m (engines differ on them)")
            if not isinstance(value, rdflib.Literal):
                raise _refuse("an sh:pattern that is not a literal")
            flags = (re.I if "i" in flags_text.lower() else 0) | (re.M if "m" in flags_text.lower() else 0)
            return Check(PATTERN, component, re.compile(str(value), flags))
        # sh:or
        members = list(Collection(graph, value))
        return Check(OR, component, tuple(self.shape(m, nested=True) for m in members))

    def sparql(self, shape: rdflib.term.Node, node: rdflib.term.Node,
               path: rdflib.term.Node | None) -> SparqlConstraint | None:
        graph = self.graph
        for predicate in sorted(set(graph.predicates(node, None)), key=str):
            if str(predicate).startswith(str(SH)) and predicate not in (SH.select, SH.message, SH.prefixes,
                                                                       SH.deactivated, SH.name, SH.description):
                raise _refuse(f"{_short(predicate)} in a SPARQL constraint")
        if path is not None:
            raise _refuse("SPARQL constraints on property shapes")
        select = _one(graph, node, SH.select)
        if not isinstance(select, rdflib.Literal):
            raise _refuse("SPARQL constraints without one sh:select")
        text = str(select)
        if re.search(r"[$?](PATH|currentShape|shapesGraph)\b", text):
            raise _refuse("$PATH, $currentShape or $shapesGraph in a SPARQL constraint")
        messages = tuple(sorted(str(m) for m in graph.objects(node, SH.message)))
        full = "".join(f"PREFIX {p}: <{ns}>\n" for p, ns in _prefixes(graph, node).items()) + "\n" + text
        analysis = _analyse(full)
        try:  # what pyoxigraph cannot run is refused now, not met in a batch
            ox.Store().query(full, substitutions={_THIS: ox.NamedNode("urn:itkg:native-shacl:focus")})
        except (SyntaxError, ValueError, RuntimeError):
            raise _refuse("a SPARQL constraint that pyoxigraph cannot run") from None
        deactivated_value = _one(graph, node, SH.deactivated)
        if isinstance(deactivated_value, rdflib.Literal) and bool(deactivated_value.value):
            return None
        return SparqlConstraint(_nt(node), full, messages, analysis[0], analysis[1])


def _shape_name(node: rdflib.term.Node) -> str:
    from .loading import node_id
    return node_id(node)


def _prefixes(graph: rdflib.Graph, node: rdflib.term.Node) -> dict[str, str]:
    """The prefixes a SPARQL constraint declares (``sh:prefixes``/``sh:declare``), collected as
    pySHACL collects them."""
    ontologies = set(graph.subjects(RDF.type, rdflib.OWL.Ontology))
    global_declares = {d for o in ontologies for d in graph.objects(o, SH.declare)}
    found: dict[str, str] = {}
    for prefixes in graph.objects(node, SH.prefixes):
        own = set(graph.objects(prefixes, SH.declare))
        declares = own if own and prefixes in ontologies else global_declares | own
        for declare in declares:
            prefix, namespace = _one(graph, declare, SH.prefix), _one(graph, declare, SH.namespace)
            if prefix is None or namespace is None:
                raise _refuse("an sh:declare without one sh:prefix and one sh:namespace")
            found[str(prefix)] = str(namespace)
    return found


def _analyse(text: str) -> tuple[bool, bool]:
    """Whether the SELECT query ``text`` is :func:`separable`, and whether it mentions ``$this``."""
    from rdflib.plugins.sparql import prepareQuery
    try:
        query = prepareQuery(text)
    except Exception:  # noqa: BLE001 - rdflib's errors quote the text; the shapes are not patient data
        raise _refuse("a SPARQL constraint that rdflib cannot parse") from None
    algebra = query.algebra
    if algebra.name != "SelectQuery":
        raise _refuse("SPARQL constraints other than SELECT")
    if algebra.get("datasetClause"):
        raise _refuse("FROM in a SPARQL constraint")
    projected = {str(v) for v in algebra.get("PV") or ()}
    if "this" not in projected:
        raise _refuse("a SPARQL constraint that does not select $this")
    if projected & {"failure", "message"}:
        raise _refuse("?failure or ?message in a SPARQL constraint (engines differ on them)")
    return separable(algebra.p), _mentions(algebra.p)


def _children(node: Any) -> Iterable[Any]:
    if isinstance(node, dict):
        return node.values()
    if isinstance(node, (list, tuple)):
        return node
    return ()


def _mentions(node: Any) -> bool:
    """Whether ``$this`` occurs anywhere in an algebra node (patterns and expressions)."""
    if isinstance(node, rdflib.Variable):
        return str(node) == "this"
    return any(_mentions(child) for child in _children(node))


def _binds(node: Any) -> bool:
    """Whether every solution of the pattern binds ``$this``."""
    name = getattr(node, "name", None)
    if name == "BGP":
        return any(_mentions(triple) for triple in node.triples)
    if name == "Join":
        return _binds(node.p1) or _binds(node.p2)
    if name == "LeftJoin":
        return _binds(node.p1)
    if name == "Union":
        return _binds(node.p1) and _binds(node.p2)
    if name in ("Filter", "Extend", "Project", "Distinct", "Reduced", "OrderBy", "Group", "AggregateJoin"):
        return _binds(node.p)
    return False


_PATTERNS = {"BGP", "Join", "LeftJoin", "Union", "Filter", "Extend", "Project", "Distinct", "Reduced",
             "OrderBy", "Group", "AggregateJoin"}


def separable(pattern: Any) -> bool:
    """Whether the rows a query's pattern gives for one focus node are its rows with ``$this``
    free, restricted to that node: every part of the pattern that mentions ``$this`` binds it in
    every solution, solutions are grouped by ``$this`` if at all, and nothing looks at other
    solutions (``LIMIT``/``OFFSET``), at other patterns (``MINUS``, ``EXISTS``, subqueries,
    ``VALUES``, ``GRAPH``, ``SERVICE``). Then one run over a batch, read per focus node, gives
    each focus node what SHACL-SPARQL's pre-binding of ``$this`` gives it, and costs one query
    instead of one per focus node."""
    def walk(node: Any) -> bool:
        name = getattr(node, "name", None)
        if name is None:
            return all(walk(child) for child in _children(node))
        if name.startswith("Builtin_") and "EXISTS" in name:
            return False
        if name in _PATTERNS:
            if _mentions(node) and not _binds(node):
                return False
            if name == "Group" and not any(isinstance(k, rdflib.Variable) and str(k) == "this"
                                           for k in node.get("expr") or ()):
                return False
            if name == "AggregateJoin" and getattr(node.p, "name", None) != "Group":
                return False
        elif name not in ("TriplesBlock",) and not _is_expression(name):
            return False
        return all(walk(child) for child in _children(node))

    return walk(pattern)


def _is_expression(name: str) -> bool:
    return (name.startswith("Builtin_") or name.startswith("Aggregate_") or name.endswith("Expression")
            or name in ("Function", "TrueFilter", "UnaryNot", "UnaryMinus", "UnaryPlus"))


#: Compiled programs by shapes graph (a graph is compiled once per process; see :func:`compile_shapes`).
_PROGRAMS: dict[int, tuple[weakref.ref[rdflib.Graph], Program]] = {}


def compile_shapes(graph: rdflib.Graph) -> Program:
    """The shapes graph as a :class:`Program`, or :class:`~itkg.errors.ShapesNotSupportedError`
    naming the first feature this engine does not implement. Made once per graph object."""
    found = _PROGRAMS.get(id(graph))
    if found is not None and found[0]() is graph:
        return found[1]
    for predicate in sorted(set(graph.predicates()), key=str):
        if str(predicate).startswith(str(SH)) and predicate not in _SHAPE_TERMS \
                and predicate not in _COMPONENTS and predicate not in _OTHER_TERMS:
            raise _refuse(_short(predicate))
    compiler = _Compiler(graph)
    roots = set()
    for predicate in (SH.targetClass, SH.targetNode, SH.targetObjectsOf, SH.targetSubjectsOf):
        roots |= set(graph.subjects(predicate, None))
    for shape_type in _SHAPE_TYPES:
        roots |= set(graph.subjects(RDF.type, shape_type))
    targeted = []
    for node in sorted(roots, key=str):
        number = compiler.shape(node)
        targets = Targets(*(frozenset(_nt(t) for t in graph.objects(node, p))
                            for p in (SH.targetClass, SH.targetSubjectsOf, SH.targetObjectsOf, SH.targetNode)))
        if any((targets.classes, targets.subjects_of, targets.objects_of, targets.nodes)):
            if any(t[0] != "<" for t in targets.classes | targets.subjects_of | targets.objects_of):
                raise _refuse("a target class or predicate that is not an IRI")
            targeted.append((number, targets))
    program = Program(tuple(s for s in compiler.shapes if s is not None), tuple(targeted))
    if len(program.shapes) != len(compiler.shapes):  # pragma: no cover - every shape is compiled
        raise ValidationEngineError("the native SHACL engine could not compile the shapes")
    _PROGRAMS[id(graph)] = (weakref.ref(graph, functools.partial(_forget, id(graph))), program)
    return program


def _forget(key: int, _: object) -> None:
    """Drop the program of a shapes graph that no longer exists (its ``id`` may be reused)."""
    _PROGRAMS.pop(key, None)


def supports(graph: rdflib.Graph) -> bool:
    """Whether this engine implements every feature the shapes graph uses."""
    try:
        compile_shapes(graph)
    except ShapesNotSupportedError:
        return False
    return True


# -- the data a batch is judged on ----------------------------------------------------------------

#: Triples by subject and predicate: one object as its text, several as a list (most subjects
#: have one object per predicate, and a list for each would double the cost of indexing).
Index = dict[str, dict[str, Any]]


def _index(lines: Iterable[str], watched: frozenset[str], index: Index,
           found: dict[str, list[tuple[str, str]]]) -> None:
    """Index N-Triples lines by subject and predicate; the (subject, object) pairs of the
    ``watched`` predicates go to ``found`` too."""
    get = index.get
    for line in lines:
        if not line:
            continue
        s, p, o = line.split(" ", 2)
        o = o[:-2]
        by_predicate = get(s)
        if by_predicate is None:
            index[s] = {p: o}
        else:
            objects = by_predicate.get(p)
            if objects is None:
                by_predicate[p] = o
            elif objects.__class__ is str:
                if objects != o:
                    by_predicate[p] = [objects, o]
            elif o not in objects:
                objects.append(o)
        if p in watched:
            found.setdefault(p, []).append((s, o))


def _objects(entry: Any) -> list[str] | tuple[str, ...]:
    """The objects of an :data:`Index` entry."""
    return (entry,) if entry.__class__ is str else entry


class _Base:
    """What every batch of a run shares: the ontology and the partition's shared triples, indexed,
    with the focus nodes they give, and (for SPARQL constraints) loaded in a pyoxigraph store."""

    def __init__(self, program: Program, base: bytes, replicated: frozenset[str]) -> None:
        self.program = program
        self.replicated = replicated
        self.watched = program.watched()
        self.index: Index = {}
        self.found: dict[str, list[tuple[str, str]]] = {}
        text = base.decode("utf-8")
        _index(text.split("\n"), self.watched, self.index, self.found)
        self.lines = frozenset(line[:-2] for line in text.split("\n") if line) if program.has_sparql else frozenset()
        edges = self.found.get(_SUBCLASS_OF, [])
        self.flat = {number: _flattened(program.shapes, number) for number, _ in program.targeted}
        self.classes = {number: _subclasses(edges, t.classes) if t.classes else set()
                        for number, t in program.targeted}
        self.foci = {number: _foci(t, self.found, self.classes[number]) | t.nodes for number, t in program.targeted}
        self.store: ox.Store | None = None
        if program.has_sparql:
            self.store = ox.Store()  # its load() would rename blank nodes: parse, then add
            self.store.extend(ox.parse(base, format=ox.RdfFormat.N_TRIPLES))

    def values(self, local: Index, node: str, predicate: str) -> list[str] | tuple[str, ...]:
        mine = local.get(node)
        values = mine.get(predicate) if mine is not None else None
        theirs = self.index.get(node)
        shared = theirs.get(predicate) if theirs is not None else None
        if shared is None:
            return () if values is None else _objects(values)
        if values is None:
            return _objects(shared)
        return list(dict.fromkeys((*_objects(values), *_objects(shared))))


def _subclasses(edges: Iterable[tuple[str, str]], classes: frozenset[str]) -> set[str]:
    """``classes`` and every class below one of them (``rdfs:subClassOf*``)."""
    below: dict[str, list[str]] = {}
    for sub, sup in edges:
        below.setdefault(sup, []).append(sub)
    found, stack = set(classes), list(classes)
    while stack:
        for sub in below.get(stack.pop(), ()):
            if sub not in found:
                found.add(sub)
                stack.append(sub)
    return found


# -- judging ------------------------------------------------------------------------------------

#: A result: focus, path, value (N-Triples or None), shape number, component IRI, source
#: constraint (N-Triples or None), messages.
Raw = tuple[str, "str | None", "str | None", int, str, "str | None", tuple[str, ...]]


#: One check of a flattened shape: kind, argument, component IRI, shape number, messages, path.
Flat = tuple[int, Any, str, int, tuple[str, ...], "str | None"]


def _flattened(shapes: Sequence[Shape], number: int) -> list[tuple[str | None, list[Flat]]]:
    """The checks of shape ``number`` and of its property shapes (recursively), grouped by path,
    so that a focus node's values for a path are looked up once."""
    by_path: dict[str | None, list[Flat]] = {}

    def add(index: int) -> None:
        shape = shapes[index]
        if shape.deactivated:
            return
        for check in shape.checks:
            kind = check.kind
            if kind == OR and all(_value_only(shapes, n) for n in check.argument):
                kind = OR_OF_VALUES
            by_path.setdefault(shape.path, []).append(
                (kind, check.argument, check.component, index, shape.messages, shape.path))
        for child in shape.properties:
            add(child)

    add(number)
    return list(by_path.items())


class _Judge:
    def __init__(self, base: _Base, local: Index) -> None:
        self.base = base
        self.local = local
        self.shapes = base.program.shapes
        self.datatypes: dict[tuple[str, str], bool] = _DATATYPES

    def values(self, shape: Shape, focus: str) -> list[str] | tuple[str, ...]:
        return (focus,) if shape.path is None else self.base.values(self.local, focus, shape.path)

    def results(self, flat: list[tuple[str | None, list[Flat]]], focus: str, out: list[Raw]) -> None:
        """The results of ``focus`` against a flattened shape (its property shapes included)."""
        mine = self.local.get(focus)
        theirs = self.base.index.get(focus)
        for path, checks in flat:
            values: list[str] | tuple[str, ...]
            if path is None:
                values = (focus,)
            elif theirs is None:
                entry = mine.get(path) if mine is not None else None
                values = () if entry is None else (entry,) if entry.__class__ is str else entry
            else:
                values = self.base.values(self.local, focus, path)
            for kind, argument, component, number, messages, result_path in checks:
                if kind == MIN_COUNT:
                    if len(values) < argument:
                        out.append((focus, result_path, None, number, component, None, messages))
                elif kind == MAX_COUNT:
                    if len(values) > argument:
                        out.append((focus, result_path, None, number, component, None, messages))
                elif kind == IN:
                    for value in values:
                        if value not in argument:
                            out.append((focus, result_path, value, number, component, None, messages))
                else:
                    for failed in self.failures(kind, argument, values):
                        out.append((focus, result_path, failed, number, component, None, messages))

    def failures(self, kind: int, argument: Any, values: Sequence[str]) -> Iterable[str | None]:
        if kind == MIN_COUNT:
            return (None,) if len(values) < argument else ()
        if kind == MAX_COUNT:
            return (None,) if len(values) > argument else ()
        if kind == IN:
            return [v for v in values if v not in argument]
        if kind == DATATYPE:
            return [v for v in values if not self.datatype(v, argument)]
        if kind == PATTERN:
            return [v for v in values if v[0] == "_" or not argument.search(_text_of(v))]
        if kind == OR:
            return [v for v in values if not any(self.conforms(s, v) for s in argument)]
        cache = _ALTERNATIVES
        failed = []
        for value in values:
            key = (argument, value)
            known = cache.get(key)
            if known is None:
                if len(cache) > 200_000:
                    cache.clear()
                known = cache[key] = any(self.conforms(s, value) for s in argument)
            if not known:
                failed.append(value)
        return failed

    def conforms(self, number: int, focus: str) -> bool:
        shape = self.shapes[number]
        if shape.deactivated:
            return True
        values = self.values(shape, focus)
        if any(True for check in shape.checks for _ in self.failures(check.kind, check.argument, values)):
            return False
        return all(self.conforms(child, focus) for child in shape.properties)

    def datatype(self, value: str, datatype: str) -> bool:
        key = (value, datatype)
        known = self.datatypes.get(key)
        if known is None:
            if len(self.datatypes) > 200_000:
                self.datatypes.clear()
            known = self.datatypes[key] = _datatype_matches(value, datatype)
        return known


_DATATYPES: dict[tuple[str, str], bool] = {}
#: Whether a value conforms to one of the shapes of an ``sh:or`` (the shape numbers), for the
#: ``sh:or`` whose shapes judge the value alone (:func:`_value_only`): dates repeat.
_ALTERNATIVES: dict[tuple[tuple[int, ...], str], bool] = {}


def _value_only(shapes: Sequence[Shape], number: int) -> bool:
    """Whether a shape judges a node by the node alone (no path, no property shapes), so its
    verdict on a term holds in every batch."""
    shape = shapes[number]
    return shape.path is None and not shape.properties and all(
        c.kind != OR or all(_value_only(shapes, n) for n in c.argument) for c in shape.checks)


def _datatype_matches(value: str, datatype: str) -> bool:
    """pySHACL's ``sh:datatype`` test of the term ``value`` (its ``DatatypeConstraintComponent``):
    the literal's datatype is ``datatype``, and rdflib reads it as a well-typed value of it."""
    from datetime import date, datetime, time
    from decimal import Decimal
    if value[0] != '"':
        return False
    literal = to_rdflib(value)
    assert isinstance(literal, rdflib.Literal)
    rule = rdflib.URIRef(datatype)
    if literal.datatype == rule:
        if getattr(literal, "ill_typed", None) is True:
            return False
        python = literal.value
        checks: dict[rdflib.URIRef, Any] = {XSD.integer: int, XSD.float: float, XSD.decimal: Decimal,
                                            XSD.boolean: bool, XSD.date: date, XSD.time: time,
                                            XSD.dateTime: datetime}
        if rule in (XSD.string, RDF.langString):
            return isinstance(python, (str, bytes))
        expected = checks.get(rule)
        return True if expected is None else isinstance(python, expected)
    if rule == RDFS.Literal:
        return True
    if rule == RDFS.Datatype:
        return literal.datatype is not None
    if literal.datatype is None and literal.language is None and rule == XSD.string:
        return True
    return rule == RDF.langString and bool(literal.language)


def _pieces(local: Index, foci: Iterable[str]) -> set[str]:
    """The local nodes a focus node reaches by local triples (its records, what they point to): all
    that a SPARQL constraint reading forward from ``$this`` can see of the batch, which is what
    :mod:`itkg.partition` trusts the SPARQL constraints to read."""
    found = {f for f in foci if f in local}
    stack = list(found)
    while stack:
        for entry in local[stack.pop()].values():
            for o in _objects(entry):
                if o not in found and o in local:
                    found.add(o)
                    stack.append(o)
    return found


def _literally(text: str, _: re.Match[str]) -> str:
    return text


def _substituted(message: str, bound: dict[str, Any]) -> str:
    """A SHACL-SPARQL message template filled in (``{$this}``, ``{?var}``) as itkg's pySHACL
    engine fills it in: each value as its text, taken literally."""
    for var, value in bound.items():
        text = value.value
        message = re.sub("{{[?$]{}}}".format(re.escape(var)), functools.partial(_literally, text), message)
    return message


def _sparql_results(base: _Base, local: Index, shape_foci: list[tuple[int, list[str]]], out: list[Raw]) -> None:
    """The results of the SPARQL constraints of each shape for its focus nodes (owned ones)."""
    store = base.store
    assert store is not None
    pieces = _pieces(local, (f for _, foci in shape_foci for f in foci))
    lines = [f"{s} {p} {o}" for s in pieces for p, entry in local[s].items() for o in _objects(entry)]
    data = "".join(f"{line} {_PIECES} .\n" for line in dict.fromkeys(lines) if line not in base.lines)
    if data:  # (the store's load() would rename blank nodes: parse, then add)
        store.extend(ox.parse(data.encode("utf-8"), format=ox.RdfFormat.N_QUADS))
    try:
        graphs: list[ox.NamedNode | ox.BlankNode | ox.DefaultGraph] = [ox.DefaultGraph(), _PIECES]
        for number, foci in shape_foci:
            shape = base.program.shapes[number]
            for constraint in shape.sparql:
                if constraint.separable and constraint.binds_this:
                    wanted = set(foci)
                    rows: dict[str, list[Any]] = {}
                    solutions = store.query(constraint.text, default_graph=graphs)
                    for row in solutions:  # type: ignore[union-attr]
                        key = str(row["this"])
                        if key in wanted:
                            rows.setdefault(key, []).append(row)
                    for focus in foci:
                        _rows_to_results(shape, number, constraint, focus, solutions.variables,  # type: ignore[union-attr]
                                         rows.get(focus, ()), out)
                elif constraint.separable:  # $this not in the pattern: the same rows for every focus
                    solutions = store.query(constraint.text, default_graph=graphs)
                    every = list(cast(ox.QuerySolutions, solutions))
                    for focus in foci:
                        _rows_to_results(shape, number, constraint, focus, solutions.variables,  # type: ignore[union-attr]
                                         every, out)
                else:
                    for focus in foci:
                        solutions = store.query(constraint.text, default_graph=graphs,
                                                substitutions={_THIS: _ox_term(focus)})
                        _rows_to_results(shape, number, constraint, focus, solutions.variables,  # type: ignore[union-attr]
                                         list(cast(ox.QuerySolutions, solutions)), out)
    finally:
        if data:
            store.remove_graph(_PIECES)


def _rows_to_results(shape: Shape, number: int, constraint: SparqlConstraint, focus: str,
                     variables: Sequence[ox.Variable], rows: Iterable[Any], out: list[Raw]) -> None:
    """Each solution as pySHACL makes a result of it: focus ``$this`` (else the focus node),
    path ``?path``, value ``?value`` (else, on a node shape, the focus node), the messages with
    the solution's values; a solution binding none of the three, or repeating one, gives none."""
    seen = set()
    for row in rows:
        bound = {var.value: term for var, term in zip(variables, row) if term is not None}
        this, path, value = bound.pop("this", None), bound.pop("path", None), bound.pop("value", None)
        if this is None and path is None and value is None:
            continue
        key = (str(this), str(path), str(value), tuple(sorted((k, str(v)) for k, v in bound.items())))
        if key in seen:
            continue
        seen.add(key)
        result_focus = str(this) if this is not None else focus
        value_nt = str(value) if value is not None else (focus if shape.path is None else None)
        filled = dict(bound)
        if this is not None:
            filled["this"] = this
        if path is not None:
            filled["path"] = path
        if value_nt is not None:
            filled["value"] = value if value is not None else _ox_term(focus)
        messages = tuple(_substituted(m, filled) for m in constraint.messages + shape.messages)
        out.append((result_focus, str(path) if path is not None else shape.path, value_nt, number,
                    _SPARQL_COMPONENT, constraint.node, messages))


def _foci(targets: Targets, found: dict[str, list[tuple[str, str]]], classes: set[str],
          instances: dict[str, list[str]] | None = None) -> set[str]:
    """The focus nodes that the triples ``found`` (by watched predicate) give ``targets``
    (``instances``: the subjects of ``found``'s ``rdf:type`` triples by class, when at hand)."""
    foci: set[str] = set()
    if classes:
        if instances is None:
            foci.update(s for s, o in found.get(_RDF_TYPE, ()) if o in classes)
        else:
            for c in classes:
                foci.update(instances.get(c, ()))
    for predicate in targets.subjects_of:
        foci.update(s for s, _ in found.get(predicate, ()))
    for predicate in targets.objects_of:
        foci.update(o for _, o in found.get(predicate, ()))
    return foci


def judge_lines(base: _Base, lines: str, first: bool) -> list[Raw]:
    """The results of one batch (its N-Triples lines) that it owns (see :mod:`itkg.partition`)."""
    program = base.program
    local: Index = {}
    found: dict[str, list[tuple[str, str]]] = {}
    _index(lines.split("\n"), base.watched, local, found)
    replicated = base.replicated
    out: list[Raw] = []
    judge = _Judge(base, local)
    sparql: list[tuple[int, list[str]]] = []
    local_edges = found.get(_SUBCLASS_OF)
    instances: dict[str, list[str]] = {}
    for s, o in found.get(_RDF_TYPE, ()):
        known = instances.get(o)
        if known is None:
            instances[o] = [s]
        else:
            known.append(s)
    for number, targets in program.targeted:
        shape = program.shapes[number]
        if shape.deactivated:
            continue
        if local_edges and targets.classes:  # classes declared in the batch itself (one whole batch)
            classes = _subclasses(local_edges + base.found.get(_SUBCLASS_OF, []), targets.classes)
            theirs = _foci(targets, base.found, classes) | targets.nodes
        else:
            classes, theirs = base.classes[number], base.foci[number]
        foci = _foci(targets, found, classes, instances)
        foci.update(theirs)
        if first:  # owned: a local subject, or (first batch) a node no batch holds
            foci = {f for f in foci if f in local or f not in replicated}
        else:
            foci.intersection_update(local)
        if not foci:
            continue
        flat = base.flat[number]
        for focus in foci:
            judge.results(flat, focus, out)
        if shape.sparql:
            sparql.append((number, sorted(foci)))
    if sparql:
        _sparql_results(base, local, sparql, out)
    return out


# -- worker processes ---------------------------------------------------------------------------

#: This process's shared part of the run (set by :func:`_enter`, in a worker or for one process).
_BASE: _Base | None = None


def _enter(program: Program | None, base: bytes = b"", replicated: frozenset[str] = frozenset()) -> None:
    global _BASE
    from .guards import install_library_defaults
    install_library_defaults()  # rdflib keeps literals as written, as the reader does
    _BASE = None if program is None else _Base(program, base, replicated)


def _judge_batch(lines: bytes, first: bool) -> list[Raw]:
    assert _BASE is not None, "judge() sets the base"
    try:
        return judge_lines(_BASE, lines.decode("utf-8"), first)
    except Exception as error:  # noqa: BLE001 - its message may quote data: report only the kind
        raise ValidationEngineError(f"the native SHACL engine failed on a batch ({type(error).__name__})") from None


def _id_as_nt(key: str) -> str:
    """A node id of :class:`~itkg.partition.Numbering` (:func:`~itkg.partition.node_key`) as N-Triples."""
    return key if key.startswith("_:") else f"<{key}>"


def _canonical(graph: rdflib.Graph) -> bytes:
    text = graph.serialize(format="nt", encoding="utf-8")
    return ox.serialize([q.triple for q in ox.parse(text, format=ox.RdfFormat.N_TRIPLES)],
                        format=ox.RdfFormat.N_TRIPLES) or b""


#: :func:`canonical_nt` per graph (the ontology's took about 4 ms a call).
_CANONICAL: GraphMemo[bytes] = GraphMemo(_canonical)


def canonical_nt(graph: rdflib.Graph) -> bytes:
    """``graph`` as Oxigraph's N-Triples (blank-node labels kept), made once per process for the
    same unchanged graph (:mod:`itkg.graphmemo`)."""
    return _CANONICAL(graph)


def base_bytes(numbering: Numbering, cut: Plan, ontology: rdflib.Graph) -> bytes:
    """The ontology and the shared triples as canonical N-Triples (what every batch adds: the base
    of this engine and of pyshacl-turbo)."""
    return canonical_nt(ontology) + numbering.lines(cut.shared)


def judge(numbering: Numbering, cut: Plan, *, workers: int, progress: Callable[[int, int], None] | None,
          shapes: rdflib.Graph, ontology: rdflib.Graph) -> list[_Batch]:
    """Every batch of ``cut`` judged against ``shapes``: in this process, or in ``workers``
    spawned processes (each indexes the ontology and the shared triples once)."""
    from . import processes
    from .validation import _windowed
    program = compile_shapes(shapes)
    base = base_bytes(numbering, cut, ontology)
    replicated = frozenset(_id_as_nt(numbering.ids[n]) for n in cut.replicated)
    if workers <= 1:
        _enter(program, base, replicated)
        try:
            batches = []
            for index, batch in enumerate(cut.batches):
                batches.append(as_batch(program, _judge_batch(numbering.lines(batch), index == 0)))
                if progress:
                    progress(index + 1, len(cut))
            return batches
        finally:
            _enter(None)
    pool = processes.spawn_pool(workers, _enter, (program, base, replicated))
    failed = True
    try:
        raw: list[Any] = _windowed(
            lambda index: cast(Any, pool.submit(_judge_batch, numbering.lines(cut.batches[index]), index == 0)),
            len(cut), workers, progress)
        failed = False
    finally:
        processes.stop_pool(pool, failed=failed)
    return [as_batch(program, found) for found in raw]


def as_batch(program: Program, raw: Sequence[Raw]) -> _Batch:
    """One batch's results as :class:`~itkg.validation.ValidationResult`\\ s and report triples."""
    from .validation import ValidationResult, _Batch
    results = []
    triples: list[tuple[Any, Any, Any]] = []
    for focus, path, value, number, component, constraint, messages in raw:
        shape = program.shapes[number]
        message = min(messages) if messages else "constraint violated"
        results.append(ValidationResult(
            focus=name_of(focus), message=message, severity=shape.severity.rsplit("#", 1)[-1],
            path=name_of(path) if path is not None else None,
            value=name_of(value) if value is not None else None, shape=shape.name))
        node = rdflib.BNode()
        triples.append((node, RDF.type, SH.ValidationResult))
        triples.append((node, SH.resultMessage, rdflib.Literal(message)))
        for predicate, term in ((SH.focusNode, focus), (SH.resultPath, path), (SH.value, value),
                                (SH.sourceShape, shape.node), (SH.sourceConstraint, constraint)):
            if term is not None:
                triples.append((node, predicate, to_rdflib(term)))
        triples.append((node, SH.resultSeverity, rdflib.URIRef(shape.severity)))
        triples.append((node, SH.sourceConstraintComponent, rdflib.URIRef(component)))
    return _Batch(results, triples)
