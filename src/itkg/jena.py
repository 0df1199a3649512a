"""Apache Jena SHACL as a second validation back-end, for populations.

Why: pySHACL spends about a millisecond of Python per patient (each property shape is evaluated
per focus node), so a million patients take far longer than a nightly run allows. Jena SHACL is a
conformant, well-kept engine (the contract asks for the same verdict in every such engine, and
``tests/test_shapes.py`` checks that Jena and pySHACL agree on every fixture); it validates the
same batches about ten times faster. itkg keeps the partitioning, the ownership of results and
the report of :mod:`itkg.validation`; only the engine that judges each batch changes.

Jena comes from the system, not from PyPI: the Debian package ``libapache-jena-java`` (jars in
``/usr/share/java``) or any directory of Jena 4 jars named by ``ITKG_JENA_JARS``, plus ``java``
(11 or newer) on ``PATH``. Each worker is one ``java`` process that runs
``_jena/ItkgJenaShacl.java``; it is sent the shapes, the ontology and each batch over a pipe, and
never opens a connection of its own. Where the Java on ``PATH`` comes with its compiler
(``javac`` beside ``java``), the worker is compiled once into the user's cache folder
(:func:`compiled`) and later workers start from the class file; otherwise, or where the cache
cannot be written, each worker runs straight from source (``java File.java``), which compiles it
again in every process: about a second of CPU per worker.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import struct
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO, Iterable, Sequence

import pyoxigraph as ox

from . import processes
from .errors import ValidationEngineError

#: The jars the worker needs, by their unversioned Debian names.
JARS = (
    "jena-shacl", "jena-arq", "jena-core", "jena-base", "jena-iri", "commons-cli", "commons-codec",
    "commons-compress", "commons-csv", "commons-io", "commons-lang3", "dexx.collection", "gson", "guava",
    "httpclient", "httpcore", "jackson-core", "jackson-databind", "jackson-annotations", "jakarta.json-api",
    "jsonld-java", "protobuf", "thrift", "titanium-json-ld", "caffeine", "slf4j-api", "slf4j-nop",
)
DEFAULT_JAR_DIR = "/usr/share/java"
SOURCE = Path(__file__).with_name("_jena") / "ItkgJenaShacl.java"

#: Heap of one worker in MB: a batch is usually about a thousand patients and the ontology a
#: thousand triples; a batch that cannot be cut (one large connected piece) gets more, see
#: :func:`heap_mb`.
HEAP_MB = 768


def heap_mb(largest_batch_triples: int) -> int:
    """A worker's ``-Xmx`` for batches of up to ``largest_batch_triples`` triples: Jena's
    in-memory graph takes a few hundred bytes per triple, so allow about a kilobyte."""
    return max(HEAP_MB, 256 + largest_batch_triples // 1000)


@dataclass(frozen=True)
class JenaSetup:
    """Where Jena was found: the ``java`` command and the jars."""

    java: str
    jars: tuple[Path, ...]


#: The oldest Java that runs a single source file (``java File.java``, JEP 330).
MIN_JAVA = 11


def _java_env() -> dict[str, str]:
    """The whole environment of the compiler and the workers: ``PATH`` and a UTF-8 locale, nothing
    of the user's (docs/security.md §10)."""
    return {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"}


def java_major(java: str) -> int | None:
    """The major version of ``java`` (``17`` for "17.0.15", ``8`` for "1.8.0_392"), or ``None``."""
    try:
        completed = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30,
                                   check=False, env={"PATH": os.environ.get("PATH", "")})
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', completed.stderr + completed.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


@lru_cache(maxsize=1)
def find() -> JenaSetup | None:
    """``java`` (11 or newer) and the Jena jars, or ``None`` when either is missing."""
    java = shutil.which("java")
    if java is None:
        return None
    folder = Path(os.environ.get("ITKG_JENA_JARS") or DEFAULT_JAR_DIR)
    jars = tuple(folder / f"{name}.jar" for name in JARS)
    if not all(jar.is_file() for jar in jars):
        return None
    major = java_major(java)
    if major is None or major < MIN_JAVA:
        return None
    return JenaSetup(java, jars)


def available() -> bool:
    """Whether the Jena back-end can run here."""
    return find() is not None


