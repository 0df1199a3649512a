"""Values computed from rdflib graphs, kept while those graphs are unchanged.

Why: :func:`itkg.validate` needs, on every call, things that depend only on the ontology and the
shapes graph (the partitioning's fixed hubs, the ontology as canonical N-Triples for the native
engine and pyshacl-turbo, the ontology's pySHACL mix-in). They took about 30 ms a call together, as
much as validating a small patient graph; a service or test that validates many small graphs paid
them every time. :class:`GraphMemo` computes them once per process for the same graphs.

A value is served again only for the very same graph objects (a weak reference tells a graph from
a later one at the same address) whose content has not changed since: a site's extended ontology,
a user's shapes, or a graph edited in place get a fresh value. "Not changed" is told by the
store's own events: every triple added to an rdflib ``Memory`` store is announced
(``TripleAddedEvent``, before it is added: one the graph holds already is not counted), and
``Memory.remove`` announces nothing but shrinks the graph, so the number of additions and the
graph's length together change whenever the triples do. Graphs in
any other kind of store are not memoised (their stores need not announce additions). Each memo
holds a few entries (least recently used first out), so memory stays bounded.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

import rdflib
from rdflib.events import Event
from rdflib.plugins.stores.memory import Memory
from rdflib.store import Store, TripleAddedEvent, TripleRemovedEvent

T = TypeVar("T")

class _Count:
    """The triple events of one store (added or removed), counted from the first time it was
    asked about; a module-level class so that a graph sent to a worker process still pickles."""

    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events = 0

    def __call__(self, event: Event) -> None:
        # The event comes before the store adds the triple: one it holds already changes nothing
        # (pySHACL adds its system triples to the shapes graph on every call).
        context, triple = getattr(event, "context", None), getattr(event, "triple", None)
        if isinstance(event, TripleAddedEvent) and isinstance(context, rdflib.Graph) \
                and isinstance(triple, tuple) and triple in context:
            return
        self.events += 1


#: The count of each store asked about (the store holds it too, as its event handler).
_COUNTS: weakref.WeakKeyDictionary[Store, _Count] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def version(graph: rdflib.Graph) -> tuple[int, int] | None:
    """What changes whenever ``graph``'s triples change (events counted, length), or None when its
    store is not one whose changes this can see."""
    store = graph.store
    if type(store) is not Memory:
        return None
    with _LOCK:
        count = _COUNTS.get(store)
        if count is None:
            count = _COUNTS[store] = _Count()
            store.dispatcher.subscribe(TripleAddedEvent, count)
            store.dispatcher.subscribe(TripleRemovedEvent, count)
    return count.events, len(graph)


@dataclass(frozen=True)
class _Entry(Generic[T]):
    graphs: tuple[weakref.ref[rdflib.Graph], ...]
    versions: tuple[object, ...]
    value: T


class GraphMemo(Generic[T]):
    """``compute(*graphs)``, made once per process for the same unchanged graphs (at most
    ``size`` values kept). ``extra(graph)`` adds to a graph's version what ``compute`` reads
    besides its triples (e.g. its prefixes)."""

    def __init__(self, compute: Callable[..., T], size: int = 4,
                 extra: Callable[[rdflib.Graph], object] | None = None) -> None:
        self._compute = compute
        self._size = size
        self._extra = extra
        self._entries: OrderedDict[tuple[int, ...], _Entry[T]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, *graphs: rdflib.Graph) -> T:
        versions: list[object] = []
        for graph in graphs:
            seen = version(graph)
            if seen is None:
                return self._compute(*graphs)
            versions.append((seen, self._extra(graph)) if self._extra else seen)
        key = tuple(map(id, graphs))
        with self._lock:
            found = self._entries.get(key)
            if found is not None and found.versions == tuple(versions) \
                    and all(ref() is graph for ref, graph in zip(found.graphs, graphs)):
                self._entries.move_to_end(key)
                return found.value
        value = self._compute(*graphs)
        with self._lock:
            self._entries[key] = _Entry(tuple(map(weakref.ref, graphs)), tuple(versions), value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        """Forget every value (for tests that time or compare the first computation)."""
        with self._lock:
            self._entries.clear()
