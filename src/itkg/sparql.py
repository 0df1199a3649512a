"""Running SPARQL over ontology + patient data: in rdflib, in Oxigraph, or on a remote endpoint.

Every query text passes :func:`itkg.guards.gate_query` first (no SERVICE, no FROM, no updates), so
no query can make itkg reach the network or read a file. Values are never spliced into query
text. Local queries run in a forked child process when a deadline is given, because neither rdflib
nor pyoxigraph can be interrupted from inside the process.

For Oxigraph, :func:`load_for_query` loads the ontology and the files straight into one store
(:func:`itkg.loading.load_store`), so that the data is held once; :func:`select` then queries
that store as it is. Given a :class:`~itkg.loading.PatientData` instead, it builds a store from
the triples, and the data is held twice while the query runs. :func:`select_files` (``itkg
query``) goes one step further with a deadline: the files are loaded in the child process, so
that the parent never holds them (see there why that matters).

Oxigraph's store keeps values, not lexical forms (``"0012345"^^xsd:integer`` becomes ``12345``,
``xsd:int`` becomes ``xsd:integer``, ``T24:00:00`` the next day: :mod:`itkg.lexical`). A query sees
the rewritten form in ``STR``, ``DATATYPE``, ``DISTINCT`` and the rows, so no mapping of the output
can make it right. Data holding such a literal is therefore answered by the rdflib engine, which
keeps every form as written: :func:`select` and :func:`select_files` do so by themselves (the
result's :attr:`QueryResult.engine` says which engine answered), :func:`load_for_query` refuses
it with :class:`~itkg.lexical.LexicalFormError`.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Literal as TLiteral, Sequence, Union, cast

import pyoxigraph as ox
import rdflib
from rdflib.query import ResultRow

from . import guards, names, processes
from .errors import InputError, ItkgError, QueryError, QueryTimeout
from .lexical import FormWatch, LexicalFormError
from .knowledge import ontology_graph
from .loading import (DEFAULT_MAX_BYTES, PatientData, PatientStore, load, load_store, to_oxigraph_triple,
                      to_rdflib)

Engine = TLiteral["rdflib", "oxigraph"]
ENGINES: tuple[str, ...] = names.SPARQL_BACKENDS

#: What the local engines query: triples in memory, a store loaded for Oxigraph, or nothing.
QueryData = Union[PatientData, PatientStore, None]


@dataclass(frozen=True)
class QueryResult:
    """A SELECT result: the variable names and one dict per row (unbound variables are absent).
    Values are rdflib terms whichever engine ran the query."""

    variables: tuple[str, ...]
    rows: tuple[dict[str, rdflib.term.Identifier], ...]
    #: The files the data came from (with what was set aside from them), when the query loaded them.
    sources: tuple = field(default=(), compare=False)
    #: The local engine that answered: ``rdflib`` also when ``oxigraph`` was asked for but the data
    #: holds literals Oxigraph's store would rewrite (:mod:`itkg.lexical`); ``""`` for an endpoint.
    engine: str = field(default="", compare=False)
    #: What reading FHIR input found (:class:`itkg.fhir.reader.FhirReport`), when the query loaded it.
    fhir_reports: tuple = field(default=(), compare=False)


def _ontology_quads(ontology: rdflib.Graph | None = None) -> list[ox.Quad]:
    """The ontology (or ``ontology``: itkg's plus a site's extensions) as pyoxigraph quads."""
    graph = ontology_graph() if ontology is None else ontology
    return [ox.Quad(*to_oxigraph_triple(t)) for t in graph]


def _watched(ontology: rdflib.Graph | None) -> list[ox.Quad]:
    """The statements of ``ontology`` that :class:`~itkg.lexical.FormWatch` looks at: those of a
    site's extensions, which are input. itkg's own ontology is not: it is fixed, and the only
    literals of it the store rewrites are two ``itkg:statisticValue`` decimals that no rule reads
    (``38.0`` and ``55.0``; docs/security.md, known limits)."""
    if ontology is None:
        return []
    own = ontology_graph()
    return [ox.Quad(*to_oxigraph_triple(t)) for t in ontology if t not in own]


class _BulkTarget:
    """A store that :func:`itkg.loading.load_store` fills with ``bulk_extend`` (sorted files
    written straight to disk) instead of one in-memory transaction per batch."""

    def __init__(self, store: ox.Store) -> None:
        self.store = store

    def extend(self, quads: Any) -> None:
        self.store.bulk_extend(quads)


def load_for_query(files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *,
                   input_format: str | None = None,
                   with_ontology: bool = True, max_bytes: int = DEFAULT_MAX_BYTES,
                   strict: bool = False, ontology: rdflib.Graph | None = None,
                   exact_forms: bool = True,
                   directory: str | os.PathLike[str] | None = None) -> PatientStore:
    """Load ``files`` (with the checks and errors of :func:`itkg.load`) into a new pyoxigraph
    store that also holds the ontology when ``with_ontology``, ready for :func:`select` with the
    ``oxigraph`` engine. Nothing else keeps the triples, so the data is held once.

    :param exact_forms: raise :class:`~itkg.lexical.LexicalFormError` (at the first one) when
        the data holds a literal the store would not keep as written (:mod:`itkg.lexical`): load
        such data with :func:`itkg.load` and query it with the ``rdflib`` engine. ``False`` lets
        the store rewrite them to its canonical forms.
    :param directory: an empty private folder (the caller removes it) for a store on disk,
        loaded in bulk: a population's store then lives in files rather than in memory (a
        million patients took 9.2 GB in memory). By default the store is in memory.
    """
    from .streaming import gc_paused
    with gc_paused():  # millions of short-lived quads, no cycle among them (see gc_paused)
        return _load_for_query(files, input_format=input_format, with_ontology=with_ontology,
                               max_bytes=max_bytes, strict=strict, ontology=ontology,
                               exact_forms=exact_forms, directory=directory)


def _load_for_query(files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *,
                    input_format: str | None, with_ontology: bool, max_bytes: int, strict: bool,
                    ontology: rdflib.Graph | None, exact_forms: bool,
                    directory: str | os.PathLike[str] | None) -> PatientStore:
    """:func:`load_for_query`'s work (with the cyclic collector paused)."""
    if directory is None:
        store = ox.Store()
    else:
        with processes.signals_stay_with_this_thread():  # RocksDB's threads block them too
            store = ox.Store(str(directory))
    watch = FormWatch(stop=True) if exact_forms else None
    if with_ontology:
        if watch is not None:
            watch.observe(_watched(ontology))
        store.extend(_ontology_quads(ontology))
    observe = watch.observe_literals if watch is not None else None
    if directory is None:
        return load_store(files, input_format=input_format, max_bytes=max_bytes, store=store,
                          with_ontology=with_ontology, strict=strict, watch=observe)
    loaded = load_store(files, input_format=input_format, max_bytes=max_bytes,
                        store=_BulkTarget(store),  # type: ignore[arg-type]  # duck-typed: extend only
                        with_ontology=with_ontology, strict=strict, watch=observe)
    return replace(loaded, store=store)


