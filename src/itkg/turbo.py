"""pyshacl-turbo (Rust, pySHACL-compatible) as a third, Java-free SHACL back-end.

Why: pySHACL spends about a millisecond of Python per patient; Jena is about seven times faster but
needs Java and the Debian Jena jars. pyshacl-turbo (the optional extra ``itkg[turbo]``, Python 3.11
or newer) validates in native code and releases the GIL while it does, so itkg runs its batches in
threads of one process: no JVM, no worker processes, no copy of the shared triples per process.

Its cost grows faster than linearly with the graph it is given (about 0.25 ms per patient in
batches of a hundred patients, 1.5 ms in batches of a thousand, 3 ms at two thousand), so it gets
small batches (:data:`BATCH_TRIPLES`). Each batch is one N-Triples document holding the ontology,
the shared triples and the batch's own triples (the ontology mixed into the data graph, as
pySHACL's ``ont_graph`` does with ``inference="none"``, and as the Jena back-end does); blank-node
labels are kept, so results name the nodes the loader named. The differential tests (``tests/test_engines_fuzz.py``,
``tests/test_scale_validation.py``, ``tests/test_turbo_engine.py``) hold it to pySHACL's and Jena's
verdicts and results; it is offered only while they pass.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable
from typing import Any

import pyoxigraph as ox
import rdflib

from .errors import ValidationEngineError
from .loading import ntriples

#: Local triples per batch (about a hundred patients): beyond a few thousand triples
#: pyshacl-turbo's time per patient grows with the batch.
BATCH_TRIPLES = 1_500

#: The release whose results the differential tests compared; newer minor releases may change them.
REQUIREMENT = "pyshacl-turbo>=0.6.5,<0.7"


def available() -> bool:
    """Whether pyshacl-turbo can be imported here (it needs Python 3.11 or newer)."""
    if sys.version_info < (3, 11):
        return False
    try:
        import pyshacl_turbo  # noqa: F401
    except ImportError:
        return False
    return True


def require() -> Any:
    """The ``pyshacl_turbo`` module, or a :class:`ValidationEngineError` that says how to install it."""
    if not available():
        raise ValidationEngineError(
            "the turbo back-end needs pyshacl-turbo and Python 3.11 or newer: pip install 'itkg[turbo]'")
    import pyshacl_turbo

    return pyshacl_turbo


class TurboValidator:
    """Shapes compiled once per thread, and a fixed base graph (ontology and shared triples).

    Thread-safe: each thread compiles its own copy of the shapes (about 10 ms), so no native state
    is shared between concurrent validations.
    """

    def __init__(self, shapes: rdflib.Graph, base: Iterable[ox.Triple] | bytes) -> None:
        self._turbo = require()
        self._shapes = shapes
        self._base = (base if isinstance(base, bytes) else ntriples(base)).decode("utf-8")
        self._local = threading.local()

    def _program(self) -> Any:
        program = getattr(self._local, "program", None)
        if program is None:
            program = self._local.program = self._turbo.compile_shapes(self._shapes)
        return program

    def validate(self, batch: Iterable[ox.Triple] | bytes) -> rdflib.Graph:
        """The SHACL report graph of base ∪ ``batch`` (every result, owned or not).

        The graph goes to pyshacl-turbo as N-Triples text in its ``Input`` (the form its own
        Oxigraph-store input takes): no rdflib graph and no store is built, blank-node labels are
        kept, and the native code parses it without holding the GIL.
        """
        local = batch if isinstance(batch, bytes) else ntriples(batch)
        data = self._turbo.Input(self._base + local.decode("utf-8"), "nt", None, {}, preserve_ids=True)
        try:
            _, report, _ = self._program().validate(data, allow_warnings=True, abort_on_first=False)
        except Exception as error:  # noqa: BLE001 - its messages may quote data: report only the kind
            raise ValidationEngineError(
                f"pyshacl-turbo failed while validating a batch ({type(error).__name__})") from None
        if not isinstance(report, rdflib.Graph):
            raise ValidationEngineError("pyshacl-turbo returned no report graph")
        return report
