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

import os
import tempfile
from array import array
from collections import Counter
from dataclasses import dataclass
from typing import IO, Any, Iterable, Sequence, Union

import pyoxigraph as ox
import rdflib
from rdflib.namespace import RDF, RDFS, SH

from .graphmemo import GraphMemo

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


def _fixed_hubs(ontology: rdflib.Graph, shapes: rdflib.Graph) -> frozenset[Node]:
    terms = [t for triple in ontology for t in triple] + list(shapes.objects(None, SH.targetNode))
    return frozenset(node for node in map(_ox, terms) if node is not None)


#: :func:`fixed_hubs` per ontology and shapes graph (about 4 ms a call, whatever the data's size).
_FIXED_HUBS: GraphMemo[frozenset[Node]] = GraphMemo(_fixed_hubs)


def fixed_hubs(ontology: rdflib.Graph, shapes: rdflib.Graph) -> frozenset[Node]:
    """Hubs known before the data is read: every node of the ontology and every ``sh:targetNode``
    (made once per process for the same unchanged graphs: :mod:`itkg.graphmemo`)."""
    return _FIXED_HUBS(ontology, shapes)


def target_object_predicates(shapes: rdflib.Graph) -> set[ox.NamedNode]:
    """The predicates whose objects are focus nodes (``sh:targetObjectsOf``)."""
    return {ox.NamedNode(str(p)) for p in shapes.objects(None, SH.targetObjectsOf)
            if isinstance(p, rdflib.URIRef)}


# -- numbering ------------------------------------------------------------------------------------

#: Flags of a triple (:attr:`Numbering.flags`).
IS_TYPE, IS_SUBCLASS, TARGETS_OBJECT, LINKS_RECORD = 1, 2, 4, 8


def node_key(term: Node) -> str:
    """A node's id as :attr:`Numbering.ids` holds it (:func:`itkg.loading.node_id`): the IRI, or
    ``_:`` and the blank node's label (no IRI starts with ``_:``: a scheme starts with a letter)."""
    return term.value if type(term) is ox.NamedNode else "_:" + term.value


def node_of(key: str) -> Node:
    """The node whose id is ``key`` (:func:`node_key`)."""
    return ox.BlankNode(key[2:]) if key.startswith("_:") else ox.NamedNode(key)


def rdflib_node(key: str) -> rdflib.URIRef | rdflib.BNode:
    """The rdflib node whose id is ``key`` (:func:`node_key`)."""
    return rdflib.BNode(key[2:]) if key.startswith("_:") else rdflib.URIRef(key)


