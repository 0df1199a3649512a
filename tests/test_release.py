"""The ontology release (``python -m itkg.release``): complete and consistent.

The release is built once into a temporary folder from the repository's sources, then checked the
way a reviewer would: every artefact present and matching its checksum; the Turtle and RDF/XML the
same ontology, named by the package version (``owl:versionIRI``, ``owl:versionInfo``); the report
checks clean; HermiT consistent with no unsatisfiable class; the OWL API loading both files fully
and in the OWL 2 DL profile. The refusal paths are checked on broken copies.
"""

from __future__ import annotations

import shutil
import sys
from importlib.metadata import version as installed_version
from pathlib import Path

import pytest
import _owlapi
from rdflib import Graph, Literal, URIRef
from rdflib.namespace import OWL

from itkg import release
from itkg.resources import ontology_owl_path, ontology_path

pytestmark = pytest.mark.slow  # the release is built once per module (a few seconds)

REPO = Path(__file__).resolve().parents[1]
SSSOM_SOURCE = REPO / "ontology" / "itkg.sssom.tsv"



@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> release.Release:
    """The release of the current sources, made by the command (``--force`` over a folder holding a
    stray file, which must go), without HermiT (the java tests below run it on the release)."""
    folder = tmp_path_factory.mktemp("release") / release.package_version()
    folder.mkdir()
    (folder / "stray.txt").write_text("old", encoding="utf-8")
    assert release.main(["--out", str(folder), "--skip-reasoner", "--force"]) == 0  # builds, then checks
    assert not (folder / "stray.txt").exists()
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no staging folder left behind
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return release.Release(folder.name, folder, tuple(files))


def _copy(built: release.Release, tmp_path: Path) -> Path:
    copy = tmp_path / built.version
    shutil.copytree(built.folder, copy)
    return copy


def test_release_is_complete_and_consistent(built: release.Release) -> None:
    expected = {*release.REQUIRED, release.SUMS} | ({release.SSSOM} if SSSOM_SOURCE.is_file() else set())
    assert set(built.files) == expected
    assert release.check_release(built.folder) == []


def test_release_artefacts_are_the_checked_in_sources(built: release.Release) -> None:
    assert (built.folder / release.TTL).read_bytes() == ontology_path().read_bytes()
    assert (built.folder / release.OWL_FILE).read_bytes() == ontology_owl_path().read_bytes()
    assert (built.folder / release.DOCS).read_bytes() == (REPO / "docs" / "ontology" / "index.html").read_bytes()
    notes = (built.folder / release.NOTES).read_text(encoding="utf-8")
    assert notes.startswith(f"## {built.version}") and "\n## " not in notes
    report = (built.folder / release.REPORT).read_text(encoding="utf-8").splitlines()
    assert report[0] == "Level\tRule Name\tSubject\tProperty\tValue"
    assert not [line for line in report[1:] if line.startswith(("ERROR", "WARN"))]


def test_release_ships_the_sssom_mapping_set_when_there_is_one(built: release.Release) -> None:
    if not SSSOM_SOURCE.is_file():
        assert release.SSSOM not in built.files
        return
    shipped = built.folder / release.SSSOM
    assert shipped.read_bytes() == SSSOM_SOURCE.read_bytes()
    parsers = pytest.importorskip("sssom.parsers")
    assert len(parsers.parse_sssom_table(shipped).df) > 0


def test_one_version_source_pyproject(built: release.Release) -> None:
    if sys.version_info >= (3, 11):
        import tomllib
        pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
        assert built.version == pyproject["project"]["version"]
    assert built.version == installed_version("itkg")  # reinstall after changing pyproject's version
    for name, fmt in ((release.TTL, "turtle"), (release.OWL_FILE, "xml")):
        graph = Graph().parse(built.folder / name, format=fmt)
        assert set(graph.objects(release.ONTOLOGY, OWL.versionIRI)) == {
            URIRef(f"https://w3id.org/itkg/ontology/{built.version}")}
        assert [str(v) for v in graph.objects(release.ONTOLOGY, OWL.versionInfo)] == [built.version]


@pytest.mark.java
def test_hermit_finds_the_released_ontology_consistent(built: release.Release) -> None:
    if shutil.which("java") is None:
        pytest.skip("java is not installed")
    from itkg.reasoning import reason

    report = reason(Graph(), ontology=Graph().parse(built.folder / release.OWL_FILE, format="xml"))
    assert report.consistent and report.unsatisfiable == ()


@pytest.mark.java
def test_owlapi_loads_the_released_files_fully_and_in_owl2_dl(built: release.Release) -> None:
    counts, output = _owlapi.check_or_skip({"owl": built.folder / release.OWL_FILE,
                                            "ttl": built.folder / release.TTL})
    clean = {"unparsed": 0, "guessed": 0, "violations": 0}
    assert counts == {"owl": clean, "ttl": clean}, output


# --- what the checks refuse ---------------------------------------------------------------------------

def test_check_release_reports_a_missing_file_and_a_tampered_one(built: release.Release, tmp_path: Path) -> None:
    copy = _copy(built, tmp_path)
    (copy / release.REPORT).write_text("Level\n", encoding="utf-8")
    assert release.check_release(copy) == [f"{release.REPORT}: checksum mismatch"]
    (copy / release.DOCS).unlink()
    assert release.check_release(copy) == [f"missing {release.DOCS}"]


def test_version_problems_name_what_disagrees(built: release.Release) -> None:
    graph = Graph().parse(built.folder / release.TTL, format="turtle")
    assert release.version_problems(graph, built.version, "itkg.ttl") == []
    graph.set((release.ONTOLOGY, OWL.versionInfo, Literal("0.0.1")))
    problems = release.version_problems(graph, built.version, "itkg.ttl")
    assert problems == [f"itkg.ttl: owl:versionInfo is ['0.0.1'], expected '{built.version}'"]


def test_changelog_entry_is_required() -> None:
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert release.changelog_section(changelog, release.package_version()) is not None
    assert release.changelog_section(changelog, "9.9.9") is None


def test_sources_are_refused_for_another_version_and_for_stale_cross_references(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sources as they would be after a careless edit: the release must list every problem."""
    if not SSSOM_SOURCE.is_file():
        pytest.skip("no SSSOM mapping set in this checkout")
    shutil.copy(SSSOM_SOURCE, tmp_path / release.SSSOM)
    turtle = ontology_path().read_text(encoding="utf-8")
    cut = turtle.index("skos:exactMatch <", turtle.index("# --- SKOS cross-references"))
    (tmp_path / release.TTL).write_text(turtle[:cut] + "skos:exactMatch <http://snomed.info/id/1> , <"
                                        + turtle[cut + len("skos:exactMatch <"):], encoding="utf-8")
    monkeypatch.setattr(release, "ontology_path", lambda: tmp_path / release.TTL)
    problems = "\n".join(release.source_problems("9.9.9", reasoner=False))
    assert "owl:versionIRI" in problems and "owl:versionInfo" in problems
    assert "no '## 9.9.9' section" in problems
    assert f"its cross-references differ from {release.SSSOM}" in problems
    assert "is stale" in problems  # itkg.owl and the page no longer match the edited Turtle


def test_command_refuses_to_overwrite_a_release_without_force(
        built: release.Release, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _copy(built, tmp_path)
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert release.main(["--out", str(folder), "--skip-reasoner"]) == 1
    assert "exists" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
