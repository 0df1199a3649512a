"""The ``itkg`` command line: thin click commands over :mod:`itkg.api` (contract §5).

Exit codes: 0 success; 1 the data violates the shapes (``validate``) or reasoning disagrees
(``reason --check-agreement``); 2 bad input or any other error, reported as one line on standard
error that names the file and line but never quotes patient data.
"""

from __future__ import annotations

import functools
import contextlib
import gc
import os
import shutil
import tempfile
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import click

from . import __version__, names
from .errors import InputError, ItkgError
from .safeio import atomic_write
from .termsafe import printable

if TYPE_CHECKING:
    from .api import SparqlEndpoint

# The command line only parses options (each defined once, below) and calls the API (itkg.api),
# then renders (itkg.render, itkg.render_fhir): it imports nothing else from itkg
# (tests/test_one_door.py checks). Each command imports the API when it runs: ``itkg --help`` and
# ``itkg --version`` load none of rdflib, pySHACL, owlready2, httpx or pyoxigraph
# (tests/test_imports.py counts the modules).

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
        from .api import command_scope, memory_error
        collecting = gc.isenabled()
        try:
            # The only host itkg may reach is an endpoint the user named on this command line.
            with command_scope([url for url in (kwargs.get("endpoint"), kwargs.get("store_url")) if url],
                               max_memory=max_memory), _standard_input(kwargs) as stdin_copy:
                try:
                    return command(*args, **kwargs)
                except ItkgError as error:  # name standard input as the user did
                    text = str(error) if stdin_copy is None else str(error).replace(str(stdin_copy), "-")
                    _fail(text, error.exit_code)
                except BaseException as error:  # the memory budget, past: one clean error
                    problem = memory_error(error)
                    if problem is None:
                        raise
                    raise problem from None
        except ItkgError as error:
            _fail(str(error), error.exit_code)
        except RecursionError:
            _fail("the input is nested too deeply to process")
        except MemoryError:
            _fail("not enough memory for this input")
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except Exception as error:  # noqa: BLE001 - the message may quote data: name the type only
            _fail(f"internal error ({type(error).__name__}); please report it")
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
        from .api import fhir_findings, fhir_reading
        progress = "quiet" in kwargs and not kwargs["quiet"] and sys.stderr.isatty()
        workers = kwargs.get("workers") if "workers" in kwargs else 1
        with fhir_reading(mappings=mappings, fhir_base=fhir_base, strict=strict, progress=progress,
                          workers=workers) as run:
            try:
                return command(*args, strict=strict, **kwargs)
            finally:
                lines, unmapped = fhir_findings(run)
                for line in lines:
                    click.echo(f"itkg: FHIR: {line}", err=True)
                if unmapped_codes is not None and unmapped is not None:
                    atomic_write(unmapped_codes, unmapped, protect=tuple(kwargs.get("files", ())))
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


def extension_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--extension", "extensions", multiple=True, metavar="FILE",
                        type=click.Path(dir_okay=False, path_type=Path),
                        help="A site's extension file (its own subclasses, indications, criteria or "
                             "prerequisites) read with the ontology; repeatable. Patient files cannot "
                             "change the rules: only extension files can.")(command)


def _notes(lines: Sequence[str]) -> None:
    """Say on standard error what the API noted about the input (contract §6): what was set
    aside from each file, an input with no patient (counts, files and lines, never a value)."""
    for line in lines:
        click.echo(f"itkg: note: {printable(line)}", err=True)


def format_option(choices: list[str], default: str, *, text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--format``: the output formats of one command (each renders with :mod:`itkg.render`)."""
    return click.option("--format", "fmt", type=click.Choice(choices), default=default, show_default=True, help=text)


def output_option(command: Callable[..., Any] | None = None, *, required: str | None = None) -> Any:
    """``-o/--output``: optional (standard output otherwise), or ``required`` with that help text."""
    option = click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
                          default=None, required=required is not None, help=required or OUTPUT_HELP)
    return option(command) if command is not None else option


def endpoint_url_option(*, required: bool = False, text: str = "Run on this SPARQL 1.1 endpoint instead of the "
                        "local files.") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--endpoint", default=None, required=required, metavar="URL", help=text)


def store_url_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--store-url", default=None,
                        help="Graph Store Protocol URL of the endpoint (derived for Oxigraph and GraphDB).")(command)


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
    command = store_url_option(command)
    return endpoint_url_option()(command)


def _client(endpoint: str, store_url: str | None, timeout: float, credentials: Path | None = None,
            endpoint_method: str = "auto", endpoint_max_rows: int | None = None,
            endpoint_max_mb: float | None = None) -> SparqlEndpoint:
    """The endpoint client of one command (:func:`itkg.api.connect`): ``timeout`` is the deadline
    of the whole command's traffic with the server."""
    from .api import connect
    return connect(endpoint, store_url=store_url, timeout=timeout, credentials=credentials,
                   method=endpoint_method, max_rows=endpoint_max_rows, max_mb=endpoint_max_mb)


def timeout_option(default: float | None, what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--timeout", type=click.FloatRange(min=0.1), default=default, show_default=True,
                        help=f"Give up on {what} after this many seconds.")


def workers_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--workers", type=click.IntRange(min=1), default=None, metavar="N",
                        help="Processes that parse, decide or validate large inputs (default: one per CPU).")(command)


