"""itkg: the intrathecal-therapy knowledge graph toolkit.

The public API is small: :func:`load` patient graphs, then ask for :func:`eligibility`,
:func:`validate` them against the shapes, :func:`explain` one patient's decisions, or
:func:`reason` over them with HermiT, or write the clinic's HTML :func:`report`. Every error itkg raises on purpose is an :class:`ItkgError`.
"""

from importlib.metadata import PackageNotFoundError, version as _version

from .api import eligibility, explain, reason, report, validate
from .errors import (EndpointError, IllTypedLiteralError, InputError, InputTooLargeError,
                     ItkgError, ParseError, QueryError, QueryTimeout, ReasonerError,
                     UnsafeInputError, ValidationEngineError, WorkerError)
from .fhir.convert import convert
from .loading import PatientData, Source, load
from .reasoning import ReasoningReport
from .report import ReportResult
from .results import (CriterionExplanation, EligibilityResult, IndicationExplanation,
                      PatientExplanation, PrerequisiteCheck)
from .validation import ValidationReport, ValidationResult

try:
    __version__ = _version("itkg")
except PackageNotFoundError:  # pragma: no cover - running from a checkout without install
    __version__ = "0.0.0"

__all__ = [
    "__version__", "load", "eligibility", "validate", "explain", "reason", "report", "ReportResult",
    "convert",
    "PatientData", "Source", "EligibilityResult", "PrerequisiteCheck", "PatientExplanation",
    "IndicationExplanation", "CriterionExplanation", "ValidationReport", "ValidationResult",
    "ReasoningReport", "ItkgError", "InputError", "ParseError", "UnsafeInputError",
    "InputTooLargeError", "IllTypedLiteralError", "QueryError", "QueryTimeout", "ReasonerError",
    "EndpointError", "ValidationEngineError", "WorkerError",
]