class Numbering:
    """The numbers the partitioning reads, one entry per triple, in input order: the node number
    of the subject, that of the object (-1 for a literal), and flags (:data:`IS_TYPE` ...).

    Why numbers: a million patients are sixteen million triples, about 400 bytes each as Python
    objects; as numbers they take about 20 bytes each, plus one entry per distinct node.
    ``record_links`` are the predicates from a patient to its records (contract §2), flagged so
    that results can name the patient of a record without the triples.

    Nodes are numbered by their ids (:func:`node_key`: strings, which a worker sends and
    another process looks up several times faster than pyoxigraph terms, :mod:`itkg.spooled`).
    """

    def __init__(self, object_targets: Iterable[ox.NamedNode] = (),
                 record_links: Iterable[ox.NamedNode] = (), source: Sequence[ox.Triple] = ()) -> None:
        #: the triples numbered, when they are in memory (:class:`Spool` keeps them in a file)
        self.source = source
        #: node number by id (:func:`node_key`), and the ids by number
        self.numbers: dict[str, int] = {}
        self.ids: list[str] = []
        self.subjects = array("q")
        self.objects = array("q")
        self.flags = bytearray()
        self.is_subject = bytearray()
        self.classes: set[int] = set()
        self._flags_of: dict[ox.NamedNode, int] = {_RDF_TYPE: IS_TYPE, _SUBCLASS_OF: IS_SUBCLASS}
        for predicate in object_targets:
            self._flags_of[predicate] = self._flags_of.get(predicate, 0) | TARGETS_OBJECT
        for predicate in record_links:
            self._flags_of[predicate] = self._flags_of.get(predicate, 0) | LINKS_RECORD

    def __len__(self) -> int:
        return len(self.subjects)

    def add(self, triples: Iterable[ox.Triple | ox.Quad]) -> None:
        """Number the nodes of ``triples`` (RDF 1.2 triple terms refused by the loaders before)."""
        numbers, ids, is_subject, classes = self.numbers, self.ids, self.is_subject, self.classes
        get, flags_of, literal, named = numbers.get, self._flags_of.get, ox.Literal, ox.NamedNode
        subjects, objects, flags = self.subjects, self.objects, self.flags
        for triple in triples:
            s, o = triple.subject, triple.object
            key = s.value if type(s) is named else "_:" + s.value  # type: ignore[union-attr]
            sn = get(key)
            if sn is None:
                sn = numbers[key] = len(ids)
                ids.append(key)
                is_subject.append(1)
            elif not is_subject[sn]:
                is_subject[sn] = 1
            on: int | None
            kind = type(o)
            if kind is literal:
                on = -1
            else:
                key = o.value if kind is named else "_:" + o.value  # type: ignore[union-attr]
                on = get(key)
                if on is None:
                    on = numbers[key] = len(ids)
                    ids.append(key)
                    is_subject.append(0)
            flag = flags_of(triple.predicate, 0)
            if flag & IS_TYPE:
                if on >= 0:
                    classes.add(on)
            elif flag & IS_SUBCLASS:
                classes.add(sn)
                if on >= 0:
                    classes.add(on)
            subjects.append(sn)
            objects.append(on)
            flags.append(flag)

    def lines(self, indices: Iterable[int]) -> bytes:
        """The N-Triples text of the triples numbered ``indices``."""
        source = self.source
        return ox.serialize([source[i] for i in indices], format=ox.RdfFormat.N_TRIPLES) or b""

    def triples(self, indices: Iterable[int]) -> list[ox.Triple]:
        """The triples numbered ``indices``."""
        source = self.source
        return [source[i] for i in indices]

    def hub_numbers(self, hubs: Iterable[Node]) -> bytearray:
        """One byte per node, 1 for a hub: ``hubs``, the classes, and every node that is the
        subject of no triple (see the module docstring)."""
        hub = self.is_subject.translate(_NOT)
        for node in hubs:
            number = self.numbers.get(node_key(node))
            if number is not None:
                hub[number] = 1
        for number in self.classes:
            hub[number] = 1
        return hub


_NOT = bytes([1, 0]) + bytes(254)


@dataclass(frozen=True)
class Plan:
    """A partition as triple numbers: shared triples, batches, and the node numbers of the local
    subjects of shared triples (see :class:`Partition`)."""

    shared: array
    batches: list[array]
    replicated: frozenset[int]

    def __len__(self) -> int:
        return len(self.batches)