def cache_folder() -> Path | None:
    """itkg's folder in the user's cache (``$XDG_CACHE_HOME/itkg``, else ``~/.cache/itkg``), or
    ``None`` where neither is an absolute path (a relative one would put it in the working folder)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path(os.path.expanduser("~")) / ".cache"
    return base / "itkg" if base.is_absolute() else None


def _compile_key(setup: JenaSetup, javac: Path) -> str:
    """What the class file depends on: the source, the compiler and the jars it was compiled against."""
    digest = hashlib.sha256(SOURCE.read_bytes())
    for path in (javac, *setup.jars):
        stat = path.stat()
        digest.update(f"\0{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def _private(folder: Path) -> bool:
    """Whether ``folder`` is this user's and nobody else can write to it (a class file found there
    is run as this user's code)."""
    try:
        stat = folder.stat()
    except OSError:
        return False
    return stat.st_uid == os.getuid() and not stat.st_mode & 0o022


def compiled(setup: JenaSetup) -> Path | None:
    """The folder holding the worker compiled for this Java and these jars, compiled there on
    first use (into a private temporary folder renamed into place, so that a concurrent run sees
    all of it or nothing); ``None`` where Java has no ``javac`` beside ``java`` or the cache cannot
    be written or compiled into: the workers then run from source.

    Why: running from source compiles the worker in every JVM (about a second of CPU each, two
    workers per run by default), for every run of ``itkg validate --engine jena``."""
    javac = Path(os.path.realpath(setup.java)).with_name("javac")
    if not javac.is_file() or not os.access(javac, os.X_OK):
        return None
    try:
        root = cache_folder()
        if root is None:
            return None
        folder = root / f"jena-worker-{_compile_key(setup, javac)}"
        if (folder / "ItkgJenaShacl.class").is_file():
            return folder if _private(folder) else None
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".compiling-", dir=root))
    except OSError:
        return None
    try:
        done = subprocess.run([str(javac), "-nowarn", "-proc:none", "-encoding", "UTF-8",
                               "-cp", ":".join(map(str, setup.jars)), "-d", str(work), str(SOURCE)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=300, env=_java_env(),
                              check=False)
        if done.returncode != 0 or not (work / "ItkgJenaShacl.class").is_file():
            return None
        try:
            work.rename(folder)
        except OSError:  # another run put its copy there first
            pass
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder if (folder / "ItkgJenaShacl.class").is_file() and _private(folder) else None


def classpath(setup: JenaSetup, workdir: Path) -> str:
    """The jars, plus the message bundles Debian's relocated Xerces cannot find.

    Debian moves Jena's bundled Xerces classes to the package ``xerces`` but leaves their message
    bundles under ``org/apache/jena/ext/xerces``; without a copy at the new place (in ``workdir``)
    Jena fails on its first datatype check.
    """
    resources = workdir / "xerces-resources"
    prefix = "org/apache/jena/ext/xerces/"
    core = next(jar for jar in setup.jars if jar.name == "jena-core.jar")
    with zipfile.ZipFile(core) as jar:
        for name in jar.namelist():
            if name.startswith(prefix) and name.endswith(".properties"):
                target = resources / "xerces" / name[len(prefix):]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(jar.read(name))
    return ":".join([str(resources), *map(str, setup.jars)])


#: One result of the worker: focus, path, value, source shape, severity, component, message,
#: each a pyoxigraph term or ``None``.
RawResult = tuple[object | None, ...]

_FIELDS = 7
_SUBJECT = "<urn:itkg:jena:r{}>"
_PREDICATES = [f"<urn:itkg:jena:f{i}>" for i in range(_FIELDS)]


def _decode(lines: Sequence[str]) -> list[RawResult]:
    """Parse the worker's tab-separated N-Triples terms with pyoxigraph (one document per batch)."""
    document = []
    for row, line in enumerate(lines):
        fields = line.split("\t")
        if len(fields) != _FIELDS:
            raise ValidationEngineError("the Jena SHACL worker sent a malformed result")
        for column, term in enumerate(fields):
            if term:
                document.append(f"{_SUBJECT.format(row)} {_PREDICATES[column]} {term} .\n")
    results: list[list[object | None]] = [[None] * _FIELDS for _ in lines]
    try:
        for quad in ox.parse("".join(document).encode("utf-8"), format=ox.RdfFormat.N_TRIPLES):
            row = int(quad.subject.value.rsplit("r", 1)[1])
            column = int(quad.predicate.value.rsplit("f", 1)[1])
            results[row][column] = quad.object
    except SyntaxError as error:
        raise ValidationEngineError("the Jena SHACL worker sent a term that is not N-Triples") from error
    return [tuple(r) for r in results]


class JenaWorker:
    """One ``java`` process validating batches against fixed shapes and a fixed base graph."""

    def __init__(self, setup: JenaSetup, cp: str, shapes: bytes, base: bytes, heap: int = HEAP_MB,
                 classes: Path | None = None) -> None:
        """``classes``: the folder of the compiled worker (:func:`compiled`), or ``None`` to run
        it from source."""
        program = ["-cp", cp, str(SOURCE)] if classes is None else ["-cp", f"{cp}:{classes}", "ItkgJenaShacl"]
        command = [setup.java, f"-Xmx{heap}m", "-XX:+UseSerialGC", "-Djava.awt.headless=true", *program]
        self._process = processes.popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            cwd=Path(cp.split(":", 1)[0]).parent,
            env=_java_env())
        self._send(shapes)
        self._send(base)

    def _send(self, payload: bytes) -> None:
        stdin = self._pipe(self._process.stdin)
        try:
            stdin.write(struct.pack(">i", len(payload)))
            stdin.write(payload)
            stdin.flush()
        except (BrokenPipeError, OSError) as error:
            raise self._failed() from error

    @staticmethod
    def _pipe(pipe: IO[bytes] | None) -> IO[bytes]:
        assert pipe is not None, "the worker is started with pipes"
        return pipe

    def _failed(self) -> ValidationEngineError:
        code = self._process.poll()
        return ValidationEngineError(
            "the Jena SHACL worker stopped" + (f" (exit status {code})" if code is not None else ""))

    def validate(self, batch: Iterable[ox.Triple] | bytes) -> list[RawResult]:
        """The results Jena finds in base ∪ ``batch`` (triples, or their N-Triples bytes)."""
        data = batch if isinstance(batch, bytes) else ox.serialize(batch, format=ox.RdfFormat.N_TRIPLES)
        assert data is not None  # no output given: the bytes are returned
        self._send(data)
        stdout = self._pipe(self._process.stdout)
        lines: list[str] = []
        while True:
            raw = stdout.readline()
            if not raw:
                raise self._failed()
            line = raw.decode("utf-8").rstrip("\n")
            if line == "END":
                return _decode(lines)
            lines.append(line)

    def ask_to_end(self) -> None:
        """Tell the worker to end (the length -1), without waiting for it: :meth:`close` waits."""
        stdin = self._process.stdin
        if self._process.poll() is None and stdin is not None and not stdin.closed:
            try:
                stdin.write(struct.pack(">i", -1))
                stdin.close()
            except OSError:
                pass

    def close(self, *, force: bool = False) -> None:
        """End the worker: politely (then by force after 10 s), or at once when ``force``."""
        try:
            if self._process.poll() is None and not force:
                self.ask_to_end()
                self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        finally:
            if self._process.poll() is None:
                self._process.kill()
                self._process.wait()
            if self._process.stdout is not None:
                self._process.stdout.close()


