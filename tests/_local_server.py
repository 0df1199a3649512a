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
from types import TracebackType
from typing import TypeVar

#: Readiness probes go straight to loopback, whatever the *_proxy environment says.
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))

Server = TypeVar("Server", bound="LocalServer")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalServer:
    """A server process of the tests; subclasses define :meth:`start`."""

    #: Seconds :meth:`stop` waits after SIGTERM before it kills.
    stop_grace_s = 10.0

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None

    def start(self: Server) -> Server:
        raise NotImplementedError

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
