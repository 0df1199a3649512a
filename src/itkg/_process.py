"""Child processes that never outlive the itkg process that started them.

Queries and HermiT run in child processes so that they can be killed at a deadline. If itkg itself
is killed, those children must go too: a stray child keeps burning CPU with no deadline and holds
patient data in memory or in its private temporary folder.
"""

from __future__ import annotations

import ctypes
import ctypes.util
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
