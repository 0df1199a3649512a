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


def benchmark_generator() -> Any:
    """``benchmarks/generate.py``: the synthetic population generator."""
    return load_by_path("itkg_benchmark_generate", REPO / "benchmarks" / "generate.py")
