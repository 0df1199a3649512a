"""itkg: the intrathecal-therapy knowledge graph toolkit.

The public API is small: :func:`load` patient graphs, then ask for :func:`eligibility`,
:func:`validate` them against the shapes, :func:`explain` one patient's decisions, or
:func:`reason` over them with HermiT, run a SPARQL :func:`query`, write the clinic's HTML :func:`report`,
:func:`convert` FHIR to RDF, or :func:`upload` to a SPARQL server (:func:`connect`). The command line
calls exactly these. Every error itkg raises on purpose is an :class:`ItkgError`.

The names below are imported on first use (PEP 562), so that ``import itkg`` and ``itkg --help``
do not pay for rdflib, pySHACL, owlready2, httpx and pyoxigraph before they are needed.
"""

from __future__ import annotations

import importlib
import sys
import types
from importlib.metadata import PackageNotFoundError, version as _version
from typing import TYPE_CHECKING, Any

from .errors import (EndpointError, IllTypedLiteralError, InputError, InputTooLargeError,
                     ItkgError, ParseError, QueryError, QueryTimeout, ReasonerError,
                     ShapesNotSupportedError, UnsafeInputError, ValidationEngineError, WorkerError)

if TYPE_CHECKING:
    from .api import (EligibilityRun, Upload, agreement, connect, convert, eligibility, eligibility_run,
                      explain, input_notes, query, read, reason, report, upload, validate)
    from .loading import PatientData, Source, load
    from .reasoning import ReasoningReport
    from .report import ReportResult
    from .results import (CriterionExplanation, EligibilityResult, IndicationExplanation,
                          PatientExplanation, PrerequisiteCheck)
    from .sparql import QueryResult
    from .validation import ValidationReport, ValidationResult

try:
    __version__ = _version("itkg")
except PackageNotFoundError:  # pragma: no cover - running from a checkout without install
    __version__ = "0.0.0"

#: Public name -> the module that defines it.
_LAZY: dict[str, str] = {
    **dict.fromkeys(("eligibility", "eligibility_run", "EligibilityRun", "explain", "query", "reason",
                     "agreement", "report", "validate", "read", "input_notes", "convert", "connect", "upload",
                     "Upload"), "api"),
    "QueryResult": "sparql",
    **dict.fromkeys(("PatientData", "Source", "load"), "loading"),
    "ReasoningReport": "reasoning",
    "ReportResult": "report",
    **dict.fromkeys(("CriterionExplanation", "EligibilityResult", "IndicationExplanation",
                     "PatientExplanation", "PrerequisiteCheck"), "results"),
    **dict.fromkeys(("ValidationReport", "ValidationResult"), "validation"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'itkg' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # a module attribute from now on: looked up once
    return value


class _Package(types.ModuleType):
    """``itkg.report`` is both a function of the API and a submodule. Importing the submodule
    would rebind the package attribute to the module; the function keeps the name."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "__version__", "load", "read", "eligibility", "eligibility_run", "validate", "explain", "query", "reason",
    "agreement", "report", "convert", "connect", "upload", "input_notes",
    "EligibilityRun", "Upload", "ReportResult", "QueryResult",
    "PatientData", "Source", "EligibilityResult", "PrerequisiteCheck", "PatientExplanation",
    "IndicationExplanation", "CriterionExplanation", "ValidationReport", "ValidationResult",
    "ReasoningReport", "ItkgError", "InputError", "ParseError", "UnsafeInputError",
    "InputTooLargeError", "IllTypedLiteralError", "QueryError", "QueryTimeout", "ReasonerError",
    "EndpointError", "ValidationEngineError", "ShapesNotSupportedError", "WorkerError",
]
