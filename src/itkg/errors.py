"""The one error hierarchy of itkg.

Every error itkg raises on purpose is an :class:`ItkgError`. Messages never quote patient data:
they name the file, the line and column where known, and what kind of problem was found, because
error text ends up in logs and terminals that are not cleared for patient data.
"""

from __future__ import annotations

from pathlib import Path


class ItkgError(Exception):
    """Base class of every error itkg raises on purpose."""

    #: Exit code the command line uses for this error.
    exit_code: int = 2


class InputError(ItkgError):
    """The input cannot be used: missing, unreadable, not RDF, unsafe or too large.

    ``source`` names the file (or ``"<graph>"``); ``line`` and ``column`` are given when the
    parser knows them. ``str(error)`` is one line: ``FILE:LINE:COL: problem``.
    """

    def __init__(self, source: str | Path, problem: str, line: int | None = None,
                 column: int | None = None) -> None:
        self.source = str(source)
        self.problem = problem
        self.line = line
        self.column = column
        where = self.source
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        super().__init__(f"{where}: {problem}")

    def __reduce__(self) -> tuple:
        """Pickle by the constructor's arguments, so that an input error raised in a child
        process (a query with a deadline loads its files there) reaches the parent intact."""
        return (type(self), (self.source, self.problem, self.line, self.column))


class ParseError(InputError):
    """The file is not well-formed RDF in the format it claims to be."""


class UnsafeInputError(InputError):
    """The input asks for something itkg refuses to do: reach the network, read another file,
    expand XML entities, nest deeper than the limit."""


class InputTooLargeError(InputError):
    """The input exceeds a size limit (bytes, nesting depth, literal length)."""


class IllTypedLiteralError(InputError):
    """A literal's text is not valid for its datatype (``"maybe"^^xsd:boolean``). itkg reports it
    rather than rewriting it, as rdflib would by default."""


class MemoryBudgetError(ItkgError):
    """The work needed more memory than its budget (``--max-memory``, ``max_memory=``): the input
    is too large for the budget. Exit code 2, as for any input that cannot be used."""

    def __init__(self, budget: int | None = None) -> None:
        self.budget = budget
        limit = f" ({budget / 2**20:,.0f} MB)" if budget else ""
        super().__init__(f"the input needs more memory than the budget allows{limit}; raise "
                         "--max-memory (max_memory=), or give the input in smaller files")

    def __reduce__(self) -> tuple:
        return (type(self), (self.budget,))


class QueryError(ItkgError):
    """A SPARQL query is malformed or asks for something refused (SERVICE, FROM, LOAD, updates)."""


class QueryTimeout(QueryError):
    """A query did not finish before its deadline."""


class ReasonerError(ItkgError):
    """HermiT could not be run, failed, or did not finish before its deadline."""


class EndpointError(ItkgError):
    """A SPARQL endpoint answered with an error, did not answer, or answered something that is
    not a SPARQL result."""


class ValidationEngineError(ItkgError):
    """A SHACL back-end asked for (``--engine jena``) is missing here, or stopped while validating."""


class ShapesNotSupportedError(ValidationEngineError):
    """The shapes use a SHACL feature the chosen back-end does not implement (``--engine native``
    with ``sh:qualifiedValueShape``, say): it refuses rather than skip a check."""


class WorkerError(ItkgError):
    """A worker process of itkg ended without an answer or failed (only the kind of failure is
    reported: its message may quote data)."""
