"""Test data shared by the engine and server tests (``import _shared``: pyproject puts tests/ on
the path). The CLI runner is :func:`support.run_forked`."""

from __future__ import annotations

import importlib
from pathlib import Path

from support import run_forked as run_itkg  # noqa: F401 - re-exported for the server tests
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: The files every engine test loads: the ontology, QC defects beside it, and patients.
ONTOLOGY_FILES = (ROOT / "ontology" / "itkg.ttl", ROOT / "tests" / "data" / "engines" / "qc-defects.ttl")
PATIENT_FILES = (ROOT / "tests" / "data" / "rules.ttl", ROOT / "examples" / "patients.ttl")
ONTOLOGY_GRAPH = "https://example.org/graph/ontology"
PATIENT_GRAPH = "https://example.org/graph/patients"
#: Virtuoso's row cap in the tests: above every contract query's rows on the test data, below the
#: number of triples, so that a query over every triple is cut.
VIRTUOSO_MAX_ROWS = 1000
#: The dedicated user that loads data into Virtuoso over HTTP (Digest), as docs/endpoint.md says.
VIRTUOSO_LOADER = ("itkg_loader", "loader-secret-7")


def load_test_helper(name: str) -> Any:
    """A helper module in tests/ by name, e.g. ``_virtuoso_server``."""
    return importlib.import_module(name)
