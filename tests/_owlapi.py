"""Run the OWL API (Debian's libowlapi-java, the library Protégé uses) over ontology files.

``tests/java/OwlApiCheck.java`` loads each file and reports unparsed triples, guessed declarations
and OWL 2 DL profile violations. Shared by the ontology tests and the release tests; only the
standard library and pytest are imported, and test files load it by path (``--import-mode=importlib``
does not put ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

OWLAPI_CHECK = Path(__file__).resolve().parent / "java" / "OwlApiCheck.java"

_OWLAPI_PACKAGE = "libowlapi-java"
_SLF4J_BINDING_CLASS = "org/slf4j/impl/StaticLoggerBinder.class"
_SLF4J_BINDINGS = ("/usr/share/java/slf4j-nop.jar", "/usr/share/java/slf4j-simple.jar")


def _dpkg_jars(package: str) -> list[Path]:
    listing = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=False)
    if listing.returncode != 0:
        return []
    return [Path(line) for line in listing.stdout.splitlines()
            if line.startswith("/usr/share/java/") and line.endswith(".jar")]


def _depends(package: str) -> list[str]:
    """Direct Debian dependencies (first alternative of each); their own dependencies are not
    followed because that pulls in Maven and its SLF4J provider."""
    query = subprocess.run(["dpkg-query", "-W", "-f=${Depends}", package],
                           capture_output=True, text=True, check=False)
    names = (alt.split("|")[0].split("(")[0].strip().split(":")[0] for alt in query.stdout.split(","))
    return [name for name in names if name]


def _manifest_class_path(jar: Path) -> list[Path]:
    with zipfile.ZipFile(jar) as archive:
        try:
            manifest = archive.read("META-INF/MANIFEST.MF").decode("utf-8", "replace")
        except KeyError:
            return []
    unfolded = re.sub(r"\r?\n ", "", manifest)  # manifest lines continue with a leading space
    entries = next((line.split(":", 1)[1].split() for line in unfolded.splitlines()
                    if line.startswith("Class-Path:")), [])
    return [jar.parent / entry for entry in entries]


def _is_slf4j_binding(jar: Path) -> bool:
    with zipfile.ZipFile(jar) as archive:
        return _SLF4J_BINDING_CLASS in archive.namelist()


def owlapi_classpath() -> list[Path] | None:
    """The OWL API jars, their dependencies' jars and Class-Path entries, plus exactly one SLF4J
    binding; None when the OWL API package is not installed.

    /usr/share/java holds several SLF4J bindings (nop, simple, jdk14, log4j12, jcl, Maven's
    provider); a wildcard classpath picks up all of them, so bindings are found by content, dropped,
    and one is added back.
    """
    if shutil.which("dpkg") is None:
        return None
    owlapi = _dpkg_jars(_OWLAPI_PACKAGE)
    if not owlapi:
        return None
    todo = owlapi + [jar for dep in _depends(_OWLAPI_PACKAGE) for jar in _dpkg_jars(dep)]
    seen: dict[Path, Path] = {}
    while todo:
        jar = todo.pop(0)
        real = jar.resolve()
        if real in seen or not real.is_file():
            continue
        seen[real] = jar
        todo.extend(_manifest_class_path(real))
    jars = [jar for real, jar in seen.items() if not _is_slf4j_binding(real)]
    jars += [Path(b) for b in _SLF4J_BINDINGS if Path(b).is_file()][:1]
    return jars


def check_or_skip(files: dict[str, Path]) -> tuple[dict[str, dict[str, int]], str]:
    """Counts per file name (``unparsed``, ``guessed``, ``violations``) and the checker's output,
    from one JVM run; skips the calling test where Java or the OWL API jars are not installed."""
    if shutil.which("java") is None:
        pytest.skip("java is not installed")
    classpath = owlapi_classpath()
    if classpath is None:
        pytest.skip(f"the OWL API jars ({_OWLAPI_PACKAGE}) are not installed")
    done = subprocess.run(
        # C1-only JIT: this JVM lives for seconds, so full optimisation only costs start-up time.
        ["java", "-XX:TieredStopAtLevel=1", "-cp", os.pathsep.join(map(str, classpath)), str(OWLAPI_CHECK),
         *(str(f) for f in files.values())],
        capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    results = {}
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            path, *counts = line.split()[1:]
            results[path] = {k: int(v) for k, v in (c.split("=") for c in counts)}
    return {name: results[str(path)] for name, path in files.items()}, done.stdout
