"""A progress display on standard error for long runs: bytes read, then patients decided.

Worker processes only add to counters in shared memory (cheap enough to do on every read); one
thread in the main process turns them into a ``rich`` progress display a few times a second. The
display is transient (it disappears when the run ends) and is shown only when asked, which the
command line does when standard error is a terminal and ``--quiet`` is not given, so that logs
and pipes never receive it.
"""

from __future__ import annotations

import multiprocessing.sharedctypes
import threading
from types import TracebackType
from typing import Any, Callable

from . import processes

_REFRESH_SECONDS = 0.25


class Meter:
    """Counters of bytes read and patients decided, one pair per worker, and their display.

    Create it before starting worker processes (they inherit the counters) and call
    :meth:`show` after, so that no display thread exists when a process forks.
    """

    def __init__(self, workers: int, total_bytes: int, *, visible: bool) -> None:
        self.counts = multiprocessing.sharedctypes.RawArray("q", 2 * workers)
        self.total_bytes = total_bytes
        self.patients = 0
        self.visible = visible
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def on_read(self, worker: int) -> Callable[[int], None]:
        """The callback a worker's reader calls with the number of bytes it read."""
        counts, slot = self.counts, 2 * worker

        def read(nbytes: int) -> None:
            counts[slot] += nbytes
        return read

    def decided(self, worker: int, patients: int) -> None:
        """Count ``patients`` more decided by ``worker``."""
        self.counts[2 * worker + 1] += patients

    def show(self) -> "Meter":
        """Start displaying (if visible); the display ends with :meth:`close` or the ``with`` block."""
        if self.visible and self._thread is None:
            # rich only for a display (a quiet run, or one whose output is not a terminal, has
            # none), and imported here, not in the display thread
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
            columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                       TextColumn("{task.fields[detail]}"), TimeElapsedColumn())
            bar = Progress(*columns, console=Console(stderr=True), transient=True, auto_refresh=False)
            self._thread = processes.start_thread(
                threading.Thread(target=self._display, args=(bar,), name="itkg-progress", daemon=True))
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> "Meter":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _display(self, bar: Any) -> None:
        with bar:
            reading = bar.add_task("reading ", total=self.total_bytes or 1, detail="")
            deciding = bar.add_task("deciding", total=None, detail="", visible=False)
            while True:
                stopping = self._stop.wait(_REFRESH_SECONDS)
                read = sum(self.counts[0::2])
                bar.update(reading, completed=read,
                           detail=f"{read / 1e6:,.0f} of {self.total_bytes / 1e6:,.0f} MB")
                if self.patients:
                    done = sum(self.counts[1::2])
                    bar.update(deciding, total=self.patients, completed=done, visible=True,
                               detail=f"{done:,} of {self.patients:,} patients")
                bar.refresh()
                if stopping:
                    return
