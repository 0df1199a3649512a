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
