"""Helpers shared by the test modules (importable as ``support``: pyproject puts ``tests`` on the
path, because ``--import-mode=importlib`` does not).

Fixtures live in ``conftest.py``; plain functions and classes live here, so that a test module
imports what it uses instead of keeping its own copy.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
HAS_PROC = Path("/proc/self/stat").exists()

T = TypeVar("T")


# -- the command line, in this process ------------------------------------------------------------

@dataclass(frozen=True)
class Ran:
    """What a command line run gave: the fields of ``subprocess.CompletedProcess`` tests read."""

    returncode: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def _working_directory(path: Path | None) -> Iterator[None]:
    if path is None:
        yield
        return
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def invoke(*args: str | os.PathLike[str], cwd: Path | None = None, stdin: str | bytes | None = None,
           env: Mapping[str, str | None] | None = None) -> Ran:
    """Run ``itkg ARGS`` in this process through click's ``CliRunner``: the same command, exit
    code and streams as the console script, without starting an interpreter. The command puts
    back what it changes in the process (signal handlers, network policy, the collector).

    An exception that escapes the command (a bug: the CLI turns every failure into one line and
    an exit code) is raised here, not hidden in the result.
    """
    from click.testing import CliRunner

    from itkg.cli import main
    with _working_directory(cwd):
        result = CliRunner().invoke(main, [str(a) for a in args], input=stdin, env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Ran(result.exit_code, result.stdout, result.stderr)


# -- the console script, as a real process ------------------------------------------------------

def itkg_command() -> list[str]:
    """The installed ``itkg`` console script, or ``python -m itkg.cli`` from a checkout."""
    exe = shutil.which("itkg")
    return [exe] if exe else [sys.executable, "-m", "itkg.cli"]


def run_itkg(*args: str | os.PathLike[str], cwd: Path | None = None, timeout: float = 300,
             env: Mapping[str, str] | None = None, stdin: str | None = None,
             preexec_fn: Callable[[], None] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the console script in a new interpreter, as a user does; ``env`` is added to this
    process's environment. ``timeout`` only catches a hang; no test asserts on how long a
    command took."""
    return subprocess.run(itkg_command() + [str(a) for a in args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env={**os.environ, **(env or {})}, input=stdin,
                          preexec_fn=preexec_fn, check=False)


# -- the console script, as a real process forked from a warm interpreter -------------------------

#: The fork server (see :class:`_ForkServer`): reads one JSON request a line, forks, and in the
#: child points standard input, output and error at the request's files, takes the request's
#: folder and environment, and runs the console script's ``main``; the child then ends as a new
#: interpreter would (``sys.exit``: interpreter shutdown, which waits for non-daemon threads).
_FORK_SERVER = r"""
import importlib, json, os, sys, tempfile
requests = os.fdopen(os.dup(0), "rb")
replies = os.fdopen(os.dup(1), "w")
null = os.open(os.devnull, os.O_RDWR)
os.dup2(null, 0)
os.dup2(2, 1)  # nothing the imports print may reach the protocol
# What the commands import; they create no blank node and start no thread here.
for name in sys.argv[1:]:
    importlib.import_module(name)
if "itkg.sparql" in sys.argv[1:]:
    # What a command's first query in a process costs (the gate's parse: 0.3 to 1 s a query) and
    # the knowledge's read, paid once here: the bundled queries and the generated ones pass the
    # gate, and the ontology is read. A query text a test writes itself is still gated in its run.
    from itkg import rulegen, sparql
    from itkg.knowledge import load_knowledge
    from itkg.resources import queries_dir
    knowledge = load_knowledge()
    for text in sorted({*(path.read_text(encoding="utf-8") for path in queries_dir().glob("*.rq")),
                        *(rulegen.query(name, knowledge) for name in rulegen.QUERIES),
                        rulegen.facts_query(knowledge)}):
        sparql.gate(text)
for line in requests:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        requests.close()
        replies.close()
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        tempfile.tempdir = None  # TMPDIR is read again, from the request's environment
        for fd, (path, flags) in enumerate([(request["stdin"], os.O_RDONLY),
                                            (request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                            (request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)]):
            opened = os.open(path, flags, 0o600)
            os.dup2(opened, fd)
            os.close(opened)
        os.close(null)
        sys.argv = ["itkg", *request["args"]]
        from itkg.cli import main
        main(prog_name="itkg")
        sys.exit(0)
    replies.write(json.dumps({"pid": pid}) + "\n")
    replies.flush()
    replies.write(json.dumps({"code": os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])}) + "\n")
    replies.flush()
"""

#: Modules the fork server imports once (what ``import itkg`` leaves for first use): each forked
#: run then starts in milliseconds instead of the second a new interpreter takes.
_WARM_MODULES = ("itkg.cli", "itkg.api", "itkg.loading", "itkg.streaming", "itkg.engine", "itkg.sparql",
                 "itkg.validation", "itkg.endpoint", "itkg.report", "itkg.reasoning", "rdflib", "pyshacl",
                 "pyoxigraph", "httpx")


class _ForkServer:
    """One warm interpreter per test process that forks a child for each command line run.

    The child is a real process: its own standard streams (so a log record, a warning or a
    native library's write on file descriptor 2 shows on its standard error, as for a user), its
    own exit code and signal handlers, and a crash or a hang ends only it. What it does not
    repeat is the interpreter's start-up and the imports; tests of those (``itkg --help`` is fast,
    signals, the console script itself) start a new interpreter with :func:`run_itkg`.
    """

    def __init__(self) -> None:
        import tempfile
        self.folder = Path(tempfile.mkdtemp(prefix="itkg-forkserver-"))
        self.process = subprocess.Popen([sys.executable, "-c", _FORK_SERVER, *_WARM_MODULES],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def alive(self) -> bool:
        return self.process.poll() is None

    def run(self, args: list[str], cwd: Path | None, timeout: float, env: Mapping[str, str],
            stdin: str | None) -> subprocess.CompletedProcess[str]:
        import select
        assert self.process.stdin is not None and self.process.stdout is not None
        files = {name: self.folder / name for name in ("stdin", "stdout", "stderr")}
        files["stdin"].write_text(stdin or "", encoding="utf-8")
        request = {"args": args, "cwd": str(cwd or Path.cwd()), "env": dict(env),
                   **{name: str(path) for name, path in files.items()}}
        self.process.stdin.write(json.dumps(request).encode() + b"\n")
        self.process.stdin.flush()
        pid = json.loads(self.process.stdout.readline())["pid"]
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            os.kill(pid, 9)
        code = json.loads(self.process.stdout.readline())["code"]
        out, err = (_text(files[name].read_bytes()) for name in ("stdout", "stderr"))
        if not ready:
            raise subprocess.TimeoutExpired(args, timeout, out, err)
        return subprocess.CompletedProcess(["itkg", *args], code, out, err)

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)


def _text(data: bytes) -> str:
    """Bytes as ``subprocess.run(..., text=True)`` gives them (universal newlines)."""
    import locale
    return data.decode(locale.getpreferredencoding(False)).replace("\r\n", "\n").replace("\r", "\n")


_fork_server: _ForkServer | None = None
_fork_server_lock = threading.Lock()


def run_forked(*args: str | os.PathLike[str], cwd: Path | None = None, timeout: float = 300,
               env: Mapping[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """:func:`run_itkg`, in a process forked from a warm interpreter (:class:`_ForkServer`):
    standard streams, exit code, crashes and hangs as a user's run has them, without the start-up.
    Runs one at a time per test process."""
    global _fork_server
    import atexit
    with _fork_server_lock:
        if _fork_server is None or not _fork_server.alive():
            _fork_server = _ForkServer()
            atexit.register(_fork_server.close)
        return _fork_server.run([str(a) for a in args], cwd, timeout, {**os.environ, **(env or {})}, stdin)


def assert_validate_prints_what_pyshacl_prints(engine: str, path: Path, code: int, fmt: str) -> None:
    """``itkg validate --engine ENGINE`` exits ``code`` and prints what ``--engine pyshacl`` prints."""
    runs = {name: run_forked("validate", str(path), "--engine", name, "--format", fmt) for name in ("pyshacl", engine)}
    assert {name: run.returncode for name, run in runs.items()} == {"pyshacl": code, engine: code}, runs[engine].stderr
    if fmt == "json":
        assert json.loads(runs[engine].stdout) == json.loads(runs["pyshacl"].stdout)
    else:
        assert runs[engine].stdout == runs["pyshacl"].stdout


# -- the stand-in for the network -----------------------------------------------------------------

class _Answers(BaseHTTPRequestHandler):
    """Answers like a helpful server would (a JSON-LD context, a DTD, SPARQL results, Turtle), each
    quoting the witness's secret, so that a regression would really load remote content; records
    every request."""

    server: Witness

    def _serve(self) -> None:
        self.server.requests.append((self.command, self.path))
        secret = self.server.secret
        if self.path.startswith("/ctx"):
            body, kind = json.dumps({"@context": {"name": f"urn:{secret}:name"}}).encode(), "application/ld+json"
        elif self.path.startswith("/sparql"):
            body = json.dumps({"head": {"vars": ["x"]}, "results": {"bindings": [
                {"x": {"type": "literal", "value": secret}}]}}).encode()
            kind = "application/sparql-results+json"
        elif self.path.startswith("/dtd"):
            body, kind = f'<!ENTITY remote "{secret}">'.encode(), "application/xml-dtd"
        else:
            body, kind = f'<urn:remote> <urn:p> "{secret}" .\n'.encode(), "text/turtle"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_HEAD = _serve

    def log_message(self, *args: object) -> None:
        pass


class Witness(ThreadingHTTPServer):
    """A logging HTTP server on 127.0.0.1 that stands in for the network: it records every
    connection (in accept order) and request. Use as a context manager, or :meth:`start` and
    :meth:`close`."""

    daemon_threads = True

    def __init__(self, secret: str = "FETCHED") -> None:
        super().__init__(("127.0.0.1", 0), _Answers)
        self.secret = secret
        self.connections: list[object] = []
        self.requests: list[tuple[str, str]] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def hits(self) -> list[tuple[str, str]]:
        """The requests, as ``(method, path)``."""
        return self.requests

    def clear(self) -> Witness:
        self.connections.clear()
        self.requests.clear()
        return self

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections.append(client_address)
        super().process_request(request, client_address)

    def start(self) -> Witness:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        self.shutdown()
        self.server_close()

    def __enter__(self) -> Witness:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- processes ----------------------------------------------------------------------------------

def wait_for(condition: Callable[[], T], limit: float, step: float = 0.05) -> T:
    """Poll ``condition`` until it is truthy or ``limit`` seconds passed (a hang guard only)."""
    end = time.monotonic() + limit
    while True:
        value = condition()
        if value or time.monotonic() > end:
            return value
        time.sleep(step)


def _stat(pid: int | str) -> list[str] | None:
    try:
        return Path("/proc", str(pid), "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def descendants(root: int) -> dict[int, str]:
    """pid -> start time of every live descendant of ``root`` (the start time tells a reused
    pid apart)."""
    parents: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(entry)) is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry))
            starts[int(entry)] = fields[19]
    found: dict[int, str] = {}
    stack = list(parents.get(root, []))
    while stack:
        pid = stack.pop()
        found[pid] = starts[pid]
        stack.extend(parents.get(pid, []))
    return found


def alive(processes: dict[int, str]) -> list[int]:
    """The processes of ``processes`` (from :func:`descendants`) still running (not zombies)."""
    return [pid for pid, start in processes.items()
            if (fields := _stat(pid)) is not None and fields[19] == start and fields[0] != "Z"]


def command_line(pid: int) -> str:
    try:
        return Path("/proc", str(pid), "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def kill_all(pids: list[int]) -> None:
    """SIGKILL what a failed test left running (its own children only)."""
    for pid in pids:
        try:
            os.kill(pid, 9)
        except (ProcessLookupError, PermissionError):
            pass


# -- modules that are not part of the package ---------------------------------------------------

def load_by_path(name: str, path: Path) -> ModuleType:
    """Import the file ``path`` as module ``name`` (once per session)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


#: Real FHIR data that we did not write, fetched by ``.ci/run`` with ``npm pack``.
EXTERNAL = Path(os.environ.get("ITKG_EXTERNAL_DATA") or REPO / ".cache" / "external")
#: HL7's FHIR R4 specification examples, and cql-exec-fhir's Synthea bundles.
FHIR_EXAMPLES = EXTERNAL / "hl7.fhir.r4.examples" / "package"
SYNTHEA = EXTERNAL / "cql-exec-fhir" / "package" / "test" / "fixtures" / "r4"


def external_data(path: Path) -> Path:
    """``path`` under :data:`EXTERNAL`; skip where it was not fetched, but fail under CI, where
    ``.ci/run`` fetches it."""
    import pytest
    if not path.is_dir():
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"{path} is missing: .ci/run fetches it with npm pack")
        pytest.skip(f"{path} is missing (run .ci/run, or npm pack it there)")
    return path


def benchmark_generator() -> Any:
    """``benchmarks/generate.py``: the synthetic population generator."""
    return load_by_path("itkg_benchmark_generate", REPO / "benchmarks" / "generate.py")
