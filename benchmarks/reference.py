"""Near-limit reference for ``itkg eligibility``: how fast contract §3 can go in Python at all.

FOR THE BENCHMARK ONLY. This is not a second implementation of itkg: the rules of contract §3 are
hard-coded below (class hierarchy, indications, outcomes, prerequisites) instead of read from the
ontology, there is no evidence text, no input checks, no explanation, and dates are compared as
``YYYY-MM-DD`` strings. It exists so that ``benchmarks/run.py`` can say how close itkg comes to the
floor set by a Rust parser (pyoxigraph) streaming triples into plain dicts and a single pass of
the rules per patient. ``run.py`` checks that it gives exactly itkg's rows (patient, therapy,
indication, status, unmet) on the generated data before comparing times, so the comparison is fair.

    python benchmarks/reference.py benchmarks/data/patients-10000.nt -o /tmp/reference.json
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections import defaultdict
from pathlib import Path

import pyoxigraph as ox

_I = "<https://w3id.org/itkg/"
_XSD_DATE_SUFFIX = '"^^<http://www.w3.org/2001/XMLSchema#date>'
RDF_TYPE = "<http://www.w3.org/1999/02/22-rdf-syntax-ns#type>"


def _terms(*names: str) -> frozenset[str]:
    """itkg terms as pyoxigraph writes them with ``str()``: ``<https://w3id.org/itkg/Name>``."""
    return frozenset(f"{_I}{name}>" for name in names)


HAS_CONDITION, RECEIVED_TREATMENT, HAS_OUTCOME = f"{_I}hasCondition>", f"{_I}receivedTreatment>", f"{_I}hasOutcome>"
HAS_CONSENT, CONSENT_STATUS, COVERS, CONSENT_DATE = (
    f"{_I}hasConsent>", f"{_I}consentStatus>", f"{_I}coversTherapy>", f"{_I}consentDate>")
HAS_CSF, FINDING, ASSESSMENT_DATE = f"{_I}hasCSFAssessment>", f"{_I}finding>", f"{_I}assessmentDate>"
KEPT = frozenset({RDF_TYPE, HAS_CONDITION, RECEIVED_TREATMENT, HAS_OUTCOME, HAS_CONSENT, CONSENT_STATUS,
                  COVERS, CONSENT_DATE, HAS_CSF, FINDING, ASSESSMENT_DATE})

ANALGESIC, BACLOFEN = f"{_I}IntrathecalAnalgesicTherapy>", f"{_I}IntrathecalBaclofenTherapy>"
SYSTEMIC = _terms("SystemicAnalgesicTherapy", "OralOpioidTherapy", "TransdermalOpioidTherapy")
#: (indication, therapy, criteria); a criterion is (condition classes, treatment classes, outcomes),
#: every class set already closed under rdfs:subClassOf, an empty treatment set meaning "none needed".
RULES: tuple[tuple[str, str, tuple[tuple[frozenset[str], frozenset[str], frozenset[str]], ...]], ...] = (
    (f"{_I}CancerPainIndication>", ANALGESIC, (
        (_terms("CancerPain"), SYSTEMIC, _terms("InadequatePainRelief", "SevereSideEffects")),)),
    (f"{_I}NonCancerPainIndication>", ANALGESIC, (
        (_terms("FailedBackSurgerySyndrome", "LumbarPostLaminectomySyndrome"), frozenset(), frozenset()),
        (_terms("ComplexRegionalPainSyndrome", "ComplexRegionalPainSyndromeType1", "Causalgia", "PhantomLimbPain",
                "Plexopathy", "BrachialPlexopathy", "LumbosacralPlexopathy", "RadiationInducedPlexopathy"),
         SYSTEMIC | _terms("InterventionalPainProcedure", "SpinalSurgery"),
         _terms("InadequatePainRelief", "SevereSideEffects", "TreatmentFailure")))),
    (f"{_I}SevereSpasticityIndication>", BACLOFEN, (
        (_terms("SevereSpasticity"), _terms("OralBaclofenTherapy", "TizanidineTherapy", "DantroleneTherapy"),
         _terms("SevereSideEffects", "NoResponseAtMaximumDose")),)),
)
COVERING = {ANALGESIC: _terms("IntrathecalTherapy", "IntrathecalAnalgesicTherapy"),
            BACLOFEN: _terms("IntrathecalTherapy", "IntrathecalBaclofenTherapy")}
