"""One door (issue 9): the Python API offers what the command line does, with the same policy and
the same answers; and what a command-line user expects (``-`` for standard input, a UTF-8 byte
order mark, ``NO_COLOR``, help on every option, ``--endpoint`` refusing files)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
import rdflib
from support import invoke

import itkg
from itkg.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "patients.ttl"
ILL_TYPED = ("@prefix itkg: <https://w3id.org/itkg/> .\n@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .\n"
             "<https://example.org/p> a itkg:Patient ; itkg:hasCondition [ a itkg:CancerPain ] ;\n"
             '  <urn:ex:hivStatus> "maybe"^^xsd:boolean .\n')
BLANK_PATIENT = ("@prefix itkg: <https://w3id.org/itkg/> .\n"
                 "_:p1 a itkg:Patient ; itkg:hasCondition [ a itkg:CancerPain ] ;\n"
                 "  itkg:receivedTreatment [ a itkg:OralOpioidTherapy ; itkg:hasOutcome itkg:SevereSideEffects ] .\n")


def _keyed(rows: list[dict]) -> set[tuple]:
    return {(r["patient"], r["therapy"], r["indication"], r["status"], tuple(r["unmet"])) for r in rows}


def test_validate_policy_is_the_apis(tmp_path: Path) -> None:
    """Design review §4.3: the API conformed where the CLI exited 2 on the same ill-typed literal."""
    path = tmp_path / "ill.ttl"
    path.write_text(ILL_TYPED)
    with pytest.raises(itkg.IllTypedLiteralError) as caught:
        itkg.validate(path)
    assert "maybe" not in str(caught.value)
    done = invoke("validate", path)
    assert done.returncode == 2 and "ill-typed" in done.stderr and "maybe" not in done.stderr


def test_population_eligibility_is_reachable_from_the_api_with_the_same_node_names(tmp_path: Path) -> None:
    """Design review §4.1: the API renamed blank nodes where the CLI kept the file's labels."""
    path = tmp_path / "blank.ttl"
    path.write_text(BLANK_PATIENT)
    api_rows = [r.to_dict() for r in itkg.eligibility(path, workers=2)]
    cli_rows = json.loads(invoke("eligibility", "--format", "json", path).stdout)["results"]
    assert api_rows and _keyed(api_rows) == _keyed(cli_rows)
    assert {r["patient"] for r in api_rows} == {"_:p1"}


def test_query_is_an_api_verb_with_the_clis_answer() -> None:
    result = itkg.query("eligible-therapies", EXAMPLES, timeout=120)
    cli = json.loads(invoke("query", "eligible-therapies", EXAMPLES, "--format", "json").stdout)
    assert list(result.variables) == cli["head"]["vars"]
    assert [{k: str(v) for k, v in row.items()} for row in result.rows] == \
        [{k: v["value"] for k, v in b.items()} for b in cli["results"]["bindings"]]


def test_query_with_an_endpoint_refuses_files_as_eligibility_does() -> None:
    for command in (["query", "eligible-therapies"], ["eligibility"]):
        done = invoke(*command, EXAMPLES, "--endpoint", "http://127.0.0.1:9/query")
        assert done.returncode == 2, done.stderr
        assert "give no files" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_every_option_has_help() -> None:
    missing = [f"{name} {param.opts[0]}" for name, command in main.commands.items()
               for param in command.params
               if isinstance(param, click.Option) and not param.hidden and not param.help]
    assert missing == []


def test_a_dash_reads_standard_input_and_errors_name_it() -> None:
    text = EXAMPLES.read_text(encoding="utf-8")
    from_stdin = invoke("eligibility", "--format", "json", "-", stdin=text)
    from_file = invoke("eligibility", "--format", "json", EXAMPLES)
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert _keyed(json.loads(from_stdin.stdout)["results"]) == _keyed(json.loads(from_file.stdout)["results"])
    broken = invoke("eligibility", "-", stdin="<urn:a> <urn:b> .\n")
    assert broken.returncode == 2 and broken.stderr.startswith("itkg: error: -:1:")


@pytest.mark.parametrize("engine", ["native", "rdflib", "oxigraph"])
@pytest.mark.parametrize("suffix", [".ttl", ".nt"])
def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path, engine: str, suffix: str) -> None:
    text = rdflib.Graph().parse(EXAMPLES).serialize(format="nt" if suffix == ".nt" else "turtle")
    plain, marked = tmp_path / f"plain{suffix}", tmp_path / f"bom{suffix}"
    plain.write_text(text, encoding="utf-8")
    marked.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    done = invoke("eligibility", "--format", "json", "--engine", engine, marked)
    assert done.returncode == 0, done.stderr
    expected = json.loads(invoke("eligibility", "--format", "json", "--engine", engine, plain).stdout)
    assert _keyed(json.loads(done.stdout)["results"]) == _keyed(expected["results"])
    assert len(itkg.load(marked)) == len(itkg.load(plain))


