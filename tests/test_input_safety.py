"""Issue 3, "no harm from any input", at the level users meet it: ``itkg.load``, the Python API
and the ``itkg`` console script run as a real process (forked from a warm interpreter, support.run_forked).

tests/test_guards.py checks each gate on its own; these tests check that the loader and every
command actually route input through the gates, and that what users see is right: exit code 2
with one line on standard error that names the file and quotes no patient value, no request to
the network, no file read that was not asked for, no leftover process or temporary file, and no
input file changed. Every test is offline: a logging HTTP server on 127.0.0.1 stands in for the
network, and the autouse ``ws`` fixture fails any test after which that server saw a connection
or an input file's bytes changed. Inputs that crash the raw libraries (deep JSON-LD segfaults
pyoxigraph) only ever go through itkg, and in-process API calls that might crash run in a child
Python so a regression fails one test instead of killing the run.

Tests marked ``xfail(strict=True, reason="BUG: ...")`` document defects found here; the lead
fixes the code and removes the marker.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path

import pyoxigraph as ox
import pytest
from support import (HAS_PROC, Witness, alive, descendants, itkg_command, kill_all, run_forked as itkg_cli,
                     run_itkg, wait_for)
import rdflib

import itkg
from itkg.errors import (IllTypedLiteralError, InputError, InputTooLargeError, ItkgError,
                         ParseError, UnsafeInputError)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "patients.ttl"
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
XSD = "http://www.w3.org/2001/XMLSchema#"
ITKG = "https://w3id.org/itkg/"
#: Planted in inputs as a patient value; it must never show up where it was not asked for.
SECRET = "Zq7-Confidential-8d3f"
#: Part of the name of every file a test plants to catch an unwanted read.
PROBE = "itkgprobe-safety"  # holds the marker of the ``opened`` fixture (conftest)


# ---------------------------------------------------------------------------------------------
# Witnesses: a logging HTTP server on 127.0.0.1, a recorder of file opens, input checksums
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server() -> Iterator[Witness]:
    with Witness(SECRET) as witness:
        yield witness




def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Workspace:
    """A test's folder. Every file written or registered here is an input whose bytes must not
    change; ``_tmp_files`` finds temporary files an output writer left behind."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._hashes: dict[Path, str] = {}

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
        return self.track(path)

    def track(self, path: Path) -> Path:
        self._hashes[path] = _sha256(path)
        return path

    def changed(self) -> list[str]:
        return [str(p) for p, digest in self._hashes.items()
                if not p.is_file() or _sha256(p) != digest]

    def temp_files(self) -> list[str]:
        return sorted(str(p) for p in self.root.rglob("*.tmp"))


@pytest.fixture(autouse=True)
def ws(tmp_path: Path, server: Witness) -> Iterator[Workspace]:
    """Every test: inputs are never modified, no temp file is left, and nothing reached the
    (stand-in) network."""
    server.connections.clear()
    server.requests.clear()
    workspace = Workspace(tmp_path)
    workspace.track(EXAMPLES)
    yield workspace
    assert workspace.changed() == [], "an input file was modified"
    assert workspace.temp_files() == [], "a temporary output file was left behind"
    assert server.requests == [] and server.connections == [], "itkg reached the network"


# ---------------------------------------------------------------------------------------------
# Running the console script
# ---------------------------------------------------------------------------------------------

def itkg_many(runs: list[list[str | Path]], cwd: Path) -> list[subprocess.CompletedProcess[str]]:
    """Several independent CLI runs, one after the other (the suite's workers use the cores)."""
    return [itkg_cli(*args, cwd=cwd) for args in runs]


