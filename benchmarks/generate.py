"""Seeded synthetic patient graphs written to the itkg contract, for benchmarking the queries.

The point is scale, not clinical realism: a mix of patients close enough to a clinic's that every
branch of the queries is exercised (about a third qualify, the rest are pending, excluded or not
indicated), several records per patient, and about 16 triples per patient on average. The same
``n`` and ``seed`` always give the same graph, byte for byte.

    python benchmarks/generate.py 10000 --seed 1 --format nt -o /tmp/patients-10k.nt
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

ITKG = "https://w3id.org/itkg/"
PATIENT_BASE = "https://example.org/synthetic/"
RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
XSD_DATE = "http://www.w3.org/2001/XMLSchema#date"
SNOMED_CANCER_PAIN = "http://snomed.info/id/127274007"

# (condition classes, treatments that can meet it, outcomes that meet it, therapy, weight)
_PAIN_OUTCOMES = ("InadequatePainRelief", "SevereSideEffects")
_DIFFICULT_OUTCOMES = ("InadequatePainRelief", "SevereSideEffects", "TreatmentFailure")
_SPASTICITY_OUTCOMES = ("SevereSideEffects", "NoResponseAtMaximumDose")
_PROFILES: tuple[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], str, int], ...] = (
    (("CancerPain",), ("OralOpioidTherapy", "TransdermalOpioidTherapy", "SystemicAnalgesicTherapy"),
     _PAIN_OUTCOMES, "IntrathecalAnalgesicTherapy", 30),
    (("FailedBackSurgerySyndrome", "LumbarPostLaminectomySyndrome"), (), (),
     "IntrathecalAnalgesicTherapy", 12),
    (("ComplexRegionalPainSyndromeType1", "Causalgia", "PhantomLimbPain", "BrachialPlexopathy",
      "LumbosacralPlexopathy", "RadiationInducedPlexopathy"),
     ("OralOpioidTherapy", "InterventionalPainProcedure", "SpinalSurgery"),
     _DIFFICULT_OUTCOMES, "IntrathecalAnalgesicTherapy", 20),
    (("SevereSpasticity",), ("OralBaclofenTherapy", "TizanidineTherapy", "DantroleneTherapy"),
     _SPASTICITY_OUTCOMES, "IntrathecalBaclofenTherapy", 23),
)
# Conditions that look close to an indication but never meet one on their own.
_NEAR_MISS_CONDITIONS = ("Spasticity", "PainCondition", "CancerPain", "PhantomLimbPain", SNOMED_CANCER_PAIN)
_NEAR_MISS_TREATMENTS = ("PhysicalTherapy", "BotulinumToxinTherapy", "OralOpioidTherapy", "OralBaclofenTherapy")
_ETIOLOGIES = ("MultipleSclerosis", "SpinalCordInjury", "CerebralPalsy", "AcquiredBrainInjury", "Stroke")
_FIRST_DAY = date(2024, 1, 1)


def _iri(name: str) -> str:
    """An N-Triples IRI; bare names are itkg terms."""
    return f"<{name}>" if ":" in name else f"<{ITKG}{name}>"


class _Patient:
    """One patient's records: (link property, [(property name or "a", object term)]) pairs."""

    def __init__(self, index: int) -> None:
        self.node = f"<{PATIENT_BASE}p{index:07d}>"
        self.index = index
        self.records: list[tuple[str, list[tuple[str, str]]]] = []
        self.planned: str | None = None

    def record(self, link: str, facts: list[tuple[str, str]]) -> None:
        """Adds a record linked from the patient with ``link``."""
        self.records.append((link, facts))

    def ntriples(self) -> str:
        """The patient as N-Triples, records as blank nodes labelled by patient and position."""
        lines = [f"{self.node} <{RDF_TYPE}> {_iri('Patient')} ."]
        for position, (link, facts) in enumerate(self.records):
            node = f"_:p{self.index}r{position}"
            lines.append(f"{self.node} {_iri(link)} {node} .")
            lines.extend(f"{node} {_predicate(p)} {o} ." for p, o in facts)
        if self.planned:
            lines.append(f"{self.node} {_iri('plannedTherapy')} {_iri(self.planned)} .")
        return "\n".join(lines) + "\n"

    def turtle(self) -> str:
        """The patient as one Turtle statement, records as blank node property lists."""
        parts = [f"{self.node} a itkg:Patient"]
        for link, facts in self.records:
            inner = " ; ".join(f"{'a' if p == 'a' else 'itkg:' + p} {_short(o)}" for p, o in facts)
            parts.append(f"  itkg:{link} [ {inner} ]")
        if self.planned:
            parts.append(f"  itkg:plannedTherapy itkg:{self.planned}")
        return " ;\n".join(parts) + " .\n\n"


def _predicate(name: str) -> str:
    return f"<{RDF_TYPE}>" if name == "a" else _iri(name)


def _short(term: str) -> str:
    """An itkg IRI as a prefixed name, other terms unchanged (for Turtle output)."""
    if term.startswith(f"<{ITKG}"):
        return "itkg:" + term[len(ITKG) + 1:-1]
    return term.replace(f"^^<{XSD_DATE}>", "^^xsd:date")


