"""The pyshacl-turbo back-end (itkg.turbo): choice, command line, failures.

That it gives pySHACL's (and Jena's) verdict and results on every shapes test graph, on fuzzed
graphs and on populations, partitioned or not, is checked in tests/test_engines_fuzz.py and
tests/test_scale_validation.py; this file covers what surrounds it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyoxigraph as ox
import pytest
from support import assert_validate_prints_what_pyshacl_prints, run_forked as itkg_cli

from itkg import jena, names, turbo, validation
from itkg.errors import ValidationEngineError
from itkg.loading import load
from itkg.resources import data_root

EXAMPLES = data_root() / "examples" / "patients.ttl"
TESTS = Path(__file__).resolve().parent
CONFORMING = TESTS / "data" / "shapes" / "pt-consent-granted-after-withdrawal.ttl"


@pytest.fixture
def no_turbo(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Python where pyshacl-turbo is not installed (a ``None`` module entry makes import fail)."""
    monkeypatch.setitem(sys.modules, "pyshacl_turbo", None)


def test_turbo_is_an_engine_of_the_api_and_the_command_line() -> None:
    assert "turbo" in names.SHACL_BACKENDS and "turbo" in validation.ENGINES
    assert validation.engine_for(load(EXAMPLES), "turbo") == "turbo"
    run = itkg_cli("validate", "--help")
    assert run.returncode == 0 and "turbo" in run.stdout


def test_asking_for_turbo_where_it_is_missing_is_a_clear_error(no_turbo: None) -> None:
    assert not turbo.available()
    with pytest.raises(ValidationEngineError, match=r"pip install 'itkg\[turbo\]'"):
        validation.validate(load(EXAMPLES), engine="turbo")


def test_auto_works_without_turbo(no_turbo: None) -> None:
    data = load(EXAMPLES)
    assert validation.engine_for(data) in ("pyshacl", "jena")
    assert not validation.validate(data).conforms


def test_auto_uses_turbo_below_its_limit(turbo_required: None) -> None:
    data = load(EXAMPLES)
    assert len(data.triples) < validation.AUTO_TURBO_MAX_TRIPLES
    assert validation.engine_for(data) == "turbo"
    assert validation.validate(data).results == validation.validate(data, engine="pyshacl").results


def test_auto_uses_jena_from_turbos_limit_and_turbo_without_jena(turbo_required: None,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validation, "AUTO_TURBO_MAX_TRIPLES", 1)
    monkeypatch.setattr(validation, "AUTO_JENA_TRIPLES", 1)
    data = load(EXAMPLES)
    assert validation.engine_for(data) == ("jena" if jena.available() else "turbo")
    monkeypatch.setenv("ITKG_JENA_JARS", "/nonexistent/itkg-no-jena-jars")
    jena.find.cache_clear()
    try:
        assert validation.engine_for(data) == "turbo"
    finally:
        jena.find.cache_clear()


def test_a_failing_batch_is_an_engine_error_that_quotes_no_data(turbo_required: None) -> None:
    validator = turbo.TurboValidator(validation.shapes_graph(), [])
    with pytest.raises(ValidationEngineError) as caught:
        validator.validate(b'<https://example.org/secret-patient> <https://w3id.org/itkg/x> "Jane Doe" BROKEN\n')
    assert "secret" not in str(caught.value) and "Jane" not in str(caught.value)


def test_blank_node_labels_are_kept(turbo_required: None) -> None:
    """Results must name the node the loader named (ownership of results and the output rely on it)."""
    record = ox.BlankNode("orphan-record")
    triple = ox.Triple(record, ox.NamedNode("http://www.w3.org/1999/02/22-rdf-syntax-ns#type"),
                       ox.NamedNode("https://w3id.org/itkg/InformedConsent"))
    report = turbo.TurboValidator(validation.shapes_graph(), []).validate([triple])
    foci = set(report.objects(None, validation.SH.focusNode))
    assert foci and {str(f) for f in foci} == {"orphan-record"}


@pytest.mark.parametrize("path, code", [(EXAMPLES, 1), (CONFORMING, 0)])
@pytest.mark.slow
def test_cli_engines_print_the_same_report(turbo_required: None, path: Path, code: int) -> None:
    for fmt in ("json", "text"):
        assert_validate_prints_what_pyshacl_prints("turbo", path, code, fmt)


def test_cli_engine_turbo_missing_exits_2_with_one_line() -> None:
    """The command line, in a Python where pyshacl-turbo cannot be imported."""
    program = ("import sys; sys.modules['pyshacl_turbo'] = None; from itkg.cli import main; "
               f"sys.argv = ['itkg', 'validate', {str(EXAMPLES)!r}, '--engine', 'turbo']; main()")
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 2
    assert run.stdout == ""
    assert len(run.stderr.strip().splitlines()) == 1 and "itkg[turbo]" in run.stderr
