"""``itkg load`` takes FHIR too: a Bulk export mapped to §2 triples and uploaded to a real Oxigraph
server on 127.0.0.1; the contract's queries on the server give the local rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import run_forked as itkg

ROOT = Path(__file__).resolve().parent.parent
BULK = ROOT / "examples" / "fhir-bulk"
ONTOLOGY = ROOT / "ontology" / "itkg.ttl"

pytestmark = pytest.mark.server


def test_load_a_bulk_export_then_eligibility_on_the_endpoint_equals_local() -> None:
    import _oxigraph_server as module
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