def plan(numbering: Numbering, hubs: Iterable[Node], batch_triples: int) -> Plan:
    """Cut the numbered triples into shared triples and batches of about ``batch_triples`` local
    triples (``hubs`` from :func:`fixed_hubs`)."""
    hub = numbering.hub_numbers(hubs)
    subjects, objects, flags = numbering.subjects, numbering.objects, numbering.flags

    # Union-find over local triples; mark shared ones.
    parent = array("q", range(len(numbering.ids)))

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    targeting = array("q")  # triples that make a hub or a literal a focus node
    for i, (sn, on, flag) in enumerate(zip(subjects, objects, flags)):
        if hub[sn]:
            continue  # shared
        if on >= 0 and not hub[on]:
            a, b = find(sn), find(on)
            if a != b:
                parent[max(a, b)] = min(a, b)
        elif flag & TARGETS_OBJECT:
            targeting.append(i)
    # Every node's root, in one pass: a root is the least node of its piece (unions point the
    # greater root at the lesser), so a node's parent is a lesser node whose root is known.
    for x, up in enumerate(parent):
        if up != x:
            parent[x] = parent[up]

    # Pieces that shared triples point into are shared too (one step suffices: a piece is closed).
    shared_roots = {parent[on] for sn, on in zip(subjects, objects) if on >= 0 and hub[sn] and not hub[on]}

    # Each triple's piece (its subject's root), or _SHARED; then the pieces packed into batches
    # in order of first appearance, keeping the input's locality (work per node, and per triple
    # in C where it can be: a million patients are sixteen million triples).
    piece_of = array("q", [_SHARED if hub[x] or root in shared_roots else root for x, root in enumerate(parent)])
    piece = array("q", map(piece_of.__getitem__, subjects))
    del piece_of
    sizes = Counter(piece)  # (in order of first appearance)
    sizes.pop(_SHARED, None)
    batch_of: dict[int, int] = {}
    current = filled = 0
    for root, size in sizes.items():
        if filled and filled + size > batch_triples:
            current, filled = current + 1, 0
        batch_of[root] = current
        filled += size
    del sizes
    shared = array("q")
    batches = [array("q") for _ in range(current + 1)]
    add_shared, adds = shared.append, [batch.append for batch in batches]
    last, add = _SHARED, add_shared
    for i, root in enumerate(piece):
        if root != last:
            last = root
            add = add_shared if root == _SHARED else adds[batch_of[root]]
        add(i)
    replicated: set[int] = set()
    for i in targeting:
        if piece[i] != _SHARED:  # also stays local, in its own batch
            shared.append(i)
            replicated.add(subjects[i])
    return Plan(shared, batches, frozenset(replicated))


def partition(triples: Sequence[ox.Triple], hubs: set[Node],
              object_targets: set[ox.NamedNode], batch_triples: int) -> Partition:
    """Cut ``triples`` into shared triples and batches of about ``batch_triples`` local triples.

    ``hubs`` and ``object_targets`` come from :func:`fixed_hubs` and :func:`target_object_predicates`;
    ``hubs`` is not modified.
    """
    numbering = Numbering(object_targets)
    numbering.add(triples)
    cut = plan(numbering, hubs, batch_triples)
    return Partition([triples[i] for i in cut.shared], [[triples[i] for i in batch] for batch in cut.batches],
                     frozenset(node_of(numbering.ids[n]) for n in cut.replicated))


# -- the spool ------------------------------------------------------------------------------------

