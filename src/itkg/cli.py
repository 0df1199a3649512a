"""The ``itkg`` command line: thin click commands over :mod:`itkg.api` (contract §5).

Exit codes: 0 success; 1 the data violates the shapes (``validate``) or reasoning disagrees
(``reason --check-agreement``); 2 bad input or any other error, reported as one line on standard
error that names the file and line but never quotes patient data.
"""

from __future__ import annotations

import datetime as _dt
import functools
import contextlib
import gc
import os
import shutil
import tempfile
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, cast

import click

from . import __version__, names
from .errors import InputError, ItkgError, QueryError
from .processes import signals_end_cleanly
from .safeio import atomic_write
from .termsafe import printable

if TYPE_CHECKING:
    from .endpoint import SparqlEndpoint
    from .sparql import Engine

# Each command imports what it runs: ``itkg --help`` and ``itkg --version`` load none of rdflib,
# pySHACL, owlready2, httpx or pyoxigraph (tests/test_imports.py counts the modules).

#: Deadline of ``eligibility --endpoint`` without ``--timeout``: all of its queries together.
ENDPOINT_TIMEOUT_S = 600.0
OUTPUT_HELP = "Write the output to FILE (atomically: whole or not at all) instead of standard output."


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"itkg: error: {printable(message)}", err=True)
    sys.exit(code)


