"""Every child process itkg starts, and how it ends.

itkg runs work in child processes for three reasons: a query cannot be interrupted inside the
process that runs it (so it runs in a forked child killed at a deadline), Python is slow per
triple (so populations are parsed and decided in forked workers, and validated in spawned ones),
and HermiT and Jena are Java programs. This module is the one place that knows how such a child
is started and how it ends, so that every child obeys the same rules:

- **It dies with its parent.** Linux's ``PR_SET_PDEATHSIG`` makes the kernel signal the child
  when the itkg process is gone, even by ``SIGKILL``; a child that finds its parent already gone
  ends at once. A stray child would burn CPU with no deadline and hold patient data.
- **It never runs the command line's handlers.** The CLI turns ``SIGTERM``, ``SIGHUP``, ... into
  ``SystemExit`` so that ``finally`` blocks kill children and remove temporary files
  (:func:`signals_end_cleanly`). A forked child starts with those handlers, and a ``SystemExit``
  there runs the interpreter's shutdown, which waits for every non-daemon thread: a worker thread
  blocked on its pipe then holds the process open forever (the deadlock of issue 9). So a forked
  child first restores the default action of every ending signal and ignores ``SIGINT`` (the
  parent handles ^C and ends its children), and it leaves by ``os._exit``: no interpreter
  shutdown, no thread to wait for.
- **It is ended by its owner**, with ``SIGKILL`` where it holds nothing worth saving, whatever
  made the owner stop (an error, a deadline, a signal).

Threads obey one rule too: **every thread itkg starts blocks the ending signals and ``SIGINT``**
(:func:`start_thread`, :func:`block_ending_signals`). Linux hands a signal sent to the process to
any thread that does not block it, and Python runs its handlers only in the main thread: a
``SIGTERM`` taken by the memory watchdog (awake every 20 ms) while the main thread waited on a
query child's pipe was noted and never acted on, and ``itkg query`` went on until its deadline
(seen under load in CI). With the other threads blocking them, the kernel wakes the main thread.

Start methods: :func:`start_child` forks (the child inherits the ontology's knowledge and the hash
seed without a copy); :func:`spawn_pool` spawns fresh interpreters (a forked child would write
into the parent's freed memory and end up with a private copy of gigabytes); :func:`popen` runs a
program (Java, the HermiT worker).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import multiprocessing
import multiprocessing.connection
import multiprocessing.pool
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import IO, Any

from .errors import MemoryBudgetError

_PR_SET_PDEATHSIG = 1

#: In a child of :func:`call_with_deadline`: its end of the pipe to the parent (:func:`tell_parent`).
_TO_PARENT: multiprocessing.connection.Connection | None = None

#: Signals whose default action ends the process. The CLI turns them into ``SystemExit`` so that
#: clean-up runs; children get their default action back.
ENDING_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")
    if hasattr(signal, name))


#: What the threads itkg starts block, so that the kernel delivers them to the main thread.
_MAIN_THREAD_SIGNALS: tuple[signal.Signals, ...] = (*ENDING_SIGNALS, signal.SIGINT)


def block_ending_signals() -> None:
    """Block the ending signals and ``SIGINT`` in the calling thread (a thread pool's
    ``initializer``; :func:`start_thread` for a thread started by itkg itself)."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, _MAIN_THREAD_SIGNALS)


@contextlib.contextmanager
def signals_stay_with_this_thread() -> Iterator[None]:
    """While inside, this thread blocks the ending signals and ``SIGINT``, so that the threads it
    starts (ours, or a library's: RocksDB's) inherit that mask; on leaving, the mask is restored
    and a signal that arrived meanwhile is delivered then. Keep the body short: thread starts."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not POSIX
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _MAIN_THREAD_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def start_thread(thread: threading.Thread) -> threading.Thread:
    """Start ``thread`` blocking the ending signals and ``SIGINT`` (the module's docstring says
    why) and return it."""
    with signals_stay_with_this_thread():
        thread.start()
    return thread


def die_with_parent(signum: int = signal.SIGKILL, *, parent: int | None = None) -> None:
    """Ask Linux to send ``signum`` to the calling process when its parent dies (no-op elsewhere).

    :param parent: the pid the caller expects as its parent. If the parent has died already
        (before the request could be made), the signal is sent at once.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no prctl: deadlines still apply
            pass
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), signum)


