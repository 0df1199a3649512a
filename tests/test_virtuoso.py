"""itkg against a private Virtuoso 7 (Debian ``virtuoso-opensource``) on 127.0.0.1 (issue 13):
the same eligibility rows as the local engine, uploads with HTTP Digest, and every way Virtuoso
signals a partial answer reported as an error, never as an answer. The server is started once per
test session (the ``virtuoso`` fixture in conftest.py); every query file is checked against it in
tests/test_query_engines.py."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from itkg.endpoint import Credentials, SparqlEndpoint
from itkg.errors import EndpointError

pytestmark = pytest.mark.virtuoso


import _shared as shared  # noqa: E402
run_itkg = shared.run_itkg
ENGINES = shared.ROOT / "tests" / "data" / "engines"


def _keyed(stdout: str) -> set[tuple[Any, ...]]:
    """Eligibility rows with their evidence; blank node labels (the server's own) made alike."""
    return {(row["patient"], row["therapy"], row["indication"], row["status"], tuple(row["unmet"]),
             tuple(re.sub(r"_:\S+", "_:", fact) for fact in row["evidence"]))
            for row in json.loads(stdout)["results"]}


@pytest.mark.slow
def test_eligibility_on_virtuoso_equals_the_local_engine(virtuoso: Any) -> None:
    remote = run_itkg("eligibility", "--format", "json", "--endpoint", virtuoso.query_url)
    assert remote.returncode == 0, remote.stderr
    # The same queries run locally give the same rows, evidence included; the native engine
    # words its evidence differently, so only its decisions are compared.
    local = run_itkg("eligibility", "--format", "json", "--engine", "oxigraph", *shared.PATIENT_FILES)
    native = run_itkg("eligibility", "--format", "json", *shared.PATIENT_FILES)
    assert local.returncode == 0 and native.returncode == 0, local.stderr + native.stderr
    rows = _keyed(remote.stdout)
    assert len(rows) > 20 and rows == _keyed(local.stdout)
    assert {row[:5] for row in rows} == {row[:5] for row in _keyed(native.stdout)}
    assert json.loads(remote.stdout)["results"] == sorted(
        json.loads(remote.stdout)["results"], key=lambda r: (r["patient"], r["therapy"], r["indication"]))


@pytest.mark.slow
def test_query_on_virtuoso_equals_local_in_the_same_order(virtuoso: Any) -> None:
    """Rows are sorted where itkg renders them, so server and local output are the same text."""
    for name in ("worklist",):
        remote = run_itkg("query", name, "--format", "csv", "--endpoint", virtuoso.query_url)
        local = run_itkg("query", name, *shared.PATIENT_FILES, "--format", "csv")
        assert remote.returncode == 0, remote.stderr
        assert remote.stdout == local.stdout and remote.stdout.count("\n") > 3


def test_a_result_cut_at_resultsetmaxrows_is_an_error(virtuoso: Any) -> None:
    done = run_itkg("query", ENGINES / "all-triples.rq", "--endpoint", virtuoso.query_url)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == (
        f"itkg: error: {virtuoso.query_url} cut the answer at {shared.VIRTUOSO_MAX_ROWS} rows "
        f"(X-SPARQL-MaxRows {shared.VIRTUOSO_MAX_ROWS}); itkg does not use partial answers: raise the "
        "server's row limit (Virtuoso: ResultSetMaxRows in the [SPARQL] section of virtuoso.ini) "
        "above the number of rows the query can return")


def test_a_partial_answer_after_virtuosos_anytime_timeout_is_an_error(virtuoso: Any) -> None:
    """Virtuoso answers 200 with what it found in 300 ms and X-SQL-State: S1TAT."""
    done = run_itkg("query", ENGINES / "slow-count.rq", "--endpoint", virtuoso.query_url + "?timeout=300")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"itkg: error: {virtuoso.query_url} sent a partial answer "
                                  "(X-SQL-State S1TAT")