def _rdflib_select(text: str, data: QueryData, with_ontology: bool,
                   ontology: rdflib.Graph | None = None) -> QueryResult:
    graph = rdflib.Graph()
    if isinstance(data, PatientStore):  # the ontology, if asked for, is in the store already
        add = graph.add
        for triple in data.iter_triples():
            add((to_rdflib(triple.subject), to_rdflib(triple.predicate), to_rdflib(triple.object)))
    else:
        if with_ontology:
            graph += ontology_graph() if ontology is None else ontology
        if data is not None:
            graph += data.graph()
    try:
        result = graph.query(_prepared(text))
    except RecursionError:
        raise QueryError("the query recursed too deeply over this data") from None
    if result.type != "SELECT":
        raise QueryError(f"only SELECT queries are supported (this is {result.type})")
    variables = tuple(str(v) for v in result.vars or ())
    rows = tuple({str(k): v for k, v in cast(ResultRow, row).asdict().items()} for row in result)
    return QueryResult(variables, rows, engine="rdflib")


@functools.lru_cache(maxsize=64)
def _prepared(text: str) -> Any:
    """``text`` parsed by rdflib, as ``Graph.query(text)`` parses it (with a new graph's prefixes),
    once per process: parsing (pyparsing) took nearly all of a small query's time, and the bundled
    queries are run again and again (each engine, each call of :func:`itkg.eligibility`). A query
    that fails to parse is not kept, and fails again the same way."""
    from rdflib.plugins.sparql import prepareQuery
    return prepareQuery(text, initNs=dict(rdflib.Graph().namespaces()))


