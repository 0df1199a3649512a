"""Test data and helpers shared by the engine and server tests (standard library only; test
modules and conftest.py load this file by path, because ``--import-mode=importlib`` keeps tests/
off ``sys.path``)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
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
    """A helper module in tests/ by file name, e.g. ``_virtuoso_server``."""
    module_name = f"itkg_tests_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, Path(__file__).with_name(f"{name}.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def run_itkg(*args: Any, env: dict[str, str] | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``itkg ARGS`` in a child process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "itkg.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, check=False, env={**os.environ, **(env or {})})