def test_a_declared_row_cap_is_enforced(virtuoso: Any) -> None:
    done = run_itkg("query", "indication-criteria", "--endpoint", virtuoso.query_url,
                    "--endpoint-max-rows", "3")
    assert done.returncode == 2 and "as many as the server's declared row cap (3)" in done.stderr


def test_digest_upload_and_refused_password(virtuoso: Any, tmp_path: Path) -> None:
    user, password = shared.VIRTUOSO_LOADER
    secret = tmp_path / "credentials"
    secret.write_text(f"{user}:{password}\n", encoding="utf-8")
    secret.chmod(0o600)
    graph = "https://example.org/graph/digest-test"
    data = tmp_path / "one.ttl"
    data.write_text("<https://example.org/x> <https://example.org/p> 1 .\n", encoding="utf-8")
    loaded = run_itkg("load", data, "--endpoint", virtuoso.query_url, "--store-url",
                      virtuoso.auth_store_url, "--graph", graph, "--credentials", secret)
    assert loaded.returncode == 0, loaded.stderr
    with SparqlEndpoint(virtuoso.query_url) as endpoint:
        assert endpoint.ask(f"ASK {{ GRAPH <{graph}> {{ <https://example.org/x> ?p 1 }} }}")
    with SparqlEndpoint(virtuoso.query_url, store_url=virtuoso.auth_store_url,
                        credentials=Credentials(user, "not-the-Passw0rd")) as endpoint, \
            pytest.raises(EndpointError) as caught:
        endpoint.upload(b"<urn:x:a> <urn:x:p> 2 .", "application/n-triples", graph=graph)
    assert str(caught.value) == (f"{virtuoso.auth_store_url} requires authentication for the upload "
                                 "(HTTP 401): the credentials were refused")


def test_load_without_a_graph_says_why_it_failed(virtuoso: Any) -> None:
    user, password = shared.VIRTUOSO_LOADER
    done = run_itkg("load", shared.ROOT / "examples" / "patients.ttl", "--endpoint", virtuoso.query_url,
                    "--store-url", virtuoso.auth_store_url,
                    env={"ITKG_ENDPOINT_USER": user, "ITKG_ENDPOINT_PASSWORD": password})
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"itkg: error: {virtuoso.auth_store_url} failed on the upload (HTTP 500): The request to SPARQL "
        '1.1 Graph Store endpoint contains "default" param but the endpoint is not configured to have '
        "default graph (the server may have no writable default graph, as Virtuoso has none: give a "
        "named graph with --graph)")
    assert password not in done.stderr


def test_upload_errors_quote_no_data(virtuoso: Any) -> None:
    """Virtuoso's loader quotes the text it choked on; itkg shows its reason, scrubbed."""
    user, password = shared.VIRTUOSO_LOADER
    with SparqlEndpoint(virtuoso.query_url, store_url=virtuoso.auth_store_url,
                        credentials=Credentials(user, password)) as endpoint, \
            pytest.raises(EndpointError) as caught:
        endpoint.upload(b'<https://example.org/patient/zoe-quarrington> <urn:x:name> "Zoe" ;; 7',
                        "text/turtle", graph="https://example.org/graph/broken")
    message = str(caught.value)
    assert message.startswith(f"{virtuoso.auth_store_url} failed on the upload (HTTP 500): ")
    assert len(message) > len(virtuoso.auth_store_url) + 40, "the server's reason is shown"
    for secret in ("zoe", "quarrington", "example.org"):
        assert secret not in message.lower()


def test_default_graph_uri_in_the_endpoint_url_selects_the_graphs(virtuoso: Any) -> None:
    """Virtuoso's default graph is the union of every graph; the protocol's default-graph-uri
    parameter, given in the endpoint URL, narrows it."""
    def patients(url: str) -> str:
        done = run_itkg("query", ENGINES / "count-patients.rq", "--format", "json", "--endpoint", url)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["results"]["bindings"][0]["n"]["value"]

    assert int(patients(virtuoso.query_url)) > 20
    assert patients(f"{virtuoso.query_url}?default-graph-uri={shared.ONTOLOGY_GRAPH}") == "0"
