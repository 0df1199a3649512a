"""Eligibility for a population: parse and decide in several processes, with the rows of one.

The work is linear in the triples, and the costly part is Python's handling of each parsed
triple, so it is split across processes (forked: the ontology's knowledge is inherited, not sent):

1. Each worker parses its pieces of the input (:mod:`itkg.streaming`) into its own index. The main
   process is worker 0; the others are forked children.
2. The workers report what they found; :func:`itkg.streaming.resolve` raises the error
   :func:`itkg.load` would raise, if any, before any row exists (all or nothing). A Turtle cut
   that cannot be trusted makes the whole run start again in one process.
3. Each worker decides the patients it holds *entirely*: the patient and every record the rules
   read for it (:meth:`PatientIndex.records`) are subjects of no other worker. Workers compare
   hashes of their subjects to know. In files grouped by patient, as exports are, that is nearly
   every patient; the rest (cut at a piece boundary, or spread over files) are *deferred*.
4. The main process fetches the triples of the deferred patients and their records from every
   worker, merges them and decides those patients itself.
5. Only then, every index dropped, do the workers send their rows (an index is most of a
   worker's memory, and rows travelling beside it made the peak).

Each patient is decided once, by the same :class:`RuleEngine` over the same triples as in one
process, so the rows are the same; only rows (as plain tuples) and the few deferred patients'
triples cross process boundaries, never the index.

Large N-Triples input (the population format, from :data:`itkg.waves.WAVES_FROM` bytes: below
it, this way is faster and small enough) goes another way, :class:`_WaveRun`: a pre-scan of every
piece's subjects says beforehand which patients are local to a piece, so each process decides a
piece as soon as it has parsed it and drops its triples (:mod:`itkg.waves`); no process ever holds
the index of the whole input. A large FHIR Bulk export (NDJSON, from
:data:`itkg.fhir.waves.FHIR_WAVES_FROM` bytes) goes in waves too, :class:`_FhirWaveRun`: each
process maps and decides one part of every file at a time (:mod:`itkg.fhir.waves`), and what it
keeps for the end is finished and decided as :class:`_Run` decides everything.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
from collections import ChainMap
import multiprocessing.connection
import pickle
import signal
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from . import processes, vocab, waves
from .engine import PatientIndex, RuleEngine
from .errors import WorkerError
from .knowledge import Knowledge, load_knowledge
from .loading import DEFAULT_MAX_BYTES, Source
from .progress import Meter
from .reader import Sink, renumbering
from .results import EligibilityResult, PrerequisiteCheck
from .streaming import (MIN_PIECE_BYTES, IndexBuilder, Piece, PieceReport, Untrusted, build_index,
                        fatal_after, finish_fhir, first_reports, gc_paused, parse_piece, plan, resolve,
                        sources_of)

#: Patients decided between two updates of the progress counters.
_BATCH = 2048
#: Nodes whose triples are fetched from the workers in one message.
_FETCH_BATCH = 50_000


def eligibility_rows(paths: Sequence[str | Path], *, input_format: str | None = None,
                     max_bytes: int = DEFAULT_MAX_BYTES, workers: int | None = None,
                     knowledge: Knowledge | None = None, checksums: bool = False,
                     progress: bool = False, min_piece_bytes: int = MIN_PIECE_BYTES,
                     strict: bool = False, wave_bytes: int = waves.WAVE_BYTES,
                     waves_from: int = waves.WAVES_FROM, fhir_waves_from: int | None = None,
                     fhir_wave_bytes: int | None = None,
                     ) -> tuple[list[EligibilityResult], tuple[Source, ...]]:
    """The rows of :func:`itkg.eligibility` for the patient files ``paths``, and the sources read.

    :param workers: processes to use (default: one per CPU). Files smaller than twice
        ``min_piece_bytes`` are not cut, so small inputs run in this process alone.
    :param checksums: compute the SHA-256 of every file for the sources (costs one more read).
    :param waves_from: N-Triples input of at least this many bytes is decided in waves
        (:mod:`itkg.waves`); smaller input as other formats are, one index per process.
    :param wave_bytes: input decided in waves is cut into pieces of about this size (when it
        is at least twice this size), decided one at a time in each process.
    :param fhir_waves_from: FHIR NDJSON input of at least this many bytes is decided in waves
        (:mod:`itkg.fhir.waves`; default :data:`~itkg.fhir.waves.FHIR_WAVES_FROM`), cut into
        parts of about ``fhir_wave_bytes`` (default :data:`~itkg.fhir.waves.FHIR_WAVE_BYTES`).
    :param progress: show progress on standard error.
    :raises InputError: as :func:`itkg.load` would, and then no rows at all.

    >>> from itkg.resources import data_root
    >>> rows, sources = eligibility_rows([data_root() / "examples" / "patients.ttl"], workers=2)
    >>> [(r.patient.rsplit("/", 1)[1], r.status) for r in rows]
    [('anna', 'qualifies'), ('ben', 'pending'), ('carla', 'qualifies'), ('dev', 'excluded')]
    """
    knowledge = knowledge or load_knowledge()
    workers = processes.default_workers() if workers is None else max(1, workers)
    if workers > 1 and not processes.forking_available():
        workers = 1  # pragma: no cover - the children must inherit the knowledge and hash seed
    pieces = plan(paths, input_format=input_format, max_bytes=max_bytes, parts=workers, fhir_facts=True,
                  min_piece_bytes=min_piece_bytes, first_share=main_share(workers))
    total = sum(p.nbytes for p in pieces)
    attempts: list[tuple[type[_Run], list[Piece]]] = []  # tried in turn; Untrusted moves on
    if _fhir_waves(pieces) and total >= (_fhir_default("FHIR_WAVES_FROM") if fhir_waves_from is None
                                         else fhir_waves_from):
        parts = _wave_sized(pieces, paths, total, workers, _fhir_default("FHIR_WAVE_BYTES")
                            if fhir_wave_bytes is None else fhir_wave_bytes,
                            input_format=input_format, max_bytes=max_bytes, min_piece_bytes=min_piece_bytes)
        attempts.append((_FhirWaveRun, parts))  # what FHIR waves cannot trust, one index per process may
    elif waves.eligible(pieces) and total >= waves_from:
        pieces = _wave_sized(pieces, paths, total, workers, wave_bytes, input_format=input_format,
                             max_bytes=max_bytes, min_piece_bytes=min_piece_bytes)
        if len(pieces) > 1 and waves.eligible(pieces):
            attempts.append((_WaveRun, pieces))
    if not (attempts and attempts[0][0] is _WaveRun) and workers > 1 and len(pieces) > 1:
        attempts.append((_Run, pieces))  # (what N-Triples waves cannot trust: this process, below)
    for run, parts in attempts:
        try:
            with Meter(workers, total, visible=progress) as meter:
                return run(parts, workers, knowledge, meter, strict).rows(checksums)
        except Untrusted:
            continue  # the pieces cannot be trusted apart: the next attempt, or this process below
    with Meter(1, total, visible=progress) as meter:
        meter.show()
        index, sources = build_index(paths, input_format=input_format, max_bytes=max_bytes,
                                     checksums=checksums, on_read=meter.on_read(0), strict=strict,
                                     predicates=knowledge.indexed_predicates())
        if meter.visible:  # (the count is for the display only)
            meter.patients = len(index.patients())
        with gc_paused():
            rows, _ = _decide(index, knowledge, index.subclass_axioms, set(),
                              lambda n: meter.decided(0, n))
    return rows, sources


#: What the main process of a :class:`_Run` does beyond a worker's share (finishing FHIR input,
#: the deferred patients, rebuilding and sorting every worker's rows, then the caller writes
#: them), as a fraction of all the parsing and deciding: measured at about 8% for a FHIR Bulk
#: export of 100,000 patients (docs/performance.md, session nine).
MAIN_EXTRA = 0.08


def main_share(workers: int) -> float:
    """The main process's part of a FHIR input relative to a worker's, so that all end together:
    with parts ``f`` (main) and ``(1 - f) / (n - 1)`` (each worker) of the work ``W``,
    ``f W + MAIN_EXTRA W = (1 - f) W / (n - 1)``. 1 for one process; at least a quarter.

    >>> round(main_share(2), 2), round(main_share(4), 2), main_share(1)
    (0.85, 0.7, 1.0)
    """
    if workers < 2:
        return 1.0
    first = (1 - (workers - 1) * MAIN_EXTRA) / workers
    return max(0.25, (workers - 1) * first / (1 - first)) if first > 0 else 0.25


def _decide(index: PatientIndex, knowledge: Knowledge, axioms: list[tuple[str, str]],
            others: set[int], decided: Callable[[int], None],
            patients: list[str] | None = None) -> tuple[list[EligibilityResult], list[str]]:
    """Decide the patients of ``index`` (or ``patients``) whose triples and records' triples are
    all in it: none of their hashes is in ``others`` (the subjects other workers hold). The rest
    are returned, deferred, for the main process to decide with everyone's triples."""
    index.subclass_axioms = axioms
    engine = RuleEngine(knowledge, index)
    links = waves.record_links(knowledge)
    rows: list[EligibilityResult] = []
    deferred: list[str] = []
    patients = index.patients() if patients is None else patients
    for count, patient in enumerate(patients, 1):
        if others and (hash(patient) in others or any(hash(r) in others for r in waves.records(index, patient, links))):
            deferred.append(patient)
        else:
            rows.extend(engine.rows(patient))
        if count % _BATCH == 0:
            decided(_BATCH)
    decided(len(patients) % _BATCH)
    return rows, deferred