class Spool(Numbering):
    """Checked triples kept as N-Triples lines in an unnamed temporary file, numbered as they come.

    A duck-typed target for :func:`itkg.loading.load_store` (it calls :meth:`extend` with each
    checked batch), so a population is read with the loader's checks and errors and never held
    as Python triples; batches go to the engines as the bytes of their lines (:meth:`lines`).
    The file has no name (it disappears with the process, even one killed at its deadline).
    """

    def __init__(self, object_targets: Iterable[ox.NamedNode] = (),
                 record_links: Iterable[ox.NamedNode] = (), *, file: IO[bytes] | None = None,
                 at: int = 0) -> None:
        super().__init__(object_targets, record_links)
        #: the lines' file: a new unnamed one, or ``file`` (written from offset ``at``: a worker
        #: of :mod:`itkg.spooled` writes each piece's lines after the last, into one file)
        self.file = tempfile.TemporaryFile() if file is None else file  # noqa: SIM115 - closed by close()
        self.starts = array("q")
        self._end = at

    def extend(self, quads: Iterable[ox.Quad | ox.Triple]) -> None:
        """Append a batch of checked triples (the loader's call)."""
        batch: list[Any] = list(quads)
        if not batch:
            return
        text = ox.serialize(batch, format=ox.RdfFormat.N_TRIPLES) or b""
        starts, find, position, end = self.starts, text.find, 0, len(text)
        while position < end:
            starts.append(self._end + position)
            position = find(b"\n", position) + 1
        if len(starts) != len(self.subjects) + len(batch):
            raise ValueError("N-Triples serialization gave a line count that is not the triple count")
        _write_at(self.file.fileno(), text, self._end)
        self._end += end
        self.add(batch)

    def finish(self) -> None:
        """Make what was written readable (call once the loader has returned; the lines are
        written unbuffered, at their offsets, so there is nothing left to flush)."""
        self.file.flush()

    @property
    def end(self) -> int:
        """The offset just past the last line written."""
        return self._end

    def absorb(self, part: "SpoolPart", source: int) -> None:
        """Append the triples a worker numbered on its own (:class:`SpoolPart`; their lines are
        in the file ``source``, a descriptor) as if they had been added here: the lines copied
        (in the kernel), each node numbered as :meth:`add` numbers it, so the numbers, and so
        the partition, are those of one process reading the input in order."""
        offset = self._end - part.start
        length = part.end - part.start
        _copy(source, self.file.fileno(), part.start, self._end, length)
        self.starts.extend(array("q", [s + offset for s in _unpacked(part.starts)]))
        numbers, ids, is_subject = self.numbers, self.ids, self.is_subject
        get = numbers.get
        table: list[int] = []
        append = table.append
        for key, subject in zip(part.ids, part.is_subject):
            number = get(key)
            if number is None:
                number = numbers[key] = len(ids)
                ids.append(key)
                is_subject.append(subject)
            elif subject and not is_subject[number]:
                is_subject[number] = 1
            append(number)
        append(-1)  # a literal object's -1 stays -1
        at = table.__getitem__
        self.subjects.extend(array("q", map(at, _unpacked(part.subjects))))
        self.objects.extend(array("q", map(at, _unpacked(part.objects))))
        self.flags += part.flags
        self.classes.update(map(at, _unpacked(part.classes)))
        self._end += length

    def part(self, start: int) -> "SpoolPart":
        """What :meth:`absorb` takes, for the lines written from offset ``start``."""
        return SpoolPart(start, self._end, self.starts.tobytes(), self.subjects.tobytes(),
                         self.objects.tobytes(), bytes(self.flags), bytes(self.is_subject),
                         array("q", sorted(self.classes)).tobytes(), tuple(self.ids))

    def lines(self, indices: Iterable[int]) -> bytes:
        """The N-Triples text of the triples numbered ``indices`` (ascending), read in runs."""
        starts, fd, end, chunks = self.starts, self.file.fileno(), self._end, []
        first = last = -2
        for i in indices:
            if i != last + 1:
                if first >= 0:
                    chunks.append(os.pread(fd, (starts[last + 1] if last + 1 < len(starts) else end)
                                           - starts[first], starts[first]))
                first = i
            last = i
        if first >= 0:
            chunks.append(os.pread(fd, (starts[last + 1] if last + 1 < len(starts) else end) - starts[first],
                                   starts[first]))
        return b"".join(chunks)

    def triples(self, indices: Iterable[int]) -> list[ox.Triple]:
        """The triples numbered ``indices``, parsed back from their lines (blank-node labels kept)."""
        return [quad.triple for quad in ox.parse(self.lines(indices), format=ox.RdfFormat.N_TRIPLES)]

    def close(self) -> None:
        self.file.close()


@dataclass(frozen=True)
class SpoolPart:
    """A piece of input a worker read and numbered on its own (:meth:`Spool.part`): the offsets
    of its lines in the worker's file, and its numbering packed (node numbers local to the
    piece, its nodes' ids). Small to send: no triple as a Python object."""

    start: int
    end: int
    starts: bytes
    subjects: bytes
    objects: bytes
    flags: bytes
    is_subject: bytes
    classes: bytes
    ids: tuple[str, ...]


def _unpacked(data: bytes) -> array:
    numbers = array("q")
    numbers.frombytes(data)
    return numbers


def _write_at(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _copy(source: int, target: int, at: int, to: int, length: int) -> None:
    """Copy ``length`` bytes from offset ``at`` of ``source`` to offset ``to`` of ``target``."""
    while length > 0:
        try:
            copied = os.copy_file_range(source, target, length, at, to)
        except (AttributeError, OSError):  # not Linux, or a file system that cannot: read and write
            copied = len(block := os.pread(source, min(length, 1 << 24), at))
            _write_at(target, block, to)
        if copied <= 0:
            raise OSError("the spool's lines could not be copied")
        at, to, length = at + copied, to + copied, length - copied