def assert_refused(done: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 2, exactly one line on standard error, no traceback, no patient value, nothing on
    standard output; the line contains every needle (the file name, the kind of problem)."""
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("itkg: error: ")
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert SECRET not in done.stderr and SECRET not in done.stdout
    assert done.stdout == ""
    return lines[0]


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run API code in a child Python: a native crash there fails one test, not the session."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, cwd=cwd, timeout=180)


DUMP_QUERY = "SELECT ?s ?p ?o WHERE { ?s ?p ?o }\n"


@pytest.fixture
def dump(ws: Workspace) -> Path:
    """A query that prints every triple: if a context, entity or file were loaded, its content
    would show up in the output."""
    return ws.write("dump.rq", DUMP_QUERY)


PATIENT_TTL = (
    "@prefix itkg: <https://w3id.org/itkg/> .\n"
    "@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .\n"
    "<https://example.org/p> a itkg:Patient ;\n"
    "  itkg:hasCondition [ a itkg:CancerPain ] ;\n"
    "  itkg:receivedTreatment [ a itkg:OralOpioidTherapy ; itkg:hasOutcome itkg:SevereSideEffects ] .\n")


# ---------------------------------------------------------------------------------------------
# RDF/XML: XXE, external DTDs, billion laughs (also in UTF-16)
# ---------------------------------------------------------------------------------------------

def _rdfxml(prolog: str, value: str) -> str:
    return (f'<?xml version="1.0"?>\n{prolog}\n'
            f'<rdf:RDF xmlns:rdf="{RDF_NS}" xmlns:ex="urn:ex:">\n'
            f'  <rdf:Description rdf:about="urn:ex:p1"><ex:name>{value}</ex:name></rdf:Description>\n'
            "</rdf:RDF>\n")


def _billion_laughs(levels: int = 8) -> str:
    """883 bytes that pyoxigraph expands to a 300 MB literal (reference/security.md §1)."""
    entities = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol%d;" % (i - 1)) * 10}">' for i in range(1, levels + 1))
    return _rdfxml(f"<!DOCTYPE rdf:RDF [{entities}]>", f"&lol{levels};")


def _dtd_documents(ws: Workspace, url: str) -> dict[str, bytes]:
    secret = ws.write(f"{PROBE}-secret.txt", SECRET)
    laughs = _billion_laughs()
    return {
        "xxe-file": _rdfxml(f'<!DOCTYPE rdf:RDF [<!ENTITY x SYSTEM "{secret.as_uri()}">]>',
                            "&x;").encode(),
        "xxe-http": _rdfxml(f'<!DOCTYPE rdf:RDF [<!ENTITY x SYSTEM "{url}/dtd-xxe">]>',
                            "&x;").encode(),
        "external-dtd": _rdfxml(f'<!DOCTYPE rdf:RDF SYSTEM "{url}/dtd-external">',
                                "&remote;").encode(),
        "parameter-entity": _rdfxml(
            f'<!DOCTYPE rdf:RDF [<!ENTITY % p SYSTEM "{url}/dtd-param"> %p;]>', "x").encode(),
        "billion-laughs": laughs.encode(),
        "billion-laughs-utf16": laughs.replace('version="1.0"', 'version="1.0" encoding="UTF-16"')
        .encode("utf-16"),
        "billion-laughs-utf16be-no-bom": laughs.replace(
            'version="1.0"', 'version="1.0" encoding="UTF-16BE"').encode("utf-16-be"),
        "lowercase-doctype": _rdfxml('<!doctype rdf:RDF [<!ENTITY x "expanded">]>', "&x;").encode(),
    }


DTD_CASES = ["xxe-file", "xxe-http", "external-dtd", "parameter-entity", "billion-laughs",
             "billion-laughs-utf16", "billion-laughs-utf16be-no-bom", "lowercase-doctype"]


@pytest.mark.parametrize("case", DTD_CASES)
def test_rdfxml_with_a_dtd_is_refused_by_the_cli(ws: Workspace, server: Witness, dump: Path,
                                                 case: str) -> None:
    path = ws.write(f"{case}.rdf", _dtd_documents(ws, server.url)[case])
    runs: list[list[str | Path]] = [["eligibility", path.name]]
    if case in ("xxe-file", "xxe-http", "external-dtd"):
        # The query prints every triple: an expanded entity or a fetched file would show.
        runs.append(["query", dump.name, path.name])
    for done in itkg_many(runs, ws.root):
        assert_refused(done, path.name, "DTD")


@pytest.mark.parametrize("case", DTD_CASES)
def test_rdfxml_with_a_dtd_is_refused_by_the_api_without_reading_anything(
        ws: Workspace, server: Witness, opened: list[str], case: str) -> None:
    documents = _dtd_documents(ws, server.url)
    path = ws.write(f"{case}.rdf", documents[case])
    opened.clear()
    with pytest.raises(UnsafeInputError, match="DTD") as caught:
        itkg.load(path)
    assert SECRET not in str(caught.value) and opened == []


# ---------------------------------------------------------------------------------------------
# JSON-LD: contexts that name a document, deep nesting
# ---------------------------------------------------------------------------------------------

def _jsonld_documents(ws: Workspace, url: str) -> dict[str, bytes]:
    context = ws.write(f"{PROBE}-context.jsonld",
                       json.dumps({"@context": {"name": f"urn:{SECRET}:name"}}))
    body = {"@id": "urn:ex:p", "name": "x"}

    def doc(context_value: object, **extra: object) -> bytes:
        return json.dumps({"@context": context_value, **body, **extra}).encode()

    return {
        "remote-http": doc(f"{url}/ctx-remote"),
        "file-uri": doc(context.as_uri()),
        "bare-path": doc(context.name),
        "import": doc({"@version": 1.1, "@import": f"{url}/ctx-import"}),
        "list-with-string": doc([{"ex": "urn:ex:"}, f"{url}/ctx-list"]),
        "scoped-in-term": doc({"knows": {"@id": "urn:ex:knows", "@context": f"{url}/ctx-term"}}),
        "nested-node": json.dumps({"@id": "urn:ex:p", "urn:ex:knows": {
            "@context": context.as_uri(), "name": "x"}}).encode(),
        "escaped-key": doc(f"{url}/ctx-escaped").replace(b'"@context"', b'"\\u0040context"'),
        "utf16": doc(f"{url}/ctx-utf16").decode().encode("utf-16"),
    }


JSONLD_CASES = ["remote-http", "file-uri", "bare-path", "import", "list-with-string",
                "scoped-in-term", "nested-node", "escaped-key", "utf16"]


@pytest.mark.parametrize("case", JSONLD_CASES)
def test_jsonld_context_naming_a_document_is_refused_by_the_cli(ws: Workspace, server: Witness,
                                                                dump: Path, case: str) -> None:
    path = ws.write(f"{case}.jsonld", _jsonld_documents(ws, server.url)[case])
    runs: list[list[str | Path]] = [["eligibility", path.name]]
    if case in ("remote-http", "file-uri", "bare-path", "import"):
        # A loaded context would map "name" to an IRI holding SECRET; the dump would print it.
        runs.append(["query", dump.name, path.name])
    for done in itkg_many(runs, ws.root):
        assert_refused(done, path.name, "context")


@pytest.mark.parametrize("case", JSONLD_CASES)
def test_jsonld_context_naming_a_document_is_refused_by_the_api_without_reading_it(
        ws: Workspace, server: Witness, opened: list[str], monkeypatch: pytest.MonkeyPatch,
        case: str) -> None:
    path = ws.write(f"{case}.jsonld", _jsonld_documents(ws, server.url)[case])
    monkeypatch.chdir(ws.root)  # so that the bare path would resolve, were it ever read
    opened.clear()
    with pytest.raises(UnsafeInputError, match="context"):
        itkg.load(path)
    with pytest.raises(UnsafeInputError, match="context"):
        itkg.validate(path)
    assert opened == []


def _deep_json(depth: int, kind: str) -> str:
    if kind == "objects":
        return '{"@id": "urn:ex:p", "urn:ex:p": ' * depth + '"x"' + "}" * depth
    return '{"@id": "urn:ex:p", "urn:ex:p": ' + "[" * depth + '"x"' + "]" * depth + "}"


@pytest.mark.parametrize("depth", [5000, 100_000])
@pytest.mark.parametrize("kind", ["objects", "arrays"])
def test_deep_jsonld_is_refused_without_a_crash(ws: Workspace, depth: int, kind: str) -> None:
    """pyoxigraph segfaults at depth 5000; itkg must refuse first, from the CLI and the API."""
    path = ws.write("deep.jsonld", _deep_json(depth, kind))
    assert_refused(itkg_cli("eligibility", path.name, cwd=ws.root), path.name, "nested")
    done = run_python("""
        import itkg
        try:
            itkg.load("deep.jsonld")
        except itkg.InputTooLargeError as error:
            print("refused:", error)
        """, ws.root)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.startswith("refused: deep.jsonld") and "nested" in done.stdout


@pytest.mark.parametrize("document", ["true", "null", "42", "1.5"])
def test_json_scalar_document_is_an_input_error(ws: Workspace, document: str) -> None:
    path = ws.write("scalar.jsonld", document)
    try:
        itkg.load(path)
    except InputError:
        pass
    done = itkg_cli("eligibility", path.name, cwd=ws.root)
    assert "internal error" not in done.stderr, done.stderr
    assert done.returncode == 0 or assert_refused(done, path.name)


def _deep_turtle(depth: int, kind: str) -> str:
    opening, closing = ("[ <urn:ex:next> ", " ]") if kind == "blank-nodes" else ("( ", " )")
    return (PATIENT_TTL + "<https://example.org/p> <urn:ex:note> "
            + opening * depth + '"x"' + closing * depth + " .\n")


DEEP_TURTLE_COMMANDS = [["eligibility"], ["eligibility", "--engine", "rdflib"],
                        ["eligibility", "--format", "turtle"], ["validate"],
                        ["explain", "https://example.org/p"]]


@pytest.mark.parametrize("kind", ["blank-nodes", "collections"])
def test_deep_turtle_gives_a_result_or_a_clean_refusal(ws: Workspace, kind: str) -> None:
    path = ws.write("deep.ttl", _deep_turtle(5000, kind))
    commands = DEEP_TURTLE_COMMANDS if kind == "blank-nodes" else [["eligibility"], ["validate"]]
    runs: list[list[str | Path]] = [[*command, path.name] for command in commands]
    for command, done in zip(commands, itkg_many(runs, ws.root)):
        assert "Traceback" not in done.stderr, command
        if done.returncode == 2:
            assert_refused(done, path.name)
        else:
            assert done.returncode == 0, (command, done.returncode, done.stderr)
            assert done.stderr == "", command


# ---------------------------------------------------------------------------------------------
# owl:imports
# ---------------------------------------------------------------------------------------------

def _imports_ttl(url: str) -> str:
    return (PATIENT_TTL + "@prefix owl: <http://www.w3.org/2002/07/owl#> .\n"
            f"<urn:ex:ontology> a owl:Ontology ; owl:imports <{url}/owl/imported> .\n")


@pytest.mark.slow
def test_owl_imports_in_a_patient_file_is_refused_by_every_command(ws: Workspace, server: Witness,
                                                                   dump: Path) -> None:
    path = ws.write("imports.ttl", _imports_ttl(server.url))
    commands = [["eligibility"], ["validate"], ["reason"], ["explain", "https://example.org/p"],
                ["query", dump.name]]
    for done in itkg_many([[*c, path.name] for c in commands], ws.root):
        assert_refused(done, path.name, "owl:imports")


def test_owl_imports_is_refused_by_the_api(ws: Workspace, server: Witness) -> None:
    path = ws.write("imports.ttl", _imports_ttl(server.url))
    with pytest.raises(UnsafeInputError, match="owl:imports"):
        itkg.load(path)


@pytest.mark.java
@pytest.mark.skipif(shutil.which("java") is None, reason="needs a Java runtime for HermiT")
def test_reasoning_on_a_graph_with_owl_imports_makes_no_request(ws: Workspace,
                                                                server: Witness) -> None:
    """An rdflib graph handed to the API skips the loader; the reasoner must still not let
    owlready2 follow the import (it does so even with only_local=True)."""
    graph = rdflib.Graph().parse(data=_imports_ttl(server.url), format="turtle")
    report = itkg.reason(graph, timeout=240)
    assert report.consistent
    assert server.requests == []


# ---------------------------------------------------------------------------------------------
# itkg query: federation, datasets, updates, deadline
# ---------------------------------------------------------------------------------------------

def _queries(url: str, secret_file: Path) -> dict[str, str]:
    return {
        "service": f"SELECT * WHERE {{ ?s ?p ?o . SERVICE <{url}/sparql> {{ ?x ?y ?o }} }}",
        "service-silent": f"SELECT * WHERE {{ ?s ?p ?o . SERVICE SILENT <{url}/sparql-silent> {{ ?x ?y ?o }} }}",
        "service-lowercase": f"SELECT * WHERE {{ service <{url}/sparql-lc> {{ ?x ?y ?z }} }}",
        "service-variable": f"SELECT * WHERE {{ BIND(<{url}/sparql-var> AS ?e) SERVICE ?e {{ ?x ?y ?z }} }}",
        "service-in-exists": f"SELECT * WHERE {{ ?s ?p ?o FILTER EXISTS {{ SERVICE <{url}/sparql-ex> {{ ?s ?p ?o }} }} }}",
        "service-in-subquery": f"SELECT * WHERE {{ {{ SELECT * WHERE {{ SERVICE <{url}/sparql-sub> {{ ?x ?y ?z }} }} }} }}",
        "from-file": f"SELECT * FROM <{secret_file.as_uri()}> WHERE {{ ?s ?p ?o }}",
        "from-http": f"SELECT * FROM <{url}/from> WHERE {{ ?s ?p ?o }}",
        "from-named": f"SELECT * FROM NAMED <{url}/named> WHERE {{ GRAPH ?g {{ ?s ?p ?o }} }}",
        "insert-data": "INSERT DATA { <urn:a> <urn:b> <urn:c> }",
        "load-http": f"LOAD <{url}/load>",
        "load-file": f"LOAD <{secret_file.as_uri()}>",
        "drop-all": "DROP ALL",
        "delete-where": "DELETE WHERE { ?s ?p ?o }",
    }


QUERY_CASES = ["service", "service-silent", "service-lowercase", "service-variable",
               "service-in-exists", "service-in-subquery", "from-file", "from-http",
               "from-named", "insert-data", "load-http", "load-file", "drop-all", "delete-where"]


@pytest.mark.parametrize("case", QUERY_CASES)
def test_query_cannot_reach_the_network_read_files_or_update(ws: Workspace, server: Witness,
                                                             case: str) -> None:
    secret_file = ws.write(f"{PROBE}-other-patient.ttl", f'<urn:ex:other> <urn:ex:hiv> "{SECRET}" .\n')
    query = ws.write(f"{case}.rq", _queries(server.url, secret_file)[case] + "\n")
    patients = ws.write("patients.ttl", PATIENT_TTL)
    engines = ["oxigraph", "rdflib"] if case in ("service", "service-silent", "from-file") else ["oxigraph"]
    runs: list[list[str | Path]] = [["query", "--engine", engine, query.name, patients.name]
                                    for engine in engines]
    for done in itkg_many(runs, ws.root):
        assert_refused(done, query.name)
    assert patients.read_text() == PATIENT_TTL


def _explosive(ws: Workspace, tag: str) -> tuple[Path, Path]:
    """A 4-way cross join over 3000 triples: about 10^14 rows, it never finishes on its own."""
    chain = ws.write("chain.nt", "".join(f"<urn:n{i}> <urn:next> <urn:n{i + 1}> .\n"
                                         for i in range(3000)))
    query = ws.write(f"explosive-{tag}.rq",
                     "SELECT (COUNT(*) AS ?n) WHERE { ?a ?p ?b . ?c ?q ?d . ?e ?r ?f . ?g ?s ?h }\n")
    return query, chain


def _pids_mentioning(marker: str) -> list[int]:
    """Processes whose command line contains ``marker`` (a unique path of this test)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path("/proc", entry, "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline and int(entry) != os.getpid():
            found.append(int(entry))
    return found


@pytest.mark.skipif(not HAS_PROC, reason="needs /proc to look for leftover processes")
@pytest.mark.parametrize("engine", ["oxigraph", "rdflib"])
def test_query_deadline_stops_an_explosive_query_and_leaves_no_process(ws: Workspace,
                                                                       engine: str) -> None:
    query, chain = _explosive(ws, engine)
    try:
        done = itkg_cli("query", "--timeout", "1", "--engine", engine, query, chain, timeout=120)
        assert_refused(done, "did not finish within 1 s")
        assert wait_for(lambda: not _pids_mentioning(str(query)), 10)
    finally:
        kill_all(_pids_mentioning(str(query)))


@pytest.mark.skipif(not HAS_PROC, reason="needs /proc to look for leftover processes")
@pytest.mark.slow
def test_terminating_the_cli_during_a_query_leaves_no_process(ws: Workspace) -> None:
    query, chain = _explosive(ws, "sigterm")
    parent = subprocess.Popen(itkg_command() + ["query", "--timeout", "600", str(query), str(chain)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        both = wait_for(lambda: len(_pids_mentioning(str(query))) >= 2, 120)
        assert both, "the query child never started"
        parent.send_signal(signal.SIGTERM)
        parent.wait(timeout=60)
        assert wait_for(lambda: not _pids_mentioning(str(query)), 10), \
            "the query child outlived the CLI"
    finally:
        parent.kill()
        parent.wait()
        kill_all(_pids_mentioning(str(query)))


def _blocked_signals(pid: int, tid: int) -> set[int]:
    """The signals thread ``tid`` of process ``pid`` blocks (``SigBlk`` in /proc)."""
    for line in Path("/proc", str(pid), "task", str(tid), "status").read_text().splitlines():
        if line.startswith("SigBlk:"):
            mask = int(line.split()[1], 16)
            return {signum for signum in range(1, 65) if mask >> (signum - 1) & 1}
    return set()


@pytest.mark.skipif(not HAS_PROC, reason="needs /proc to read the threads' signal masks")
def test_only_the_main_thread_of_the_cli_takes_an_ending_signal(ws: Workspace) -> None:
    """Regression: a SIGTERM taken by the memory watchdog thread (Linux may hand a process's
    signal to any thread that does not block it) was never acted on, because Python runs
    handlers only in the main thread, and ``itkg query`` went on while its main thread waited on
    the query child's pipe (CI under load). Every other thread now blocks the ending signals."""
    query, chain = _explosive(ws, "masks")
    parent = subprocess.Popen(itkg_command() + ["query", "--timeout", "600", str(query), str(chain)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: len(_pids_mentioning(str(query))) >= 2, 120), \
            "the query child never started"
        threads = [int(tid) for tid in os.listdir(f"/proc/{parent.pid}/task") if int(tid) != parent.pid]
        assert threads, "the memory watchdog thread is missing"
        ending = {int(signal.SIGTERM), int(signal.SIGHUP), int(signal.SIGINT)}
        assert ending.isdisjoint(_blocked_signals(parent.pid, parent.pid))
        for tid in threads:
            assert ending <= _blocked_signals(parent.pid, tid), f"thread {tid} takes ending signals"
    finally:
        parent.kill()
        parent.wait()
        kill_all(_pids_mentioning(str(query)))


def test_threads_started_by_itkg_leave_the_signals_to_the_main_thread() -> None:
    """The memory watchdog, and any thread started through ``processes.start_thread``, block the
    ending signals; the starting thread's own mask is as it was."""
    import threading

    from itkg import processes
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    seen: dict[str, set[int]] = {}

    def record(name: str) -> None:
        seen[name] = set(signal.pthread_sigmask(signal.SIG_BLOCK, []))
    processes.start_thread(threading.Thread(target=record, args=("started",))).join()
    with processes.memory_budget(1 << 40):
        watchdog = next(t for t in threading.enumerate() if t.name == "itkg-memory")
        assert watchdog.native_id is not None
        seen["itkg-memory"] = _blocked_signals(os.getpid(), watchdog.native_id)
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before
    for name, blocked in seen.items():
        assert {int(s) for s in processes.ENDING_SIGNALS} | {int(signal.SIGINT)} <= {int(s) for s in blocked}, name


@pytest.mark.java
@pytest.mark.skipif(shutil.which("java") is None or not HAS_PROC,
                    reason="needs a Java runtime for HermiT and /proc")
@pytest.mark.slow
def test_terminating_the_cli_during_reasoning_leaves_no_process_and_no_patient_file(
        ws: Workspace) -> None:
    cohort = _cohort(ws, 8000)
    private_tmp = ws.root / "tmp"
    private_tmp.mkdir()
    parent = subprocess.Popen(itkg_command() + ["reason", str(cohort)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env={**os.environ, "TMPDIR": str(private_tmp)})
    children: dict[int, str] = {}
    try:
        def java_started() -> bool:
            children.update(descendants(parent.pid))
            return any(b"java" in Path("/proc", str(pid), "cmdline").read_bytes()
                       for pid in alive(children))
        assert wait_for(java_started, 180), "HermiT never started"
        parent.send_signal(signal.SIGTERM)
        parent.wait(timeout=60)
        assert wait_for(lambda: not alive(children), 10), "the reasoner outlived the CLI"
        assert list(private_tmp.iterdir()) == [], "patient data left in $TMPDIR"
    finally:
        parent.kill()
        parent.wait()
        kill_all(alive(children))
        shutil.rmtree(private_tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Ill-typed literals: reported, never rewritten, never echoed
# ---------------------------------------------------------------------------------------------

def _with_literal(prop: str, literal: str) -> str:
    """A patient whose consent record (the node the shapes check) carries ``prop literal``."""
    return ("@prefix itkg: <https://w3id.org/itkg/> .\n@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .\n"
            "<https://example.org/p> a itkg:Patient ; itkg:hasCondition [ a itkg:CancerPain ] ;\n"
            "  itkg:hasConsent [ a itkg:InformedConsent ; itkg:consentStatus itkg:ConsentGranted ;\n"
            f"    itkg:coversTherapy itkg:IntrathecalTherapy ; {prop} {literal} ] .\n")


ILL_TYPED = {"boolean": ('"maybe"^^xsd:boolean', "maybe"),
             "date": ('"2026-13-45"^^xsd:date', "2026-13-45"),
             "integer": ('"abc"^^xsd:integer', "abc")}


@pytest.mark.parametrize("kind", sorted(ILL_TYPED))
@pytest.mark.parametrize("prop", ["itkg:consentDate", "<urn:ex:hivStatus>"])
def test_ill_typed_literal_is_refused_by_eligibility_without_echoing_it(ws: Workspace, kind: str,
                                                                        prop: str) -> None:
    literal, lexical = ILL_TYPED[kind]
    path = ws.write("ill.ttl", _with_literal(prop, literal))
    line = assert_refused(itkg_cli("eligibility", "--strict", path.name, cwd=ws.root), path.name, "ill-typed")
    assert lexical not in line
    with pytest.raises(IllTypedLiteralError) as caught:
        itkg.load(path, strict=True)
    assert lexical not in str(caught.value)
    # without --strict: set aside and counted, with the line, never the value (contract 1.1 §6)
    done = itkg_cli("eligibility", path.name, cwd=ws.root)
    assert done.returncode == 0 and "set aside 1 ill-typed value" in done.stderr
    assert lexical not in done.stderr + done.stdout


@pytest.mark.parametrize("kind", sorted(ILL_TYPED))
def test_ill_typed_literal_is_a_validation_violation(ws: Workspace, kind: str) -> None:
    literal, lexical = ILL_TYPED[kind]
    path = ws.write("ill.ttl", _with_literal("itkg:consentDate", literal))
    done = itkg_cli("validate", path.name, cwd=ws.root)
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Does not conform" in done.stdout and done.stderr == ""
    assert itkg.validate(path).conforms is False


@pytest.mark.parametrize("kind", sorted(ILL_TYPED))
def test_ill_typed_literal_the_shapes_do_not_check_is_bad_input(ws: Workspace, kind: str) -> None:
    """The shapes conform, but the value is still invalid: exit 2 naming the file, never 'Conforms'."""
    literal, lexical = ILL_TYPED[kind]
    path = ws.write("ill.ttl", _with_literal("<urn:ex:hivStatus>", literal))
    done = itkg_cli("validate", path.name, cwd=ws.root)
    line = assert_refused(done, path.name, "ill-typed")
    assert lexical not in line and done.stdout == ""


def _report_values(turtle: str) -> set[ox.Literal]:
    report = list(ox.parse(turtle.encode(), format=ox.RdfFormat.TURTLE))
    return {q.object for q in report if q.predicate.value == "http://www.w3.org/ns/shacl#value"}


@pytest.mark.parametrize("kind", [
    "boolean", "date", "integer"])
def test_validation_report_keeps_an_ill_typed_value_as_written(ws: Workspace, kind: str) -> None:
    literal, lexical = ILL_TYPED[kind]
    path = ws.write("ill.ttl", _with_literal("itkg:consentDate", literal))
    done = itkg_cli("validate", "--format", "turtle", path.name, cwd=ws.root)
    assert done.returncode == 1, done.stderr
    datatype = {"boolean": "boolean", "date": "date", "integer": "integer"}[kind]
    expected = ox.Literal(lexical, datatype=ox.NamedNode(XSD + datatype))
    assert expected in _report_values(done.stdout)


# ---------------------------------------------------------------------------------------------
# Syntax errors: all or nothing, no value in any message
# ---------------------------------------------------------------------------------------------

BROKEN = {
    "ttl": (f'@prefix ex: <urn:ex:> .\nex:p1 ex:name "{SECRET}-1" .\nex:p2 ex:name "{SECRET}-2" .\n'
            f'ex:p3 ex:name "{SECRET}-3" .\nex:p4 ex:name .\nex:p5 ex:name "{SECRET}-5" .\n', 5),
    "nt": (f'<urn:ex:p1> <urn:ex:name> "{SECRET}-1" .\n<urn:ex:p2> <urn:ex:name> "{SECRET}-2" .\n'
           f'<urn:ex:p3> <urn:ex:name> "{SECRET}-3" .\n<urn:ex:p4> <urn:ex:name> .\n'
           f'<urn:ex:p5> <urn:ex:name> "{SECRET}-5" .\n', 4),
    "jsonld": ('[{"@id": "urn:ex:p1", "urn:ex:name": "' + SECRET + '-1"},\n'
               ' {"@id": "urn:ex:p2", "urn:ex:name": "' + SECRET + '-2"},\n'
               ' {"@id": "urn:ex:p3", "urn:ex:name": "' + SECRET + '-3"}\n'
               ' {"@id": "urn:ex:p4", "urn:ex:name": "' + SECRET + '-4"}]\n', 4),
    "rdf": (f'<rdf:RDF xmlns:rdf="{RDF_NS}" xmlns:ex="urn:ex:">\n'
            f'<rdf:Description rdf:about="urn:ex:p1"><ex:name>{SECRET}-1</ex:name></rdf:Description>\n'
            f'<rdf:Description rdf:about="urn:ex:p2"><ex:name>{SECRET}-2</ex:name></rdf:Description>\n'
            f'<rdf:Description rdf:about="urn:ex:p3"><ex:name>{SECRET}-3</ex:name></rdf:Descr>\n'
            f'<rdf:Description rdf:about="urn:ex:p4"><ex:name>{SECRET}-4</ex:name></rdf:Description>\n'
            "</rdf:RDF>\n", None),
}


@pytest.mark.parametrize("suffix", sorted(BROKEN))
def test_syntax_error_halfway_loads_nothing(ws: Workspace, suffix: str) -> None:
    text, line = BROKEN[suffix]
    good = ws.write("good.ttl", PATIENT_TTL)
    bad = ws.write(f"broken.{suffix}", text)
    for sources in (bad, [good, bad], [bad, good]):
        with pytest.raises(ParseError) as caught:
            itkg.load(sources)
        assert caught.value.source == str(bad)
        assert SECRET not in str(caught.value) and "\n" not in str(caught.value)
        if line is not None:
            assert caught.value.line == line
        with pytest.raises(ParseError):
            itkg.eligibility(sources)
    done = itkg_cli("eligibility", "--format", "json", good.name, bad.name, cwd=ws.root)
    assert_refused(done, bad.name)  # and nothing on standard output: no partial result


# ---------------------------------------------------------------------------------------------
# No patient value in logs or on standard error
# ---------------------------------------------------------------------------------------------

def _secret_inputs(ws: Workspace, url: str) -> list[Path]:
    paths = [ws.write(f"broken.{suffix}", text) for suffix, (text, _) in BROKEN.items()]
    paths.append(ws.write("ill.ttl", _with_literal("itkg:consentDate", f'"{SECRET}"^^xsd:date')))
    paths.append(ws.write("ill-boolean.ttl", _with_literal("<urn:ex:hiv>", f'"{SECRET}"^^xsd:boolean')))
    paths.append(ws.write("ill-rare.ttl", _with_literal("<urn:ex:took>", f'"{SECRET}"^^xsd:duration')))
    paths.append(ws.write("xxe.rdf", _rdfxml('<!DOCTYPE r [<!ENTITY x "y">]>', SECRET)))
    paths.append(ws.write("remote.jsonld", json.dumps(
        {"@context": f"{url}/ctx", "@id": "urn:ex:p", "urn:ex:name": SECRET})))
    paths.append(ws.write("notrdf.ttl", f"{SECRET} is not RDF\n"))
    return paths


def test_no_patient_value_reaches_logs_warnings_or_standard_streams(
        ws: Workspace, server: Witness, caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger and everything below it
    for name in ("rdflib", "rdflib.term", "pyshacl", "owlrl", "owlready2"):
        caplog.set_level(logging.DEBUG, logger=name)
    messages: list[str] = []
    with warnings.catch_warnings(record=True) as caught_warnings:
        warnings.simplefilter("always")
        for path in _secret_inputs(ws, server.url):
            for call in (itkg.load, itkg.eligibility, itkg.validate,
                         lambda p: itkg.explain(p, "https://example.org/p")):
                try:
                    call(path)
                except ItkgError as error:
                    messages.append(str(error))
    assert messages, "the inputs were supposed to be refused"
    assert not [m for m in messages if SECRET in m]
    assert SECRET not in caplog.text
    assert not [r for r in caplog.records if SECRET in str(r.args) or SECRET in str(r.msg)]
    assert not [w for w in caught_warnings if SECRET in str(w.message)]
    out, err = capfd.readouterr()
    assert SECRET not in out and SECRET not in err


@pytest.mark.parametrize("command", [["eligibility"], ["validate"]])
@pytest.mark.slow
def test_no_patient_value_on_the_cli_standard_error(ws: Workspace, server: Witness,
                                                   command: list[str]) -> None:
    """eligibility reads files with its own streaming parser, validate with itkg.load."""
    paths = _secret_inputs(ws, server.url)
    for path, done in zip(paths, itkg_many([[*command, p.name] for p in paths], ws.root)):
        assert done.returncode in (0, 1, 2), (path.name, done.returncode)  # exit codes: above
        assert SECRET not in done.stderr and "Traceback" not in done.stderr
        if done.returncode == 2:
            assert_refused(done, path.name)


# ---------------------------------------------------------------------------------------------
# -o FILE: atomic, never over an input, never over a special file
# ---------------------------------------------------------------------------------------------

def _limit_file_size() -> None:  # runs in the child before exec
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (128 * 1024, 128 * 1024))


def _cohort(ws: Workspace, patients: int) -> Path:
    return ws.write("cohort.ttl", "@prefix itkg: <https://w3id.org/itkg/> .\n" + "".join(
        f"<https://example.org/p{i}> a itkg:Patient ; itkg:hasCondition [ a itkg:CancerPain ] ; "
        "itkg:receivedTreatment [ a itkg:OralOpioidTherapy ; itkg:hasOutcome itkg:SevereSideEffects ] .\n"
        for i in range(patients)))


def test_failed_output_write_leaves_the_old_file_and_no_temporary_file(ws: Workspace) -> None:
    """A write that fails part-way (here: a 128 KiB file size limit against a 1.3 MB result,
    as a full disk would) must leave the previous output whole and no partial or temporary
    file behind."""
    cohort = _cohort(ws, 2000)
    out = ws.root / "out.json"
    out.write_text("OLD OUTPUT\n")
    done = run_itkg("eligibility", "--format", "json", "-o", out.name, cohort.name, cwd=ws.root,
                    preexec_fn=_limit_file_size)
    assert_refused(done, out.name, "cannot write")
    assert out.read_text() == "OLD OUTPUT\n"
    assert sorted(p.name for p in ws.root.iterdir()) == ["cohort.ttl", "out.json"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_output_into_a_read_only_directory_is_refused(ws: Workspace) -> None:
    folder = ws.root / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        done = itkg_cli("eligibility", "-o", folder / "out.txt", EXAMPLES)
        assert_refused(done, "out.txt", "cannot write")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o700)


@pytest.mark.parametrize("command, alias", [
    *[(["eligibility"], alias) for alias in ("same", "relative", "symlink", "hardlink")],
    (["validate"], "symlink"), (["query", "dump.rq"], "hardlink"),
    (["explain", "https://example.org/patient/anna"], "relative")])
def test_output_over_an_input_is_refused(ws: Workspace, dump: Path, command: list[str],
                                         alias: str) -> None:
    patients = ws.write("patients.ttl", EXAMPLES.read_bytes())
    target = {"same": str(patients), "relative": "./sub/../patients.ttl",
              "symlink": "link.ttl", "hardlink": "hard.ttl"}[alias]
    (ws.root / "sub").mkdir()
    if alias == "symlink":
        (ws.root / "link.ttl").symlink_to(patients)
    elif alias == "hardlink":
        os.link(patients, ws.root / "hard.ttl")
    done = itkg_cli(*command, "-o", target, patients.name, cwd=ws.root)
    assert_refused(done, "refusing to write over an input file")
    assert patients.read_bytes() == EXAMPLES.read_bytes()


def test_output_over_the_query_file_is_refused(ws: Workspace, dump: Path) -> None:
    done = itkg_cli("query", "-o", dump.name, dump.name, EXAMPLES, cwd=ws.root)
    assert_refused(done, "refusing to write over an input file")
    assert dump.read_text() == DUMP_QUERY


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_output_over_a_special_file_is_refused(ws: Workspace) -> None:
    fifo = ws.root / "out.fifo"
    os.mkfifo(fifo)
    done = itkg_cli("eligibility", "-o", fifo.name, EXAMPLES, cwd=ws.root)
    assert stat.S_ISFIFO(fifo.lstat().st_mode), "the FIFO was replaced by a regular file"
    assert_refused(done, fifo.name)


# ---------------------------------------------------------------------------------------------
# SPARQL injection through the patient argument
# ---------------------------------------------------------------------------------------------

OTHER_PATIENTS = ["https://example.org/patient/ben", "https://example.org/patient/carla",
                  "https://example.org/patient/dev", "https://example.org/patient/eli"]
INJECTIONS = [
    "https://example.org/patient/anna> ?x ?y . ?anyone ?p ?o } #",
    "https://example.org/patient/anna> } UNION { ?anyone ?p ?o } #",
    'https://example.org/patient/anna" . ?q ?p ?o } #',
    "https://example.org/patient/anna' || true || '",
    "https://example.org/patient/anna>\n} ; DROP ALL ; #",
    "<https://example.org/patient/anna>",
    "?patient",
    "*",
    "",
    "_:anything",
]


def test_explain_with_an_injected_patient_id_finds_no_patient(ws: Workspace) -> None:
    patients = ws.write("patients.ttl", EXAMPLES.read_bytes())
    on_the_cli = INJECTIONS[:5]  # the SPARQL-shaped ones; the API gets every payload
    runs: list[list[str | Path]] = [["explain", payload, patients.name] for payload in on_the_cli]
    for payload, done in zip(on_the_cli, itkg_many(runs, ws.root)):
        line = assert_refused(done, patients.name, "no such patient")
        assert not any(other in line for other in OTHER_PATIENTS), payload
    for payload in INJECTIONS:
        with pytest.raises(InputError, match="no such patient"):
            itkg.explain(patients, payload)


def test_explain_names_only_the_patient_asked_for(ws: Workspace) -> None:
    """The control for the injection test: an honest id works and shows no other patient."""
    done = itkg_cli("explain", "--format", "json", "https://example.org/patient/anna", EXAMPLES)
    assert done.returncode == 0, done.stderr
    assert "https://example.org/patient/anna" in done.stdout
    assert not any(other in done.stdout for other in OTHER_PATIENTS)


# ---------------------------------------------------------------------------------------------
# Files that are not regular files, or too large
# ---------------------------------------------------------------------------------------------

def test_directory_is_refused_by_the_api(ws: Workspace) -> None:
    """A directory is read as a FHIR Bulk export (fhir.md); one without NDJSON files is refused."""
    folder = ws.root / "folder.ttl"
    folder.mkdir()
    with pytest.raises(InputError, match="holds no \\*.ndjson file"):
        itkg.load(folder)


def test_directory_is_refused_by_the_cli_in_one_line(ws: Workspace) -> None:
    folder = ws.root / "folder.ttl"
    folder.mkdir()
    assert_refused(itkg_cli("eligibility", folder.name, cwd=ws.root), folder.name)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_is_refused_without_waiting_for_a_writer(ws: Workspace) -> None:
    fifo = ws.root / "pipe.ttl"
    os.mkfifo(fifo)
    assert_refused(itkg_cli("eligibility", fifo.name, cwd=ws.root, timeout=60), fifo.name,
                   "not a regular file")
    with pytest.raises(InputError, match="not a regular file"):
        itkg.load(fifo)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_endless_device_is_refused(ws: Workspace) -> None:
    link = ws.root / "zero.ttl"
    link.symlink_to("/dev/zero")
    with pytest.raises(InputError, match="not a regular file"):
        itkg.load(link, max_bytes=1024)
    assert_refused(itkg_cli("eligibility", link.name, cwd=ws.root, timeout=60), link.name)


def test_huge_file_is_refused_before_it_is_read(ws: Workspace) -> None:
    """A sparse 9 GiB file: over the default limit and far over a small ``max_bytes``; it is
    refused from its size alone (reading it would take minutes and all the memory)."""
    huge = ws.root / "huge.ttl"
    with open(huge, "wb") as handle:
        handle.truncate(9 * 1024**3)
    try:
        with pytest.raises(InputTooLargeError, match="over the limit of 1024 bytes"):
            itkg.load(huge, max_bytes=1024)
        assert_refused(itkg_cli("eligibility", huge.name, cwd=ws.root), huge.name, "over the limit")
    finally:
        huge.unlink()


_GROW: dict[str, object] = {}


def _grow_on_open(event: str, args: tuple[object, ...]) -> None:
    """When the armed path is opened, another writer appends to it (as a log being written
    would): the size checked before the open is no longer the size read."""
    if event == "open" and _GROW and str(args[0]) == _GROW.get("path"):
        fd = _GROW.pop("fd")
        _GROW.clear()
        os.write(fd, b"# more\n" * 200_000)  # type: ignore[arg-type]
        os.close(fd)  # type: ignore[arg-type]


_grow_installed = False


def test_max_bytes_holds_for_a_file_growing_while_it_is_read(ws: Workspace) -> None:
    global _grow_installed
    if not _grow_installed:
        sys.addaudithook(_grow_on_open)
        _grow_installed = True
    path = ws.root / "growing.ttl"
    path.write_text(PATIENT_TTL)
    _GROW.update(path=str(path), fd=os.open(path, os.O_WRONLY | os.O_APPEND))
    try:
        with pytest.raises(InputTooLargeError):
            itkg.load(path, max_bytes=64 * 1024)
    finally:
        if "fd" in _GROW:
            os.close(_GROW["fd"])  # type: ignore[arg-type]
        _GROW.clear()


# ---------------------------------------------------------------------------------------------
# RDF 1.2 triple terms: accepted by the parser, but nothing after it can handle them
# ---------------------------------------------------------------------------------------------

TRIPLE_TERMS = (PATIENT_TTL + "<https://example.org/p> <urn:ex:said> <<( <urn:a> <urn:b> <urn:c> )>> .\n"
                "<< <urn:x> <urn:y> <urn:z> >> <urn:ex:source> <urn:ex:record> .\n")


@pytest.mark.parametrize("call", [
    pytest.param("load", id="load"),
    pytest.param("eligibility-native", id="eligibility-native"),
    pytest.param("eligibility-oxigraph", id="eligibility-oxigraph"),
    pytest.param("validate", id="validate"),
    pytest.param("eligibility-rdflib", id="eligibility-rdflib"),
    pytest.param("graph", id="graph"),
])
def test_triple_terms_give_a_result_or_an_itkg_error(ws: Workspace, call: str) -> None:
    path = ws.write("star.ttl", TRIPLE_TERMS)
    calls = {
        "load": lambda: itkg.load(path),
        "eligibility-native": lambda: itkg.eligibility(path),
        "eligibility-oxigraph": lambda: itkg.eligibility(path, engine="oxigraph"),
        "validate": lambda: itkg.validate(path),
        "eligibility-rdflib": lambda: itkg.eligibility(path, engine="rdflib"),
        "graph": lambda: itkg.load(path).graph(),
    }
    try:
        calls[call]()
    except ItkgError:
        pass


@pytest.mark.parametrize("command", [
    ["eligibility"],
    pytest.param(["validate"]),
    pytest.param(["query", "dump.rq"]),
])
def test_triple_terms_never_give_an_internal_error_on_the_cli(ws: Workspace, dump: Path,
                                                             command: list[str]) -> None:
    path = ws.write("star.ttl", TRIPLE_TERMS)
    done = itkg_cli(*command, path.name, cwd=ws.root)
    assert "internal error" not in done.stderr and "query failed" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    if done.returncode == 2:
        assert_refused(done, path.name)


@pytest.mark.parametrize("suffix", [".ttl", ".nt"])
def test_a_triple_term_under_any_predicate_is_refused_by_every_command(ws: Workspace, suffix: str) -> None:
    """Regression: the population reader noted triple terms only under the predicates it indexes,
    so ``itkg eligibility`` accepted a file that ``itkg.load`` refuses (found by test_fuzz)."""
    text = (PATIENT_TTL if suffix == ".ttl" else "") + \
        "<https://example.org/p> <urn:ex:said> <<( <urn:a> <urn:b> <urn:c> )>> .\n"
    path = ws.write("star" + suffix, text)
    with pytest.raises(InputError, match="triple terms"):
        itkg.load(path)
    for command in (["eligibility"], ["validate"]):
        done = itkg_cli(*command, path.name, cwd=ws.root)
        assert done.returncode == 2, done.stderr
        assert "triple terms" in done.stderr
