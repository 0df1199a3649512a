"""The typed results itkg returns: eligibility rows, prerequisite checks and per-patient explanations.

They are plain frozen dataclasses so that callers can compare, sort, pickle and serialise them;
``to_dict()`` gives the contract's JSON shape (contract §5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["qualifies", "pending", "excluded"]
PrerequisiteState = Literal["met", "failed", "missing"]


@dataclass(frozen=True)
class PrerequisiteCheck:
    """How one prerequisite (``informed-consent`` or ``csf-circulation``) stands for a therapy.

    ``records`` are the node ids of the records that decided it (the latest ones); ``reason``
    says so in words, e.g. ``latest consent covering intrathecal analgesic therapy _:c1 of
    2026-04-02: consent withdrawn``.
    """

    code: str
    state: PrerequisiteState
    reason: str
    records: tuple[str, ...] = ()


@dataclass(frozen=True, order=True)
class EligibilityResult:
    """One (patient, therapy, indication) whose indication is met, with its status.

    >>> row = EligibilityResult("https://example.org/p1", "https://w3id.org/itkg/IntrathecalAnalgesicTherapy",
    ...                         "https://w3id.org/itkg/CancerPainIndication", "pending", ("csf-circulation",))
    >>> row.to_dict()["unmet"]
    ['csf-circulation']
    """

    patient: str
    therapy: str
    indication: str
    status: Status
    unmet: tuple[str, ...] = ()
    evidence: tuple[str, ...] = field(default=(), compare=False)
    prerequisites: tuple[PrerequisiteCheck, ...] = field(default=(), compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The row as the contract's JSON object."""
        return {
            "patient": self.patient,
            "therapy": self.therapy,
            "indication": self.indication,
            "status": self.status,
            "unmet": list(self.unmet),
            "evidence": list(self.evidence),
        }


@dataclass(frozen=True)
class CriterionExplanation:
    """Whether one criterion of an indication is met for a patient, and why (not)."""

    criterion: str
    label: str
    met: bool
    evidence: tuple[str, ...]
    failed: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"criterion": self.criterion, "label": self.label, "met": self.met,
                "evidence": list(self.evidence), "failed": list(self.failed)}


@dataclass(frozen=True)
class IndicationExplanation:
    """One indication of the ontology for one patient: met or not, criterion by criterion, and the
    resulting eligibility row when it is met."""

    indication: str
    label: str
    therapy: str
    met: bool
    criteria: tuple[CriterionExplanation, ...]
    result: EligibilityResult | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "indication": self.indication, "label": self.label, "therapy": self.therapy,
            "met": self.met, "criteria": [c.to_dict() for c in self.criteria],
            "status": self.result.status if self.result else None,
            "unmet": list(self.result.unmet) if self.result else [],
            "prerequisites": [
                {"code": p.code, "state": p.state, "reason": p.reason, "records": list(p.records)}
                for p in (self.result.prerequisites if self.result else ())
            ],
        }


@dataclass(frozen=True)
class PatientExplanation:
    """Every indication of the ontology, met or not, for one patient (``itkg explain``)."""

    patient: str
    indications: tuple[IndicationExplanation, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"patient": self.patient, "indications": [i.to_dict() for i in self.indications]}
