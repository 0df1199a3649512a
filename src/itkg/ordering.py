"""Put a query's rows in the order its ``ORDER BY`` asks for, on this side of the wire.

A SPARQL server's order is not to be trusted blindly (Comunica, for one, does not honour
``ORDER BY`` fully), and rows that tie on the ``ORDER BY`` keys come in whatever order each engine
likes. ``itkg query`` therefore sorts the rows itself before it renders them: by the query's
``ORDER BY`` variables, then by the remaining columns, so every engine and every server give the
same output for the same rows. An ``ORDER BY`` key that is not a column (``worklist.rq`` orders
by an unprojected ``?actionOrder``) cannot be sorted on here: the rows are sorted by the keys
before it, and the engine's order is kept among rows that tie on those.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal, InvalidOperation
from typing import Any

from rdflib.namespace import XSD
from rdflib.plugins.sparql import prepareQuery
from rdflib.term import BNode, Identifier, Literal, URIRef, Variable

from .sparql import QueryResult

__all__ = ["order_keys", "sort_result"]

_NUMERIC = frozenset(str(XSD[name]) for name in (
    "integer", "decimal", "float", "double", "int", "long", "short", "byte", "nonNegativeInteger",
    "nonPositiveInteger", "negativeInteger", "positiveInteger", "unsignedInt", "unsignedLong",
    "unsignedShort", "unsignedByte"))


def order_keys(query: str) -> list[tuple[str, bool]] | None:
    """The ``ORDER BY`` of ``query`` as ``(variable, descending)`` pairs; ``[]`` when it has none,
    ``None`` when a key is an expression rather than a variable (the server's order is then kept)
    or the query cannot be parsed here."""
    from .sparql import gated_order_by
    gated = gated_order_by(query)
    if gated is not None:  # the query gate parsed it already
        return gated[0]
    try:
        node = prepareQuery(query).algebra
    except Exception:  # noqa: BLE001 - any parser failure: keep the order the engine gave
        return None
    return keys_of(node)


def keys_of(algebra: Any) -> list[tuple[str, bool]] | None:
    """:func:`order_keys` from the algebra of a parsed query (rdflib's ``prepareQuery(...).algebra``)."""
    node = algebra
    while node is not None and getattr(node, "name", None) != "OrderBy":
        node = node.get("p") if isinstance(node, dict) else None
    if node is None:
        return []
    keys = []
    for condition in node["expr"]:
        expression = condition.get("expr") if isinstance(condition, dict) else condition
        if not isinstance(expression, Variable):
            return None
        descending = isinstance(condition, dict) and condition.get("order") == "DESC"
        keys.append((str(expression), descending))
    return keys


_ZERO = Decimal(0)


def _term_key(term: Identifier | None) -> tuple[int, int, Decimal, str, str]:
    """SPARQL's order of terms: unbound, blank nodes, IRIs, literals; numbers by value."""
    if term is None:
        return (0, 0, _ZERO, "", "")
    if isinstance(term, BNode):
        return (1, 0, _ZERO, str(term), "")
    if isinstance(term, URIRef):
        return (2, 0, _ZERO, str(term), "")
    assert isinstance(term, Literal)
    datatype = str(term.datatype or "")
    if datatype in _NUMERIC:
        try:
            number = Decimal(str(term).strip())
            if number.is_finite():
                return (3, 0, number, "", datatype)
        except InvalidOperation:
            pass
    return (3, 1, _ZERO, str(term), term.language or datatype)


def sort_result(result: QueryResult, query: str) -> QueryResult:
    """``result`` with its rows sorted by ``query``'s ``ORDER BY`` and then by every other
    column, or unchanged when the ``ORDER BY`` uses an expression."""
    keys = order_keys(query)
    if keys is None:
        return result
    missing = next((index for index, (name, _) in enumerate(keys)
                    if name not in result.variables), None)
    if missing is not None:
        # A key that is not a column (worklist.rq orders by ?actionOrder): sort by the columns
        # before it, and keep the engine's order among rows that tie on them.
        keys = keys[:missing]
    else:
        named = {name for name, _ in keys}
        keys = keys + [(name, False) for name in result.variables if name not in named]
    rows = list(result.rows)
    for name, descending in reversed(keys):  # stable sorts, least significant key first
        rows.sort(key=lambda row: _term_key(row.get(name)), reverse=descending)
    return dataclasses.replace(result, rows=tuple(rows))  # the sources stay with the rows