def _subject_hashes(index: PatientIndex) -> bytes:
    """Hashes of every subject in ``index``, packed (forked processes share the hash seed)."""
    return processes.packed_hashes(index.nodes)


def _hash_set(*packed: bytes) -> set[int]:
    hashes = array("q")
    for data in packed:
        hashes.frombytes(data)
    return set(hashes)


_pack = waves.pack


def _unpack(packed: tuple) -> EligibilityResult:
    """A row :func:`waves.pack` packed. Made by the dataclass's own ``__init__``: filling a new
    object's ``__dict__`` directly is 2 µs a row faster but holds 460 more bytes a row (the
    object gets a dict of its own instead of the class's shared keys), 70 MB at a million
    FHIR patients, at the run's peak."""
    patient, therapy, indication, status, unmet, evidence, checks = packed
    return EligibilityResult(patient, therapy, indication, status, unmet, evidence,
                             tuple(PrerequisiteCheck(*c) for c in checks))


def _renamed(row: EligibilityResult, rename: Callable[[str], str]) -> EligibilityResult:
    """``row`` with the names of unlabelled nodes as a one-process read gives them
    (:func:`itkg.reader.renumbering`)."""
    return EligibilityResult(rename(row.patient), row.therapy, row.indication, row.status, row.unmet,
                             tuple(map(rename, row.evidence)),
                             tuple(PrerequisiteCheck(c.code, c.state, rename(c.reason), tuple(map(rename, c.records)))
                                   for c in row.prerequisites))


