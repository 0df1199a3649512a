"""Libraries imported when first used, not when the module that uses them is.

``itkg eligibility`` of local files never needs rdflib (a third of a second to import, with its
SPARQL parser), but the modules it goes through also serve the commands that do. Such a module
binds the name to :func:`lazy` instead of importing it: the first attribute read imports the
library and puts the module itself under that name, so later reads cost what a plain import's do.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import rdflib
    from typing_extensions import TypeIs


class _Lazy:
    __slots__ = ("_name", "_namespace")

    def __init__(self, name: str, namespace: dict[str, Any]) -> None:
        self._name, self._namespace = name, namespace

    def __getattr__(self, attribute: str) -> Any:
        module = importlib.import_module(self._name)
        if self._namespace.get(self._name) is self:
            self._namespace[self._name] = module
        return getattr(module, attribute)

    def __repr__(self) -> str:
        return f"<{self._name}, imported when first used>"


def lazy(name: str, namespace: dict[str, Any]) -> Any:
    """A stand-in for the module ``name`` (a top-level name, bound to it in ``namespace``, the
    caller's ``globals()``), imported and put in its place when an attribute is first read."""
    return _Lazy(name, namespace)


def is_rdflib_graph(value: object) -> TypeIs[rdflib.Graph]:
    """Whether ``value`` is an rdflib graph, without importing rdflib: it cannot be one if
    rdflib was never imported."""
    rdflib = sys.modules.get("rdflib")
    return rdflib is not None and isinstance(value, rdflib.Graph)
