"""``itkg --help`` and ``itkg --version`` start fast: the heavy libraries are imported where they
are used, not at start-up (issue 9). Counted in ``sys.modules`` of a fresh interpreter, never
timed, so that a busy machine cannot make the test flaky."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Libraries that take most of a second to import between them, and that no help text needs.
HEAVY = ("rdflib", "pyshacl", "owlready2", "httpx", "pyoxigraph", "jinja2", "rich", "pyparsing")

_PROBE = """
import json, sys
{setup}
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})))
"""


def _heavy_after(setup: str) -> list[str]:
    code = _PROBE.format(setup=setup, heavy=set(HEAVY))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          check=True)
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["eligibility", "--help"],
                                  ["validate", "--help"], ["query", "--help"], ["load", "--help"]])
def test_the_command_line_starts_without_the_heavy_libraries(args: list[str]) -> None:
    setup = ("from itkg.cli import main\ntry:\n    main(" + repr(args) + ")\n"
             "except SystemExit:\n    pass")
    assert _heavy_after(setup) == []


def test_import_itkg_is_light_until_a_function_is_used() -> None:
    assert _heavy_after("import itkg; itkg.__version__; itkg.ItkgError") == []
    assert "rdflib" in _heavy_after("import itkg; itkg.load")


def test_the_report_function_keeps_its_name_beside_the_report_module() -> None:
    import itkg
    import itkg.report as _module  # noqa: F401 - importing the submodule must not rebind the name
    assert callable(itkg.report) and itkg.report.__module__ == "itkg.api"
