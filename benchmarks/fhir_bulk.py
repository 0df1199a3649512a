"""A seeded synthetic FHIR Bulk Data export, and itkg's FHIR reading measured beside plain json.loads.

    python benchmarks/fhir_bulk.py generate --patients 1000 --out benchmarks/data/fhir-1000
    python benchmarks/fhir_bulk.py bench --patients 1000        # generates if needed, then measures
    python benchmarks/fhir_bulk.py bench --patients 100000 --repeat 7   # medians of 7 alternating runs

The export is one directory of NDJSON files, one per resource type (``Patient.ndjson``,
``Condition.ndjson``, ``Medication.ndjson``, ``MedicationStatement.ndjson``, ``Consent.ndjson``,
``Observation.ndjson``), about six resources per patient, the same bytes for the same size and seed.
Patients are drawn across the contract's cases: cancer pain, failed back surgery, CRPS,
severe spasticity with etiology, nothing relevant; consent granted, refused, withdrawn or absent;
CSF good, impaired or absent; statuses that count and that do not; oral, transdermal and
intrathecal routes; medications inline and by reference.

``bench`` runs, each in a fresh process, (1) the baseline "read every line and ``json.loads`` it
once, on one core" and (2) ``itkg eligibility DIR --format json -o OUT`` with ``--workers 1`` and
with the default workers, and prints for each the wall time, the CPU time (user + system, of the
process and its workers) and the peak memory of the process tree (``benchmarks/run.py``'s one
measure: proportional set size sampled from /proc, so pages forked workers share with their
parent count once; MiB), with the machine's load average before each run.

The ratio is the issue's: the wall time of the whole decision (``itkg eligibility`` from start to
exit: start-up, reading, deciding, writing the JSON) divided by the wall time of the baseline
process, for the default workers and for one. On a machine shared with other jobs, wall times
grow with the load; the CPU ratio (itkg's CPU over the baseline's) is steadier and is printed too.
The issue's target is within 2x at 100,000 patients; the figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path

I = "https://w3id.org/itkg/"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
SCT = "http://snomed.info/sct"
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
LOINC = "http://loinc.org"
SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
TYPES = ("Patient", "Condition", "Medication", "MedicationStatement", "Consent", "Observation")


def _cc(system: str, code: str) -> dict:
    return {"coding": [{"system": system, "code": code}]}


def _patient_resources(n: int, rng: random.Random) -> list[dict]:
    pid = f"p{n}"
    subject = {"reference": f"Patient/{pid}"}
    out: list[dict] = [{"resourceType": "Patient", "id": pid, "gender": rng.choice(["female", "male"]),
                        "birthDate": f"{rng.randint(1930, 2005)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"}]
    case = rng.choice(["cancer", "fbss", "crps", "spasticity", "other"])
    status = rng.choice(["active", "active", "active", "resolved"])
    condition = {"resourceType": "Condition", "id": f"c{n}", "subject": subject,
                 "clinicalStatus": _cc(CLINICAL, status)}
    if case == "cancer":
        condition["code"] = _cc(ICD, "G89.3")
    elif case == "fbss":
        condition["code"] = _cc(ICD, "M96.1")
    elif case == "crps":
        condition["code"] = _cc(ICD, rng.choice(["G90.511", "G90.50", "G56.41"]))
    elif case == "spasticity":
        condition["code"] = _cc(SCT, "221360009")
        condition["severity"] = _cc(SCT, rng.choice(["24484000", "6736007"]))
    else:
        condition["code"] = _cc(SCT, rng.choice(["44054006", "38341003", "195967001"]))
    out.append(condition)
    if case == "spasticity":
        out.append({"resourceType": "Condition", "id": f"e{n}", "subject": subject,
                    "code": _cc(SCT, rng.choice(["24700007", "90584004", "128188000", "230690007"]))})
        drug = rng.choice(["197391", "313413", "856652"])
        reason = rng.choice(["NoResponseAtMaximumDose", "SevereSideEffects", "AdequateResponse"])
        route = "26643006"
    else:
        drug = rng.choice(["7052", "4337", "3423", "7804"])
        reason = rng.choice(["InadequatePainRelief", "SevereSideEffects", "TreatmentFailure", "AdequateResponse"])
        route = rng.choice(["26643006", "45890007", "72607000", "26643006"])
    statement = {"resourceType": "MedicationStatement", "id": f"m{n}", "subject": subject,
                 "status": rng.choice(["completed", "stopped", "entered-in-error", "stopped"]),
                 "dosage": [{"route": _cc(SCT, route)}], "statusReason": [_cc(I, reason)]}
    if rng.random() < 0.5:
        statement["medicationCodeableConcept"] = _cc(RX, drug)
    else:
        out.append({"resourceType": "Medication", "id": f"med{n}", "code": _cc(RX, drug)})
        statement["medicationReference"] = {"reference": f"Medication/med{n}"}
    out.append(statement)
    consent = rng.choice(["granted", "refused", "withdrawn", "none", "privacy"])
    if consent != "none":
        out.append({"resourceType": "Consent", "id": f"k{n}", "patient": subject,
                    "status": {"withdrawn": "inactive"}.get(consent, "active"),
                    "scope": _cc(SCOPE, "patient-privacy" if consent == "privacy" else "treatment"),
                    "category": [_cc(LOINC, "59284-0")],
                    "dateTime": f"2026-{rng.randint(1, 9):02d}-{rng.randint(1, 28):02d}",
                    "provision": {"type": "deny" if consent == "refused" else "permit",
                                  "code": [_cc(I, rng.choice(["IntrathecalTherapy", "IntrathecalAnalgesicTherapy",
                                                              "IntrathecalBaclofenTherapy"]))]}})
    csf = rng.choice(["GoodCSFCirculation", "ImpairedCSFCirculation", None])
    if csf is not None:
        out.append({"resourceType": "Observation", "id": f"o{n}", "subject": subject,
                    "status": rng.choice(["final", "final", "preliminary"]),
                    "code": _cc(I, "CSFCirculationAssessment"), "valueCodeableConcept": _cc(I, csf),
                    "effectiveDateTime": f"2026-{rng.randint(1, 9):02d}-{rng.randint(1, 28):02d}"})
    return out


def generate(patients: int, out: Path, seed: int = 1) -> Path:
    """Write the export for ``patients`` patients into the directory ``out`` (same bytes for the
    same size and seed)."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    files = {kind: (out / f"{kind}.ndjson").open("w", encoding="utf-8") for kind in TYPES}
    try:
        for n in range(patients):
            for resource in _patient_resources(n, rng):
                files[resource["resourceType"]].write(json.dumps(resource, separators=(",", ":")) + "\n")
    finally:
        for handle in files.values():
            handle.close()
    return out