def handle_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn every failure into one line on standard error and exit code 2 (no traceback).

    Whatever the command changes in the process (network policy, signal handlers, the garbage
    collector) is put back afterwards, so that the command line can also run in-process (tests).
    """
    @functools.wraps(command)
    def wrapper(*args: Any, max_memory: int | None = None, **kwargs: Any) -> Any:
        from .guards import install_library_defaults, network_guard
        from .processes import default_memory_budget, memory_budget
        collecting = gc.isenabled()
        budget = default_memory_budget() if max_memory is None else max_memory or None
        try:
            install_library_defaults()  # also in this process: rdflib logs values it cannot convert
            # Backstop behind the input and query gates: the only host itkg may reach is an
            # endpoint the user named on this command line.
            with network_guard([url for url in (kwargs.get("endpoint"), kwargs.get("store_url")) if url]), \
                    signals_end_cleanly(), memory_budget(budget), _standard_input(kwargs) as stdin_copy:
                try:
                    return command(*args, **kwargs)
                except ItkgError as error:  # name standard input as the user did
                    text = str(error) if stdin_copy is None else str(error).replace(str(stdin_copy), "-")
                    _fail(text, error.exit_code)
        except ItkgError as error:
            _fail(str(error), error.exit_code)
        except RecursionError:
            _fail("the input is nested too deeply to process")
        except MemoryError:
            from .errors import MemoryBudgetError
            _fail(str(MemoryBudgetError(budget)))
        except KeyboardInterrupt:
            from .processes import budget_exceeded
            if budget_exceeded():  # the memory watchdog, not ^C
                from .errors import MemoryBudgetError
                _fail(str(MemoryBudgetError(budget)))
            _fail("interrupted", 130)
        except Exception as error:  # noqa: BLE001 - the message may quote data: name the type only
            _fail(f"internal error ({type(error).__name__}); please report it")
        except BaseException as error:  # pyo3's PanicException: Rust code failed
            from .errors import MemoryBudgetError
            from .processes import is_out_of_memory
            if isinstance(error, SystemExit) or not is_out_of_memory(error):
                raise
            _fail(str(MemoryBudgetError(budget)))
        finally:
            if collecting:
                gc.enable()
    # Every command has it: defined once, here, with the wrapper that enforces it.
    return click.option("--max-memory", type=_MemorySize(), default=None, metavar="SIZE",
                        help="Memory each itkg process (the command and each of its workers) may hold, "
                             "e.g. 800M or 4G; past it the command stops with exit 2 and writes nothing. "
                             "Default: three quarters of this machine's memory; 0 for no limit.")(wrapper)


class _MemorySize(click.ParamType):
    """A size in bytes, written as a number with an optional K, M, G or T (MB if none)."""

    name = "size"
    _UNITS = {"": 1024**2, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().upper().removesuffix("IB").removesuffix("B")
        number, unit = text.rstrip("KMGT"), text[len(text.rstrip("KMGT")):]
        try:
            size = float(number) * self._UNITS[unit]
        except (ValueError, KeyError):
            self.fail("give a size such as 800M or 4G (0: no limit)", param, ctx)
        if size < 0:
            self.fail("a size cannot be negative", param, ctx)
        return int(size)


_STDIN_SUFFIX = {None: ".ttl", "turtle": ".ttl", "ntriples": ".nt", "jsonld": ".jsonld", "rdfxml": ".rdf",
                 "fhir": ".ndjson"}


@contextlib.contextmanager
def _standard_input(kwargs: dict[str, Any]) -> Iterator[Path | None]:
    """``-`` among the FILES reads standard input (Turtle unless ``--input-format`` says
    otherwise). The parsers read files, so it is copied first; ``kwargs["files"]`` then names
    the copy, and the copy does not outlive the process, however it ends (SIGKILL included).

    Where the platform allows (Linux, a file system with ``O_TMPFILE``) the copy is a file with
    no name in ``TMPDIR``: the kernel frees it when the last descriptor closes, which a killed
    process does too. The parsers find the format by the file name's extension, so a private
    folder (0700) holds a symbolic link ``stdin.ttl`` (or ``.nt``, ...) to ``/proc/self/fd/N``:
    after a SIGKILL that folder and a link to nothing are left, never the data. Children forked
    to parse inherit the descriptor, so the link works in them too. Elsewhere the copy is a
    regular file in that folder, removed when the command ends (not after a SIGKILL).
    """
    files = kwargs.get("files") or ()
    if Path("-") not in files:
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="itkg-stdin-"))
    unnamed: int | None = None
    try:
        copy = folder / f"stdin{_STDIN_SUFFIX.get(kwargs.get('input_format'), '.ttl')}"
        unnamed = _unnamed_file(folder)
        if unnamed is not None:
            with open(unnamed, "wb", closefd=False) as out:
                shutil.copyfileobj(click.get_binary_stream("stdin"), out)
            os.symlink(f"/proc/self/fd/{unnamed}", copy)
        else:
            with open(os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
                shutil.copyfileobj(click.get_binary_stream("stdin"), out)
        kwargs["files"] = tuple(copy if f == Path("-") else f for f in files)
        yield copy
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if unnamed is not None:
            os.close(unnamed)


def _unnamed_file(folder: Path) -> int | None:
    """A descriptor of a new file with no name (``O_TMPFILE``) on ``folder``'s file system,
    readable as ``/proc/self/fd/N``; ``None`` where the platform or file system has none."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None or not Path("/proc/self/fd").is_dir():
        return None
    try:
        return os.open(folder, flag | os.O_RDWR, 0o600)
    except OSError:  # EOPNOTSUPP, EISDIR (old kernels): fall back to a named file
        return None


