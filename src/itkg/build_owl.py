"""Generate ``ontology/itkg.owl`` (RDF/XML) from ``ontology/itkg.ttl``, the same bytes on every run.

``python -m itkg.build_owl`` first writes the ontology's SKOS cross-references from
``ontology/itkg.sssom.tsv`` into the Turtle (:mod:`itkg.mappings`), then rewrites the file;
``python -m itkg.build_owl --check`` exits 1 when it
is stale, so CI and ``tests/test_ontology.py`` catch a Turtle edit that was not rebuilt. In a
source checkout the same command also renders the ontology's HTML documentation,
``docs/ontology/index.html`` (:mod:`itkg.ontology_docs`), and ``--check`` covers it too.

Why a writer of our own: rdflib's RDF/XML serializers order namespaces and subjects by set
iteration and name blank nodes randomly, so two runs on the same Turtle give different files and
"in sync" could only ever mean "isomorphic". This writer canonicalises blank nodes
(:func:`rdflib.compare.to_canonical_graph`), sorts subjects and properties, nests blank nodes that
are used once and writes RDF lists as ``rdf:parseType="Collection"``, the shape Protégé, the OWL API
and owlready2 expect for OWL class expressions.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

from rdflib import BNode, Graph, Literal, URIRef
from rdflib.compare import to_canonical_graph
from rdflib.namespace import OWL, RDF
from rdflib.term import Node

from itkg import ontology_docs
from itkg.mappings import sync_ontology
from itkg.resources import data_root, ontology_owl_path, ontology_path

_NCNAME = re.compile(r"[A-Za-z_][A-Za-z0-9._-]*\Z")
_TEXT_ESCAPES = {"\r": "&#13;"}
_ATTR_ESCAPES = {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}
_INDENT = "  "


def _split(iri: str) -> tuple[str, str] | None:
    """Split an IRI into namespace and an XML local name, as RDF/XML element names need."""
    for cut in (iri.rfind("#"), iri.rfind("/")):
        if cut >= 0 and _NCNAME.match(iri[cut + 1:]):
            return iri[:cut + 1], iri[cut + 1:]
    return None


def _attr(value: str) -> str:
    return '"' + escape(value, _ATTR_ESCAPES) + '"'


def _object_key(node: Node) -> tuple[int, str, str, str]:
    """Sort key that orders IRIs, blank nodes and literals deterministically (they do not compare)."""
    if isinstance(node, Literal):
        return (2, str(node), node.language or "", str(node.datatype or ""))
    return (0 if isinstance(node, URIRef) else 1, str(node), "", "")


class _Writer:
    """One rendering of one canonical graph; see :func:`render`."""

    def __init__(self, graph: Graph, prefixes: dict[str, str]) -> None:
        self.graph = graph
        self.prefixes = prefixes  # namespace -> prefix
        self.used: dict[str, str] = {}  # prefix -> namespace, for the xmlns declarations
        uses: Counter[Node] = Counter(o for o in graph.objects() if isinstance(o, BNode))
        once = {b for b, n in uses.items() if n == 1}
        self.roots = sorted({s for s in graph.subjects() if s not in once}, key=self._root_key)
        self.nested = self._reachable(once)
        # Blank nodes used once but reachable from no root form cycles; they become roots.
        self.roots += sorted(once - self.nested, key=str)
        # Only blank nodes referenced from elsewhere need an rdf:nodeID.
        self.labels = {b: f"n{i}" for i, b in enumerate(r for r in self.roots if uses[r])}
        self.lines: list[str] = []

    def _root_key(self, node: Node) -> tuple[int, str]:
        header = (node, RDF.type, OWL.Ontology) in self.graph
        return (0 if header else 1 if isinstance(node, URIRef) else 2, str(node))

    def _reachable(self, once: set[Node]) -> set[Node]:
        seen: set[Node] = set()
        stack = [o for r in self.roots for o in self.graph.objects(r) if o in once]
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(o for o in self.graph.objects(node) if o in once)
        return seen

    def qname(self, iri: Node) -> str:
        split = _split(str(iri))
        if split is None:
            raise ValueError(f"{iri} cannot be written as an RDF/XML element name")
        namespace, local = split
        prefix = self.prefixes.get(namespace)
        if prefix is None:
            taken = set(self.prefixes.values())
            prefix = next(f"ns{i}" for i in range(1, len(taken) + 2) if f"ns{i}" not in taken)
            self.prefixes[namespace] = prefix
        self.used[prefix] = namespace
        return f"{prefix}:{local}"

    def _list_items(self, node: Node) -> list[Node] | None:
        """The members of a well-formed RDF list of nested nodes, else None."""
        items: list[Node] = []
        while node != RDF.nil:
            if node not in self.nested:
                return None
            props = sorted(self.graph.predicate_objects(node), key=lambda po: str(po[0]))
            if [p for p, _ in props] != [RDF.first, RDF.rest]:
                return None
            item = props[0][1]
            if isinstance(item, Literal) or (isinstance(item, BNode) and item not in self.nested):
                return None
            items.append(item)
            node = props[1][1]
        return items

    def node(self, subject: Node, depth: int) -> None:
        pad = _INDENT * depth
        # The first type with an XML name becomes the element name (<owl:Class rdf:about=...>).
        types = sorted(t for t in self.graph.objects(subject, RDF.type)
                       if isinstance(t, URIRef) and _split(str(t)) is not None)
        element = self.qname(types[0]) if types else "rdf:Description"
        if isinstance(subject, URIRef):
            start = f"<{element} rdf:about={_attr(str(subject))}"
        elif subject in self.labels:
            start = f"<{element} rdf:nodeID={_attr(self.labels[subject])}"
        else:
            start = f"<{element}"
        pairs = sorted(((p, o) for p, o in self.graph.predicate_objects(subject)
                        if not (types and p == RDF.type and o == types[0])),
                       key=lambda po: (po[0] != RDF.type, self.qname(po[0]), _object_key(po[1])))
        if not pairs:
            self.lines.append(pad + start + "/>")
            return
        self.lines.append(pad + start + ">")
        for predicate, obj in pairs:
            self.property(predicate, obj, depth + 1)
        self.lines.append(f"{pad}</{element}>")

    def property(self, predicate: Node, obj: Node, depth: int) -> None:
        pad = _INDENT * depth
        name = self.qname(predicate)
        if isinstance(obj, Literal):
            if obj.language:
                attrs = f" xml:lang={_attr(obj.language)}"
            elif obj.datatype:
                attrs = f" rdf:datatype={_attr(str(obj.datatype))}"
            else:
                attrs = ""
            self.lines.append(f"{pad}<{name}{attrs}>{escape(str(obj), _TEXT_ESCAPES)}</{name}>")
        elif isinstance(obj, URIRef):
            self.lines.append(f"{pad}<{name} rdf:resource={_attr(str(obj))}/>")
        elif obj in self.labels:
            self.lines.append(f"{pad}<{name} rdf:nodeID={_attr(self.labels[obj])}/>")
        else:
            items = self._list_items(obj)
            if items is None:
                self.lines.append(f"{pad}<{name}>")
                self.node(obj, depth + 1)
            else:
                self.lines.append(f'{pad}<{name} rdf:parseType="Collection">')
                for item in items:
                    if isinstance(item, URIRef):
                        self.lines.append(f"{pad}{_INDENT}<rdf:Description rdf:about={_attr(str(item))}/>")
                    else:
                        self.node(item, depth + 1)
            self.lines.append(f"{pad}</{name}>")


def render(graph: Graph) -> str:
    """The RDF/XML text of ``graph``: a pure function of its triples and namespace bindings."""
    canonical = Graph()
    for triple in to_canonical_graph(graph):
        canonical.add(triple)
    prefixes = {str(ns): prefix for prefix, ns in sorted(graph.namespaces()) if prefix}
    writer = _Writer(canonical, prefixes)
    writer.qname(RDF.type)  # rdf: is always declared
    for root in writer.roots:
        writer.node(root, 1)
    declarations = [f"{_INDENT}xmlns:{p}={_attr(ns)}" for p, ns in sorted(writer.used.items())]
    return "\n".join([
        '<?xml version="1.0" encoding="utf-8"?>',
        "<!-- Generated from ontology/itkg.ttl by `python -m itkg.build_owl`. Do not edit: edit the Turtle. -->",
        "<rdf:RDF",
        "\n".join(declarations) + ">",
        *writer.lines,
        "</rdf:RDF>",
        "",
    ])


def build(source: Path, target: Path, check: bool = False) -> bool:
    """Render ``source`` (Turtle); write it to ``target`` unless ``check``. True if ``target`` was
    already up to date."""
    text = render(Graph().parse(source, format="turtle"))
    current = target.read_text(encoding="utf-8") if target.is_file() else None
    if current == text:
        return True
    if not check:
        target.write_text(text, encoding="utf-8", newline="\n")
    return False


def docs_path() -> Path | None:
    """``docs/ontology/index.html`` of a source checkout; None in an installed wheel (no docs/)."""
    docs = data_root() / "docs"
    return docs / "ontology" / "index.html" if docs.is_dir() else None


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point: 0 when written or in sync, 1 when ``--check`` finds it stale."""
    parser = argparse.ArgumentParser(prog="python -m itkg.build_owl", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if the .owl is stale")
    parser.add_argument("--ttl", type=Path, default=None, help="Turtle source (default: the bundled itkg.ttl)")
    parser.add_argument("--owl", type=Path, default=None, help="RDF/XML target (default: the bundled itkg.owl)")
    parser.add_argument("--docs", type=Path, default=None,
                        help="HTML documentation target (default: docs/ontology/index.html of the checkout)")
    args = parser.parse_args(argv)
    source = args.ttl or ontology_path()
    if args.ttl is None and not sync_ontology(source, check=args.check):
        # The SKOS cross-references are generated from ontology/itkg.sssom.tsv (itkg.mappings).
        print(f"{source}: its cross-references differ from itkg.sssom.tsv: run `python -m itkg.build_owl`",
              file=sys.stderr)
        return 1
    targets = [(args.owl or ontology_owl_path(), build)]
    docs = args.docs or docs_path()
    if docs is not None:
        targets.append((docs, ontology_docs.build))
    stale = []
    for target, builder in targets:
        fresh = builder(source, target, check=args.check)
        if not fresh:
            stale.append(target)
        if not args.check:
            print(f"{target} {'unchanged' if fresh else 'written'}")
    if args.check and stale:
        for target in stale:
            print(f"{target} is stale: run `python -m itkg.build_owl`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
