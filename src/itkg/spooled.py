"""Reading a population into validation's spool in several processes.

Why: ``itkg validate`` read and numbered its input in one process (:func:`itkg.validation.read`:
the one reader's parse and checks, the spool's N-Triples lines and numbers), about 5 µs per
triple, a minute and more at a million patients while the other core waited. N-Triples is line
based, so the eligibility path already cuts a large file into pieces (:func:`itkg.reader.plan`)
that workers parse on their own (:class:`itkg.parallel._Parser`); this module does the same for
the spool, with the same reader, checker and piece plan:

1. The file is cut into pieces of about :data:`PIECE_BYTES` at line starts; forked workers take
   the next piece as they finish one (so the pieces are done nearly in order).
2. A worker parses its piece through the one reader into a spool of its own for that piece
   (:class:`~itkg.partition.Spool`): the checked triples' N-Triples lines go into the worker's
   unnamed temporary file, and the piece is numbered on its own (node numbers local to the
   piece). It sends the numbers and the piece's node ids (:class:`~itkg.partition.SpoolPart`:
   packed arrays and strings, never a triple as a Python object).
3. The main process appends the pieces in input order (:meth:`~itkg.partition.Spool.absorb`):
   the lines are copied in the kernel, and each node gets the number one process reading the
   whole input would have given it (first appearance, in order). So the numbering, the
   partition, the batches and every result are those of the one-process read.
4. Errors are the reader's (:func:`itkg.reader.resolve`: file and line, counted from the start of
   the file; no value): after a piece that fails, no later piece is handed out, and nothing is
   returned (all or nothing).

Only N-Triples files read from disk go this way (:func:`itkg.waves.eligible`); other formats,
FHIR input and small files are read in one process, as before.
"""

from __future__ import annotations

import functools
import multiprocessing
import multiprocessing.connection
import signal
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from . import guards, processes, waves
from .errors import WorkerError
from .loading import DEFAULT_MAX_BYTES, Source, StoreSink
from .parallel import _answering, _Parser
from .partition import Spool, SpoolPart
from .reader import (MIN_PIECE_BYTES, Namer, Piece, PieceReport, Untrusted, fatal_after, plan, resolve,
                     sources_of)
from .streaming import gc_paused

#: N-Triples input of at least this many bytes is read in several processes.
PARALLEL_FROM = 64 * 1024**2
#: Bytes per piece: about 20,000 patients; each worker holds one piece's numbering at a time.
PIECE_BYTES = 32 * 1024**2

#: Makes a spool (:class:`~itkg.partition.Spool` with the shapes' predicates): ``make(file, at)``
#: writes its lines into ``file`` from offset ``at``; ``make(None, 0)`` into a new file.
SpoolMaker = Callable[[IO[bytes] | None, int], Spool]


