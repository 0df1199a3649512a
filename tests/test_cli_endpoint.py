"""``itkg load``, ``itkg eligibility --endpoint`` and ``itkg query --endpoint`` against a real
Oxigraph server on 127.0.0.1 (issue 4): the contract's queries run on the server give the same
rows as the local engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import run_forked as itkg

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "patients.ttl"
RULES = ROOT / "tests" / "data" / "rules.ttl"
ONTOLOGY = ROOT / "ontology" / "itkg.ttl"

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server():
    import _oxigraph_server as module
    if module.oxigraph_executable() is None:
        pytest.skip("the oxigraph server binary is not installed (pip install oxigraph)")
    instance = module.OxigraphServer(extra_args=["--union-default-graph"]).start()
    try:
        yield instance
    finally:
        instance.stop()


def keyed(stdout: str):
    return {(r["patient"], r["therapy"], r["indication"], r["status"], tuple(r["unmet"]))
            for r in json.loads(stdout)["results"]}


def test_load_then_eligibility_on_the_endpoint_equals_local(server):
    loaded = itkg("load", ONTOLOGY, RULES, "--endpoint", server.query_url, "--graph", "https://example.org/graph/rules")
    assert loaded.returncode == 0, loaded.stderr
    remote = itkg("eligibility", "--format", "json", "--endpoint", server.query_url)
    assert remote.returncode == 0, remote.stderr
    local = itkg("eligibility", "--format", "json", RULES)
    assert keyed(remote.stdout) == keyed(local.stdout)
    # evidence comes from queries/indication-evidence.rq on the server
    assert all(r["evidence"] for r in json.loads(remote.stdout)["results"])


@pytest.mark.slow
def test_query_on_the_endpoint_equals_local(server):
    # The ontology and the rules, as the test above loads them (each xdist worker has its server).
    assert itkg("load", ONTOLOGY, RULES, "--endpoint", server.query_url, "--graph",
                "https://example.org/graph/rules", "--replace").returncode == 0
    assert itkg("load", EXAMPLES, "--endpoint", server.query_url, "--graph",
                "https://example.org/graph/examples", "--replace").returncode == 0
    remote = itkg("query", "cohort-summary", "--format", "json", "--endpoint", server.query_url)
    assert remote.returncode == 0, remote.stderr
    local = itkg("query", "cohort-summary", EXAMPLES, RULES, "--format", "json")
    def rows(text):
        return sorted(json.dumps(b, sort_keys=True) for b in json.loads(text)["results"]["bindings"])
    assert rows(remote.stdout) == rows(local.stdout)


def test_unreachable_endpoint_is_one_clean_line():
    import _oxigraph_server as module
    port = module.free_port()
    done = itkg("eligibility", "--endpoint", f"http://127.0.0.1:{port}/query")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_load_refuses_bad_input_before_uploading(server, tmp_path):
    bad = tmp_path / "bad.ttl"
    bad.write_text("<http://e/a> <http://e/p> .\n")
    done = itkg("load", bad, "--endpoint", server.query_url, "--graph", "https://example.org/graph/bad")
    assert done.returncode == 2 and str(bad) in done.stderr
    count = itkg("query", ROOT / "tests" / "data" / "count-graph-bad.rq", "--format", "json",
                 "--endpoint", server.query_url)
    assert count.returncode == 0, count.stderr
    assert json.loads(count.stdout)["results"]["bindings"][0]["n"]["value"] == "0"
