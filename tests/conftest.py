"""Fixtures shared by the test modules."""

from __future__ import annotations

import shutil

import pytest

from itkg import jena, turbo


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
    import sys

    if turbo.available():
        return
    if sys.version_info < (3, 11):
        pytest.skip("pyshacl-turbo needs Python 3.11 or newer")
    pytest.fail(f"pyshacl-turbo is not installed: pip install -e '.[test]' (it needs {turbo.REQUIREMENT})")


# --- a private Virtuoso server, shared by the test modules that need one ---------------------

import importlib.util  # noqa: E402
import sys  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402


def _shared() -> Any:
    """tests/_shared.py, loaded by path (``--import-mode=importlib`` keeps tests/ off sys.path)."""
    name = "itkg_tests__shared"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("_shared.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def virtuoso(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A private Virtuoso 7 on 127.0.0.1 holding the ontology and the QC defects (loaded with
    its bulk loader) and the patients (loaded with ``itkg load`` over HTTP Digest as a dedicated
    user). Skips only where Virtuoso is not installed; CI installs it (.ci/run)."""
    shared = _shared()
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
