"""Which literals Oxigraph's store would not keep as written (issue 14, item 12).

Why this module exists: pyoxigraph's ``Store`` keeps *values*, not lexical forms. On insertion
it rewrites ``"0012345"^^xsd:integer`` to ``12345``, ``"1.50"^^xsd:decimal`` to ``1.5``,
``"1"^^xsd:boolean`` to ``true``, ``"+00:00"`` time zones to ``Z``, ``"…T24:00:00"`` to the
next day, every integer subtype (``xsd:int``, ``xsd:long``, …) to ``xsd:integer``, durations,
times and floating-point numbers to their canonical form, and language tags to lower case.
rdflib keeps every literal as written, and so does the contract ("the calendar day as
written"). A query sees the rewritten form everywhere, not only in its output: in ``STR``,
``DATATYPE``, ``REGEX``, ``sameTerm``, ``DISTINCT`` and ``GROUP BY`` (two written forms of one
value become one term), so the rows themselves can differ, and mapping result literals back
to a written form cannot repair that (a computed ``COUNT`` of 1 is not the input's ``"01"``).

So itkg does not let the store see such a literal: :class:`FormWatch` looks at each statement
before it is added to a store, and the callers (:mod:`itkg.sparql`) answer such input with
the rdflib engine, which gives the rows as written. Whether Oxigraph keeps a form is decided
by Oxigraph itself, on a scratch store, except for the forms that are certainly kept (checked
by the regular expressions below, and by a test against Oxigraph); the answer is cached per
(form, datatype), so a population's many equal dates cost one dictionary look-up each.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from operator import attrgetter

import pyoxigraph as ox

from .errors import QueryError

XSD = "http://www.w3.org/2001/XMLSchema#"

_NONZERO_OFFSET = r"(?:Z|\+(?:0[1-9]|1[0-3]):[0-5][0-9]|-(?:0[1-9]|1[0-3]):[0-5][0-9]|[+-]00:(?:0[1-9]|[1-5][0-9])|[+-]14:00)"
_DAY = r"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"

#: Forms Oxigraph's store certainly keeps as they are, by datatype (its canonical forms, within
#: the ranges it stores exactly). Anything else with an XSD datatype is asked of Oxigraph.
CERTAINLY_KEPT: dict[str, re.Pattern[str]] = {
    XSD + "integer": re.compile(r"0|-?[1-9][0-9]{0,17}"),
    XSD + "boolean": re.compile(r"true|false"),
    XSD + "decimal": re.compile(r"0|-?(?:0\.[0-9]{0,8}[1-9]|[1-9][0-9]{0,8}(?:\.[0-9]{0,8}[1-9])?)"),
    XSD + "date": re.compile(_DAY + f"{_NONZERO_OFFSET}?"),
    XSD + "dateTime": re.compile(_DAY + r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
                                 r"(?:\.[0-9]{0,5}[1-9])?" + f"{_NONZERO_OFFSET}?"),
}

_STRING = XSD + "string"
_OBJECT = attrgetter("object")
_SCRATCH_SUBJECT = ox.NamedNode("urn:itkg:lexical")
#: Literal terms remembered with their verdict by :class:`FormWatch` (a cache, bounded).
_TERM_CACHE = 200_000


class LexicalFormError(QueryError):
    """The data holds literals that Oxigraph's store would not keep as written (see
    :mod:`itkg.lexical`); query it with the rdflib engine. Exit code 2, as for bad input."""

    def __init__(self, count: int | None = None) -> None:
        self.count = count
        super().__init__(
            "the data holds typed literals whose written form Oxigraph's store does not keep "
            "(such as an integer with leading zeros, an xsd:int, or a date in +00:00); "
            "query it with the rdflib engine (--engine rdflib, engine='rdflib') to get them as written")

    def __reduce__(self) -> tuple:
        return (type(self), (self.count,))


class FormWatch:
    """Looks at statements on their way into an Oxigraph store and counts the literals whose
    written form the store would change (:attr:`changed`).

    :param stop: raise :class:`LexicalFormError` at the first such literal, so that a caller
        who will answer with another engine does not load the rest into a store for nothing.
    """

    def __init__(self, *, stop: bool = False) -> None:
        self.stop = stop
        self.changed = 0
        self._known: dict[tuple[str, str], bool] = {}
        #: the same verdicts by literal term: a population repeats its dates and codes, and one
        #: look-up by the term costs less than reading its form, datatype and language from it
        self._terms: dict[ox.Literal, bool] = {}

    def observe(self, statements: Iterable[ox.Triple | ox.Quad]) -> None:
        """Look at the objects of ``statements`` (subjects and predicates are never literals)."""
        self.observe_literals(map(_OBJECT, statements))

    def observe_literals(self, objects: Iterable[object]) -> None:
        """Look at ``objects``: the objects of statements, or only those that are literals (the
        reader's checker collects them for a store, :attr:`itkg.reader.Checker.literals`)."""
        known, terms, literal = self._known, self._terms, ox.Literal
        pending: dict[tuple[str, str], list] = {}  # (form, datatype) -> [literal, occurrences]
        changed = 0
        for obj in objects:
            if type(obj) is not literal:
                continue
            verdict = terms.get(obj)
            if verdict is not None:
                changed += verdict
                continue
            if obj.language is not None:
                verdict = obj.language != obj.language.lower()
            else:
                datatype = obj.datatype.value
                if datatype == _STRING or not datatype.startswith(XSD):
                    verdict = False
                else:
                    key = (obj.value, datatype)
                    verdict = known.get(key)
                    if verdict is None:
                        pattern = CERTAINLY_KEPT.get(datatype)
                        if pattern is not None and pattern.fullmatch(obj.value):
                            verdict = known[key] = False
                        elif key in pending:
                            pending[key][1] += 1
                            continue
                        else:
                            pending[key] = [obj, 1]
                            continue
            changed += verdict
            if len(terms) < _TERM_CACHE:
                terms[obj] = verdict
        if pending:
            verdicts = rewritten_by_store([literal for literal, _ in pending.values()])
            known.update(verdicts)
            changed += sum(n for key, (_, n) in pending.items() if verdicts[key])
        if changed:
            self.changed += changed
            if self.stop:
                raise LexicalFormError(self.changed)


def rewritten_by_store(literals: list[ox.Literal]) -> dict[tuple[str, str], bool]:
    """For each of ``literals`` (by its form and datatype): whether Oxigraph's store would give it
    back in another form or with another datatype. Asked of a scratch store, one literal at a
    time (a store hands statements back in its own order)."""
    scratch = ox.Store()
    verdicts: dict[tuple[str, str], bool] = {}
    for literal in literals:
        quad = ox.Quad(_SCRATCH_SUBJECT, _SCRATCH_SUBJECT, literal)
        scratch.add(quad)
        stored_quad = next(iter(scratch))
        scratch.remove(stored_quad)
        stored = stored_quad.object
        verdicts[(literal.value, literal.datatype.value)] = (
            type(stored) is not ox.Literal or stored.value != literal.value
            or stored.datatype != literal.datatype)
    return verdicts


def count_changed(statements: Iterable[ox.Triple | ox.Quad]) -> int:
    """How many literals among the objects of ``statements`` Oxigraph's store would rewrite."""
    watch = FormWatch()
    watch.observe(statements)
    return watch.changed
