"""``itkg load`` takes FHIR too: a Bulk export mapped to §2 triples and uploaded to a real Oxigraph
server on 127.0.0.1; the contract's queries on the server give the local rows."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BULK = ROOT / "examples" / "fhir-bulk"
ONTOLOGY = ROOT / "ontology" / "itkg.ttl"

pytestmark = pytest.mark.server


def _server_module():
    spec = importlib.util.spec_from_file_location("itkg_tests_oxigraph_server_fhir",
                                                  Path(__file__).with_name("_oxigraph_server.py"))
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def itkg(*args: object) -> subprocess.CompletedProcess:
    exe = shutil.which("itkg")
    command = [exe] if exe else [sys.executable, "-m", "itkg.cli"]
    return subprocess.run(command + [str(a) for a in args], capture_output=True, text=True, timeout=300)


def test_load_a_bulk_export_then_eligibility_on_the_endpoint_equals_local() -> None:
    module = _server_module()
    if module.oxigraph_executable() is None:
        pytest.skip("the oxigraph server binary is not installed (pip install oxigraph)")
    server = module.OxigraphServer(extra_args=["--union-default-graph"]).start()
    try:
        loaded = itkg("load", ONTOLOGY, BULK, "--endpoint", server.query_url)
        assert loaded.returncode == 0, loaded.stderr
        remote = itkg("eligibility", "--format", "json", "--endpoint", server.query_url)
        assert remote.returncode == 0, remote.stderr
    finally:
        server.stop()
    local = itkg("eligibility", "--format", "json", BULK)
    assert local.returncode == 0, local.stderr

    def keyed(stdout: str) -> set:
        return {(r["patient"], r["therapy"], r["indication"], r["status"], tuple(r["unmet"]))
                for r in json.loads(stdout)["results"]}

    assert keyed(remote.stdout) == keyed(local.stdout)
    assert len(keyed(local.stdout)) == 3
