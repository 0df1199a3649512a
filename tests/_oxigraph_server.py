"""Start and stop a real Oxigraph server on 127.0.0.1 for tests that talk SPARQL over HTTP.

The ``oxigraph`` PyPI package ships the server binary; tests run it rather than a mock so that
the endpoint client meets a real SPARQL 1.1 Protocol and Graph Store Protocol implementation.
Only the standard library is imported here, so pytest can collect this file with
``--doctest-modules`` and test files can load it by path (``--import-mode=importlib`` does not put
``tests/`` on ``sys.path``)::

    spec = importlib.util.spec_from_file_location("_oxigraph_server", HERE / "_oxigraph_server.py")

Usage::

    with OxigraphServer() as server:   # in memory; OxigraphServer(location=tmp_path) persists
        server.query_url, server.store_url    # http://127.0.0.1:PORT/query, .../store
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

#: How long the server may take to accept connections before the start is given up.
STARTUP_DEADLINE_S = 30.0
#: How many times a start is retried when another process grabbed the chosen port first.
PORT_ATTEMPTS = 3
#: Readiness probes go straight to loopback, whatever the *_proxy environment says.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def oxigraph_executable() -> str | None:
    """The ``oxigraph`` server binary: on ``PATH``, or in this interpreter's scripts folder.

    The scripts folder matters when the tests run with a virtualenv's Python that is not
    activated, so its ``bin/`` is not on ``PATH``.
    """
    found = shutil.which("oxigraph")
    if found:
        return found
    for scripts in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(scripts) / ("oxigraph.exe" if sys.platform == "win32" else "oxigraph")
        if candidate.is_file():
            return str(candidate)
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OxigraphServer:
    """One ``oxigraph serve`` process bound to 127.0.0.1 on a free port.

    ``location`` is a folder for a persistent store; ``None`` keeps the store in memory.
    ``extra_args`` go to ``oxigraph serve`` as given (``["--union-default-graph"]``, say).
    """

    def __init__(self, location: Path | None = None, extra_args: list[str] | None = None) -> None:
        self.location = location
        self.extra_args = list(extra_args or [])
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - open for the server's lifetime

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def query_url(self) -> str:
        """The SPARQL 1.1 Protocol query endpoint."""
        return f"{self.base_url}/query"

    @property
    def update_url(self) -> str:
        """The SPARQL 1.1 Protocol update endpoint."""
        return f"{self.base_url}/update"

    @property
    def store_url(self) -> str:
        """The Graph Store Protocol endpoint."""
        return f"{self.base_url}/store"

    def start(self) -> OxigraphServer:
        """Start the server and return once it answers HTTP; raise ``RuntimeError`` otherwise."""
        executable = oxigraph_executable()
        if executable is None:
            raise RuntimeError("the oxigraph server binary is not installed (pip install oxigraph)")
        for _ in range(PORT_ATTEMPTS):
            self.port = free_port()
            command = [executable, "serve", "--bind", f"127.0.0.1:{self.port}", *self.extra_args]
            if self.location is not None:
                command += ["--location", str(self.location)]
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log
            )
            if self._wait_until_ready():
                return self
            self.stop()
        raise RuntimeError(f"oxigraph serve did not start:\n{self.log_text()}")

    def _wait_until_ready(self) -> bool:
        """Poll the server's home page until it answers, the process exits, or the deadline."""
        assert self._process is not None
        deadline = time.monotonic() + STARTUP_DEADLINE_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                with _NO_PROXY.open(f"{self.base_url}/", timeout=2) as answer:
                    if answer.status == 200:
                        return True
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        """Stop the server (terminate, then kill if it lingers). Safe to call twice."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def log_text(self) -> str:
        """What the server printed so far, for failure messages."""
        self._log.seek(0)
        return self._log.read().decode("utf-8", errors="replace")

    def __enter__(self) -> OxigraphServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
        self._log.close()