def files_argument(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.argument("files", nargs=-1, required=True,
                          type=click.Path(path_type=Path))(command)


def input_format_option(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option("--input-format", type=click.Choice(sorted([*names.INPUT_FORMATS, "fhir"])), default=None,
                           help="Format of every input file (default: FHIR JSON by content, else RDF by "
                                "each file's extension).")(command)
    return fhir_options(command)


def fhir_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--mappings, --fhir-base, --unmapped-codes and --strict for FHIR input (fhir.md); after the
    command, what reading FHIR found is reported on standard error (counts, never patient values)."""
    @functools.wraps(command)
    def wrapper(*args: Any, mappings: tuple[Path, ...] = (), fhir_base: str | None = None,
                unmapped_codes: Path | None = None, strict: bool = False, **kwargs: Any) -> Any:
        from .fhir import hook
        progress = "quiet" in kwargs and not kwargs["quiet"] and sys.stderr.isatty()
        from .processes import default_workers
        workers = (kwargs.get("workers") or default_workers()) if "workers" in kwargs else 1
        with hook.configured(mappings=mappings, base=fhir_base, strict=strict, progress=progress,
                             workers=workers) as run:
            try:
                return command(*args, strict=strict, **kwargs)
            finally:
                _fhir_report(run, unmapped_codes, kwargs.get("files", ()))
    for option in (
        click.option("--mappings", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
                     metavar="FILE", help="A site's SSSOM mapping file, added to the shipped one (repeatable)."),
        click.option("--fhir-base", default=None, metavar="IRI",
                     help="Base of patient and record IRIs from FHIR input (default https://fhir.invalid/)."),
        click.option("--unmapped-codes", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     metavar="FILE", help="Write the FHIR codes mapped to no itkg term, with counts, as TSV."),
        click.option("--strict", is_flag=True,
                     help="Refuse (exit 2) input that would otherwise be set aside: a FHIR resource that is "
                          "not FHIR R4, an ill-typed value (contract §6); for eligibility and validate, "
                          "also input with no patient."),
    ):
        wrapper = option(wrapper)
    return wrapper


def _fhir_report(run: Any, unmapped_codes: Path | None, inputs: tuple[Path, ...]) -> None:
    """Print what reading FHIR found; write the unmapped codes when asked."""
    for report in run.reports:
        for line in report.lines():
            click.echo(f"itkg: FHIR: {line}", err=True)
    if unmapped_codes is not None and run.reports:
        from collections import Counter

        from .fhir.reader import FhirReport
        merged = FhirReport(unmapped=sum((r.unmapped for r in run.reports), Counter()))
        atomic_write(unmapped_codes, merged.unmapped_tsv(), protect=tuple(inputs))


def extension_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--extension", "extensions", multiple=True, metavar="FILE",
                        type=click.Path(dir_okay=False, path_type=Path),
                        help="A site's extension file (its own subclasses, indications, criteria or "
                             "prerequisites) read with the ontology; repeatable. Patient files cannot "
                             "change the rules: only extension files can.")(command)


def _report_inputs(sources: tuple, *, no_patient_is_error: bool = False, ill_typed_kept: bool = False) -> None:
    """Say on standard error what was set aside from each file, and when the inputs hold no
    patient (contract §6): counts, files and lines only, never a value."""
    from . import setaside
    for line in setaside.notes(sources, ill_typed_kept=ill_typed_kept):
        click.echo(f"itkg: note: {printable(line)}", err=True)
    if sources and not any(getattr(s, "holds_patient", True) for s in sources):
        if no_patient_is_error:
            raise InputError(", ".join(s.path for s in sources), setaside.NO_PATIENT)
        click.echo(f"itkg: note: {setaside.NO_PATIENT}", err=True)


def _note_engine_changed() -> None:
    """Say on standard error that Oxigraph was asked for and rdflib answered (:mod:`itkg.lexical`)."""
    click.echo("itkg: note: the input holds typed literals that Oxigraph's store would rewrite "
               "(leading zeros, xsd:int, +00:00, 24:00:00, ...); the rdflib engine answered, so "
               "that they count and come out as written", err=True)


def output_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
                        default=None, help=OUTPUT_HELP)(command)


def credentials_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--credentials", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        metavar="FILE",
                        help="File holding user:password for a server that asks for HTTP Digest or Basic "
                             "authentication (mode 600). Or set ITKG_ENDPOINT_USER and ITKG_ENDPOINT_PASSWORD. "
                             "Never give a password on the command line.")(command)


def endpoint_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option("--endpoint-max-mb", type=click.FloatRange(min=0.001), default=None, metavar="MB",
                           help="Refuse an endpoint answer larger than this (default: 1024 MB).")(command)
    command = click.option("--endpoint-max-rows", type=click.IntRange(min=1), default=None, metavar="N",
                           help="The server's result row cap, where it does not say so itself: an answer "
                                "with N rows is treated as cut short, an error.")(command)
    command = click.option("--endpoint-method", type=click.Choice(list(names.ENDPOINT_METHODS)), default="auto",
                           show_default=True,
                           help="How queries are POSTed: direct (application/sparql-query), form "
                                "(URL-encoded; Virtuoso needs it), or auto (direct if the server answers it).")(command)
    command = credentials_option(command)
    command = click.option("--store-url", default=None,
                           help="Graph Store Protocol URL of the endpoint (derived for Oxigraph and GraphDB).")(command)
    return click.option("--endpoint", default=None, metavar="URL",
                        help="Run on this SPARQL 1.1 endpoint instead of the local files.")(command)


def _client(endpoint: str, store_url: str | None, timeout: float, credentials: Path | None = None,
            endpoint_method: str = "auto", endpoint_max_rows: int | None = None,
            endpoint_max_mb: float | None = None) -> SparqlEndpoint:
    """The endpoint client of one command: ``timeout`` is the deadline of the whole command's
    traffic with the server, however many requests it takes and however slowly they are answered."""
    from .endpoint import DEFAULT_MAX_RESPONSE_BYTES, Credentials, SparqlEndpoint
    return SparqlEndpoint(
        endpoint, store_url=store_url, timeout=timeout, deadline=time.monotonic() + timeout,
        method=endpoint_method, max_rows=endpoint_max_rows,
        credentials=Credentials.from_file(credentials) if credentials is not None else None,
        max_response_bytes=int(endpoint_max_mb * 2**20) if endpoint_max_mb else DEFAULT_MAX_RESPONSE_BYTES)


def timeout_option(default: float | None, what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--timeout", type=click.FloatRange(min=0.1), default=default, show_default=True,
                        help=f"Give up on {what} after this many seconds.")


def workers_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--workers", type=click.IntRange(min=1), default=None, metavar="N",
                        help="Processes that parse and decide large inputs (default: one per CPU).")(command)


def quiet_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--quiet", is_flag=True,
                        help="No progress display on standard error (shown only on a terminal).")(command)


def _emit(text: str | Iterator[str], output: Path | None, inputs: tuple[Path, ...] = ()) -> None:
    """Print ``text`` or write it atomically to ``output``; chunks go to the file one by one, but
    are joined for standard output so that a failure (e.g. text that cannot be encoded) prints
    nothing rather than half a document, as with a single string."""
    if output is None:
        click.echo(text if isinstance(text, str) else "".join(text), nl=False)
    else:
        atomic_write(output, text, protect=inputs)


def _color(output: Path | None) -> bool:
    """Colour only on a terminal, and never when ``NO_COLOR`` is set (no-color.org)."""
    return output is None and sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def _check_inputs(files: tuple[Path, ...], input_format: str | None) -> None:
    """Fail early on a file that is missing or of an unknown type, before any work starts."""
    from .loading import detect_format
    from .fhir import is_fhir
    for path in files:
        if not is_fhir(path, input_format):
            detect_format(path, input_format)
        if not path.exists():
            raise InputError(path, "no such file")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="itkg")
def main() -> None:
    """itkg: decide and explain eligibility for intrathecal therapy from patient graphs."""


@main.command()
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "turtle", "cds-hooks", "fhir"]),
              default="table", show_default=True,
              help="Output format; turtle writes RDF with PROV-O provenance; cds-hooks a CDS Hooks 3.0 "
                   "response (one card per patient and therapy); fhir an R4 Bundle of MeasureReports "
                   "and DetectedIssues.")
@click.option("--engine", type=click.Choice(list(names.BACKENDS)), default="native", show_default=True,
              help="native rule engine, or the contract's SPARQL queries in rdflib or Oxigraph.")
@endpoint_options
@timeout_option(None, "the SPARQL queries (with --endpoint: all of them together; default 600)")
@input_format_option
@output_option
@workers_option
@quiet_option
@extension_option
@handle_errors
def eligibility(files: tuple[Path, ...], fmt: str, engine: str, endpoint: str | None,
                store_url: str | None, timeout: float | None, input_format: str | None,
                output: Path | None, workers: int | None, quiet: bool, strict: bool,
                extensions: tuple[Path, ...], **server: Any) -> None:
    """Which therapies each patient in FILES qualifies for (contract §3).

    With --endpoint, give no FILES: the endpoint holds the ontology and the patients (see
    `itkg load`).
    """
    from . import api, render
    from .knowledge import load_knowledge
    from .loading import load
    from .lexical import LexicalFormError
    from .parallel import eligibility_rows
    from .sparql import load_for_query
    started = _dt.datetime.now(_dt.timezone.utc)
    knowledge = load_knowledge(extensions=extensions)
    sources: tuple = ()
    if endpoint:
        if files:
            raise InputError(files[0], "with --endpoint the data comes from the endpoint; give no files")
        with _client(endpoint, store_url, timeout or ENDPOINT_TIMEOUT_S, **server) as client:
            results = api.eligibility(None, endpoint=client, knowledge=knowledge)
    else:
        if not files:
            raise InputError("<none>", "no input files given (or use --endpoint)")
        _check_inputs(files, input_format)
        if engine == "native":  # streamed into the rule engine's index, in parallel when large
            # One run, then exit: the collector would walk the million rows (and find no cycles).
            gc.disable()
            results, sources = eligibility_rows(files, input_format=input_format, workers=workers,
                                                knowledge=knowledge, checksums=fmt == "turtle",
                                                progress=not quiet and sys.stderr.isatty(), strict=strict)
        else:
            # Oxigraph gets the files straight into its store: the data is held once.
            data: Any = None
            if engine == "oxigraph":
                try:
                    data = load_for_query(files, input_format=input_format, strict=strict,
                                          ontology=api._ontology(knowledge))
                except LexicalFormError:  # the store would rewrite some literal: see itkg.lexical
                    engine = "rdflib"
                    _note_engine_changed()
            if data is None:
                data = load(files, input_format=input_format, strict=strict)
            sources = data.sources
            results = api.eligibility(data, engine=engine, knowledge=knowledge, timeout=timeout)
        _report_inputs(sources, no_patient_is_error=strict)
    from .fhir import hook
    if hook.LAST is not None:  # FHIR input: the evidence names the resources and codes
        results = hook.annotate(results, hook.LAST.notes)
    text: str | Iterator[str]
    if fmt == "json":  # hundreds of MB at a million patients: streamed into the output file
        text = render.eligibility_json_chunks(results)
    elif fmt == "csv":
        text = render.eligibility_csv(results)
    elif fmt in ("cds-hooks", "fhir"):
        from . import render_fhir
        text = render_fhir.cds_hooks(results, knowledge=knowledge) if fmt == "cds-hooks" else \
            render_fhir.fhir_bundle(results, knowledge=knowledge)
    elif fmt == "turtle":
        text = render.eligibility_turtle(results, knowledge=knowledge, sources=sources, started=started,
                                         ended=_dt.datetime.now(_dt.timezone.utc),
                                         software_version=__version__)
    else:
        text = render.eligibility_table(results, color=_color(output))
    _emit(text, output, files + extensions)


@main.command()
@files_argument
@click.option("--format", "fmt", type=click.Choice(["text", "json", "turtle"]), default="text",
              show_default=True, help="text for people, json, or the SHACL report graph as Turtle.")
@click.option("--workers", type=click.IntRange(min=1), default=None, metavar="N",
              help="Processes that validate the batches of large inputs (default: one per CPU).")
@click.option("--engine", type=click.Choice(list(names.SHACL_BACKENDS)), default="auto", show_default=True,
              help="SHACL engine: pySHACL, Apache Jena (needs java and libapache-jena-java), turbo "
                   "(pyshacl-turbo: pip install 'itkg[turbo]'), or auto: Jena for inputs of 100,000 "
                   "triples or more when it is installed, else pySHACL.")
@quiet_option
@timeout_option(3600.0, "validation")
@input_format_option
@output_option
@extension_option
@handle_errors
def validate(files: tuple[Path, ...], fmt: str, workers: int | None, engine: str, quiet: bool, timeout: float,
             input_format: str | None, output: Path | None, strict: bool, extensions: tuple[Path, ...]) -> None:
    """Validate FILES against the shapes (contract §4): exit 0 conforms, 1 violations, 2 bad input."""
    from . import api, render
    from .loading import load

    def progress(done: int, total: int) -> None:
        if total > 1 and (done == total or done % max(1, total // 10) == 0):
            click.echo(f"itkg: validated {done} of {total} batches", err=True)

    _check_inputs(files, input_format)
    data = load(files, input_format=input_format, strict_literals=False)
    _report_inputs(data.sources, no_patient_is_error=strict, ill_typed_kept=True)
    # Within a deadline, like the other commands; the ill-typed policy is the API's.
    report = api.validate(data, engine=engine, extensions=extensions, workers=workers, timeout=timeout,
                          progress=None if quiet or not sys.stderr.isatty() else progress)
    text = {"json": render.validation_json, "turtle": render.validation_turtle}.get(
        fmt, render.validation_text)(report)
    _emit(text, output, files + extensions)
    sys.exit(0 if report.conforms else 1)


@main.command()
@click.argument("query")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True, help="table, SPARQL JSON results, or CSV.")
@click.option("--engine", type=click.Choice(list(names.SPARQL_BACKENDS)), default="oxigraph", show_default=True,
              help="Local SPARQL engine (ignored with --endpoint).")
@endpoint_options
@timeout_option(300.0, "the query")
@input_format_option
@output_option
@extension_option
@handle_errors
def query(query: str, files: tuple[Path, ...], fmt: str, engine: str, endpoint: str | None,
          store_url: str | None, timeout: float, input_format: str | None, output: Path | None,
          strict: bool, extensions: tuple[Path, ...], **server: Any) -> None:
    """Run QUERY (a .rq file, or the name of one in queries/) over the ontology and FILES.

    SERVICE, FROM, FROM NAMED and updates are refused: a query can neither reach the network nor
    read other files.
    """
    from . import render
    from .resources import query_path
    from .ordering import sort_result
    from .sparql import QueryResult, gate, select_files
    path = Path(query)
    if not path.is_file():
        try:
            path = query_path(query)
        except FileNotFoundError:
            raise QueryError(f"{query}: no such query file, and no query of that name in queries/") from None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise InputError(path, "cannot read the query file") from None
    from . import api, rulegen
    from .knowledge import load_knowledge
    knowledge = load_knowledge(extensions=extensions)
    if extensions and not Path(query).is_file() and query in rulegen.QUERIES:
        text = rulegen.query(query, knowledge)  # the generated query, with the site's rules
    if endpoint:
        if files:
            raise InputError(files[0], "with --endpoint the data comes from the endpoint; give no files")
        gate(text, str(path), timeout)  # within the deadline: see sparql.gate
        with _client(endpoint, store_url, timeout, **server) as client:
            variables, rows = client.select(text)
        result = QueryResult(tuple(variables), tuple(rows))
    else:
        if not files:
            raise InputError("<none>", "no input files given")
        _check_inputs(files, input_format)
        # Loaded in the query's child process, and for Oxigraph straight into its store: the data
        # is held once (see select_files).
        result = select_files(text, files, engine=cast("Engine", engine), input_format=input_format,
                              timeout=timeout, source=str(path),  # gated there, within the deadline
                              strict=strict, ontology=api._ontology(knowledge))
        _report_inputs(result.sources)
        if result.engine != engine:
            _note_engine_changed()
    # Sorted here, whatever ran it: a server's order is not to be trusted (see itkg.ordering).
    result = sort_result(result, text)
    if fmt == "json":
        out = render.query_json(result)
    elif fmt == "csv":
        out = render.query_csv(result)
    else:
        out = render.query_table(result, color=_color(output))
    _emit(out, output, files + extensions + (path,))


@main.command()
@click.argument("patient")
@files_argument
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text for people (criterion by criterion), or json.")
@input_format_option
@output_option
@extension_option
@handle_errors
def explain(patient: str, files: tuple[Path, ...], fmt: str, input_format: str | None,
            output: Path | None, strict: bool, extensions: tuple[Path, ...]) -> None:
    """Explain, for PATIENT (an IRI, or a blank node as _:label) in FILES, every indication: met or not, and why."""
    from . import api, render
    from .loading import load
    _check_inputs(files, input_format)
    data = load(files, input_format=input_format, strict=strict)
    _report_inputs(data.sources)
    explanation = api.explain(data, patient, extensions=extensions)
    from .fhir import hook
    if hook.LAST is not None:  # FHIR input: the evidence names the resources and codes
        explanation = hook.annotate_explanation(explanation, hook.LAST.notes)
    text = render.explanation_json(explanation) if fmt == "json" else \
        render.explanation_text(explanation, color=_color(output))
    _emit(text, output, files + extensions)


@main.command()
@files_argument
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="table for people, or json (with the agreement when checked).")
@click.option("--check-agreement", is_flag=True,
              help="Compare HermiT's classification with the rule engine's indications; exit 1 on a difference.")
@click.option("--max-patients", type=click.IntRange(min=1), default=20_000, show_default=True,
              help="Refuse inputs with more patients than this, or more than 10 individuals (patients, "
                   "records, anything described) per allowed patient: HermiT is for cohorts, not populations.")
@timeout_option(300.0, "reasoning")
@input_format_option
@output_option
@extension_option
@handle_errors
def reason(files: tuple[Path, ...], fmt: str, check_agreement: bool, max_patients: int, timeout: float,
           input_format: str | None, output: Path | None, strict: bool, extensions: tuple[Path, ...]) -> None:
    """Classify the patients in FILES with HermiT (OWL 2 DL) into the indications' defined classes."""
    import json

    from . import api, render
    from .loading import load
    from .reasoning import agreement
    _check_inputs(files, input_format)
    data = load(files, input_format=input_format, strict=strict)
    _report_inputs(data.sources)
    report = api.reason(data, timeout=timeout, max_patients=max_patients, extensions=extensions)
    differences = []
    if check_agreement:
        rows = api.eligibility(data, extensions=extensions)
        differences = agreement(report, {(r.patient, r.indication) for r in rows})
    if fmt == "json":
        payload = report.to_dict()
        if check_agreement:
            payload["agreement"] = {"agrees": not differences,
                                    "differences": [d.to_dict() for d in differences]}
        text = json.dumps(payload, indent=1) + "\n"
    else:
        text = render.reasoning_text(report, differences if check_agreement else None,
                                     color=_color(output))
    _emit(text, output, files + extensions)
    sys.exit(1 if differences else 0)


@main.command()
@files_argument
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The graph to write, atomically: .ttl (Turtle) or .nt (N-Triples).")
@input_format_option
@handle_errors
def convert(files: tuple[Path, ...], output: Path, input_format: str | None, strict: bool = False) -> None:
    """Write the patient graph of FILES (FHIR R4 JSON, Bundles, NDJSON, Bulk export directories,
    and RDF) as contract §2 RDF, each record linked to the FHIR resource it came from."""
    from .fhir.convert import convert as convert_files, output_format
    output_format(output)
    _check_inputs(files, input_format)
    convert_files(files, output, input_format=input_format)
    click.echo(f"itkg: wrote {output}", err=True)


@main.command(name="report")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The HTML file to write (atomically, readable by its owner only: it holds patient data).")
@click.option("--engine", type=click.Choice(list(names.BACKENDS)), default="native", show_default=True,
              help="native rule engine, or the contract's SPARQL queries in rdflib or Oxigraph.")
@endpoint_options
@timeout_option(None, "the SPARQL queries (with --endpoint: all of them together; default 600)")
@input_format_option
@click.option("--max-listed", type=click.IntRange(min=1), default=names.DEFAULT_MAX_LISTED,
              show_default=True, help="Rows shown per list; beyond, a note, and every row in a CSV beside the page.")
@click.option("--max-details", type=click.IntRange(min=0), default=names.DEFAULT_MAX_DETAILS,
              show_default=True, help="Patients whose full explanation is in the page.")
@extension_option
@handle_errors
def report_command(files: tuple[Path, ...], output: Path, engine: str, endpoint: str | None,
                   store_url: str | None, timeout: float | None, input_format: str | None,
                   max_listed: int, max_details: int, extensions: tuple[Path, ...], strict: bool = False,
                   **server: Any) -> None:
    """Write a self-contained HTML report of FILES for the clinic: summary and attrition,
    worklist, qualifying and excluded patients, and each patient's explanation.

    With --endpoint, give no FILES: the endpoint holds the ontology and the patients.
    """
    from . import api
    if endpoint:
        if files:
            raise InputError(files[0], "with --endpoint the data comes from the endpoint; give no files")
        with _client(endpoint, store_url, timeout or ENDPOINT_TIMEOUT_S, **server) as client:
            written = api.report(None, output, endpoint=client, extensions=extensions,
                                 max_listed=max_listed, max_details=max_details)
    else:
        if not files:
            raise InputError("<none>", "no input files given (or use --endpoint)")
        _check_inputs(files, input_format)
        written = api.report(list(files), output, engine=engine, input_format=input_format,
                             extensions=extensions, strict=strict, timeout=timeout,
                             max_listed=max_listed, max_details=max_details)
        _report_inputs(written.sources)
    click.echo(printable(f"itkg: wrote {written.output} ({written.size} bytes, {written.patients} patients, "
                         f"{written.rows} rows)" + (f" and every row to {written.csv}" if written.csv else "")),
               err=True)


@main.command(name="load")
@files_argument
@click.option("--endpoint", required=True, metavar="URL", help="SPARQL query URL of the server.")
@click.option("--store-url", default=None, help="Graph Store Protocol URL (derived for Oxigraph and GraphDB).")
@click.option("--graph", "graph_iri", default=None, metavar="IRI", help="Named graph to load into (default graph if omitted; Virtuoso has none, so give one there).")
@click.option("--replace", is_flag=True, help="Replace the graph's content instead of adding to it.")
@credentials_option
@timeout_option(600.0, "the upload")
@input_format_option
@extension_option
@handle_errors
def load_command(files: tuple[Path, ...], endpoint: str, store_url: str | None, graph_iri: str | None,
                 replace: bool, credentials: Path | None, timeout: float, input_format: str | None,
                 strict: bool, extensions: tuple[Path, ...]) -> None:
    """Upload FILES to a SPARQL server with the Graph Store Protocol, after checking them.

    itkg's own ontology file (``ontology/itkg.ttl`` or ``.owl``) and the ``--extension`` files
    are knowledge and are sent as they are; from every other file, which is patient data,
    statements about classes or itkg: terms are set aside and never sent (contract §6).
    """
    from .loading import load, ntriples
    _check_inputs(files, input_format)
    ontology_files = tuple(path for path in files if _is_bundled_ontology(path))
    patient_files = tuple(path for path in files if path not in ontology_files)
    triples: list = []
    if patient_files:
        data = load(patient_files, input_format=input_format, strict=strict)
        _report_inputs(data.sources)
        triples = data.triples
        from .lexical import count_changed
        rewritten = count_changed(triples)
        if rewritten:  # sent as written; what the server keeps is the server's (docs/endpoint.md)
            click.echo(f"itkg: note: {rewritten} typed literal(s) are not in canonical form (leading "
                       "zeros, xsd:int, +00:00, 24:00:00, ...); they are sent as written, and a server "
                       "that stores values, as Oxigraph does, answers with its canonical form", err=True)
    knowledge = _knowledge_graph(ontology_files + extensions)
    with _client(endpoint, store_url, timeout, credentials) as client:
        client.upload(ntriples(triples), "application/n-triples", graph=graph_iri, replace=replace)
        if len(knowledge):
            client.upload(knowledge.serialize(format="nt", encoding="utf-8"), "application/n-triples",
                          graph=graph_iri)
    click.echo(f"Loaded {len(triples) + len(knowledge)} triples from {len(files) + len(extensions)} file(s).",
               err=True)


def _is_bundled_ontology(path: Path) -> bool:
    """Whether ``path`` holds exactly itkg's own ontology (Turtle or RDF/XML)."""
    import hashlib

    from .resources import ontology_owl_path, ontology_path
    try:
        digest = hashlib.sha256(path.read_bytes()).digest()
    except OSError:
        return False
    return any(digest == hashlib.sha256(own.read_bytes()).digest()
               for own in (ontology_path(), ontology_owl_path()) if own.is_file())


def _knowledge_graph(paths: tuple[Path, ...]) -> Any:
    """Knowledge files (itkg's ontology, a site's extensions) in one rdflib graph, read with the
    input gates and nothing set aside."""
    import rdflib

    from .knowledge import read_extension
    graph = rdflib.Graph()
    for path in paths:
        graph += read_extension(path)
    return graph


if __name__ == "__main__":  # pragma: no cover
    main()