def _oxigraph_select(text: str, data: QueryData, with_ontology: bool,
                     ontology: rdflib.Graph | None = None) -> QueryResult:
    if isinstance(data, PatientStore):  # select() checked that it holds the ontology if asked
        store = data.store  # what it holds, as load_for_query let it in
    else:
        watch = FormWatch()
        if with_ontology:
            watch.observe(_watched(ontology))
        if data is not None:
            watch.observe(data.triples)
        if watch.changed:  # the store would rewrite them: rdflib gives the rows as written
            return _rdflib_select(text, data, with_ontology, ontology)
        store = ox.Store()
        if with_ontology:
            store.extend(_ontology_quads(ontology))
        if data is not None:
            store.extend(ox.Quad(t.subject, t.predicate, t.object) for t in data.triples)
    try:
        result = store.query(text)
    except SyntaxError:
        raise QueryError("the query is not valid SPARQL 1.1") from None
    if not isinstance(result, ox.QuerySolutions):
        raise QueryError("only SELECT queries are supported")
    variables = tuple(v.value for v in result.variables)
    rows = []
    for solution in result:
        row = {}
        for name in variables:
            value = solution[name]
            if value is not None:
                row[name] = to_rdflib(value)
        rows.append(row)
    return QueryResult(variables, tuple(rows), engine="oxigraph")


_RUNNERS: dict[str, Callable[..., QueryResult]] = {
    "rdflib": _rdflib_select,
    "oxigraph": _oxigraph_select,
}


def select(text: str, data: QueryData = None, *, engine: Engine = "oxigraph",
           with_ontology: bool = True, timeout: float | None = None,
           ontology: rdflib.Graph | None = None) -> QueryResult:
    """Run a SELECT query over the ontology and ``data`` with the given local engine.

    :param data: patient triples (:func:`itkg.load`), or a store from :func:`load_for_query`,
        which the ``oxigraph`` engine queries as it is (the ``rdflib`` engine copies it).
    :param with_ontology: include the ontology; a store must have been loaded the same way.
    :param ontology: the ontology to include, when not itkg's alone (with a site's extensions:
        :attr:`itkg.knowledge.Knowledge.graph`); a store holds what it was loaded with.
    :param timeout: seconds; when given the query runs in a child process that is killed at the
        deadline (:class:`~itkg.errors.QueryTimeout`).

    Given triples that hold a literal Oxigraph's store would rewrite, the ``oxigraph`` engine
    hands the query to ``rdflib``, which keeps every form as written (:mod:`itkg.lexical`).

    >>> result = select("SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }", engine="rdflib")
    >>> int(result.rows[0]["n"]) > 100
    True
    """
    gate(text, timeout=timeout)
    try:
        runner = _RUNNERS[engine]
    except KeyError:
        raise QueryError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}") from None
    if isinstance(data, PatientStore) and data.with_ontology != with_ontology:
        # Once merged into one graph, the ontology cannot be taken out of (or told apart in) it.
        raise QueryError("the store was loaded " + ("with" if data.with_ontology else "without")
                         + " the ontology; query it the same way")
    if timeout is None:
        return runner(text, data, with_ontology, ontology)
    return run_with_deadline(runner, (text, data, with_ontology, ontology), timeout)


def select_files(text: str, files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *,
                 engine: Engine = "oxigraph", input_format: str | None = None,
                 with_ontology: bool = True, timeout: float | None = None,
                 source: str = "<query>", strict: bool = False,
                 ontology: rdflib.Graph | None = None) -> QueryResult:
    """Load ``files`` (as :func:`itkg.load` does, with its checks and errors) and run a SELECT
    query over them and the ontology: :func:`select` for data that is only needed for one query.

    With a deadline the query runs in a child process, and the files are loaded there too, before
    the deadline starts (loading is not part of the query's time). A store loaded in the parent
    would be shared with the child only until the query reads it: Oxigraph writes to the memory
    it reads, so the child gets private copies of most of the store's pages (measured at 100,000
    patients: 400 of 550 MB), and the data would be held nearly twice after all.

    With the ``oxigraph`` engine, files that hold a literal Oxigraph's store would rewrite are
    loaded again for ``rdflib`` and answered there, as written (:mod:`itkg.lexical`; the
    result's ``engine`` says so). The store stops loading at the first such literal.
    """
    gate(text, source, timeout)
    if engine not in _RUNNERS:
        raise QueryError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")

    from .fhir import hook

    def loaded(directory: str | None = None) -> tuple[str, QueryData, tuple]:
        before = len(hook.LAST.reports) if hook.LAST is not None else 0
        used, data = engine, cast(QueryData, None)
        if engine == "oxigraph":
            try:
                data = load_for_query(files, input_format=input_format, with_ontology=with_ontology,
                                      strict=strict, ontology=ontology, directory=directory)
            except LexicalFormError:  # read again for rdflib: the first reading is not reported
                if hook.LAST is not None:
                    del hook.LAST.reports[before:]
                used = "rdflib"
        if data is None:
            data = load(files, input_format=input_format, strict=strict)
        return used, data, tuple(hook.LAST.reports[before:]) if hook.LAST is not None else ()

    if timeout is None:  # in memory: a store on disk here would start RocksDB's threads in this
        # process, and a child forked later that opens a store of its own then hangs
        return _run_loaded(text, with_ontology, ontology, *loaded())
    # In the child, Oxigraph's store goes to a private folder on disk, made and removed by this
    # process (also when the child is killed at the deadline); one left by an itkg process that
    # was killed itself is removed by the next query (:func:`_remove_orphaned_stores`).
    _remove_orphaned_stores()
    # On disk only for a large input: a store on disk saves memory (a million patients: 4.4
    # instead of 9.2 GB) but costs time (100,000 patients: 2.5 times the CPU of a store in
    # memory). In memory, too, when RocksDB's threads already run here (the caller opened an
    # on-disk store): a fork does not copy them, and the child's own on-disk store would wait
    # for ever.
    on_disk = engine == "oxigraph" and _input_bytes(files) >= DISK_STORE_MIN_BYTES and not _rocksdb_running()
    with tempfile.TemporaryDirectory(prefix=f"{_STORE_PREFIX}{os.getpid()}-") as directory:
        result = run_with_deadline(_run_loaded, (text, with_ontology, ontology), timeout,
                                   prepare=functools.partial(loaded, directory if on_disk else None))
    if hook.LAST is not None:  # read in the child: the command reports it as for the other commands
        hook.LAST.reports.extend(result.fhir_reports)
    return result