def _sort_key(row: EligibilityResult) -> tuple:
    """The order of ``sorted(rows)`` (the dataclass compares these fields), cheaper to compare."""
    return row.patient, row.therapy, row.indication, row.status, row.unmet


class _Parser:
    """One worker's parsing: its pieces, in order, into its own index (or into ``sink``: the
    validation spool's worker, :mod:`itkg.spooled`); skips what no longer matters once some
    worker has found an error earlier in the input. ``mine`` may be an iterator that hands
    out piece numbers as they are asked for (in increasing order)."""

    def __init__(self, pieces: Sequence[Piece], mine: Iterable[int], stop: Any, lock: Any,
                 strict: bool = False, predicates: frozenset[str] | None = None,
                 sink: Sink | None = None) -> None:
        self.pieces, self.mine, self.stop, self.lock = pieces, mine, stop, lock
        self.strict = strict
        self.builder = IndexBuilder(predicates=predicates)
        self.sink: Sink = self.builder if sink is None else sink
        #: rows decided while parsing (:mod:`itkg.fhir.waves`), as pickled lists of packed rows
        self.rows: list[bytes] = []
        #: how many patients those rows are of (for the progress display)
        self.patients = 0

    def run(self, on_read: Callable[[int], None] | None,
            after: Callable[[int, PieceReport], None] | None = None) -> dict[int, PieceReport]:
        """Parse the pieces; ``after(number, report)`` is called once each is parsed."""
        reports: dict[int, PieceReport] = {}
        stop = self.stop
        for number in self.mine:
            if number > stop.value:
                break
            reports[number] = report = parse_piece(
                self.pieces[number], self.sink, on_read=on_read,
                should_stop=functools.partial(_after, number, stop))
            last = fatal_after(self.pieces, report, self.strict)
            if last is not None:
                with self.lock:
                    stop.value = min(stop.value, last)
            if after is not None:
                after(number, report)
        return reports


def _assign(pieces: Sequence[Piece], workers: int) -> list[list[int]]:
    """Piece numbers per worker, balancing bytes, each list in input order. A FHIR chunk goes to
    the worker its part names (:mod:`itkg.fhir.index`: part *k* of every file to worker *k*)."""
    load = [0] * workers
    assigned: list[list[int]] = [[] for _ in range(workers)]
    for piece in pieces:
        if piece.fhir is not None:
            worker = piece.fhir.part % workers
            load[worker] += max(piece.nbytes, 1)
            assigned[worker].append(piece.number)
    for piece in sorted((p for p in pieces if p.fhir is None), key=lambda p: -p.nbytes):
        worker = load.index(min(load))
        load[worker] += max(piece.nbytes, 1)
        assigned[worker].append(piece.number)
    return [sorted(numbers) for numbers in assigned]