_ENGINE_HELP = {
    "decision": "Decision back-end: the native rule engine, or the contract's SPARQL queries in rdflib or "
                "Oxigraph (with --endpoint: the endpoint). Every back-end gives the same rows and evidence.",
    "sparql": "Local SPARQL back-end (ignored with --endpoint).",
    "validation": "Validation back-end: pySHACL, Apache Jena (needs java and libapache-jena-java), turbo "
                  "(pyshacl-turbo: pip install 'itkg[turbo]'), native (itkg's own SHACL engine; it refuses "
                  "shapes it does not implement), or auto: turbo when installed, else Jena for "
                  "inputs of 100,000 triples or more when it is installed, else pySHACL.",
}
_ENGINE_CHOICES = {"decision": names.LOCAL_DECISION_BACKENDS, "sparql": names.SPARQL_BACKENDS,
                   "validation": names.VALIDATION_CHOICES}


def engine_option(kind: str, default: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--engine``: a back-end of ``kind``, by the one set of names (:data:`itkg.names.BACKENDS`)."""
    return click.option("--engine", type=click.Choice(list(_ENGINE_CHOICES[kind])), default=default,
                        show_default=True, help=_ENGINE_HELP[kind])


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="itkg")
def main() -> None:
    """itkg: decide and explain eligibility for intrathecal therapy from patient graphs."""


@main.command()
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@format_option(["table", "json", "csv", "turtle", "cds-hooks", "fhir"], "table",
               text="Output format; turtle writes RDF with PROV-O provenance; cds-hooks a CDS Hooks 3.0 "
                   "response (one card per patient and therapy); fhir an R4 Bundle of MeasureReports "
                   "and DetectedIssues.")
@engine_option("decision", "native")
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
    if endpoint:
        with _client(endpoint, store_url, timeout or ENDPOINT_TIMEOUT_S, **server) as client:
            run = api.eligibility_run(files or None, endpoint=client, extensions=extensions)
    else:
        # One run, then exit: the collector would walk the million rows (and find no cycles).
        gc.disable()
        run = api.eligibility_run(list(files), engine=engine, input_format=input_format, workers=workers,
                                  timeout=timeout, strict=strict, extensions=extensions,
                                  progress=not quiet and sys.stderr.isatty(), checksums=fmt == "turtle")
    _notes(run.notes)
    results = run.rows
    text: str | Iterator[str]
    if fmt == "json":  # hundreds of MB at a million patients: streamed into the output file
        text = render.eligibility_json_chunks(results)
    elif fmt == "csv":
        text = render.eligibility_csv(results)
    elif fmt in ("cds-hooks", "fhir"):
        from . import render_fhir
        text = render_fhir.cds_hooks(results, knowledge=run.knowledge) if fmt == "cds-hooks" else \
            render_fhir.fhir_bundle(results, knowledge=run.knowledge)
    elif fmt == "turtle":
        text = render.eligibility_turtle(results, knowledge=run.knowledge, sources=run.sources,
                                         started=run.started, ended=run.ended, software_version=__version__)
    else:
        text = render.eligibility_table(results, color=_color(output))
    _emit(text, output, files + extensions)


@main.command()
@files_argument
@format_option(["text", "json", "turtle"], "text", text="text for people, json, or the SHACL report graph as Turtle.")
@workers_option
@engine_option("validation", "auto")
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

    def progress(done: int, total: int) -> None:
        if total > 1 and (done == total or done % max(1, total // 10) == 0):
            click.echo(f"itkg: validated {done} of {total} batches", err=True)

    # Within a deadline, like the other commands; the files are read in the deadline's child only
    # (and its notes shown from there), and the ill-typed policy is the API's.
    report = api.validate(list(files), engine=engine, extensions=extensions, workers=workers, timeout=timeout,
                          input_format=input_format, strict=strict,
                          progress=None if quiet or not sys.stderr.isatty() else progress,
                          on_read=lambda sources: _notes(api.input_notes(sources, ill_typed_kept=True)))
    text = {"json": render.validation_json, "turtle": render.validation_turtle}.get(
        fmt, render.validation_text)(report)
    _emit(text, output, files + extensions)
    sys.exit(0 if report.conforms else 1)


@main.command()
@click.argument("query")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@format_option(["table", "json", "csv"], "table", text="table, SPARQL JSON results, or CSV.")
@engine_option("sparql", "oxigraph")
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
    from . import api, render
    if endpoint:
        with _client(endpoint, store_url, timeout, **server) as client:
            result = api.query(query, files, endpoint=client, timeout=timeout, extensions=extensions)
    else:
        result = api.query(query, files, engine=engine, input_format=input_format, timeout=timeout,
                           strict=strict, extensions=extensions)
        _notes(api.input_notes(result.sources) + api.engine_notes(engine, result.engine))
    if fmt == "json":
        out = render.query_json(result)
    elif fmt == "csv":
        out = render.query_csv(result)
    else:
        out = render.query_table(result, color=_color(output))
    _emit(out, output, files + extensions + (api.query_file(query),))


@main.command()
@click.argument("patient")
@files_argument
@format_option(["text", "json"], "text",
               text="text for people (criterion by criterion), or json.")
@input_format_option
@output_option
@extension_option
@handle_errors
def explain(patient: str, files: tuple[Path, ...], fmt: str, input_format: str | None,
            output: Path | None, strict: bool, extensions: tuple[Path, ...]) -> None:
    """Explain, for PATIENT in FILES, every indication: met or not, and why.

    PATIENT is an IRI, or a blank node by its label as written (_:p1; with several files, as
    "_:p1 (b.ttl)") or by the id itkg prints (_:_3, _:f2-p1)."""
    from . import api, render
    data = api.read(files, input_format=input_format, strict=strict)
    _notes(api.input_notes(data.sources))
    explanation = api.explain(data, patient, extensions=extensions)
    text = render.explanation_json(explanation) if fmt == "json" else \
        render.explanation_text(explanation, color=_color(output))
    _emit(text, output, files + extensions)


@main.command()
@files_argument
@format_option(["table", "json"], "table",
               text="table for people, or json (with the agreement when checked).")
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
    from . import api, render
    data = api.read(files, input_format=input_format, strict=strict)
    _notes(api.input_notes(data.sources))
    report = api.reason(data, timeout=timeout, max_patients=max_patients, extensions=extensions)
    differences = api.agreement(data, report, extensions=extensions) if check_agreement else None
    text = render.reasoning_json(report, differences) if fmt == "json" else \
        render.reasoning_text(report, differences, color=_color(output))
    _emit(text, output, files + extensions)
    sys.exit(1 if differences else 0)


@main.command()
@files_argument
@output_option(required="The graph to write, atomically: .ttl (Turtle) or .nt (N-Triples).")
@input_format_option
@handle_errors
def convert(files: tuple[Path, ...], output: Path, input_format: str | None, strict: bool = False) -> None:
    """Write the patient graph of FILES (FHIR R4 JSON, Bundles, NDJSON, Bulk export directories,
    and RDF) as contract §2 RDF, each record linked to the FHIR resource it came from."""
    from . import api
    api.convert(files, output, input_format=input_format)
    click.echo(f"itkg: wrote {output}", err=True)


@main.command(name="report")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@output_option(required="The HTML file to write (atomically, readable by its owner only: it holds patient data).")
@engine_option("decision", "native")
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
        written = api.report(list(files), output, engine=engine, input_format=input_format,
                             extensions=extensions, strict=strict, timeout=timeout,
                             max_listed=max_listed, max_details=max_details)
        _notes(api.input_notes(written.sources))
    click.echo(printable(f"itkg: wrote {written.output} ({written.size} bytes, {written.patients} patients, "
                         f"{written.rows} rows)" + (f" and every row to {written.csv}" if written.csv else "")),
               err=True)


@main.command(name="load")
@files_argument
@endpoint_url_option(required=True, text="SPARQL query URL of the server.")
@store_url_option
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
    from . import api
    with _client(endpoint, store_url, timeout, credentials) as client:
        sent = api.upload(files, client, graph=graph_iri, replace=replace, input_format=input_format,
                          strict=strict, extensions=extensions)
    _notes(api.upload_notes(sent))
    click.echo(f"Loaded {sent.triples} triples from {sent.files} file(s).", err=True)


def run() -> None:
    """The ``itkg`` program (the console script, ``python -m itkg.cli``): :func:`main`, and then
    no last walk of the collector over what is still alive when it exits.

    The interpreter collects once more at exit, even with the collector paused, and a command
    leaves much alive until then (the knowledge, the FHIR mapping's tables, modules): 0.1 s of
    a 100,000-patient FHIR run, after the output is written. Frozen (:func:`gc.freeze`), those
    objects are left to the exit, which frees them anyway. Only here, never in :func:`main`,
    which also runs in-process (tests), where frozen objects would never be collected again.
    """
    try:
        main()
    finally:
        gc.freeze()


if __name__ == "__main__":  # pragma: no cover
    run()
