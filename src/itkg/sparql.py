"""Running SPARQL over ontology + patient data: in rdflib, in Oxigraph, or on a remote endpoint.

Every query text passes :func:`itkg.guards.gate_query` first (no SERVICE, no FROM, no updates), so
no query can make itkg reach the network or read a file. Values are never spliced into query
text. Local queries run in a forked child process when a deadline is given, because neither rdflib
nor pyoxigraph can be interrupted from inside the process.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
from dataclasses import dataclass
from typing import Any, Callable, Literal as TLiteral

import pyoxigraph as ox
import rdflib

from . import guards
from ._process import die_with_parent
from .errors import QueryError, QueryTimeout
from .knowledge import ontology_graph
from .loading import PatientData, to_oxigraph, to_rdflib

Engine = TLiteral["rdflib", "oxigraph"]
ENGINES: tuple[str, ...] = ("rdflib", "oxigraph")


@dataclass(frozen=True)
class QueryResult:
    """A SELECT result: the variable names and one dict per row (unbound variables are absent).
    Values are rdflib terms whichever engine ran the query."""

    variables: tuple[str, ...]
    rows: tuple[dict[str, rdflib.term.Identifier], ...]


def _rdflib_select(text: str, data: PatientData | None, with_ontology: bool) -> QueryResult:
    graph = rdflib.Graph()
    if with_ontology:
        graph += ontology_graph()
    if data is not None:
        graph += data.graph()
    try:
        result = graph.query(text)
    except RecursionError:
        raise QueryError("the query recursed too deeply over this data") from None
    if result.type != "SELECT":
        raise QueryError(f"only SELECT queries are supported (this is {result.type})")
    variables = tuple(str(v) for v in result.vars)
    rows = tuple({str(k): v for k, v in row.asdict().items()} for row in result)
    return QueryResult(variables, rows)


def _oxigraph_select(text: str, data: PatientData | None, with_ontology: bool) -> QueryResult:
    store = ox.Store()
    if with_ontology:
        store.extend(ox.Quad(to_oxigraph(s), to_oxigraph(p), to_oxigraph(o))
                     for s, p, o in ontology_graph())
    if data is not None:
        store.extend(ox.Quad(t.subject, t.predicate, t.object) for t in data.triples)
    try:
        result = store.query(text)
    except SyntaxError:
        raise QueryError("the query is not valid SPARQL 1.1") from None
    if not isinstance(result, ox.QuerySolutions):
        raise QueryError("only SELECT queries are supported")
    variables = tuple(v.value for v in result.variables)
    rows = []
    for solution in result:
        row = {}
        for name in variables:
            value = solution[name]
            if value is not None:
                row[name] = to_rdflib(value)
        rows.append(row)
    return QueryResult(variables, tuple(rows))


_RUNNERS: dict[str, Callable[[str, PatientData | None, bool], QueryResult]] = {
    "rdflib": _rdflib_select,
    "oxigraph": _oxigraph_select,
}


def select(text: str, data: PatientData | None = None, *, engine: Engine = "oxigraph",
           with_ontology: bool = True, timeout: float | None = None) -> QueryResult:
    """Run a SELECT query over the ontology and ``data`` with the given local engine.

    :param timeout: seconds; when given the query runs in a child process that is killed at the
        deadline (:class:`~itkg.errors.QueryTimeout`).

    >>> result = select("SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }", engine="rdflib")
    >>> int(result.rows[0]["n"]) > 100
    True
    """
    guards.gate_query(text)
    try:
        runner = _RUNNERS[engine]
    except KeyError:
        raise QueryError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}") from None
    if timeout is None:
        return runner(text, data, with_ontology)
    return run_with_deadline(runner, (text, data, with_ontology), timeout)


def run_with_deadline(function: Callable[..., Any], args: tuple, timeout: float) -> Any:
    """Run ``function(*args)`` in a forked child and return its result, or raise
    :class:`QueryTimeout` after ``timeout`` seconds (the child is killed). Exceptions that are
    itkg errors are re-raised in the parent; anything else becomes a :class:`QueryError`."""
    if not hasattr(os, "fork"):  # pragma: no cover - Windows: no deadline, run in-process
        return function(*args)
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)

    def child() -> None:
        die_with_parent()
        try:
            outcome: tuple[str, Any] = ("ok", function(*args))
        except QueryError as error:
            outcome = ("error", error)
        except BaseException as error:  # noqa: BLE001 - reported as a kind, not a message
            outcome = ("crash", type(error).__name__)
        try:
            sender.send_bytes(pickle.dumps(outcome))
        finally:
            sender.close()

    process = context.Process(target=child, daemon=True)
    process.start()
    sender.close()
    try:
        if not receiver.poll(timeout):
            raise QueryTimeout(f"the query did not finish within {timeout:g} s")
        kind, payload = pickle.loads(receiver.recv_bytes())
    except EOFError:
        raise QueryError("the query process ended without an answer") from None
    finally:
        if process.is_alive():
            os.kill(process.pid, signal.SIGKILL)
        process.join()
        receiver.close()
    if kind == "ok":
        return payload
    if kind == "error":
        raise payload
    raise QueryError(f"the query failed ({payload})")