class _Run:
    """One parallel run: the main process is worker 0 and talks to one pipe per child
    (:func:`itkg.processes.start_child`: forked, ended with the run, dying with this process)."""

    def __init__(self, pieces: list[Piece], workers: int, knowledge: Knowledge, meter: Meter,
                 strict: bool = False) -> None:
        self.pieces, self.knowledge, self.meter = pieces, knowledge, meter
        self.strict = strict
        self.assigned = [a for a in _assign(pieces, workers) if a]
        context = multiprocessing.get_context("fork")
        self.stop = context.RawValue("q", len(pieces))
        self.lock = context.Lock()
        self.children: list[processes.Child] = []
        #: notes on FHIR records fetched from the workers with the deferred patients' triples
        self.fetched_notes: dict[str, str] = {}

    def _finish_fhir(self, builder: IndexBuilder, reports: dict[int, PieceReport],
                     states: list[dict[str, Any]]) -> None:
        """FHIR input: start again in one process after an error (it reports the first, with
        its line), else finish what crosses the workers' chunks (:mod:`itkg.fhir.index`)."""
        fhir = [p for p in self.pieces if p.fhir is not None]
        if not fhir:
            return
        if any(r.fhir_error is not None for r in reports.values()) or any(p.number not in reports for p in fhir):
            raise Untrusted("an error in FHIR input")
        if builder.fhir is None:
            from .fhir.index import FhirIndexer
            assert fhir[0].fhir is not None
            builder.fhir = FhirIndexer(builder, fhir[0].fhir.job)
            builder.fhir.finish_local()

        def ask(medications: set[str], patients: set[str]) -> list[tuple[dict, dict]]:
            for conn in self._conns():
                conn.send(("fhir-lookup", medications, patients))
            return [self._receive(conn) for conn in self._conns()]

        builder.fhir.finish_main(states, ask, first_reports(fhir, reports))
        finish_fhir(builder, fhir, reports, builder.fhir.final_report)

    def rows(self, checksums: bool) -> tuple[list[EligibilityResult], tuple[Source, ...]]:
        try:
            for worker in range(1, len(self.assigned)):
                self.children.append(processes.start_child(
                    functools.partial(self._child, worker), name=f"itkg-worker-{worker}"))
            self.meter.show()
            return self._main(checksums)
        finally:
            for child in self.children:
                child.stop()

    # -- the main process --------------------------------------------------------------------------

    def _main(self, checksums: bool) -> tuple[list[EligibilityResult], tuple[Source, ...]]:
        with gc_paused():
            parser = self._parser(0, None)
            reports = parser.run(self.meter.on_read(0))
            builder = parser.builder
            index = builder.index
            if builder.fhir is not None:
                builder.fhir.finish_local()
                builder.fhir.export_own()  # while the workers finish theirs
            axioms = list(index.subclass_axioms)
            hashes = [b""]
            self.meter.patients = _patient_count(index, self.meter) + parser.patients
            states = []
            for conn in self._conns():
                child_reports, child_axioms, child_hashes, patients, state = self._receive(conn)
                reports.update(child_reports)
                axioms += child_axioms
                hashes.append(child_hashes)
                self.meter.patients += patients
                if state is not None:
                    states.append(state)
            self._finish_fhir(builder, reports, states)
            resolve(self.pieces, reports, self.strict)  # raises the input's error, if any
            hashes[0] = _subject_hashes(index)  # with what finishing FHIR added
            for worker, conn in enumerate(self._conns(), 1):
                conn.send(("decide", b"".join(h for i, h in enumerate(hashes) if i != worker), axioms))
            rows, deferred = _decide(index, self.knowledge, axioms, _hash_set(*hashes[1:]),
                                     lambda n: self.meter.decided(0, n))
            fhir = builder.fhir
            if fhir is not None:  # the evidence names the FHIR resources and codes
                # This process's own rows now, while the workers annotate theirs: a worker
                # answers the fetch of the deferred patients only once it has, so annotating
                # after the fetch kept both processes waiting in turn. (Every record of an
                # own patient is this process's: its notes are its reader's, with what
                # finishing added; a fresh dict, as :meth:`FhirIndexer.notes` adds to it. As in
                # every worker, the longer evidence is made while the index is still held.)
                from .fhir.hook import annotate_in_place
                annotate_in_place(rows, ChainMap(fhir.notes({}), fhir.reader.notes))
            for conn in self._conns():
                deferred += self._receive(conn)
            late = self._decide_deferred(index, sorted(set(deferred)), axioms)
            if fhir is not None:
                annotate_in_place(late, ChainMap(fhir.notes(self.fetched_notes), fhir.reader.notes))
            rows += late
            # Every patient is decided: the indexes (most of the memory) go before the rows
            # travel. The workers let go of theirs and pack their rows while this process lets
            # go of its own; their rows are read once it has.
            for conn in self._conns():
                conn.send(("rows",))
            del index
            builder.index = PatientIndex(self.knowledge.indexed_predicates())
            for chunks in [parser.rows, *(self._receive_rows(conn) for conn in self._conns())]:
                while chunks:  # (annotated by the workers, FHIR input; decided in waves, pickled)
                    rows += map(_unpack, pickle.loads(chunks.pop(0)))
            rename = renumbering(self.pieces, reports)
            if rename is not None:
                rows = [_renamed(row, rename) for row in rows]
            rows.sort(key=_sort_key)
        return rows, sources_of(self.pieces, reports, checksums=checksums)

    def _decide_deferred(self, index: PatientIndex, patients: list[str],
                         axioms: list[tuple[str, str]]) -> list[EligibilityResult]:
        """Decide the patients no worker held entirely, over their triples from every worker:
        first the patients' own (which name their records), then their records'."""
        if not patients:
            return []
        merged = PatientIndex(self.knowledge.indexed_predicates())
        self._gather(index, merged, patients)
        links = waves.record_links(self.knowledge)
        records = sorted({r for p in patients for r in waves.records(merged, p, links)} - set(patients))
        self._gather(index, merged, records)
        rows, _ = _decide(merged, self.knowledge, axioms, set(), lambda n: None,  # counted when deferred
                          [p for p in patients if vocab.HAS_CONDITION in merged.nodes.get(p, {})])
        return rows

    def _gather(self, index: PatientIndex, merged: PatientIndex, nodes: list[str]) -> None:
        """Merge the triples of ``nodes`` from every worker, in batches (an input sorted by
        subject defers nearly every patient: then this moves whole indexes). This process's
        own entries are moved, not copied: its own patients are decided already."""
        for start in range(0, len(nodes), _FETCH_BATCH):
            batch = nodes[start:start + _FETCH_BATCH]
            for conn in self._conns():
                conn.send(("fetch", batch))
            merged.merge(index.take(batch))
            for conn in self._conns():
                fragment, notes = self._receive(conn)
                merged.merge(fragment)
                self.fetched_notes.update(notes)

    def _conns(self) -> list[multiprocessing.connection.Connection]:
        return [child.conn for child in self.children]

    def _parser(self, worker: int, conn: multiprocessing.connection.Connection | None) -> _Parser:
        """The parsing of ``worker`` (``conn``: its pipe to the main process, in a child)."""
        return _Parser(self.pieces, self.assigned[worker], self.stop, self.lock, self.strict,
                       self.knowledge.indexed_predicates())

    def _receive_rows(self, conn: multiprocessing.connection.Connection) -> list[bytes]:
        """A child's rows: pickled lists of packed rows, which the caller empties as it unpacks."""
        chunks = self._receive(conn)
        assert isinstance(chunks, list)
        return chunks

    def _receive(self, conn: multiprocessing.connection.Connection, data: bytes | None = b"") -> Any:
        """The next message of a child (or the one already read as ``data``; ``None``: it had gone)."""
        try:
            if data is None:
                raise EOFError
            if not data:
                processes.wait_readable(conn)  # wakes for a lost ending signal
            message = conn.recv() if not data else pickle.loads(data)
        except (EOFError, OSError):
            child = next(c for c in self.children if c.conn is conn)
            code = child.exit_code()
            if code == -signal.SIGKILL or processes.ended_out_of_memory(code):
                raise MemoryError from None  # the OOM killer, or Rust past the memory budget
            raise WorkerError("a worker process ended unexpectedly") from None
        if isinstance(message, tuple) and message and message[0] == "crashed":
            if message[1] == "MemoryError":
                raise MemoryError
            if message[1] == "Mismatch":  # the pre-scan of itkg.waves cannot be trusted
                raise Untrusted("the pre-scan missed a subject")
            if message[1] == "Untrusted":  # what a child's waves cannot trust (itkg.fhir.waves)
                raise Untrusted("a worker's waves cannot be trusted")
            raise WorkerError(f"a worker process failed ({message[1]})")
        return message

    # -- a child -----------------------------------------------------------------------------------

    def _child(self, worker: int, conn: multiprocessing.connection.Connection) -> None:
        """A child's life, in a fresh thread (:func:`itkg.processes.in_fresh_thread` says why)."""
        processes.in_fresh_thread(self._serve, worker, conn, name=f"itkg-worker-{worker}")

    def _serve(self, worker: int, conn: multiprocessing.connection.Connection) -> None:
        with _answering(conn):
            with gc_paused():
                parser = self._parser(worker, conn)
                reports = parser.run(self.meter.on_read(worker))
                fhir = parser.builder.fhir
                if fhir is not None:
                    fhir.finish_local()
                index = parser.builder.index
                conn.send((reports, index.subclass_axioms, _subject_hashes(index),
                           _patient_count(index, self.meter) + parser.patients,
                           fhir.export() if fhir is not None else None))
                while True:
                    message = conn.recv()
                    if message[0] == "decide":
                        _, packed_others, axioms = message
                        rows, deferred = _decide(index, self.knowledge, axioms, _hash_set(packed_others),
                                                 lambda n: self.meter.decided(worker, n))
                        conn.send(deferred)  # first: the main process has work to do with them
                        if fhir is not None:  # the evidence names the FHIR resources and codes
                            from .fhir.hook import annotate_in_place
                            annotate_in_place(rows, fhir.reader.notes)
                    elif message[0] == "fetch":
                        notes = fhir.reader.notes if fhir is not None else {}
                        conn.send((index.fragment(message[1]), {n: notes[n] for n in message[1] if n in notes}))
                    elif message[0] == "fhir-lookup":
                        assert fhir is not None
                        conn.send(fhir.lookup(message[1], message[2]))
                    elif message[0] == "rows":  # the last message: the index is not needed any more
                        # Let go of before the rows are packed, although this process ends right
                        # after: the packed rows then reuse its memory (packed beside it, they
                        # are new memory at the run's peak, at a million FHIR patients).
                        del index
                        parser.builder.index = PatientIndex(self.knowledge.indexed_predicates())
                        parser.rows.append(pickle.dumps([_pack(r) for r in rows], protocol=pickle.HIGHEST_PROTOCOL))
                        del rows
                        conn.send(parser.rows)
                        return
                    else:
                        return


