"""Every query in queries/ (the contract's and queries/qc/) gives exactly Oxigraph's rows on the
SPARQL servers people run: Virtuoso 7 (Debian), Apache Jena ARQ (Debian) and the Oxigraph server
(issue 13). The data is the ontology, a few QC defects (so the QC queries have rows) and the test
patients; rows are compared as multisets, because order is the renderer's job, not the server's.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyoxigraph
import pytest
from rdflib.term import BNode, Identifier, Literal, URIRef

from itkg import jena
from itkg.endpoint import SparqlEndpoint


import _shared as shared
ONTOLOGY_FILES, PATIENT_FILES, load_test_helper = (shared.ONTOLOGY_FILES, shared.PATIENT_FILES,
                                                   shared.load_test_helper)

ROOT = Path(__file__).resolve().parent.parent
#: Every query itkg ships: the contract's, its QC queries and ROBOT's report queries (qc/report/).
QUERIES = sorted((ROOT / "queries").glob("**/*.rq"))
QUERY_IDS = [str(path.relative_to(ROOT / "queries")) for path in QUERIES]
ARQ_RUNNER = ROOT / "tests" / "java" / "ArqQueries.java"
XSD_STRING = "http://www.w3.org/2001/XMLSchema#string"

Row = tuple[tuple[str, tuple[str, ...]], ...]


def _key(term: Any) -> tuple[str, ...]:
    """A term as a comparable tuple; blank nodes all alike (their labels are each engine's own)."""
    if isinstance(term, (pyoxigraph.NamedNode, URIRef)):
        return ("iri", str(term.value if isinstance(term, pyoxigraph.NamedNode) else term))
    if isinstance(term, (pyoxigraph.BlankNode, BNode)):
        return ("bnode",)
    if isinstance(term, pyoxigraph.Literal):
        if term.language:
            return ("literal", term.value, "@" + term.language.lower())
        datatype = term.datatype.value
        return ("literal", term.value, "" if datatype == XSD_STRING else datatype)
    assert isinstance(term, Literal), term
    if term.language:
        return ("literal", str(term), "@" + term.language.lower())
    datatype = str(term.datatype) if term.datatype else ""
    return ("literal", str(term), "" if datatype == XSD_STRING else datatype)


def _rows(variables: list[str], rows: list[dict[str, Any]]) -> tuple[list[str], Counter[Row]]:
    return variables, Counter(tuple(sorted((name, _key(term)) for name, term in row.items()))
                              for row in rows)


@pytest.fixture(scope="module")
def reference() -> pyoxigraph.Store:
    """The local engine's store (what ``itkg query`` runs on) over the same files."""
    store = pyoxigraph.Store()
    for path in ONTOLOGY_FILES + PATIENT_FILES:
        store.load(path=str(path), format=pyoxigraph.RdfFormat.TURTLE)
    return store


def _local(store: pyoxigraph.Store, query: Path) -> tuple[list[str], Counter[Row]]:
    solutions = store.query(query.read_text(encoding="utf-8"))
    names = [variable.value for variable in solutions.variables]
    return _rows(names, [{name: solution[name] for name in names if solution[name] is not None}
                         for solution in solutions])


def _expected(store: pyoxigraph.Store, query: Path) -> tuple[list[str], Counter[Row]]:
    names, rows = _local(store, query)
    if query.parent == ROOT / "queries":
        assert rows, f"{query.name} should have rows on the test data, or the test proves little"
    return names, rows


# --- Virtuoso ----------------------------------------------------------------------------------

@pytest.mark.virtuoso
@pytest.mark.parametrize("query", QUERIES, ids=QUERY_IDS)
def test_virtuoso_gives_the_local_rows(virtuoso: Any, reference: pyoxigraph.Store, query: Path) -> None:
    # Virtuoso's default graph is the union of every graph, its own system graphs included; the
    # protocol's default-graph-uri narrows it to the test data (the ontology QC queries would
    # otherwise see Virtuoso's own unlabelled classes).
    url = (f"{virtuoso.query_url}?default-graph-uri={quote(shared.ONTOLOGY_GRAPH, safe='')}"
           f"&default-graph-uri={quote(shared.PATIENT_GRAPH, safe='')}")
    with SparqlEndpoint(url, timeout=120, method="form") as endpoint:
        names, rows = endpoint.select(query.read_text(encoding="utf-8"))
    assert _rows(names, rows) == _expected(reference, query)


# --- Oxigraph server ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def oxigraph_server() -> Iterator[str]:
    helper = load_test_helper("_oxigraph_server")
    if helper.oxigraph_executable() is None:
        pytest.skip("the oxigraph server binary is not installed (pip install oxigraph)")
    with helper.OxigraphServer() as server:
        with SparqlEndpoint(server.query_url) as endpoint:
            for path in ONTOLOGY_FILES + PATIENT_FILES:
                endpoint.upload(path.read_bytes(), "text/turtle")
        yield server.query_url


@pytest.mark.server
@pytest.mark.parametrize("query", QUERIES, ids=QUERY_IDS)
def test_oxigraph_server_gives_the_local_rows(oxigraph_server: str, reference: pyoxigraph.Store,
                                             query: Path) -> None:
    with SparqlEndpoint(oxigraph_server) as endpoint:
        names, rows = endpoint.select(query.read_text(encoding="utf-8"))
    assert _rows(names, rows) == _expected(reference, query)


# --- Jena ARQ ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def arq_results(jena_required: None) -> Iterator[list[dict[str, Any]]]:
    """Every query run once by Jena ARQ in one JVM (tests/java/ArqQueries.java)."""
    setup = jena.find()
    assert setup is not None
    with tempfile.TemporaryDirectory(prefix="itkg-arq-") as folder:
        work = Path(folder)
        done = subprocess.run(
            [setup.java, "-Xmx512m", "-cp", jena.classpath(setup, work), str(ARQ_RUNNER), str(work),
             *map(str, ONTOLOGY_FILES + PATIENT_FILES), "--", *map(str, QUERIES)],
            capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        yield [json.loads((work / f"{index}.json").read_text(encoding="utf-8"))
               for index in range(len(QUERIES))]


def _json_term(value: dict[str, str]) -> Identifier:
    if value["type"] == "uri":
        return URIRef(value["value"])
    if value["type"] == "bnode":
        return BNode(value["value"])
    if "xml:lang" in value:
        return Literal(value["value"], lang=value["xml:lang"])
    return Literal(value["value"], datatype=value.get("datatype"))


@pytest.mark.java
@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(QUERIES)), ids=QUERY_IDS)
def test_jena_arq_gives_the_local_rows(arq_results: list[dict[str, Any]], reference: pyoxigraph.Store,
                                       index: int) -> None:
    document = arq_results[index]
    rows = [{name: _json_term(value) for name, value in binding.items()}
            for binding in document["results"]["bindings"]]
    assert _rows(document["head"]["vars"], rows) == _expected(reference, QUERIES[index])


