"""ROBOT's report checks, run over the ontology with rdflib: the ``robot report`` step of ODK's
``make test``, without ROBOT.

Why: OBO/ODK reviewers judge an ontology by ``robot report`` with the default profile, but ROBOT
(a Java jar from GitHub releases) cannot be installed in this project's CI. Its checks are plain
SPARQL, so ``queries/qc/report/`` carries ROBOT's own queries unchanged (BSD 3-Clause, see the
licence file there) with its default profile (``report_profile.txt``), and this module runs them.
A release fails on any ERROR finding, and on any WARN finding not listed in
:data:`WARN_EXCEPTIONS` (none today). INFO findings are printed and never fail.

``python -m itkg.qc [ONTOLOGY] [--fail-on ERROR|WARN|none]`` prints a ROBOT-style TSV report.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rdflib import Graph

from itkg.resources import ontology_path, queries_dir

LEVELS = ("ERROR", "WARN", "INFO")

#: WARN findings accepted on purpose, as (check, entity IRI) pairs, each with its reason in a comment.
#: Empty: the ontology is clean for every ERROR and WARN check.
WARN_EXCEPTIONS: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class ReportCheck:
    """One check of the profile: ROBOT's name, its level and its SPARQL text."""

    name: str
    level: str
    query: str


@dataclass(frozen=True, order=True)
class Finding:
    """One row of the report, in ROBOT's columns (Level, Rule Name, Subject, Property, Value)."""

    level: str
    check: str
    entity: str
    property: str
    value: str


def report_dir() -> Path:
    """The folder of ROBOT's report queries and profile."""
    return queries_dir() / "qc" / "report"


def report_checks() -> list[ReportCheck]:
    """The checks named by ``report_profile.txt``, in its order; each must have its ``.rq`` file."""
    checks = []
    for line in (report_dir() / "report_profile.txt").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        level, name = line.split("\t")
        if level not in LEVELS:
            raise ValueError(f"report_profile.txt: unknown level {level!r} for {name}")
        checks.append(ReportCheck(name, level, (report_dir() / f"{name}.rq").read_text(encoding="utf-8")))
    return checks


def _text(value: object) -> str:
    return "" if value is None else str(value)


def run_check(graph: Graph, check: ReportCheck) -> list[Finding]:
    """The findings of one check on ``graph``, sorted."""
    rows = graph.query(check.query)
    return sorted({Finding(check.level, check.name, *(_text(value) for value in row))  # type: ignore[union-attr]
                   for row in rows})


def report(graph: Graph, checks: Sequence[ReportCheck] | None = None) -> list[Finding]:
    """Every finding of every check of the default profile (or of ``checks``) on ``graph``."""
    return [finding for check in (report_checks() if checks is None else checks)
            for finding in run_check(graph, check)]


def failures(findings: Sequence[Finding], fail_on: str = "WARN") -> list[Finding]:
    """The findings that fail a release at ``fail_on`` level: ERROR always; WARN when ``fail_on``
    is WARN, minus :data:`WARN_EXCEPTIONS`; nothing when ``fail_on`` is ``none``."""
    if fail_on == "none":
        return []
    failing = {"ERROR"} if fail_on == "ERROR" else {"ERROR", "WARN"}
    return [f for f in findings if f.level in failing
            and not (f.level == "WARN" and (f.check, f.entity) in WARN_EXCEPTIONS)]


def main(argv: Sequence[str] | None = None) -> int:
    """Print the report as TSV and a summary; exit 1 when a finding fails at ``--fail-on``."""
    parser = argparse.ArgumentParser(prog="python -m itkg.qc", description=__doc__.split("\n\n")[0])
    parser.add_argument("ontology", nargs="?", type=Path, default=None,
                        help="ontology file, Turtle or RDF/XML (default: the bundled itkg.ttl)")
    parser.add_argument("--fail-on", choices=("ERROR", "WARN", "none"), default="WARN")
    args = parser.parse_args(argv)
    source = args.ontology or ontology_path()
    graph = Graph().parse(source, format="xml" if source.suffix in (".owl", ".rdf") else "turtle")
    findings = report(graph)
    print("Level\tRule Name\tSubject\tProperty\tValue")
    for finding in findings:
        print(f"{finding.level}\t{finding.check}\t{finding.entity}\t{finding.property}\t{finding.value}")
    for level in LEVELS:
        print(f"{level}: {sum(f.level == level for f in findings)}", file=sys.stderr)
    failed = failures(findings, args.fail_on)
    if failed:
        print(f"{len(failed)} finding(s) fail at level {args.fail_on}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