@contextlib.contextmanager
def _answering(conn: multiprocessing.connection.Connection) -> Iterator[None]:
    """A child's serving loop: when the main process has gone, it just ends (nothing to report
    to); any other failure is sent as ``("crashed", kind)``, by type only, because a message
    may quote data."""
    try:
        yield
    except (EOFError, BrokenPipeError):
        return
    except BaseException as error:  # noqa: BLE001 - reported by type only: messages may quote data
        try:
            conn.send(("crashed", type(error).__name__))
        except OSError:
            pass


def _after(number: int, stop: Any) -> bool:
    """Whether some worker found an error in a piece before ``number`` (``stop`` is shared)."""
    return bool(number > stop.value)


def _patient_count(index: PatientIndex, meter: Meter) -> int:
    """How many patients ``index`` holds, for the progress display (0 when it is not shown: a
    walk over every node, 0.1 s at 100,000 patients)."""
    return sum(vocab.HAS_CONDITION in props for props in index.nodes.values()) if meter.visible else 0


class _WaveRun(_Run):
    """A parallel run over N-Triples in waves (:mod:`itkg.waves`): every process pre-scans its
    pieces' subjects, the main process finds those that cross pieces, then each process parses
    and decides its pieces one at a time. A child sends the rows of each wave as soon as it has
    them (pickled bytes, kept as they are until the end: a fraction of the rows' size as
    objects), to a thread of the main process that only receives, so that no child waits for the
    main process's own waves. Only the patients that cross, or whose records are elsewhere, are
    decided at the end by the main process, as :class:`_Run` does."""

    def _prescan(self, worker: int) -> tuple[dict[int, Any], dict[int, list[bytes]]]:
        mine = {number: waves.prescan(self.pieces[number]) for number in self.assigned[worker]}
        return mine, {number: waves.buckets(hashes) for number, hashes in mine.items()}

    def _waves(self, worker: int, crossing: set[int], prescanned: dict[int, Any],
               after: Callable[[waves.Waves], None]) -> tuple[waves.Waves, dict[int, PieceReport]]:
        state = waves.Waves(self.knowledge, crossing, prescanned, packed=worker > 0)
        reports: dict[int, PieceReport] = {}
        stop, on_read = self.stop, self.meter.on_read(worker)
        for number in self.assigned[worker]:
            if number > stop.value:
                break
            reports[number] = report = state.wave(
                self.pieces[number], on_read=on_read, should_stop=functools.partial(_after, number, stop),
                decided=lambda n: self.meter.decided(worker, n))
            last = fatal_after(self.pieces, report, self.strict)
            if last is not None:
                with self.lock:
                    stop.value = min(stop.value, last)
            after(state)
        state.engine = None  # (it and the builder hold the last wave's index)
        state.builder.index = PatientIndex()
        return state, reports

    def _main(self, checksums: bool) -> tuple[list[EligibilityResult], tuple[Source, ...]]:
        with gc_paused():
            try:
                mine, packed = self._prescan(0)
                for conn in self._conns():
                    packed.update(self._receive(conn))
                crossing = waves.crossing([packed[number] for number in sorted(packed)])
                del packed
                for conn in self._conns():
                    conn.send(("waves", crossing))
                received: list[list[bytes]] = [[] for _ in self._conns()]
                last: list[bytes | None] = [None] * len(received)
                threads = [threading.Thread(target=_collect, args=(conn, received[k], last, k), daemon=True,
                                            name=f"itkg-rows-{k + 1}") for k, conn in enumerate(self._conns())]
                for thread in threads:
                    processes.start_thread(thread)
                state, reports = self._waves(0, crossing, mine, lambda state: None)
                for thread in threads:
                    thread.join()
            except waves.Mismatch:
                raise Untrusted("the pre-scan missed a subject") from None
            deferred = set(state.kept.patients())
            patients = state.patients
            for conn, final in zip(self._conns(), last):
                child_reports, child_deferred, child_patients = self._receive(conn, final)
                reports.update(child_reports)
                deferred.update(child_deferred)
                patients += child_patients
            self.meter.patients = patients
            resolve(self.pieces, reports, self.strict)  # raises the input's error, if any
            rows: list[EligibilityResult] = state.rows
            state.rows = []
            rows += self._decide_late(state, sorted(deferred))
            self.meter.decided(0, len(deferred))
            state.kept = PatientIndex()
            for chunks in received:  # in the order sent: runs of sorted rows, cheap to sort below
                while chunks:
                    rows += map(_unpack, pickle.loads(memoryview(chunks.pop(0))[1:]))
            rename = renumbering(self.pieces, reports)
            if rename is not None:
                rows = [_renamed(row, rename) for row in rows]
            rows.sort(key=_sort_key)
        return rows, sources_of(self.pieces, reports, checksums=checksums)

    def _decide_late(self, state: waves.Waves, patients: list[str]) -> list[EligibilityResult]:
        """Decide the patients no piece held entirely, over their triples from every process:
        first the patients' own (which name their records), then their records'; a record a
        local patient used, and so was dropped, is read again from its piece."""
        if not patients:
            return []
        merged = PatientIndex(self.knowledge.indexed_predicates())
        self._gather(state.kept, merged, patients)
        names = {r for p in patients for r in waves.records(merged, p, state.links)} - set(patients)
        self._gather(state.kept, merged, sorted(names))
        by_hash = {hash(name): name for name in names}
        pieces: dict[int, list[int]] = state.dropped_pieces(by_hash)
        for conn in self._conns():
            conn.send(("dropped", list(by_hash)))
            for number, hits in self._receive(conn).items():
                pieces.setdefault(number, []).extend(hits)
        for number in sorted(pieces):
            merged.merge(waves.reread(self.pieces[number], [by_hash[h] for h in pieces[number]],
                                      state.predicates))
        engine = RuleEngine(self.knowledge, merged)
        return [row for p in patients if vocab.HAS_CONDITION in merged.nodes.get(p, {}) for row in engine.rows(p)]

    def _serve(self, worker: int, conn: multiprocessing.connection.Connection) -> None:
        with _answering(conn):
            with gc_paused():
                mine, packed = self._prescan(worker)
                conn.send(packed)
                del packed
                message = conn.recv()
                if message[0] != "waves":
                    return

                def send_rows(state: waves.Waves) -> None:
                    if state.rows:
                        conn.send_bytes(_ROWS + pickle.dumps(state.rows, protocol=pickle.HIGHEST_PROTOCOL))
                        state.rows = []

                state, reports = self._waves(worker, message[1], mine, send_rows)
                conn.send((reports, state.kept.patients(), state.patients))
                while True:
                    message = conn.recv()
                    if message[0] == "fetch":
                        conn.send((state.kept.fragment(message[1]), {}))
                    elif message[0] == "dropped":
                        conn.send(state.dropped_pieces(message[1]))
                    else:
                        return


