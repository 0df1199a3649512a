"""Cut an ontology release: one folder with everything a user of the ontology downloads.

Why a command: an ODK release is ``make prepare_release``, and reviewers expect the same shape
from any ontology: the versioned artefacts side by side, made by one reproducible step that
refuses to run when the release would be inconsistent. ``python -m itkg.release`` (or
``itkg-release``) builds ``dist/ontology/<version>/`` with

- ``itkg.ttl`` (the source) and ``itkg.owl`` (RDF/XML, rendered as ``python -m itkg.build_owl`` does),
- ``itkg.sssom.tsv``, the SSSOM mapping set, when ``ontology/itkg.sssom.tsv`` exists,
- ``docs/index.html``, the documentation page,
- ``report.tsv``, the ROBOT-style report (``itkg.qc``), and ``RELEASE-NOTES.md``, the CHANGELOG
  section of the version,
- ``SHA256SUMS`` over all of them.

The version is the package version in ``pyproject.toml`` (the one version source). The command
refuses to build when the ontology's ``owl:versionIRI`` is not ``https://w3id.org/itkg/ontology/
<version>`` or its ``owl:versionInfo`` is not the version, when CHANGELOG.md has no ``## <version>``
section, when ``itkg.owl``, the documentation page or the SKOS cross-references generated from
the SSSOM set are stale, when a report check fails, or when
HermiT finds the ontology inconsistent or a class unsatisfiable (``--skip-reasoner`` leaves
HermiT out, for machines without Java). The folder appears whole or not at all.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rdflib import Graph, URIRef
from rdflib.compare import isomorphic
from rdflib.namespace import OWL

from itkg import build_owl, ontology_docs, qc
from itkg.errors import ItkgError
from itkg.mappings import sync_ontology
from itkg.resources import data_root, ontology_owl_path, ontology_path

ONTOLOGY = URIRef("https://w3id.org/itkg/ontology")
VERSION_IRI = "https://w3id.org/itkg/ontology/{version}"
TTL, OWL_FILE, SSSOM, DOCS = "itkg.ttl", "itkg.owl", "itkg.sssom.tsv", "docs/index.html"
REPORT, NOTES, SUMS = "report.tsv", "RELEASE-NOTES.md", "SHA256SUMS"
REQUIRED = (TTL, OWL_FILE, DOCS, REPORT, NOTES)


class ReleaseError(ItkgError):
    """The release would be incomplete or inconsistent; the message lists every problem."""


@dataclass(frozen=True)
class Release:
    """A built release: its version and folder, and the files in it (relative paths, sorted)."""

    version: str
    folder: Path
    files: tuple[str, ...]


def package_version() -> str:
    """The version in ``pyproject.toml`` in a source checkout (the one version source), else the
    installed package's metadata, which was built from it."""
    pyproject = data_root() / "pyproject.toml"
    if pyproject.is_file() and sys.version_info >= (3, 11):
        import tomllib
        return str(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"])
    return importlib.metadata.version("itkg")


def changelog_section(text: str, version: str) -> str | None:
    """The ``## <version>`` section of a CHANGELOG (heading included), or None when it has none.

    >>> changelog_section("# C\\n\\n## 1.2.0 — 2026-01-01\\n- new\\n\\n## 1.1.0\\n- old\\n", "1.2.0")
    '## 1.2.0 — 2026-01-01\\n- new\\n'
    >>> changelog_section("## 1.2.0\\n", "1.2") is None
    True
    """
    match = re.search(rf"^## +v?{re.escape(version)}(?![\w.]).*?(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    return match[0].rstrip() + "\n" if match else None


def version_problems(graph: Graph, version: str, where: str) -> list[str]:
    """What disagrees between the ontology header in ``graph`` and the package ``version``."""
    problems = []
    iris = sorted(str(v) for v in graph.objects(ONTOLOGY, OWL.versionIRI))
    if iris != [VERSION_IRI.format(version=version)]:
        problems.append(f"{where}: owl:versionIRI is {iris or 'missing'}, expected "
                        f"{VERSION_IRI.format(version=version)} (the package version)")
    infos = sorted(str(v) for v in graph.objects(ONTOLOGY, OWL.versionInfo))
    if infos != [version]:
        problems.append(f"{where}: owl:versionInfo is {infos or 'missing'}, expected {version!r}")
    return problems


def _report_tsv(findings: Sequence[qc.Finding]) -> str:
    lines = ["Level\tRule Name\tSubject\tProperty\tValue"]
    lines += [f"{f.level}\t{f.check}\t{f.entity}\t{f.property}\t{f.value}" for f in findings]
    return "\n".join(lines) + "\n"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _hermit_problems(graph: Graph) -> list[str]:
    from itkg.reasoning import reason  # imports owlready2: only when HermiT is wanted

    report = reason(Graph(), ontology=graph)
    if not report.consistent:
        return ["HermiT: the ontology is inconsistent"]
    return [f"HermiT: unsatisfiable class {c}" for c in report.unsatisfiable]


@dataclass(frozen=True)
class _Sources:
    """The sources checked for a release, and what was rendered from them while checking."""

    problems: list[str]
    graph: Graph
    notes: str
    owl: str
    page: str
    findings: list[qc.Finding]


def _check_sources(version: str, *, reasoner: bool) -> _Sources:
    root = data_root()
    graph = Graph().parse(ontology_path(), format="turtle")
    problems = version_problems(graph, version, str(ontology_path()))
    changelog = root / "CHANGELOG.md"
    notes = changelog_section(changelog.read_text(encoding="utf-8"), version) if changelog.is_file() else None
    if notes is None:
        problems.append(f"{changelog}: no '## {version}' section: add the release's CHANGELOG entry")
    if ontology_path().with_name(SSSOM).is_file() and not sync_ontology(ontology_path(), check=True):
        problems.append(f"{ontology_path()}: its cross-references differ from {SSSOM}: run `python -m itkg.build_owl`")
    owl, page = build_owl.render(graph), ontology_docs.render(graph)
    if not ontology_owl_path().is_file() or ontology_owl_path().read_text(encoding="utf-8") != owl:
        problems.append(f"{ontology_owl_path()} is stale: run `python -m itkg.build_owl`")
    docs = build_owl.docs_path()
    if docs is not None and (not docs.is_file() or docs.read_text(encoding="utf-8") != page):
        problems.append(f"{docs} is stale: run `python -m itkg.build_owl`")
    findings = qc.report(graph)
    problems += [f"report check {f.check} ({f.level}): {f.entity} {f.property} {f.value}".rstrip()
                 for f in qc.failures(findings, "WARN")]
    if reasoner and not problems:
        problems += _hermit_problems(graph)
    return _Sources(problems, graph, notes or "", owl, page, findings)


def source_problems(version: str, *, reasoner: bool) -> list[str]:
    """Every reason not to release the sources as ``version`` (empty: they may be released)."""
    return _check_sources(version, reasoner=reasoner).problems


def build_release(out: Path | None = None, *, reasoner: bool = True, force: bool = False) -> Release:
    """Check the sources, then write the release folder (``out``, default ``dist/ontology/<version>``
    of the checkout). Raises :class:`ReleaseError` listing every problem, before writing anything."""
    version = package_version()
    folder = out if out is not None else data_root() / "dist" / "ontology" / version
    if folder.exists() and not force:
        raise ReleaseError(f"cannot release {version}: {folder} exists: remove it or pass --force to replace it")
    sources = _check_sources(version, reasoner=reasoner)
    if sources.problems:
        raise ReleaseError("cannot release " + version + ":\n  " + "\n  ".join(sources.problems))
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        (staging / TTL).write_bytes(ontology_path().read_bytes())
        (staging / OWL_FILE).write_text(sources.owl, encoding="utf-8", newline="\n")
        sssom = ontology_path().with_name(SSSOM)
        if sssom.is_file():
            (staging / SSSOM).write_bytes(sssom.read_bytes())
        (staging / DOCS).parent.mkdir()
        (staging / DOCS).write_text(sources.page, encoding="utf-8", newline="\n")
        (staging / REPORT).write_text(_report_tsv(sources.findings), encoding="utf-8", newline="\n")
        (staging / NOTES).write_text(sources.notes, encoding="utf-8", newline="\n")
        files = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
        (staging / SUMS).write_text("".join(f"{_sha256(staging / f)}  {f}\n" for f in files),
                                    encoding="utf-8", newline="\n")
        staging.chmod(0o755)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Release(version, folder, tuple(sorted([*files, SUMS])))


def check_release(folder: Path, version: str | None = None) -> list[str]:
    """Every way the release in ``folder`` is incomplete or inconsistent (empty: it is sound).

    Complete: the required files, and the SSSOM set when the sources have one. Consistent: the
    checksums match; the Turtle and RDF/XML hold the same triples and name ``version`` (default:
    the package version) in their header; the report checks pass on the RDF/XML; the page is the
    one rendered from the Turtle. HermiT and the OWL API are run by the tests, on the same files.
    """
    version = version or package_version()
    problems = [f"missing {name}" for name in (*REQUIRED, SUMS) if not (folder / name).is_file()]
    if ontology_path().with_name(SSSOM).is_file() and not (folder / SSSOM).is_file():
        problems.append(f"missing {SSSOM}")
    if problems:
        return problems
    listed = {}
    for line in (folder / SUMS).read_text(encoding="utf-8").splitlines():
        digest, name = line.split("  ", 1)
        listed[name] = digest
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {SUMS}
    if set(listed) != present:
        problems.append(f"{SUMS} lists {sorted(listed)}, the folder holds {sorted(present)}")
    problems += [f"{name}: checksum mismatch" for name in sorted(set(listed) & present)
                 if _sha256(folder / name) != listed[name]]
    if problems:  # the files are not the ones released: checking their content says nothing more
        return problems
    ttl = Graph().parse(folder / TTL, format="turtle")
    owl = Graph().parse(folder / OWL_FILE, format="xml")
    if not isomorphic(ttl, owl):
        problems.append(f"{OWL_FILE} and {TTL} hold different triples")
    problems += version_problems(ttl, version, TTL) + version_problems(owl, version, OWL_FILE)
    problems += [f"report check {f.check} ({f.level}) on {OWL_FILE}: {f.entity}"
                 for f in qc.failures(qc.report(owl), "WARN")]
    if (folder / DOCS).read_text(encoding="utf-8") != ontology_docs.render(ttl):
        problems.append(f"{DOCS} is not the page rendered from {TTL}")
    if f"## {version}" not in (folder / NOTES).read_text(encoding="utf-8"):
        problems.append(f"{NOTES} is not the CHANGELOG section of {version}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """Build and check the release; exit 0 with the folder's path, 1 listing the problems."""
    parser = argparse.ArgumentParser(prog="python -m itkg.release", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="release folder (default: dist/ontology/<version> of the checkout)")
    parser.add_argument("--force", action="store_true", help="replace an existing release folder")
    parser.add_argument("--skip-reasoner", action="store_true", help="do not run HermiT (no Java here)")
    args = parser.parse_args(argv)
    try:
        release = build_release(args.out, reasoner=not args.skip_reasoner, force=args.force)
    except ItkgError as error:
        print(f"itkg-release: {error}", file=sys.stderr)
        return 1
    problems = check_release(release.folder, release.version)
    if problems:
        print("itkg-release: the release folder is not sound:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print(f"{release.folder}: itkg ontology {release.version} ({', '.join(release.files)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
