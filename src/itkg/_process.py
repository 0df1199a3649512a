"""Child processes that never outlive the itkg process that started them.

Queries and HermiT run in child processes so that they can be killed at a deadline. If itkg itself
is killed, those children must go too: a stray child keeps burning CPU with no deadline and holds
patient data in memory or in its private temporary folder.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to SIGKILL the calling process when its parent dies (no-op elsewhere).

    Called first thing in a forked child, or as ``preexec_fn`` of a subprocess.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - no prctl: the deadline still applies
        pass


def exit_on_sigterm() -> None:
    """Turn SIGTERM into ``SystemExit`` so that ``finally`` blocks kill children and remove
    private temporary folders, as they do on Ctrl-C."""
    def _terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, _terminate)


_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000


def _unshare(flags: int) -> None:
    unshare = getattr(os, "unshare", None)  # Python 3.12+
    if unshare is not None:
        unshare(flags)
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.unshare(ctypes.c_int(flags)) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def drop_network() -> bool:
    """Move the calling process into a new, empty network namespace; ``True`` if it worked.

    Called first thing in the child that runs a user's query. The query gate keeps ``SERVICE``
    out, but Oxigraph's HTTP client is written in Rust, out of reach of Python's audit hook, so
    a future gap in the gate would otherwise leak patient values in a URL. In the new namespace
    there is no interface but a loopback that is down: every connection fails with "network is
    unreachable", whatever address the query names.

    A privileged process (root in CI) only needs ``CLONE_NEWNET``, and keeps its rights over
    the files it still has to read; an unprivileged one needs a user namespace as well. Where
    neither is allowed (not Linux, or a container that forbids namespaces) it returns ``False``
    and the gate remains the only protection, as docs/security.md says. It must run while the
    process has one thread, which a freshly forked child has.
    """
    if not sys.platform.startswith("linux"):
        return False
    for flags in (_CLONE_NEWNET, _CLONE_NEWUSER | _CLONE_NEWNET):
        try:
            _unshare(flags)
        except (OSError, AttributeError):
            continue
        return True
    return False