def become_child(parent: int, *, offline: bool = False) -> None:
    """First thing in every forked or spawned child: default action for the ending signals,
    ``SIGINT`` ignored (the parent handles ^C and ends its children), death with ``parent``;
    with ``offline``, no network at all (:func:`drop_network`). A child's own children do not
    talk to its parent (:func:`tell_parent`)."""
    global _TO_PARENT
    _TO_PARENT = None
    for signum in ENDING_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent=parent)
    if offline:
        drop_network()  # no route anywhere, not even to 127.0.0.1 (docs/security.md §1)


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


@contextlib.contextmanager
def signals_end_cleanly() -> Iterator[None]:
    """While inside, an ending signal raises ``SystemExit(128 + signal)`` in this process, as
    ^C raises ``KeyboardInterrupt``: ``finally`` blocks end children and remove private files.

    The previous handlers come back on leaving, so the CLI run in-process (tests) leaves the host
    as it was. Only the main thread can set handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()

    def _end(signum: int, frame: object) -> None:
        global _STOPPING
        if os.getpid() != owner:  # a forked child between fork and become_child
            os._exit(128 + signum)
        _STOPPING = signum
        raise SystemExit(128 + signum)

    global _STOPPING
    _STOPPING = None
    previous = {signum: signal.signal(signum, _end) for signum in ENDING_SIGNALS}
    try:
        yield
        raise_if_stopping()  # its SystemExit was lost: the command still ends by the signal
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _STOPPING = None


#: The ending signal :func:`signals_end_cleanly` received, kept in case its ``SystemExit`` is lost.
_STOPPING: int | None = None
#: How often a wait of the main thread looks for a lost ending signal (:func:`raise_if_stopping`).
WAKE_S = 0.25


def raise_if_stopping() -> None:
    """Raise ``SystemExit(128 + signal)`` again if an ending signal arrived and its
    ``SystemExit`` was lost. Python runs a handler wherever the main thread happens to be,
    also inside a callback Python runs for itself, where an exception is printed as "Exception
    ignored" and dropped: a fork's ``after_in_parent`` hook (``logging``'s lock release, seen
    when SIGTERM came during the query child's fork), a finalizer (``__del__``). The command
    then went on, as if the signal had never come. The waits
    of the main thread (a child's answer, a batch) wake every :data:`WAKE_S` seconds to call
    this."""
    if _STOPPING is not None:
        raise SystemExit(128 + _STOPPING)


def wait_readable(conn: multiprocessing.connection.Connection, timeout: float | None = None) -> bool:
    """Wait until ``conn`` has something to read (True) or ``timeout`` seconds passed (False),
    waking every :data:`WAKE_S` seconds for :func:`raise_if_stopping`."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        wait = WAKE_S if deadline is None else min(WAKE_S, max(0.0, deadline - time.monotonic()))
        if conn.poll(wait):
            return True
        raise_if_stopping()
        if deadline is not None and time.monotonic() >= deadline:
            return False


# -- the memory budget -------------------------------------------------------------------------

#: The budget in force (bytes), set by :func:`memory_budget`; ``None`` when there is none.
_BUDGET: int | None = None


def default_memory_budget() -> int:
    """The budget every command gets unless told otherwise: three quarters of the machine's
    physical memory (the rest is the system's and other programs'), at least 1 GiB."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return 8 * 1024**3
    return max(1024**3, physical * 3 // 4)


def current_budget() -> int | None:
    """The memory budget in force in this process (:func:`memory_budget`), if any."""
    return _BUDGET


@contextlib.contextmanager
def memory_budget(max_bytes: int | None) -> Iterator[None]:
    """While inside, this process and every child it starts (forked, spawned, or a program such
    as Java) may hold at most ``max_bytes`` of data each (``RLIMIT_DATA``: heap and every private
    writable mapping, which is what parsed triples, stores and graphs occupy). Past it, Python
    raises ``MemoryError`` and Rust code (pyoxigraph) aborts; :func:`call_with_deadline` and the
    command line turn either into one :class:`~itkg.errors.MemoryBudgetError` (exit 2).

    ``RLIMIT_DATA`` rather than ``RLIMIT_AS``: address space that is only reserved (glibc's
    per-thread arenas, the JVM's heap reservation) would trip ``RLIMIT_AS`` long before any data
    is held. The limit is per process: a command with W workers may hold up to W + 1 budgets.
    The previous limit comes back on leaving (the CLI runs in-process in tests). ``None``, or a
    platform without ``resource``, sets nothing.
    """
    global _BUDGET
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        resource = None  # type: ignore[assignment]
    if max_bytes is None or resource is None or not hasattr(resource, "RLIMIT_DATA"):
        yield
        return
    previous = resource.getrlimit(resource.RLIMIT_DATA)
    soft = max_bytes if previous[1] == resource.RLIM_INFINITY else min(max_bytes, previous[1])
    before = _BUDGET
    # A Rust panic or allocation failure prints a backtrace when RUST_BACKTRACE asks for one, and
    # printing it allocates: past the budget the process then waited forever on the backtrace
    # lock. Without a backtrace it ends at once (a panic reaches Python as an exception).
    backtrace = os.environ.get("RUST_BACKTRACE")
    os.environ["RUST_BACKTRACE"] = "0"
    resource.setrlimit(resource.RLIMIT_DATA, (soft, previous[1]))
    _BUDGET = soft
    _EXCEEDED.clear()
    stop = threading.Event()
    watchdog = None
    if threading.current_thread() is threading.main_thread():
        watchdog = start_thread(threading.Thread(target=_watch, args=(soft * WATCH_SHARE, stop),
                                                 name="itkg-memory", daemon=True))
    try:
        yield
    finally:
        stop.set()
        if watchdog is not None:
            watchdog.join()
        resource.setrlimit(resource.RLIMIT_DATA, previous)
        _BUDGET = before
        if backtrace is None:
            os.environ.pop("RUST_BACKTRACE", None)
        else:
            os.environ["RUST_BACKTRACE"] = backtrace


@contextlib.contextmanager
def budgeted(max_bytes: int | None) -> Iterator[None]:
    """:func:`memory_budget`, and the budget running out inside (a ``MemoryError``, or a Rust
    panic near the budget) raised as one :class:`~itkg.errors.MemoryBudgetError`: the API's
    ``max_memory=``."""
    with memory_budget(max_bytes):
        try:
            yield
        except (MemoryBudgetError, SystemExit):
            raise
        except BaseException as error:
            if max_bytes is not None and (is_out_of_memory(error) or (
                    isinstance(error, KeyboardInterrupt) and budget_exceeded())):
                raise MemoryBudgetError(_BUDGET) from None
            raise


#: Share of the budget at which this process is interrupted (:func:`_watch`), before the hard
#: limit: Rust code (pyoxigraph) that meets the hard limit aborts the process at once, with no
#: clean-up and no clean message; an interrupt arrives when it hands control back to Python
#: (after a batch of at most 50,000 statements), which leaves the rest of the budget for that.
WATCH_SHARE = 0.75
_EXCEEDED = threading.Event()
_WATCH_INTERVAL_S = 0.02


def _vm_data() -> int:
    """This process's ``VmData`` in bytes (what ``RLIMIT_DATA`` counts); 0 if unknown."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmData:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _watch(threshold: float, stop: threading.Event) -> None:
    """Interrupt the main thread (``KeyboardInterrupt``, told apart by :func:`budget_exceeded`)
    once this process holds ``threshold`` bytes: the command then ends through its ``finally``
    blocks (children ended, temporary files removed) with one :class:`MemoryBudgetError`."""
    import _thread
    while not stop.wait(_WATCH_INTERVAL_S):
        if _vm_data() >= threshold:
            _EXCEEDED.set()
            _thread.interrupt_main()
            return


def check_memory() -> None:
    """Raise :class:`MemoryBudgetError` once this process holds :data:`WATCH_SHARE` of its
    budget: the watchdog's test, made by the loop that reads input, between two reads.

    Why both: the watchdog is a thread, and on a busy machine it may not run for a while; Rust
    code (pyoxigraph's parser and store) that meets the hard limit meanwhile aborts the process
    with no clean message. Reading is where a too-large input grows the process, so a reader
    that asks here every megabyte or so ends the command cleanly whatever the load. Without a
    budget this costs nothing but the test of ``None``."""
    if _BUDGET is not None and _vm_data() >= _BUDGET * WATCH_SHARE:
        _EXCEEDED.set()
        raise MemoryBudgetError(_BUDGET)


def budget_exceeded() -> bool:
    """Whether the last ``KeyboardInterrupt`` came from the memory watchdog, not from ^C."""
    return _EXCEEDED.is_set()


def near_budget(share: float = 0.9) -> bool:
    """Whether this process holds at least ``share`` of the memory budget (``VmData``, what
    ``RLIMIT_DATA`` counts). A Rust panic there ("pointer is null" after a failed Python
    allocation) is the budget running out, not a bug."""
    return _BUDGET is not None and _vm_data() >= share * _BUDGET


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` means the memory budget ran out: a ``MemoryError``, or a panic of Rust
    code (pyo3's ``PanicException``) while the process is near its budget."""
    return isinstance(error, MemoryError) or (type(error).__name__ == "PanicException" and near_budget())


def ended_out_of_memory(exit_code: int | None) -> bool:
    """Whether a child that ended so most likely ran out of its budget: Rust aborts on a failed
    allocation, and the kernel's OOM killer sends SIGKILL."""
    return _BUDGET is not None and exit_code in (-signal.SIGABRT, -signal.SIGKILL)


# -- forked children ---------------------------------------------------------------------------

@dataclass
class Child:
    """A forked child and this end of its duplex pipe."""

    process: multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection

    def stop(self) -> None:
        """End the child (``SIGKILL`` if it is still running), reap it and close the pipe."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()

    def exit_code(self) -> int | None:
        """The child's exit status once it has ended (negative: killed by that signal)."""
        self.process.join()
        return self.process.exitcode


def packed_hashes(items: Iterable[object]) -> bytes:
    """The hashes of ``items``, packed as 64-bit integers: what forked processes (they share the
    hash seed) send each other to tell which subjects or resources they share. Made from lists
    of a few thousand at a time: twice as fast as from the items one by one, and a bounded list
    (one list of every hash would be a hundred megabytes at a million patients)."""
    out, remaining = array("q"), iter(items)
    while True:
        part = array("q", list(map(hash, islice(remaining, 1 << 14))))
        if not part:
            return out.tobytes()
        out += part


def default_workers() -> int:
    """Worker processes to use by default: one per CPU this process may run on (the work is
    CPU-bound), at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def forking_available() -> bool:
    """Whether children can be forked here (not on Windows)."""
    return "fork" in multiprocessing.get_all_start_methods()


def start_child(target: Callable[[multiprocessing.connection.Connection], None], *,
                name: str = "itkg-child", offline: bool = False) -> Child:
    """Fork a child that runs ``target(conn)`` after :func:`become_child` (``offline``: in a
    network namespace of its own, see :func:`drop_network`), then ends by
    ``os._exit`` (0 when ``target`` returned, 1 when it raised; nothing is printed, because a
    traceback may quote data: its standard error is ``/dev/null``). The caller talks to it through the returned :class:`Child`."""
    context = multiprocessing.get_context("fork")
    ours, theirs = context.Pipe()
    # Not "daemonic": multiprocessing forbids a daemonic process children of its own, and a child
    # may need some (validation under a deadline spawns its pySHACL workers). The owner ends it.
    process = context.Process(target=_forked, args=(target, theirs, os.getpid(), offline), name=name,
                              daemon=False)
    process.start()
    theirs.close()
    return Child(process, ours)


def _forked(target: Callable[[multiprocessing.connection.Connection], None],
            conn: multiprocessing.connection.Connection, parent: int, offline: bool) -> None:
    code = 1
    try:
        become_child(parent, offline=offline)
        _silence_stderr()
        # Started as a daemon (so the parent's exit never waits for it), but a daemon may not start
        # processes, and the child may need its own workers (validation's spawned pySHACL pool).
        # It still ends with the parent: Child.stop, and become_child's parent-death signal.
        multiprocessing.current_process().daemon = False
        target(conn)
        code = 0
    finally:
        os._exit(code)


def in_fresh_thread(function: Callable[..., None], *args: Any, name: str = "itkg-work") -> None:
    """Run ``function(*args)`` in a new daemon thread and wait for it.

    For forked children: pyoxigraph makes up blank-node names with its thread's random generator,
    and a forked child's main thread goes on from its parent's state, so both would make up the
    same names; a new thread seeds its own. Daemon, so that it can never hold the process open.
    """
    thread = start_thread(threading.Thread(target=function, args=args, name=name, daemon=True))
    thread.join()


def tell_parent(kind: str, value: Any) -> bool:
    """In a child of :func:`call_with_deadline`, hand ``(kind, value)`` to the parent's
    ``messages`` callback (progress, what was read) and return True; elsewhere return False, so
    that the caller acts itself. A child's standard error is ``/dev/null`` (see
    :func:`start_child`): what the user must see travels this way and is shown by the parent."""
    if _TO_PARENT is None:
        return False
    _TO_PARENT.send_bytes(pickle.dumps(("message", (kind, value))))
    return True


def call_with_deadline(function: Callable[..., Any], args: tuple[Any, ...], timeout: float, *,
                       prepare: Callable[[], tuple[Any, ...]] | None = None,
                       passes: tuple[type[BaseException], ...] = (), offline: bool = False,
                       timed_out: Callable[[], BaseException],
                       failed: Callable[[str], BaseException],
                       messages: Callable[[str, Any], None] | None = None) -> Any:
    """Run ``function(*args)`` in a forked child and return its result, or raise ``timed_out()``
    after ``timeout`` seconds (the child is killed).

    :param prepare: called in the child first; what it returns is appended to ``args``. The
        deadline starts when it has returned, so it can load data that only the child then holds.
    :param offline: run the child without any network (:func:`drop_network`).
    :param passes: exception types re-raised in the parent as they are (they must pickle and
        must not quote data); any other failure becomes ``failed(kind)``, ``kind`` being the
        exception's type name only.
    :param messages: called in the parent with what the child sends by :func:`tell_parent`
        (without it they are dropped); what it raises ends the child and reaches the caller.
    """
    if not forking_available():  # pragma: no cover - Windows: no deadline, run in-process
        return function(*args, *(prepare() if prepare is not None else ()))

    def child(conn: multiprocessing.connection.Connection) -> None:
        global _TO_PARENT
        _TO_PARENT = conn
        # Made before the work: past the budget, even reporting it may fail to allocate.
        out_of_memory = pickle.dumps(("crash", "MemoryError"))
        more: tuple[Any, ...] = ()
        try:
            if prepare is not None:
                more = prepare()
                conn.send_bytes(pickle.dumps(("ready", None)))
            outcome: tuple[str, Any] = ("ok", function(*args, *more))
        except passes as error:
            outcome = ("error", error)
        except BaseException as error:  # noqa: BLE001 - reported as a kind, not a message
            more = ()  # what prepare loaded (a graph near the budget) is let go before reporting
            outcome = ("crash", "MemoryError" if is_out_of_memory(error) else type(error).__name__)
        more = ()
        try:
            payload = pickle.dumps(outcome)
        except MemoryError:
            payload = out_of_memory
        except Exception as error:  # noqa: BLE001 - an unpicklable result: its kind only
            payload = pickle.dumps(("crash", type(error).__name__))
        conn.send_bytes(payload)

    worker = start_child(child, name="itkg-deadline", offline=offline)
    kind: str
    payload: Any
    def receive(deadline: float | None) -> tuple[str, Any]:
        while True:
            if not wait_readable(worker.conn, None if deadline is None else max(0.0, deadline - time.monotonic())):
                raise timed_out()
            got: tuple[str, Any] = pickle.loads(worker.conn.recv_bytes())
            if got[0] != "message":
                return got
            if messages is not None:
                messages(*got[1])

    try:
        kind, payload = ("ready", None) if prepare is None else receive(None)
        if kind == "ready":
            kind, payload = receive(time.monotonic() + timeout)
    except EOFError:
        worker.stop()
        if ended_out_of_memory(worker.exit_code()):
            raise MemoryBudgetError(_BUDGET) from None
        raise failed("ended without an answer") from None
    finally:
        worker.stop()
    if kind == "ok":
        return payload
    if kind == "error":
        raise payload
    if payload == "MemoryError":
        raise MemoryBudgetError(_BUDGET)
    raise failed(str(payload))


def _silence_stderr() -> None:
    """Point the child's standard error at ``/dev/null``: it reports through its pipe, and what a
    library would write there (Rust's "memory allocation of N bytes failed" and its backtrace,
    when the memory budget is spent) is not the one line the command owes its user."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:  # pragma: no cover - no /dev/null: leave it
        return
    os.dup2(null, 2)
    os.close(null)


def fork_pool(workers: int) -> multiprocessing.pool.Pool:
    """A ``multiprocessing`` pool of ``workers`` forked children (they inherit what the caller
    prepared, as :func:`start_child`'s do), each set up by :func:`become_child`. Use it as a
    context manager: leaving the block terminates the children."""
    return multiprocessing.get_context("fork").Pool(workers, initializer=become_child, initargs=(os.getpid(),))


# -- spawned pools -----------------------------------------------------------------------------

def spawn_pool(workers: int, initializer: Callable[..., None] | None = None,
               initargs: tuple[Any, ...] = ()) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned interpreters that die with this process; end it with
    :func:`stop_pool`. ``initializer(*initargs)`` runs in each after :func:`become_child`."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_spawned, initargs=(os.getpid(), initializer, initargs))


def _spawned(parent: int, initializer: Callable[..., None] | None, initargs: tuple[Any, ...]) -> None:
    become_child(parent)
    if initializer is not None:
        initializer(*initargs)


def stop_pool(pool: ProcessPoolExecutor, *, failed: bool) -> None:
    """Shut ``pool`` down: wait for it after a success; after a failure (an error, a signal)
    cancel what has not started and kill the workers, rather than wait for their batches."""
    if failed:
        # The executor has no public way to end running work before Python 3.14.
        for process in list(getattr(pool, "_processes", {}).values()):
            with contextlib.suppress(OSError):
                process.kill()
    pool.shutdown(wait=True, cancel_futures=True)


# -- programs ----------------------------------------------------------------------------------

def popen(command: Sequence[str], *, new_session: bool = False,
          parent_death_signal: int = signal.SIGKILL, stdin: int | IO[Any] | None = None,
          stdout: int | IO[Any] | None = None, stderr: int | IO[Any] | None = None,
          cwd: str | os.PathLike[str] | None = None,
          env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``command`` so that it gets ``parent_death_signal`` when this process dies.

    :param new_session: give it its own session (and process group), so that :func:`kill`
        with ``group=True`` also ends the programs it starts (Java under the HermiT worker).
    """
    return subprocess.Popen(
        list(command), stdin=stdin, stdout=stdout, stderr=stderr, cwd=cwd, env=env,
        start_new_session=new_session,
        preexec_fn=functools.partial(die_with_parent, parent_death_signal, parent=os.getpid()))


def kill(process: subprocess.Popen[bytes], *, group: bool = False) -> None:
    """``SIGKILL`` ``process`` (or its whole process group, see :func:`popen`), leaving it to be
    reaped by the caller's ``wait``/``communicate``."""
    try:
        if group:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    except (ProcessLookupError, PermissionError):
        pass