#: Input size (bytes, all files) from which a query's Oxigraph store is built on disk rather than
#: in memory (about 200,000 patients in N-Triples; a store in memory takes about 3.5 times the
#: input's size).
DISK_STORE_MIN_BYTES = 512 * 1024**2


def _input_bytes(files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> int:
    """The total size of the input files (a folder, a FHIR Bulk export: the files the reader
    reads from it, :func:`itkg.fhir.reader.files_of`); what cannot be read counts as nothing
    (the reader reports it)."""
    from pathlib import Path

    from .fhir.reader import files_of
    paths = [files] if isinstance(files, (str, os.PathLike)) else list(files)
    total = 0
    for path in paths:
        try:
            total += sum(file.stat().st_size for file in files_of(Path(path)))
        except (OSError, InputError):
            continue
    return total


def _rocksdb_running() -> bool:
    """Whether this process runs RocksDB's background threads (an on-disk pyoxigraph store was
    opened in it, by itkg or by the caller). Linux names them ``rocksdb:low``/``rocksdb:high``;
    where the thread names cannot be read, a fork is assumed safe, as before."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return False
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/comm", encoding="ascii", errors="replace") as comm:
                if comm.read().startswith("rocksdb"):
                    return True
        except OSError:
            continue
    return False


_STORE_PREFIX = "itkg-store-"


def _remove_orphaned_stores() -> None:
    """Remove the store folders (patient data) of itkg processes that no longer exist: a process
    killed by ``SIGKILL`` cannot remove its own. Only this user's folders, named with the pid of
    the process that made them (``itkg-store-<pid>-...``), and only when that pid is gone."""
    root = tempfile.gettempdir()
    try:
        entries = list(os.scandir(root))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(_STORE_PREFIX):
            continue
        pid_text = entry.name[len(_STORE_PREFIX):].split("-", 1)[0]
        try:
            if not pid_text.isdigit() or entry.stat(follow_symlinks=False).st_uid != os.getuid() \
                    or not entry.is_dir(follow_symlinks=False):
                continue
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(entry.path, ignore_errors=True)
        except (OSError, ValueError, OverflowError):
            continue


def _run_loaded(text: str, with_ontology: bool, ontology: rdflib.Graph | None,
                engine: str, data: QueryData, fhir_reports: tuple = ()) -> QueryResult:
    result = _RUNNERS[engine](text, data, with_ontology, ontology)
    return replace(result, sources=data.sources if data is not None else (), fhir_reports=fhir_reports)


def gate(text: str, source: str = "<query>", timeout: float | None = None) -> None:
    """:func:`itkg.guards.gate_query`, within ``timeout`` seconds when one is given.

    The gate parses the query with rdflib (pyparsing), whose time on a hostile query text is not
    bounded either; so with a deadline it runs in a forked child without network, as the query
    does, and a gate that does not finish raises :class:`QueryTimeout`. ``source`` names the
    query in messages.
    """
    if text in _PASSED:
        return
    from .ordering import keys_of
    if timeout is None:
        keys = keys_of(guards.gated_algebra(text, source))
    else:
        keys = processes.call_with_deadline(
            _gate_with_deep_stack, (text, source), timeout, passes=(ItkgError,), offline=True,
            timed_out=lambda: QueryTimeout(f"{source}: checking the query took longer than {timeout:g} s"),
            failed=lambda kind: QueryError(f"{source}: checking the query failed ({kind})"))
    if len(text) <= _PASSED_MAX_CHARS:
        with _PASSED_LOCK:
            if len(_PASSED) >= _PASSED_MAX:
                del _PASSED[next(iter(_PASSED))]
            _PASSED[text] = keys


def gated_order_by(text: str) -> tuple[list[tuple[str, bool]] | None] | None:
    """The ``ORDER BY`` keys (:func:`itkg.ordering.keys_of`) of a query text that passed
    :func:`gate` in this process, as a 1-tuple; ``None`` when it has not (then nobody parsed it
    here yet). The gate parsed the text anyway: the rows are sorted without a second parse."""
    with _PASSED_LOCK:
        if text in _PASSED:
            return (_PASSED[text],)
    return None


#: Query texts that passed the gate in this process, with their ``ORDER BY`` keys (oldest first,
#: at most ``_PASSED_MAX`` of at most ``_PASSED_MAX_CHARS`` characters). The gate's verdict
#: depends on the text alone, and its parse took nearly all of a small query's time: the bundled
#: queries pass it once per process, not once per call. A refused text is never kept, so it is
#: refused (or times out) every time.
_PASSED: dict[str, list[tuple[str, bool]] | None] = {}
_PASSED_MAX = 64
_PASSED_MAX_CHARS = 65_536
_PASSED_LOCK = threading.Lock()


#: Recursion allowed to the gate's parser in its child, and the stack of the thread it runs in.
#: rdflib's pyparsing grammar recurses about 11 levels per triple pattern, so Python's default
#: limit of 1,000 refused a valid query of 90 patterns as "nested too deeply".
_GATE_RECURSION = 50_000
_GATE_STACK_BYTES = 512 * 1024**2


def _gate_with_deep_stack(text: str, source: str) -> list[tuple[str, bool]] | None:
    """:func:`itkg.guards.gate_query` in a thread with a large stack and a raised recursion
    limit, and the query's ``ORDER BY`` keys (:func:`itkg.ordering.keys_of`) read from what it
    parsed. Only ever run in the gate's own child process: the limit is process-wide, and should
    the C stack still overflow, only that child dies (reported as a failed check)."""
    import sys
    import threading

    from .ordering import keys_of

    outcome: list[BaseException | None] = [None]
    keys: list[list[tuple[str, bool]] | None] = [None]

    def run() -> None:
        try:
            keys[0] = keys_of(guards.gated_algebra(text, source))
        except BaseException as error:  # noqa: BLE001 - handed to the calling thread
            outcome[0] = error

    sys.setrecursionlimit(max(sys.getrecursionlimit(), _GATE_RECURSION))
    # A thread's stack is private writable memory: it counts against the memory budget.
    budget = processes.current_budget()
    stack = _GATE_STACK_BYTES if budget is None else max(1 << 20, min(_GATE_STACK_BYTES, budget // 4) & ~0xFFFF)
    threading.stack_size(stack)
    worker = processes.start_thread(threading.Thread(target=run, name="itkg-gate"))
    worker.join()
    if outcome[0] is not None:
        raise outcome[0]
    return keys[0]


def run_with_deadline(function: Callable[..., Any], args: tuple[Any, ...], timeout: float, *,
                      prepare: Callable[[], tuple[Any, ...]] | None = None) -> Any:
    """Run ``function(*args)`` in a forked child (:func:`itkg.processes.call_with_deadline`) and
    return its result, or raise :class:`QueryTimeout` after ``timeout`` seconds (the child is
    killed). itkg errors are re-raised in the parent; anything else becomes a :class:`QueryError`.

    :param prepare: called in the child first; what it returns is appended to ``args``. The
        deadline starts when it has returned, so it can load data that only the child then holds.
    """
    # The rows come back pickled, and unpickling builds rdflib literals here in the parent: without
    # the defaults rdflib would rewrite their lexical forms ("0012345"^^xsd:integer -> 12345) and
    # log a warning quoting each value it cannot convert (a name passed through STRDT, say).
    guards.install_library_defaults()
    return processes.call_with_deadline(
        function, args, timeout, prepare=prepare, passes=(ItkgError,), offline=True,
        timed_out=lambda: QueryTimeout(f"the query did not finish within {timeout:g} s"),
        failed=lambda kind: QueryError(
            "the query process ended without an answer" if kind == "ended without an answer"
            else f"the query failed ({kind})"))
