"""Splitting patient data into independent batches that pySHACL can validate one at a time.

Why: pySHACL's SPARQL constraints cost time in proportion to the size of the data graph for every
focus node, so one run over a population is quadratic, and an rdflib graph of a million patients
does not fit in memory. The shapes only ever look *forward* from a focus node (its own triples, the
records it links to, their triples) and at the class hierarchy and labels. So the data falls apart
into pieces that can be validated separately, with exactly the results of one whole-graph run, if
the pieces are cut along the right lines:

* **hubs** are nodes that join unrelated patients without carrying patient data: every term of the
  ontology, every class (object of ``rdf:type``, either side of ``rdfs:subClassOf``), every node
  that is the subject of no data triple (a status, an outcome, a therapy class), and every
  ``sh:targetNode``. They never glue pieces together.
* **shared** triples go into every batch: those about a hub (subclass axioms and labels of local
  classes, say), the triples that make a hub or a literal a focus node through
  ``sh:targetObjectsOf``, and every piece that a shared triple points into.
* every other triple is **local**: union-find over them, joining subject and object unless the
  object is a hub or a literal, gives connected pieces (a patient, its records, any node two
  patients share). Whole pieces are packed into batches.

A result belongs to the batch that owns its focus node: the batch holding the piece whose subject
it is, or the first batch for hubs, literals and shared pieces (which every batch sees alike).
Results for a node seen elsewhere only through a shared triple are dropped: they are duplicates,
or judge a node without its data.

:func:`is_partitionable` refuses shapes that may look backwards or elsewhere (inverse paths,
custom targets, rules); SPARQL constraints are trusted to read forward from ``$this`` only, as
``shapes/planned-therapy.ttl`` does, and ``tests/test_scale_validation.py`` checks the outcome
against whole-graph pySHACL.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Sequence, Union

import pyoxigraph as ox
import rdflib
from rdflib.namespace import RDF, RDFS, SH

_RDF_TYPE = ox.NamedNode(str(RDF.type))
_SUBCLASS_OF = ox.NamedNode(str(RDFS.subClassOf))

#: Shape constructs that read something other than the focus node and what lies ahead of it.
_NOT_LOCAL = (SH.inversePath, SH.target, SH.rule)

_SHARED = -1  # piece number of a shared triple

Node = Union[ox.NamedNode, ox.BlankNode]


@dataclass(frozen=True)
class Partition:
    """Shared triples (in every batch), batches of local triples, and the local subjects of shared triples."""

    shared: list[ox.Triple]
    batches: list[list[ox.Triple]]
    replicated: frozenset[Node]

    def __len__(self) -> int:
        return len(self.batches)


def is_partitionable(shapes: rdflib.Graph) -> bool:
    """Whether every shape only reads forward from its focus node (see the module docstring).

    >>> from itkg.validation import shapes_graph
    >>> is_partitionable(shapes_graph())
    True
    """
    return not any((None, p, None) in shapes for p in _NOT_LOCAL)


def _ox(term: rdflib.term.Node) -> Node | None:
    if isinstance(term, rdflib.URIRef):
        return ox.NamedNode(str(term))
    if isinstance(term, rdflib.BNode):
        return ox.BlankNode(str(term))
    return None


def fixed_hubs(ontology: rdflib.Graph, shapes: rdflib.Graph) -> set[Node]:
    """Hubs known before the data is read: every node of the ontology and every ``sh:targetNode``."""
    terms = [t for triple in ontology for t in triple] + list(shapes.objects(None, SH.targetNode))
    return {node for node in map(_ox, terms) if node is not None}


def target_object_predicates(shapes: rdflib.Graph) -> set[ox.NamedNode]:
    """The predicates whose objects are focus nodes (``sh:targetObjectsOf``)."""
    return {ox.NamedNode(str(p)) for p in shapes.objects(None, SH.targetObjectsOf)
            if isinstance(p, rdflib.URIRef)}


def partition(triples: Sequence[ox.Triple], hubs: set[Node],
              object_targets: set[ox.NamedNode], batch_triples: int) -> Partition:
    """Cut ``triples`` into shared triples and batches of about ``batch_triples`` local triples.

    ``hubs`` and ``object_targets`` come from :func:`fixed_hubs` and :func:`target_object_predicates`;
    ``hubs`` is not modified.
    """
    # Pass 1: number the subjects; find the classes.
    number: dict[Node, int] = {}
    classes: set[Node] = set()
    for s, p, o in triples:
        if s not in number:
            number[s] = len(number)
        if p == _RDF_TYPE:
            if not isinstance(o, ox.Literal):
                classes.add(o)
        elif p == _SUBCLASS_OF:
            classes.add(s)
            if not isinstance(o, ox.Literal):
                classes.add(o)
    hub_numbers = {number[h] for h in hubs.union(classes) if h in number}

    # Pass 2: union-find over local triples; mark shared ones.
    parent = array("q", range(len(number)))

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    piece = array("q", bytes(8 * len(triples)))  # subject number, or _SHARED
    targeting: list[int] = []  # triples that make a hub or a literal a focus node
    for i, (s, p, o) in enumerate(triples):
        sn = number[s]
        if sn in hub_numbers:
            piece[i] = _SHARED
            continue
        piece[i] = sn
        on = None if isinstance(o, ox.Literal) else number.get(o)
        if on is not None and on not in hub_numbers:
            a, b = find(sn), find(on)
            if a != b:
                parent[max(a, b)] = min(a, b)
        elif p in object_targets:
            targeting.append(i)

    # Pieces that shared triples point into are shared too (one step suffices: a piece is closed).
    shared_roots: set[int] = set()
    for i, (_, _, o) in enumerate(triples):
        if piece[i] == _SHARED and not isinstance(o, ox.Literal):
            on = number.get(o)
            if on is not None and on not in hub_numbers:
                shared_roots.add(find(on))

    # Pack pieces into batches in order of first appearance, keeping the input's locality.
    sizes: dict[int, int] = {}
    for i in range(len(triples)):
        if piece[i] != _SHARED:
            root = find(piece[i])
            piece[i] = _SHARED if root in shared_roots else root
            if root not in shared_roots:
                sizes[root] = sizes.get(root, 0) + 1
    batch_of: dict[int, int] = {}
    current = filled = 0
    for root, size in sizes.items():
        if filled and filled + size > batch_triples:
            current, filled = current + 1, 0
        batch_of[root] = current
        filled += size
    shared: list[ox.Triple] = []
    batches: list[list[ox.Triple]] = [[] for _ in range(current + 1)]
    for i, triple in enumerate(triples):
        if piece[i] == _SHARED:
            shared.append(triple)
        else:
            batches[batch_of[piece[i]]].append(triple)
    replicated: set[Node] = set()
    for i in targeting:
        if piece[i] != _SHARED:  # also stays local, in its own batch
            shared.append(triples[i])
            subject = triples[i].subject
            if not isinstance(subject, ox.Triple):  # the loaders refuse triple terms
                replicated.add(subject)
    return Partition(shared, batches, frozenset(replicated))
