"""Start and stop a real Oxigraph server on 127.0.0.1 for tests that talk SPARQL over HTTP.

The ``oxigraph`` PyPI package ships the server binary; tests run it rather than a mock so that
the endpoint client meets a real SPARQL 1.1 Protocol and Graph Store Protocol implementation.
Only the standard library is imported here, so pytest can collect this file with
``--doctest-modules``; test files ``import _oxigraph_server`` (pyproject puts ``tests/`` on the
path).

Usage::

    with OxigraphServer() as server:   # in memory; OxigraphServer(location=tmp_path) persists
        server.query_url, server.store_url    # http://127.0.0.1:PORT/query, .../store
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from _local_server import Endpoint, LocalServer, free_port

#: How long the server may take to accept connections before the start is given up.
STARTUP_DEADLINE_S = 30.0


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


class OxigraphServer(LocalServer):
    """One ``oxigraph serve`` process bound to 127.0.0.1 on a free port.

    ``location`` is a folder for a persistent store; ``None`` keeps the store in memory.
    ``extra_args`` go to ``oxigraph serve`` as given (``["--union-default-graph"]``, say).
    """

    query_url = Endpoint("/query", "The SPARQL 1.1 Protocol query endpoint.")
    update_url = Endpoint("/update", "The SPARQL 1.1 Protocol update endpoint.")
    store_url = Endpoint("/store", "The Graph Store Protocol endpoint.")

    def __init__(self, location: Path | None = None, extra_args: list[str] | None = None) -> None:
        self.location = location
        self.extra_args = list(extra_args or [])
        super().__init__()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - open for the server's lifetime

    def start(self) -> OxigraphServer:
        """Start the server and return once it answers HTTP; raise ``RuntimeError`` otherwise."""
        executable = oxigraph_executable()
        if executable is None:
            raise RuntimeError("the oxigraph server binary is not installed (pip install oxigraph)")

        def spawn() -> subprocess.Popen[bytes]:
            self.http_port = free_port()
            command = [executable, "serve", "--bind", f"127.0.0.1:{self.http_port}", *self.extra_args]
            if self.location is not None:
                command += ["--location", str(self.location)]
            return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log)

        self._launch(spawn, "/", STARTUP_DEADLINE_S, 0.05)
        return self

    def log_text(self) -> str:
        """What the server printed so far, for failure messages."""
        self._log.seek(0)
        return self._log.read().decode("utf-8", errors="replace")

