"""What the real servers the tests start (``oxigraph serve``, ``virtuoso-t``) have in common: a
free port on 127.0.0.1, a process polled over HTTP until it answers, and a stop that terminates
it, then kills it if it lingers. Standard library only (pytest collects it with
``--doctest-modules``)."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

#: Readiness probes go straight to loopback, whatever the *_proxy environment says.
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))

Server = TypeVar("Server", bound="LocalServer")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Endpoint:
    """A URL of the server, as a class attribute: ``query_url = Endpoint("/query")`` reads as
    ``http://127.0.0.1:PORT/query`` on an instance."""

    def __init__(self, path: str, doc: str) -> None:
        self.path = path
        self.__doc__ = doc

    def __get__(self, server: LocalServer | None, owner: Any = None) -> Any:
        return self if server is None else server.base_url + self.path


class LocalServer:
    """A server process of the tests; subclasses define :meth:`start` (with :meth:`_launch`)."""

    #: Seconds :meth:`stop` waits after SIGTERM before it kills.
    stop_grace_s = 10.0
    #: How many times a start is retried when another process grabbed a chosen port first.
    port_attempts = 3

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self.http_port = 0

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.http_port}"

    def start(self: Server) -> Server:
        raise NotImplementedError

    def log_text(self) -> str:
        """What the server logged so far, for failure messages."""
        return ""

    def _launch(self, spawn: Callable[[], subprocess.Popen[bytes]], probe_path: str, deadline_s: float,
                step_s: float) -> None:
        """Run ``spawn`` (which picks free ports and starts the process) until the server answers
        ``probe_path``, at most :attr:`port_attempts` times; raise ``RuntimeError`` otherwise."""
        for _ in range(self.port_attempts):
            self._process = spawn()
            if self._answers(self.base_url + probe_path, deadline_s, step_s):
                return
            self.stop()
        raise RuntimeError(f"{type(self).__name__} did not start:\n{self.log_text()}")

    def _answers(self, probe_url: str, deadline_s: float, step_s: float) -> bool:
        """Poll ``probe_url`` until it answers 200 (True), or the process exits or the deadline
        passes (False)."""
        assert self._process is not None
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                with NO_PROXY.open(probe_url, timeout=5) as answer:
                    if answer.status == 200:
                        return True
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(step_s)
        return False

    def stop(self) -> None:
        """Stop the server (terminate, then kill if it lingers). Safe to call twice."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=self.stop_grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def __enter__(self: Server) -> Server:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