def _date_literal(rng: random.Random) -> str:
    day = _FIRST_DAY + timedelta(days=rng.randrange(3 * 365))
    return f'"{day.isoformat()}"^^<{XSD_DATE}>'


def _maybe_dated(rng: random.Random, facts: list[tuple[str, str]], date_property: str) -> list[tuple[str, str]]:
    """Dates four records in five; the rest are undated (older than any dated one)."""
    if rng.random() < 0.8:
        facts.append((date_property, _date_literal(rng)))
    return facts


def _conditions_and_treatments(rng: random.Random, patient: _Patient) -> str:
    """Adds conditions and prior treatments; returns the therapy they could indicate."""
    indicated = rng.random() < 0.72
    if indicated:
        conditions, treatments, outcomes, therapy, _ = rng.choices(_PROFILES, [p[4] for p in _PROFILES])[0]
        condition = rng.choice(conditions)
        facts = [("a", _iri(condition))]
        if condition == "SevereSpasticity":
            facts.append(("hasEtiology", _iri(rng.choice(_ETIOLOGIES))))
        patient.record("hasCondition", facts)
        if treatments:
            patient.record("receivedTreatment", [("a", _iri(rng.choice(treatments))),
                                                 ("hasOutcome", _iri(rng.choice(outcomes)))])
    else:
        therapy = "IntrathecalAnalgesicTherapy"
        patient.record("hasCondition", [("a", _iri(rng.choice(_NEAR_MISS_CONDITIONS)))])
        patient.record("receivedTreatment", [("a", _iri(rng.choice(_NEAR_MISS_TREATMENTS))),
                                             ("hasOutcome", _iri("AdequateResponse"))])
    if rng.random() < 0.1:
        patient.record("hasCondition", [("a", _iri(rng.choice(_NEAR_MISS_CONDITIONS)))])
    for _ in range(rng.choices((0, 1, 2), (70, 25, 5))[0]):
        patient.record("receivedTreatment", [("a", _iri(rng.choice(_NEAR_MISS_TREATMENTS))),
                                             ("hasOutcome", _iri(rng.choice(("AdequateResponse", "TreatmentFailure"))))])
    return therapy


def _consents(rng: random.Random, patient: _Patient, therapy: str) -> None:
    """Adds 0-3 consent records: mostly grants covering all intrathecal therapy or the indicated one."""
    other = "IntrathecalBaclofenTherapy" if therapy == "IntrathecalAnalgesicTherapy" else "IntrathecalAnalgesicTherapy"
    for _ in range(rng.choices((0, 1, 2, 3), (18, 60, 16, 6))[0]):
        covers = rng.choices(("IntrathecalTherapy", therapy, other), (70, 25, 5))[0]
        status = rng.choices(("ConsentGranted", "ConsentRefused", "ConsentWithdrawn"), (84, 8, 8))[0]
        patient.record("hasConsent", _maybe_dated(rng, [("a", _iri("InformedConsent")),
                                                        ("consentStatus", _iri(status)),
                                                        ("coversTherapy", _iri(covers))], "consentDate"))


def _csf_assessments(rng: random.Random, patient: _Patient) -> None:
    """Adds 0-2 CSF circulation assessments, mostly good."""
    for _ in range(rng.choices((0, 1, 2), (20, 65, 15))[0]):
        finding = rng.choices(("GoodCSFCirculation", "ImpairedCSFCirculation"), (85, 15))[0]
        patient.record("hasCSFAssessment", _maybe_dated(rng, [("a", _iri("CSFCirculationAssessment")),
                                                              ("finding", _iri(finding))], "assessmentDate"))


def _patient(rng: random.Random, index: int) -> _Patient:
    patient = _Patient(index)
    therapy = _conditions_and_treatments(rng, patient)
    _consents(rng, patient, therapy)
    _csf_assessments(rng, patient)
    if rng.random() < 0.1:
        patient.planned = therapy
    return patient


def generate(n: int, seed: int = 0, fmt: str = "nt") -> Iterator[str]:
    """Yields the text of ``n`` synthetic patients, one chunk per patient, as N-Triples or Turtle.

    >>> text = "".join(generate(3, seed=7))
    >>> text == "".join(generate(3, seed=7)) and text.count("<https://example.org/synthetic/p0000002>") > 1
    True
    """
    if fmt not in ("nt", "ttl"):
        raise ValueError(f"unknown format {fmt!r}; use 'nt' or 'ttl'")
    rng = random.Random(seed)
    if fmt == "ttl":
        yield f"@prefix itkg: <{ITKG}> .\n@prefix xsd: <{XSD_DATE[:-4]}> .\n\n"
    for index in range(n):
        patient = _patient(rng, index)
        yield patient.turtle() if fmt == "ttl" else patient.ntriples()


def main(argv: list[str] | None = None) -> int:
    """Command line: writes N patients to a file or standard output."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, help="number of patients")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", choices=("nt", "ttl"), default="nt")
    parser.add_argument("-o", "--output", type=Path, help="file to write (default: standard output)")
    args = parser.parse_args(argv)
    out = args.output.open("w", encoding="utf-8") if args.output else sys.stdout
    try:
        out.writelines(generate(args.n, args.seed, args.format))
    finally:
        if args.output:
            out.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
