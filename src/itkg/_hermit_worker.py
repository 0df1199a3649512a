"""Child process that runs HermiT through owlready2 for :func:`itkg.reasoning.reason`.

The parent runs this file by path (``python -c BOOTSTRAP .../_hermit_worker.py JOB_DIR PARENT_PID``,
see :mod:`itkg.reasoning`) in a new session, before it writes the job; the worker waits for
:data:`GO` on its standard input. If the parent dies (the kernel sends ``SIGTERM``, see
:func:`itkg.processes.popen`), or has died already, the worker removes ``JOB_DIR`` and kills its
process group, Java included, so the patient data does not outlive itkg. It runs with ``JOB_DIR`` (a private temporary directory) as its
working directory and its ``TMPDIR``, so that everything
owlready2 writes, including the N-Triples copy of the world it hands to Java and keeps after an
inconsistency, lands in a directory the parent removes. The parent owns the deadline and the
clean-up; this module only reasons.

``JOB_DIR`` holds ``job.json`` (``{"java_memory_mb": int, "classes": [class IRI, ...]}``),
``ontology.nt`` and ``patients.nt`` (already stripped of ``owl:imports``). The worker writes
``result.json``, one object with ``"status"``:

- ``"ok"``: ``"unsatisfiable"`` (class IRIs) and ``"members"`` (class IRI -> individual IRIs);
- ``"inconsistent"``;
- ``"error"``: ``"kind"`` (``"java-missing"``, ``"java-failed"``, ``"unreadable"``) and ``"names"``,
  the exception class names found in the failure text. Only names travel, never the text itself,
  because Java and owlready2 quote the input (patient data) in their messages.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

#: What the parent writes once the job is complete.
GO = b"go\n"

#: Java and Python exception class names (``java.lang.OutOfMemoryError``,
#: ``owlready2.base.OwlReadyOntologyParsingError``); they carry no input values.
_EXCEPTION_NAME = re.compile(r"\b(?:[A-Za-z_][\w$]*\.)*[A-Z][\w$]*(?:Exception|Error)\b")


def exception_names(text: str, limit: int = 3) -> list[str]:
    """The distinct exception class names in ``text``, in order of appearance, at most ``limit``.

    >>> exception_names('Exception in thread "main" java.lang.OutOfMemoryError: Java heap space')
    ['java.lang.OutOfMemoryError']
    >>> exception_names("no failure here")
    []
    """
    names: list[str] = []
    for match in _EXCEPTION_NAME.finditer(text):
        if match.group(0) not in names:
            names.append(match.group(0))
    return names[:limit]


def _refuse_network(event: str, args: tuple) -> None:
    """Audit hook: a backstop in case anything in owlready2 still tries to fetch an import."""
    if event in ("urllib.Request", "socket.connect", "socket.getaddrinfo"):
        raise PermissionError(f"itkg reasoning is offline ({event} refused)")


def _run(job_dir: Path) -> dict:
    """Load the two N-Triples files into a fresh owlready2 World, run HermiT, collect results."""
    job = json.loads((job_dir / "job.json").read_text(encoding="utf-8"))
    tempfile.tempdir = str(job_dir)  # owlready2's NamedTemporaryFile goes here, not to /tmp

    import owlready2
    from owlready2.base import OwlReadyInconsistentOntologyError, OwlReadyJavaError

    owlready2.reasoning.JAVA_MEMORY = int(job["java_memory_mb"])
    world = owlready2.World()
    try:
        for name in ("ontology", "patients"):
            with open(job_dir / f"{name}.nt", "rb") as handle:
                world.get_ontology(f"urn:x-itkg:{name}#").load(fileobj=handle, format="ntriples")
    except Exception as error:  # noqa: BLE001 - owlready2 raises several kinds; only names leave
        return {"status": "error", "kind": "unreadable",
                "names": [f"{type(error).__module__}.{type(error).__name__}"]}
    try:
        owlready2.sync_reasoner_hermit(world, debug=0)
    except OwlReadyInconsistentOntologyError:
        return {"status": "inconsistent"}
    except FileNotFoundError as error:
        java = os.path.basename(owlready2.JAVA_EXE)
        if error.filename and os.path.basename(str(error.filename)) == java:
            return {"status": "error", "kind": "java-missing", "names": []}
        raise
    except OwlReadyJavaError as error:
        return {"status": "error", "kind": "java-failed", "names": exception_names(str(error))}

    members: dict[str, list[str]] = {}
    for class_iri in job["classes"]:
        cls = world[class_iri]
        members[class_iri] = sorted(i.iri for i in cls.instances()) if cls is not None else []
    unsatisfiable = sorted(c.iri for c in world.inconsistent_classes()
                           if c.iri != "http://www.w3.org/2002/07/owl#Nothing")
    return {"status": "ok", "unsatisfiable": unsatisfiable, "members": members}


def _abandon_with_parent(job_dir: Path, parent: int) -> None:
    """On ``SIGTERM`` or ``SIGHUP`` (the parent died: see the module docstring), remove
    ``job_dir`` and kill this process group; the same at once if ``parent`` is gone already."""
    def abandon(signum: int = signal.SIGTERM, frame: Any = None) -> None:
        shutil.rmtree(job_dir, ignore_errors=True)
        os.killpg(0, signal.SIGKILL)

    signal.signal(signal.SIGTERM, abandon)
    signal.signal(signal.SIGHUP, abandon)
    if os.getppid() != parent:
        abandon()


def main(argv: list[str]) -> int:
    """Entry point: ``argv[1]`` is JOB_DIR, ``argv[2]`` the parent's pid; exit 0 when result.json
    was written.

    This file imports only the standard library and owlready2, so it also runs without the itkg
    package being imported.
    """
    sys.addaudithook(_refuse_network)
    job_dir = Path(argv[1])
    _abandon_with_parent(job_dir, int(argv[2]))
    if sys.stdin.buffer.readline() != GO:
        return 1  # the parent failed before the job was complete; it removes the folder
    result = _run(job_dir)
    fd = os.open(job_dir / "result.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