class JenaPool:
    """``count`` workers sharing a private folder for Jena's resources; a context manager."""

    def __init__(self, count: int, shapes: bytes, base: bytes, heap: int = HEAP_MB) -> None:
        setup = find()
        if setup is None:
            raise ValidationEngineError(
                f"the Jena back-end needs java {MIN_JAVA} or newer and the Apache Jena jars (Debian package "
                "libapache-jena-java, or a folder of Jena 4 jars named by ITKG_JENA_JARS)")
        self._workdir = Path(tempfile.mkdtemp(prefix="itkg-jena-"))
        self.workers: list[JenaWorker] = []
        try:
            cp = classpath(setup, self._workdir)
            classes = compiled(setup)
            for _ in range(count):
                self.workers.append(JenaWorker(setup, cp, shapes, base, heap, classes))
        except BaseException:
            self.close(force=True)
            raise

    def close(self, *, force: bool = False) -> None:
        """End the workers (at once when ``force``: after an error or a signal) and remove the
        private folder. Every worker is told to end before the first is waited for: a JVM takes
        about 0.3 s to exit, and the workers of a pool then exit together, not one after another."""
        if not force:
            for worker in self.workers:
                worker.ask_to_end()
        for worker in self.workers:
            worker.close(force=force)
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> JenaPool:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        self.close(force=kind is not None)