#: The first byte of a message of rows from a child of a wave run (a pickle starts otherwise).
_ROWS = b"R"


def _collect(conn: multiprocessing.connection.Connection, chunks: list[bytes], last: list[bytes | None],
             slot: int) -> None:
    """In a thread of the main process: keep the rows a child sends (as bytes) until its first
    other message, which goes to ``last[slot]`` (``None`` when the child has gone). Running out
    of memory here is reported as the child's crash would be (never as a thread's traceback)."""
    try:
        while True:
            data = conn.recv_bytes()
            if data[:1] != _ROWS:
                last[slot] = data
                return
            chunks.append(data)
    except (EOFError, OSError):
        return
    except MemoryError:
        chunks.clear()
        last[slot] = pickle.dumps(("crashed", "MemoryError"))


def _wave_sized(pieces: list[Piece], paths: Sequence[str | Path], total: int, workers: int, wave_bytes: int, *,
                input_format: str | None, max_bytes: int, min_piece_bytes: int) -> list[Piece]:
    """``pieces`` planned again in parts of about ``wave_bytes`` (one index of that size at a time
    in each process) when the input is at least twice that size; otherwise ``pieces``."""
    if total < 2 * wave_bytes:
        return pieces
    return plan(paths, input_format=input_format, max_bytes=max_bytes, fhir_facts=True,
                parts=max(workers, -(-total // wave_bytes)),
                min_piece_bytes=min(min_piece_bytes, max(1, wave_bytes // 2)))


def _fhir_default(name: str) -> int:
    """A default of :mod:`itkg.fhir.waves` (imported for FHIR input only)."""
    from .fhir import waves as fhir_waves
    return int(getattr(fhir_waves, name))


def _fhir_waves(pieces: Sequence[Piece]) -> bool:
    """Whether ``pieces`` can be decided in FHIR waves (:mod:`itkg.fhir.waves`): FHIR NDJSON
    chunks only (a Bulk export, or NDJSON files), nothing failed before mapping."""
    return bool(pieces) and all(p.fhir is not None and p.fhir.ndjson and p.error is None for p in pieces)


class _FhirWaveParser(_Parser):
    """One process's parts of a FHIR export, mapped and decided one part at a time
    (:class:`itkg.fhir.waves.FhirWaves`); what waits for the end is the builder's index after."""

    def __init__(self, pieces: Sequence[Piece], mine: list[int], stop: Any, lock: Any, strict: bool,
                 knowledge: Knowledge, crossing: set[int], prescanned: dict[int, bytes], base: str,
                 decided: Callable[[int], None]) -> None:
        super().__init__(pieces, mine, stop, lock, strict, knowledge.indexed_predicates())
        from .fhir.waves import FhirWaves
        self.waves = FhirWaves(self.builder, knowledge, crossing, prescanned, base, decided)

    def run(self, on_read: Callable[[int], None] | None,
            after: Callable[[int, PieceReport], None] | None = None) -> dict[int, PieceReport]:
        reports: dict[int, PieceReport] = {}
        stop, state = self.stop, self.waves
        try:
            for part, numbers in _parts(self.pieces, list(self.mine)).items():
                state.start()
                for number in numbers:
                    if number > stop.value:
                        return reports
                    reports[number] = report = parse_piece(self.pieces[number], self.builder, on_read=on_read)
                    if after is not None:
                        after(number, report)
                    last = fatal_after(self.pieces, report, self.strict)
                    if last is not None:  # (the run starts again, which reports the error)
                        with self.lock:
                            stop.value = min(stop.value, last)
                        return reports
                state.wave(part)
        finally:
            state.close()
            self.rows, self.patients = state.rows, state.patients
        return reports


def _parts(pieces: Sequence[Piece], numbers: Sequence[int]) -> dict[int, list[int]]:
    """The piece numbers of each FHIR part, parts in order, pieces in input order."""
    parts: dict[int, list[int]] = {}
    for number in sorted(numbers):
        chunk = pieces[number].fhir
        assert chunk is not None
        parts.setdefault(chunk.part, []).append(number)
    return dict(sorted(parts.items()))


class _FhirWaveRun(_Run):
    """A parallel run over a large FHIR Bulk export in waves (:mod:`itkg.fhir.waves`): every
    process pre-scans its parts for the patients they name, the main process finds those named
    in more than one part, then each process maps and decides its parts one at a time. What is
    left (the patients named in several parts, or waiting for a Medication) is finished and
    decided as :class:`_Run` decides every patient."""

    def _parser(self, worker: int, conn: multiprocessing.connection.Connection | None) -> _Parser:
        from .fhir.waves import names, prescan
        parts = _parts(self.pieces, self.assigned[worker])
        first = self.pieces[self.assigned[worker][0]].fhir
        assert first is not None
        base = first.job.base if first.job.base.endswith("/") else first.job.base + "/"  # (the reader's)
        mine: dict[int, bytes] = {}
        packed: dict[int, bytes] = {}
        crossing: set[int] = set()
        for part, numbers in parts.items():
            mine[part] = prescan([chunk for n in numbers if (chunk := self.pieces[n].fhir) is not None])
            packed[part] = array("q", map(hash, names(mine[part], base))).tobytes()
        if conn is not None:  # a child: its parts' hashes to the main process, which says what crosses
            conn.send(packed)
            crossing = conn.recv()
        else:
            for child in self._conns():
                packed.update(self._receive(child))
            seen: set[int] = set()  # (a patient is named in one part or a few: a set of all)
            for part in sorted(packed):
                hashes = array("q")
                hashes.frombytes(packed.pop(part))
                crossing.update(seen.intersection(hashes))
                seen.update(hashes)
            del seen
            for child in self._conns():
                child.send(crossing)
        del packed
        return _FhirWaveParser(self.pieces, self.assigned[worker], self.stop, self.lock, self.strict,
                               self.knowledge, crossing, mine, base, lambda n: self.meter.decided(worker, n))

    def _main(self, checksums: bool) -> tuple[list[EligibilityResult], tuple[Source, ...]]:
        try:
            return super()._main(checksums)
        except waves.Mismatch:
            raise Untrusted("the pre-scan missed a FHIR patient") from None
