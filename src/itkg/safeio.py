"""Writing outputs so that a failure never leaves a half-written file and never touches an input.

Outputs may hold patient data and inputs are the user's records: a crash, a full disk or an
unencodable character must leave either the old file or the complete new one, and no output
path may ever replace a file itkg was asked to read.
"""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from itkg.errors import ItkgError


class OutputError(ItkgError):
    """An output could not be written, or would have replaced an input file."""


def _same_file(a: Path, b: Path) -> bool:
    """Same path after resolving symlinks, or the same inode (a hard link)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def _package_data() -> list[Path]:
    """itkg's own ontology, shapes and queries, and the installed package itself (whose
    ``_data`` holds them in a wheel): no output may replace them."""
    from itkg.resources import data_root

    protected = [Path(__file__).resolve().parent]
    try:
        root = data_root()
    except FileNotFoundError:  # pragma: no cover - a broken install has nothing to protect
        return protected
    return protected + [(root / name).resolve() for name in ("ontology", "shapes", "queries")]


#: Signals whose default action ends the process without running ``finally`` blocks: while an
#: output is being written they raise instead, so the temporary file is removed.
_FATAL_SIGNALS = tuple(getattr(signal, name) for name in
                       ("SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGTERM")
                       if hasattr(signal, name))


class _Interrupted(BaseException):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextmanager
def _signals_raise() -> Iterator[None]:
    """Turn the signals in ``_FATAL_SIGNALS`` that still have their default action into an
    exception for the duration (main thread only: elsewhere Python cannot set handlers); after
    cleanup the process dies of the same signal, as it would have."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}

    def _raise(signum: int, frame: object) -> None:
        raise _Interrupted(signum)
    for signum in _FATAL_SIGNALS:
        if signal.getsignal(signum) is signal.SIG_DFL:
            previous[signum] = signal.signal(signum, _raise)
    try:
        yield
    except _Interrupted as interrupted:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        previous.clear()
        os.kill(os.getpid(), interrupted.signum)  # the default action, now that nothing is left
        raise SystemExit(128 + interrupted.signum) from None  # pragma: no cover - not reached
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _chunks(data: str | bytes | Iterable[str]) -> Iterator[bytes]:
    if isinstance(data, (str, bytes)):
        yield data.encode("utf-8") if isinstance(data, str) else data
    else:
        for chunk in data:
            yield chunk.encode("utf-8")


def _in_place(target: Path, data: str | bytes | Iterable[str]) -> None:
    """Write to a device or ``/dev/stdout`` as it is: never replace it. The whole output
    is produced first, so an encoding error still writes nothing."""
    payload = b"".join(_chunks(data))
    try:
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOCTTY", 0))
    except OSError as error:
        raise OutputError(f"{target}: cannot write ({_reason(error)})") from None
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view):]
    except OSError as error:
        raise OutputError(f"{target}: cannot write ({_reason(error)})") from None
    finally:
        os.close(fd)


def _special_path(target: Path) -> bool:
    """``/dev/...`` and ``/proc/...`` paths (``/dev/stdout``, ``/dev/fd/3``, ``/dev/null``)."""
    absolute = Path(os.path.abspath(target))
    return absolute.parts[1:2] in (("dev",), ("proc",))


def atomic_write(path: str | os.PathLike[str], data: str | bytes | Iterable[str],
                 protect: Iterable[str | os.PathLike[str]] = ()) -> None:
    """Replace ``path`` with ``data`` (text is written as UTF-8) in one step.

    ``data`` may also be an iterable of text chunks (e.g. a generator), written one by one as
    it yields them: an output of hundreds of megabytes then never exists whole in memory, and
    an error while producing or encoding any chunk still leaves ``path`` untouched.

    The data goes to a temporary file beside ``path``, is flushed to disk, then renamed over
    ``path``; on any failure (a signal such as SIGHUP included) the temporary file is removed
    and ``path`` is untouched. A new file is created readable by its owner only (it may hold
    patient data); an existing file keeps its permissions. ``protect`` lists the input files:
    writing over one of them, under any name (symlink, hard link, relative path), is refused, as
    is writing into itkg's own ontology, shapes or queries.

    Special files are never replaced: a character device or anything under ``/dev`` and
    ``/proc`` (``-o /dev/stdout``, even when standard output is a pipe) is written in place; a
    symlink to a regular file is followed and the file it names is replaced (the link stays a
    link); a dangling symlink, a named pipe elsewhere (opening it would wait for a reader), a
    folder or any other kind of file is refused.

    >>> import pathlib, tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     target = pathlib.Path(folder) / "out.txt"
    ...     atomic_write(target, "ok")
    ...     print(target.read_text(), oct(target.stat().st_mode & 0o777))
    ...     atomic_write(target, (part for part in ["o", "k", "!"]))
    ...     print(target.read_text())
    ok 0o600
    ok!
    """
    target = Path(path)
    for protected in protect:
        if _same_file(target, Path(protected)):
            raise OutputError(f"{target}: refusing to write over an input file")
    resolved = target.resolve()
    if any(resolved == folder or folder in resolved.parents for folder in _package_data()):
        raise OutputError(f"{target}: refusing to write into itkg's own package, ontology, shapes or queries")
    try:
        status = target.stat()
    except FileNotFoundError:
        if target.is_symlink():
            raise OutputError(f"{target}: a symlink to nothing; refusing to follow it") from None
        status = None
    except OSError as error:
        raise OutputError(f"{target}: cannot write ({_reason(error)})") from None
    if status is not None and (_special_path(target) or stat.S_ISCHR(status.st_mode)):
        _in_place(target, data)
        return
    if status is not None and not stat.S_ISREG(status.st_mode):
        raise OutputError(f"{target}: not a regular file; refusing to replace it")
    if status is None and _special_path(target):
        raise OutputError(f"{target}: refusing to create a file under /dev or /proc")
    if target.is_symlink():  # replace the file the link names, not the link
        target = resolved
    mode = status.st_mode & 0o7777 if status is not None else 0o600
    directory = target.parent
    with _signals_raise():
        try:
            # The name is cut so that a 250-character output name still gives a valid one.
            fd, temp_name = tempfile.mkstemp(prefix=f".{target.name[:100]}.", suffix=".tmp",
                                             dir=directory)
        except OSError as error:
            raise OutputError(f"{target}: cannot write ({_reason(error)})") from None
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in _chunks(data):
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp_name, mode)
            os.replace(temp_name, target)
        except BaseException as error:
            try:
                os.unlink(temp_name)
            except FileNotFoundError:
                pass
            if isinstance(error, UnicodeEncodeError):
                raise OutputError(f"{target}: output text cannot be encoded as UTF-8") from None
            if isinstance(error, OSError):
                raise OutputError(f"{target}: cannot write ({_reason(error)})") from None
            raise
    _fsync_directory(directory)


def _reason(error: OSError) -> str:
    return error.strerror or type(error).__name__


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable; some platforms cannot open a directory, which is fine."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in chunks (tests use it to prove inputs were not modified).

    >>> import pathlib, tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     _ = (pathlib.Path(folder) / "x").write_bytes(b"abc")
    ...     print(sha256_file(pathlib.Path(folder) / "x")[:16])
    ba7816bf8f01cfea
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
