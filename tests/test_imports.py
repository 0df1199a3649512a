"""``itkg --help`` and ``itkg --version`` start fast: the heavy libraries are imported where they
are used, not at start-up (issue 9). Counted in ``sys.modules`` of a fresh interpreter, never
timed, so that a busy machine cannot make the test flaky."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

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
    assert "pyoxigraph" in _heavy_after("import itkg; itkg.load")  # (rdflib: when it is used)


def test_the_report_function_keeps_its_name_beside_the_report_module() -> None:
    import itkg
    import itkg.report as _module  # noqa: F401 - importing the submodule must not rebind the name
    assert callable(itkg.report) and itkg.report.__module__ == "itkg.api"


#: What deciding local files never needs: SHACL, the endpoint client (httpx brings rich), the
#: HTML report's templates, owlready2 (HermiT runs in a process of its own), a progress
#: display nobody sees, and rdflib with its SPARQL parser (the bundled ontology's knowledge is
#: read from ``ontology/itkg.knowledge.json``; rdflib is imported only where it is used).
NOT_FOR_ELIGIBILITY = ("pyshacl", "httpx", "rich", "jinja2", "owlready2", "rdflib", "pyparsing")


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_eligibility_of_a_fhir_export_imports_no_library_it_does_not_use(tmp_path: Any, fmt: str) -> None:
    export = tmp_path / "export"
    export.mkdir()
    (export / "Condition.ndjson").write_text(json.dumps(
        {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
         "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "G89.3"}]}}) + "\n")
    (export / "MedicationStatement.ndjson").write_text(json.dumps(
        {"resourceType": "MedicationStatement", "id": "m1", "subject": {"reference": "Patient/p1"},
         "status": "stopped", "dosage": [{"route": {"coding": [{"system": "http://snomed.info/sct", "code": "26643006"}]}}],
         "statusReason": [{"coding": [{"system": "https://w3id.org/itkg/", "code": "InadequatePainRelief"}]}],
         "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                   "code": "7052"}]}}) + "\n")
    (export / "Patient.ndjson").write_text(json.dumps({"resourceType": "Patient", "id": "p1"}) + "\n")
    out = tmp_path / f"rows.{fmt}"
    args = ["eligibility", str(export), "--format", fmt, "-o", str(out), "--quiet"]
    setup = ("from itkg.cli import main\ntry:\n    main(" + repr(args) + ")\n"
             "except SystemExit as end:\n    assert not end.code, end.code")
    code = _PROBE.format(setup=setup, heavy=set(NOT_FOR_ELIGIBILITY))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(done.stdout.splitlines()[-1]) == []
    assert "p1" in out.read_text()


def test_the_program_leaves_what_is_alive_to_the_exit_not_to_a_last_collection() -> None:
    """``itkg`` as a program (:func:`itkg.cli.run`) freezes what is alive when the command ends,
    so that the interpreter's collection at exit does not walk it; :func:`itkg.cli.main` (run
    in-process by the tests) does not."""
    import gc

    from itkg import cli
    code = ("import gc, sys\nfrom itkg import cli\nsys.argv = ['itkg', '--version']\n"
            "try:\n    {call}()\nexcept SystemExit as end:\n    print(end.code, gc.get_freeze_count())")
    for call, frozen in (("cli.run", True), ("cli.main", False)):
        done = subprocess.run([sys.executable, "-c", code.format(call=call)], capture_output=True, text=True,
                              timeout=120, check=True)
        status, count = done.stdout.split()[-2:]
        assert status == "0" and (int(count) > 0) is frozen, (call, done.stdout)
    assert gc.get_freeze_count() == 0 and callable(cli.run)


def test_rdflib_imported_after_the_library_defaults_gets_them() -> None:
    """A command that does not use rdflib does not import it; whatever imports it later (an
    API caller, another command in the same process) gets itkg's settings at once: literals kept
    as written, no ``FROM <url>`` fetched by SPARQL."""
    code = ("import sys\nfrom itkg.guards import install_library_defaults\ninstall_library_defaults()\n"
            "assert 'rdflib' not in sys.modules\nimport rdflib, rdflib.plugins.sparql\n"
            "lit = rdflib.Literal('maybe', datatype=rdflib.XSD.boolean)\n"
            "print(rdflib.NORMALIZE_LITERALS, rdflib.plugins.sparql.SPARQL_LOAD_GRAPHS, str(lit))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["False", "False", "maybe"]