def json_baseline(directory: Path) -> int:
    """Plain Python's floor: read every line of the export and json.loads it once (one core)."""
    count = 0
    for path in sorted(directory.glob("*.ndjson")):
        with path.open("rb") as handle:
            for line in handle:
                if line.strip():
                    json.loads(line)
                    count += 1
    return count


def _harness():
    """``benchmarks/run.py``, the harness whose :func:`measure` every benchmark uses."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("itkg_benchmarks_run", Path(__file__).with_name("run.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


def _timed(argv: list[str]) -> dict[str, float]:
    """Wall and CPU seconds (the process and the workers it waited for) and peak MB (MiB) of the
    tree, by the harness's one measure (``run.measure``: the tree's proportional set size, so
    pages a forked worker shares with its parent count once, or the largest process's resident
    set if that is more), with the load average before the run."""
    found = _harness().measure(argv, timeout=7200, memory_limit_mb=float("inf"))
    if found["exit_code"]:
        raise subprocess.CalledProcessError(found["exit_code"], argv, stderr=found["stderr"])
    sys.stderr.write(found["stderr"])
    return {"wall": found["wall_s"], "cpu": found["cpu_s"], "peak_mb": round(found["peak_mb"]),
            "load": round(found["load_before"], 1)}


def bench(patients: int, data_dir: Path, seed: int = 1, one_worker: bool = True,
          repeat: int = 1) -> dict[str, object]:
    """Each command ``repeat`` times, the commands alternating (baseline, itkg, itkg with one
    worker, baseline, ...), so that a change in the machine's speed (this one's varies by 15%
    within minutes) falls on all of them; the figures are each command's medians, every run is
    listed under ``all``. First the itkg package's bytecode is compiled, as installing a package
    does (pip compiles a wheel's modules): on a machine with ``PYTHONDONTWRITEBYTECODE`` set,
    an editable install otherwise compiles its fifty modules again in every run (0.1 s here)."""
    import compileall
    import importlib.util
    import statistics
    directory = data_dir / f"fhir-{patients}-s{seed}"
    if not directory.is_dir():
        generate(patients, directory, seed)
    spec = importlib.util.find_spec("itkg")
    if spec is not None and spec.origin is not None:
        compileall.compile_dir(str(Path(spec.origin).parent), quiet=1)
    out = data_dir / f"fhir-{patients}-s{seed}.json"
    itkg = [sys.executable, "-m", "itkg.cli", "eligibility", str(directory), "--format", "json", "-o", str(out),
            "--quiet"]
    commands = {"json.loads per line, one core": [sys.executable, __file__, "baseline", str(directory)],
                "itkg eligibility, default workers": itkg}
    if one_worker:
        commands["itkg eligibility, --workers 1"] = [*itkg, "--workers", "1"]
    every: dict[str, list[dict[str, float]]] = {name: [] for name in commands}
    for _ in range(max(1, repeat)):
        for name, argv in commands.items():
            every[name].append(_timed(argv))
    runs = {name: {key: statistics.median(run[key] for run in found) for key in found[0]}
            for name, found in every.items()}
    baseline = runs["json.loads per line, one core"]
    ratios = {f"{name}: wall ratio": round(run["wall"] / baseline["wall"], 2) for name, run in runs.items()}
    ratios.update({f"{name}: CPU ratio": round(run["cpu"] / baseline["cpu"], 2) for name, run in runs.items()})
    return {"patients": patients, "resources": json_baseline_count(directory), "repeat": max(1, repeat),
            "runs": runs, "ratios": ratios, "all": every}


def json_baseline_count(directory: Path) -> int:
    """How many resources (non-empty lines) the export holds."""
    count = 0
    for path in sorted(directory.glob("*.ndjson")):
        with path.open("rb") as handle:
            count += sum(1 for line in handle if line.strip())
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate")
    gen.add_argument("--patients", type=int, required=True)
    gen.add_argument("--seed", type=int, default=1)
    gen.add_argument("--out", type=Path, required=True)
    base = sub.add_parser("baseline")
    base.add_argument("directory", type=Path)
    run = sub.add_parser("bench")
    run.add_argument("--patients", type=int, default=1000)
    run.add_argument("--seed", type=int, default=1)
    run.add_argument("--data", type=Path, default=Path(__file__).with_name("data"))
    run.add_argument("--no-one-worker", action="store_true", help="skip the --workers 1 run")
    run.add_argument("--repeat", type=int, default=1,
                     help="run each command this many times, alternating; report the medians")
    args = parser.parse_args(argv)
    _harness().exit_on_sigterm()
    if args.command == "generate":
        generate(args.patients, args.out, args.seed)
    elif args.command == "baseline":
        print(json_baseline(args.directory))
    else:
        print(json.dumps(bench(args.patients, args.data, args.seed, not args.no_one_worker, args.repeat), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