GRANTED, REFUSALS = f"{_I}ConsentGranted>", _terms("ConsentRefused", "ConsentWithdrawn")
GOOD_CSF, IMPAIRED_CSF = f"{_I}GoodCSFCirculation>", _terms("ImpairedCSFCirculation")

Facts = dict[str, list[str]]


def read(path: Path) -> dict[str, Facts]:
    """Every node's facts (``str()`` of predicate -> ``str()`` of objects), for the rules' predicates."""
    nodes: dict[str, Facts] = defaultdict(lambda: defaultdict(list))
    kept = KEPT
    # Millions of small dicts and lists and no reference cycles: without this the cyclic garbage
    # collector rescans the growing heap again and again (a third of the time at 100k patients).
    gc.disable()
    try:
        for quad in ox.parse(path=path):
            predicate = str(quad.predicate)
            if predicate in kept:
                nodes[str(quad.subject)][predicate].append(str(quad.object))
    finally:
        gc.enable()
    return nodes


def _date(values: list[str]) -> str:
    """The latest ``xsd:date`` among ``values`` as ``YYYY-MM-DD``, or ``""`` (undated: oldest)."""
    return max((v[1:11] for v in values if v.endswith(_XSD_DATE_SUFFIX)), default="")


def _prerequisite(nodes: dict[str, Facts], records: list[str], date_property: str, value_property: str,
                  good: str, bad: frozenset[str]) -> str:
    """``met``, ``failed`` or ``missing``: the latest records decide, and a bad one among them wins."""
    if not records:
        return "missing"
    dated = [(_date(nodes[r].get(date_property, [])), nodes[r].get(value_property, [])) for r in records]
    latest = max(d for d, _ in dated)
    values = {v for d, vs in dated if d == latest for v in vs}
    return "failed" if values & bad else "met" if good in values else "missing"


def _met(nodes: dict[str, Facts], facts: Facts, conditions: frozenset[str], treatments: frozenset[str],
         outcomes: frozenset[str]) -> bool:
    if not any(conditions.intersection(nodes[c].get(RDF_TYPE, ())) for c in facts.get(HAS_CONDITION, ())):
        return False
    return not treatments or any(
        treatments.intersection(nodes[t].get(RDF_TYPE, ())) and outcomes.intersection(nodes[t].get(HAS_OUTCOME, ()))
        for t in facts.get(RECEIVED_TREATMENT, ()))


def rows(nodes: dict[str, Facts]) -> list[dict]:
    """Contract §3 once per patient (a node with a condition): one row per indication met."""
    out = []
    for patient, facts in nodes.items():
        if HAS_CONDITION not in facts:
            continue
        csf = None
        for indication, therapy, criteria in RULES:
            if not any(_met(nodes, facts, *criterion) for criterion in criteria):
                continue
            covering = COVERING[therapy]
            consents = [c for c in facts.get(HAS_CONSENT, ()) if covering.intersection(nodes[c].get(COVERS, ()))]
            consent = _prerequisite(nodes, consents, CONSENT_DATE, CONSENT_STATUS, GRANTED, REFUSALS)
            if csf is None:
                csf = _prerequisite(nodes, facts.get(HAS_CSF, []), ASSESSMENT_DATE, FINDING, GOOD_CSF, IMPAIRED_CSF)
            states = (("informed-consent", consent), ("csf-circulation", csf))
            status = ("excluded" if "failed" in (consent, csf) else "qualifies" if consent == csf == "met"
                      else "pending")
            out.append({"patient": patient[1:-1] if patient.startswith("<") else patient,
                        "therapy": therapy[1:-1], "indication": indication[1:-1], "status": status,
                        "unmet": [code for code, state in states if state != "met"]})
    out.sort(key=lambda r: (r["patient"], r["therapy"], r["indication"]))
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: eligibility rows of one file as ``{"results": [...]}`` JSON (no evidence)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path, help="patient graph (.nt or .ttl)")
    parser.add_argument("-o", "--output", type=Path, help="file to write (default: standard output)")
    args = parser.parse_args(argv)
    text = json.dumps({"results": rows(read(args.file))}, indent=0) + "\n"
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