def test_no_color_and_the_terminal_width_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    from itkg import cli, render
    monkeypatch.setattr("sys.stdout.isatty", lambda: True, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    assert cli._color(None) is False
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("COLUMNS", "50")
    rows = itkg.eligibility(EXAMPLES)
    assert max(map(len, render.eligibility_table(rows).splitlines())) <= 50


# -- the command line is a layer over the API: its imports, and the same answers ----------------------

#: What ``itkg/cli.py`` may import from itkg: the API, the names both share, the rendering of
#: results (and output and terminal safety), and the errors it turns into exit codes.
CLI_MAY_IMPORT = frozenset({"api", "names", "errors", "render", "render_fhir", "safeio", "termsafe"})


def _cli_imports() -> set[str]:
    import ast
    tree = ast.parse((ROOT / "src" / "itkg" / "cli.py").read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").split(".")[0] != "itkg":
                continue
            module = (node.module or "").removeprefix("itkg").lstrip(".")
            if module:
                found.add(module)
            else:  # from . import api, render, __version__
                found.update(alias.name for alias in node.names if alias.name != "__version__")
        elif isinstance(node, ast.Import):
            found.update(alias.name.removeprefix("itkg.") for alias in node.names if alias.name.startswith("itkg"))
    return found


def test_the_command_line_imports_only_the_api_and_rendering() -> None:
    """Issue 9, one door: the CLI parses options and calls the API; policy lives in the API."""
    imported = _cli_imports()
    assert "api" in imported and "render" in imported
    assert imported <= CLI_MAY_IMPORT, sorted(imported - CLI_MAY_IMPORT)


def test_the_engine_choices_are_the_one_name_set() -> None:
    from itkg import names
    choices = {name: {p.opts[0]: p for p in command.params}.get("--engine") for name, command in main.commands.items()}
    assert list(choices["eligibility"].type.choices) == list(names.LOCAL_DECISION_BACKENDS)
    assert list(choices["report"].type.choices) == list(names.LOCAL_DECISION_BACKENDS)
    assert list(choices["query"].type.choices) == list(names.SPARQL_BACKENDS)
    assert list(choices["validate"].type.choices) == list(names.VALIDATION_CHOICES)
    assert set(names.DECISION_BACKENDS) | set(names.VALIDATION_BACKENDS) == set(names.BACKENDS)


@pytest.fixture(scope="module")
def named(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The examples with every record named by an IRI: blank-node names of separate runs are the
    reader's business (a fresh parse may name an anonymous node afresh)."""
    path = tmp_path_factory.mktemp("door") / "named.nt"
    path.write_text(rdflib.Graph().parse(EXAMPLES).skolemize().serialize(format="nt"), encoding="utf-8")
    return path


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_eligibility_run_gives_what_the_command_prints(named: Path, fmt: str) -> None:
    from itkg import render
    run = itkg.eligibility_run(named, workers=1)
    text = render.eligibility_json(run.rows) if fmt == "json" else render.eligibility_csv(run.rows)
    done = invoke("eligibility", "--format", fmt, named)
    assert done.returncode == 0 and done.stdout == text
    assert [s.path for s in run.sources] == [str(named)] and run.notes == ()


def test_validate_gives_what_the_command_prints(named: Path) -> None:
    from itkg import render
    expected = render.validation_json(itkg.validate(named, engine="pyshacl"))
    done = invoke("validate", "--format", "json", "--engine", "pyshacl", named)
    assert done.returncode == 1 and done.stdout == expected


def test_validate_strict_refuses_an_input_with_no_patient_in_the_api_too(tmp_path: Path) -> None:
    path = tmp_path / "nobody.ttl"
    path.write_text("<urn:a> <urn:b> <urn:c> .\n")
    with pytest.raises(itkg.InputError):
        itkg.validate(path, strict=True)
    assert invoke("validate", "--strict", path).returncode == 2


def test_explain_gives_what_the_command_prints(named: Path) -> None:
    from itkg import render
    patient = "https://example.org/patient/ben"
    expected = render.explanation_json(itkg.explain(named, patient))
    done = invoke("explain", patient, named, "--format", "json")
    assert done.returncode == 0 and done.stdout == expected


def test_query_with_extensions_is_the_apis() -> None:
    """The generated contract query with a site's rules: once in the API, the CLI calls it."""
    extension = ROOT / "tests" / "data" / "extension-leptomeningeal.ttl"
    patients = ROOT / "tests" / "data" / "extension-leptomeningeal-patients.ttl"
    from itkg import render
    result = itkg.query("eligibility-status", patients, extensions=[extension], timeout=120)
    assert any("site-extension" in str(row.get("indication", "")) for row in result.rows)
    done = invoke("query", "eligibility-status", patients, "--extension", extension, "--format", "csv")
    assert done.returncode == 0 and done.stdout == render.query_csv(result)


def test_convert_gives_what_the_command_writes(named: Path, tmp_path: Path) -> None:
    written = tmp_path / "cli.ttl"
    assert invoke("convert", named, "-o", written).returncode == 0
    assert itkg.convert(named, tmp_path / "api.ttl") == written.read_bytes()


@pytest.mark.java
def test_reason_with_agreement_gives_what_the_command_prints(named: Path, jena_required: None) -> None:
    from itkg import render
    report = itkg.reason(named)
    differences = itkg.agreement(named, report)
    done = invoke("reason", "--check-agreement", "--format", "json", named)
    assert done.returncode == (1 if differences else 0)
    payload, expected = json.loads(done.stdout), json.loads(render.reasoning_json(report, differences))
    for varying in (payload, expected):
        varying.pop("elapsed_seconds")
    assert payload == expected


def test_each_option_is_defined_once() -> None:
    """sssom-py style: an option shared by several commands is one definition, used by each."""
    import re
    from collections import Counter
    text = (ROOT / "src" / "itkg" / "cli.py").read_text(encoding="utf-8")
    defined = Counter(re.findall(r'click\.option\((?:"-\w", )?"(--[\w-]+)"', text))
    assert defined and all(count == 1 for count in defined.values()), \
        {name: count for name, count in defined.items() if count > 1}
