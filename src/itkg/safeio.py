"""Writing outputs so that a failure never leaves a half-written file and never touches an input.

Outputs may hold patient data and inputs are the user's records: a crash, a full disk or an
unencodable character must leave either the old file or the complete new one, and no output
path may ever replace a file itkg was asked to read.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

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


def atomic_write(path: str | os.PathLike[str], data: str | bytes | Iterable[str],
                 protect: Iterable[str | os.PathLike[str]] = ()) -> None:
    """Replace ``path`` with ``data`` (text is written as UTF-8) in one step.

    ``data`` may also be an iterable of text chunks (e.g. a generator), written one by one as
    it yields them: an output of hundreds of megabytes then never exists whole in memory, and
    an error while producing or encoding any chunk still leaves ``path`` untouched.

    The data goes to a temporary file beside ``path``, is flushed to disk, then renamed over
    ``path``; on any failure the temporary file is removed and ``path`` is untouched. A new
    file is created readable by its owner only (it may hold patient data); an existing file
    keeps its permissions. ``protect`` lists the input files: writing over one of them, under
    any name (symlink, hard link, relative path), is refused.

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
    try:
        status = target.stat()
        if not stat.S_ISREG(status.st_mode):
            raise OutputError(f"{target}: not a regular file; refusing to replace it")
        mode = status.st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o600
    except OSError as error:
        raise OutputError(f"{target}: cannot write ({_reason(error)})") from None
    directory = target.parent
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as error:
        raise OutputError(f"{target}: cannot write ({_reason(error)})") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            if isinstance(data, (str, bytes)):
                handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            else:
                for chunk in data:
                    handle.write(chunk.encode("utf-8"))
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
