"""Fixtures shared by the test modules. Plain helpers (CLI runners, the logging HTTP server,
process and module helpers) are in ``support.py``; both are the one place for test scaffolding.

The suite runs on two pytest-xdist workers (``-n 2 --dist loadgroup``, the README's command): a
test is sent to whichever worker is free, except that every test using one of the costly session
fixtures in :data:`ONE_WORKER` goes to the same worker, so that the fixture starts once per run,
not once per worker.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from rdflib import Graph

from itkg import jena, turbo
from itkg.resources import ontology_path, shapes_paths


@pytest.fixture(scope="session")
def jena_required() -> None:
    """The Jena SHACL back-end must be usable: skip only where there is no Java at all; Java
    without the Jena jars (or older than 11) is a broken setup, and fails."""
    if jena.available():
        return
    if shutil.which("java") is None:
        pytest.skip("java is not installed")
    pytest.fail(f"java is installed but the Jena back-end is not usable: install libapache-jena-java "
                f"(and java {jena.MIN_JAVA} or newer)")


@pytest.fixture(scope="session")
def turbo_required() -> None:
    """The pyshacl-turbo back-end must be usable: skip only on Python 3.10, which it does not
    support; elsewhere the test extra installs it, so its absence is a broken setup, and fails."""
    if turbo.available():
        return
    if sys.version_info < (3, 11):
        pytest.skip("pyshacl-turbo needs Python 3.11 or newer")
    pytest.fail(f"pyshacl-turbo is not installed: pip install -e '.[test]' (it needs {turbo.REQUIREMENT})")


#: Session and module fixtures that start a server or compute a reference for a long time, and the
#: xdist group of the tests using them (one worker runs the whole group, so the fixture runs once):
#: the Virtuoso server, the release build, whole-graph pySHACL on every shapes test graph, Jena ARQ
#: on every contract query, the planned-therapy rules' validation, the ontology's QC findings, the
#: four SHACL engines' reports on the contract's edge cases and the rules how-to's built checkout
#: (each of the last two took 5 to 11 s and ran on both workers).
ONE_WORKER = {fixture: fixture for fixture in ("virtuoso", "built", "whole_graph_pyshacl", "arq_results",
                                                "planned_rules", "findings", "edge_reports", "checkout")}


def pytest_configure_node(node: Any) -> None:
    """xdist (controller): tell each worker the ``COLUMNS`` of this run."""
    node.workerinput["itkg_columns"] = os.environ.get("COLUMNS")


def pytest_configure(config: pytest.Config) -> None:
    """xdist (worker): a worker starts with ``COLUMNS=80`` where the run had none, and the CLI
    sizes its tables by ``COLUMNS``; give the worker the run's own value (or none)."""
    worker = getattr(config, "workerinput", None)
    if worker is not None and "itkg_columns" in worker:
        if worker["itkg_columns"] is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = worker["itkg_columns"]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group the tests of a costly session fixture (before xdist reads the groups), and put the
    ``slow`` tests first.

    xdist hands out the groups first (the largest first), then single tests in collection order
    as workers free up: a long test handed out last keeps one worker busy while the other has
    nothing left. Started first, the long tests run while the many short ones fill in around
    them and even out the end. (A stable sort: the order is otherwise the collection's, the same
    on every worker, as xdist requires.)"""
    for item in items:
        for fixture, group in ONE_WORKER.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


# --- a private Virtuoso server, shared by the test modules that need one ---------------------



@pytest.fixture(scope="session")
def virtuoso(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A private Virtuoso 7 on 127.0.0.1 holding the ontology and the QC defects (loaded with
    its bulk loader) and the patients (loaded with ``itkg load`` over HTTP Digest as a dedicated
    user). Skips only where Virtuoso is not installed; CI installs it (.ci/run)."""
    import _shared as shared
    helper = shared.load_test_helper("_virtuoso_server")
    if helper.virtuoso_executable() is None or helper.isql_executable() is None:
        pytest.skip("Virtuoso is not installed (Debian: virtuoso-opensource)")
    data = tmp_path_factory.mktemp("virtuoso-data")
    for path in shared.ONTOLOGY_FILES:
        (data / path.name).write_bytes(path.read_bytes())
    server = helper.VirtuosoServer(tmp_path_factory.mktemp("virtuoso-db"),
                                   max_rows=shared.VIRTUOSO_MAX_ROWS, data_dirs=(data,))
    server.start()
    try:
        server.bulk_load(data, "*.ttl", shared.ONTOLOGY_GRAPH)
        user, password = shared.VIRTUOSO_LOADER
        server.isql(f"DB.DBA.USER_CREATE ('{user}', '{password}');\nGRANT SPARQL_UPDATE TO \"{user}\";")
        loaded = shared.run_itkg("load", *shared.PATIENT_FILES, "--endpoint", server.query_url,
                                 "--store-url", server.auth_store_url, "--graph", shared.PATIENT_GRAPH,
                                 env={"ITKG_ENDPOINT_USER": user, "ITKG_ENDPOINT_PASSWORD": password})
        assert loaded.returncode == 0, loaded.stderr
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ontology() -> Graph:
    """The ontology, as an rdflib graph (read once; tests must not modify it)."""
    return Graph().parse(ontology_path())


@pytest.fixture(scope="session")
def shapes() -> Graph:
    """Every shapes file, as one rdflib graph (read once; tests must not modify it)."""
    graph = Graph()
    for path in shapes_paths():
        graph.parse(path)
    return graph


#: Part of the name of every file a test plants to catch an unwanted read.
PROBE_MARKER = "itkgprobe"
_OPENED: list[str] = []
_recorder_installed = False


def _record_opens(event: str, args: tuple[object, ...]) -> None:
    if event in ("open", "urllib.Request") and PROBE_MARKER in str(args[0]):
        _OPENED.append(str(args[0]))


@pytest.fixture
def opened() -> list[str]:
    """Paths containing ``itkgprobe`` that anything in this process opens from now on (a test
    clears it after writing its own probe files). Audit hooks cannot be removed, so one hook is
    installed once and only looks at probe paths."""
    global _recorder_installed
    if not _recorder_installed:
        sys.addaudithook(_record_opens)
        _recorder_installed = True
    _OPENED.clear()
    return _OPENED