def read(paths: Sequence[Path], make: SpoolMaker, *, input_format: str | None = None,
         max_bytes: int = DEFAULT_MAX_BYTES, workers: int = 2, piece_bytes: int = PIECE_BYTES,
         parallel_from: int = PARALLEL_FROM) -> tuple[Spool, tuple[Source, ...]] | None:
    """Read ``paths`` into a spool made by ``make`` in ``workers`` processes, with the checks and
    errors of :func:`itkg.loading.load_store` (ill-typed values kept), and the sources read
    (without checksums: validation does not show them). None when the input is not read this
    way (not N-Triples files on disk, smaller than ``parallel_from`` bytes, one worker, no
    fork), or when its pieces cannot be trusted apart: read it in one process then.

    :raises InputError: as :func:`itkg.load` would raise it; nothing is returned then.
    """
    if workers < 2 or not processes.forking_available():
        return None
    guards.install_library_defaults()
    pieces = plan(paths, input_format=input_format, max_bytes=max_bytes)
    total = sum(p.nbytes for p in pieces)
    if not waves.eligible(pieces) or total < parallel_from:
        return None
    pieces = plan(paths, input_format=input_format, max_bytes=max_bytes,
                  parts=max(workers, -(-total // max(1, piece_bytes))),
                  min_piece_bytes=min(MIN_PIECE_BYTES, max(1, piece_bytes // 2)))
    if len(pieces) < 2 or not waves.eligible(pieces):
        return None
    try:
        return _Run(pieces, workers, make).read()
    except Untrusted:
        return None


class _PieceSpools:
    """A worker's sink (:class:`itkg.reader.Sink`): each piece into a spool of its own, written
    into the worker's file after the previous piece's lines, through the sink
    :func:`~itkg.loading.load_store` uses (its checker kept from piece to piece: its caches)."""

    def __init__(self, make: SpoolMaker, file: IO[bytes]) -> None:
        self.make, self.file = make, file
        self.inner = StoreSink(None, keep_ill_typed=True)  # type: ignore[arg-type]  # the spool: set per piece
        self.checker = self.inner.checker
        self.end = 0
        self.spool: Spool | None = None

    def add(self, quads: Iterable[Any], namer: Namer, report: PieceReport) -> None:
        self.spool = self.make(self.file, self.end)
        self.inner.store = self.spool  # type: ignore[assignment]  # duck-typed: Spool.extend
        self.inner.add(quads, namer, report)

    def take(self) -> SpoolPart:
        """The piece just parsed (empty when the parser failed before any triple)."""
        spool = self.spool if self.spool is not None else self.make(self.file, self.end)
        self.spool = None
        part = spool.part(self.end)
        self.end = spool.end
        return part


class _Run:
    """One parallel read: forked workers parse pieces; this process appends them in order."""

    def __init__(self, pieces: list[Piece], workers: int, make: SpoolMaker) -> None:
        self.pieces, self.make = pieces, make
        self.workers = max(1, min(workers, len(pieces)))
        context = multiprocessing.get_context("fork")
        #: the next piece to hand out, and the last that still matters (an error before it)
        self.next = context.RawValue("q", 0)
        self.stop = context.RawValue("q", len(pieces))
        self.lock = context.Lock()
        self.files: list[IO[bytes]] = []
        self.children: list[processes.Child] = []

    def read(self) -> tuple[Spool, tuple[Source, ...]]:
        spool = self.make(None, 0)
        try:
            self.files = [tempfile.TemporaryFile() for _ in range(self.workers)]  # noqa: SIM115 - closed below
            for worker in range(self.workers):
                self.children.append(processes.start_child(
                    functools.partial(self._child, worker), name=f"itkg-reader-{worker + 1}"))
            reports = self._append(spool)
            resolve(self.pieces, reports)  # raises the input's error, if any
            spool.finish()
            return spool, sources_of(self.pieces, reports, checksums=False)
        except BaseException:
            spool.close()
            raise
        finally:
            for child in self.children:
                child.stop()
            for file in self.files:
                file.close()

    def _append(self, spool: Spool) -> dict[int, PieceReport]:
        """Receive every worker's pieces, appending them to ``spool`` in input order until a
        piece found a problem (then the rest only counts for the error)."""
        reports: dict[int, PieceReport] = {}
        waiting: dict[int, tuple[int, SpoolPart]] = {}
        appended, failed = 0, False
        conns: dict[Any, int] = {child.conn: worker for worker, child in enumerate(self.children)}
        while conns:
            ready = multiprocessing.connection.wait(list(conns), timeout=processes.WAKE_S)
            if not ready:
                processes.raise_if_stopping()  # an ending signal whose SystemExit was lost
                continue
            for conn in ready:
                worker = conns[conn]
                message = self._receive(worker)
                if message is None:
                    del conns[conn]
                    continue
                number, report, part = message
                reports[number] = report
                if not failed:
                    waiting[number] = (worker, part)
            while not failed and appended in waiting:
                worker, part = waiting.pop(appended)
                if fatal_after(self.pieces, reports[appended]) is not None:
                    failed = True
                    waiting.clear()
                    break
                spool.absorb(part, self.files[worker].fileno())
                appended += 1
        return reports

    def _receive(self, worker: int) -> tuple[int, PieceReport, SpoolPart] | None:
        """A worker's next piece, or None when it has no more."""
        child = self.children[worker]
        try:
            message = child.conn.recv()
        except (EOFError, OSError):
            code = child.exit_code()
            if code == -signal.SIGKILL or processes.ended_out_of_memory(code):
                raise MemoryError from None  # the OOM killer, or Rust past the memory budget
            raise WorkerError("a reading worker process ended unexpectedly") from None
        if message[0] == "crashed":
            if message[1] == "MemoryError":
                raise MemoryError
            raise WorkerError(f"a reading worker process failed ({message[1]})")
        if message[0] == "done":
            return None
        _, number, report, part = message
        return number, report, part

    # -- a worker ----------------------------------------------------------------------------------

    def _numbers(self) -> Iterator[int]:
        """The pieces this worker takes: the next one not handed out yet, while it matters."""
        while True:
            with self.lock:
                number = self.next.value
                if number >= len(self.pieces) or number > self.stop.value:
                    return
                self.next.value = number + 1
            yield number

    def _child(self, worker: int, conn: multiprocessing.connection.Connection) -> None:
        processes.in_fresh_thread(self._serve, worker, conn, name=f"itkg-reader-{worker + 1}")

    def _serve(self, worker: int, conn: multiprocessing.connection.Connection) -> None:
        with _answering(conn):
            sink = _PieceSpools(self.make, self.files[worker])
            parser = _Parser(self.pieces, self._numbers(), self.stop, self.lock, sink=sink)

            def sent(number: int, report: PieceReport) -> None:
                conn.send(("piece", number, report, sink.take()))

            with gc_paused():
                parser.run(None, sent)
            conn.send(("done",))