@pytest.mark.parametrize("timeout", [60.0, 0.0001])
def test_the_oxigraph_store_on_disk_leaves_no_folder_behind(tmp_path: Path, timeout: float,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A large input's Oxigraph store is built on disk, in a private temporary folder (patient
    data): removed by the parent after the query, also when the child was killed at the deadline.
    The size from which the store goes to disk is lowered to nothing here, so the example is one."""
    import tempfile
    from itkg import sparql
    from itkg.errors import QueryTimeout
    from itkg.resources import data_root
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setattr(sparql, "DISK_STORE_MIN_BYTES", 0)
    query = (data_root() / "queries" / "eligible-therapies.rq").read_text(encoding="utf-8")
    example = data_root() / "examples" / "patients.ttl"
    if timeout == 60.0:
        result = sparql.select_files(query, example, engine="oxigraph", timeout=timeout)
        assert any("example.org/patient/anna" in str(row.get("patient")) for row in result.rows)
    else:
        # A query no machine ends within the deadline (a three-way cross product of the data and
        # the ontology): the contract's own query could finish, and its answer wait in the pipe,
        # before a parent slowed by other work looked at the clock (seen once on a loaded CI run).
        endless = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }"
        with pytest.raises(QueryTimeout):
            sparql.select_files(endless, example, engine="oxigraph", timeout=timeout)
    assert list(scratch.iterdir()) == []


def test_only_a_large_input_gets_a_store_on_disk(tmp_path: Path) -> None:
    """The store goes to disk from :data:`itkg.sparql.DISK_STORE_MIN_BYTES` of input (a folder
    counts by its files): a store on disk costs time, one in memory costs memory."""
    from itkg import sparql
    small = tmp_path / "a.nt"
    small.write_bytes(b"<urn:a> <urn:b> <urn:c> .\n")
    folder = tmp_path / "bulk"
    folder.mkdir()
    (folder / "Condition.ndjson").write_bytes(b"x" * 1000)
    (folder / "README.txt").write_bytes(b"x" * 500)  # not read from a Bulk export: not counted
    assert sparql._input_bytes([small, folder]) == small.stat().st_size + 1000
    assert sparql._input_bytes(tmp_path / "missing.nt") == 0
    assert sparql.DISK_STORE_MIN_BYTES > 100 * 1024**2


def test_a_store_folder_left_by_a_killed_process_is_removed_by_the_next_query(tmp_path: Path) -> None:
    """A process killed by SIGKILL cannot remove its store folder (patient data); the next query
    removes the folders of processes that are gone, and no other."""
    import os
    import sys
    from itkg.resources import data_root
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = scratch / f"itkg-store-{gone.stdout.strip()}-abc"
    orphan.mkdir()
    (orphan / "000001.sst").write_bytes(b"patient data")
    alive = scratch / f"itkg-store-{os.getpid()}-abc"  # this test's own process is alive
    alive.mkdir()
    other = scratch / "itkg-store-notapid"
    other.mkdir()
    run = subprocess.run([sys.executable, "-m", "itkg.cli", "query", "eligible-therapies",
                          str(data_root() / "examples" / "patients.ttl"), "--engine", "oxigraph", "--format", "csv"],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "TMPDIR": str(scratch)})
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in scratch.iterdir()) == sorted([alive.name, other.name])
