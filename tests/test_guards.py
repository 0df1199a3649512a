"""One regression test per input hazard measured in reference/security.md.

Every test is offline. Where a hazard is a request or a file read, a logging HTTP server on
127.0.0.1 (or an audit hook recording file opens) proves that nothing was fetched: the input is
passed through the itkg gate and only then, if the gate let it through, to the real engine that
would have fetched it. Inputs that would crash or exhaust the process (deep JSON, billion laughs)
are only ever given to the gate.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import pyoxigraph as ox
import pytest
from support import Witness
import rdflib
from hypothesis import given, settings
from hypothesis import strategies as st

from itkg import resources
from itkg.errors import (
    EndpointError,
    InputTooLargeError,
    ItkgError,
    ParseError,
    QueryError,
    UnsafeInputError,
)
from itkg.guards import (
    ITKG,
    XSD,
    check_size,
    find_ill_typed,
    gate_query,
    install_library_defaults,
    install_network_guard,
    is_valid_lexical,
    load_json_safely,
    mentions_service,
    network_guard,
    reject_xml_dtd,
)
from itkg.safeio import OutputError, atomic_write, sha256_file

SECRET = "Alice Confidential"
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
HYPOTHESIS = settings(deadline=None, max_examples=60)


# ---------------------------------------------------------------------------------------------
# Witnesses: a logging HTTP server on 127.0.0.1 and a recorder of file opens
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def _servers() -> Iterator[tuple[Witness, Witness]]:
    with Witness() as first, Witness() as second:
        yield first, second


@pytest.fixture
def server(_servers: tuple[Witness, Witness]) -> Witness:
    return _servers[0].clear()


@pytest.fixture
def other_server(_servers: tuple[Witness, Witness]) -> Witness:
    return _servers[1].clear()






# ---------------------------------------------------------------------------------------------
# RDF/XML: XXE, billion laughs, encodings
# ---------------------------------------------------------------------------------------------

RDFXML_CLEAN = (
    '<?xml version="1.0" encoding="{enc}"?>\n'
    f'<rdf:RDF xmlns:rdf="{RDF_NS}" xmlns:ex="urn:ex:">\n'
    '  <rdf:Description rdf:about="urn:ex:p1"><ex:name>Alice</ex:name></rdf:Description>\n'
    "</rdf:RDF>\n")


def _xxe(system_id: str) -> bytes:
    return (f'<?xml version="1.0"?>\n<!DOCTYPE rdf:RDF [<!ENTITY x SYSTEM "{system_id}">]>\n'
            f'<rdf:RDF xmlns:rdf="{RDF_NS}" xmlns:ex="urn:ex:">\n'
            '  <rdf:Description rdf:about="urn:ex:p1"><ex:name>&x;</ex:name></rdf:Description>\n'
            "</rdf:RDF>\n").encode()


def _parse_rdfxml_guarded(data: bytes) -> None:
    """What the loader does: gate first, then both engines."""
    reject_xml_dtd(data, "input.rdf")
    list(ox.parse(data, format=ox.RdfFormat.RDF_XML))
    rdflib.Graph().parse(data=data, format="xml")


def test_xxe_file_entity_is_refused_before_any_parser(tmp_path: Path, opened: list[str]) -> None:
    secret_file = tmp_path / "itkgprobe-secret.txt"
    secret_file.write_text(SECRET)
    opened.clear()
    with pytest.raises(UnsafeInputError, match="DTD or entity"):
        _parse_rdfxml_guarded(_xxe(secret_file.as_uri()))
    assert opened == []


def test_xxe_http_entity_is_refused_without_a_request(server: Witness) -> None:
    with pytest.raises(UnsafeInputError):
        _parse_rdfxml_guarded(_xxe(server.url + "/dtd"))
    external_dtd = (f'<?xml version="1.0"?><!DOCTYPE rdf:RDF SYSTEM "{server.url}/dtd">'
                    f'<rdf:RDF xmlns:rdf="{RDF_NS}"/>').encode()
    with pytest.raises(UnsafeInputError):
        _parse_rdfxml_guarded(external_dtd)
    assert server.hits == []


def _billion_laughs(levels: int = 10) -> bytes:
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, levels)]
    return (f'<?xml version="1.0"?>\n<!DOCTYPE r [{"".join(entities)}]>\n'
            f'<rdf:RDF xmlns:rdf="{RDF_NS}" xmlns:ex="urn:ex:">'
            f'<rdf:Description rdf:about="urn:ex:s"><ex:p>&lol{levels - 1};</ex:p>'
            "</rdf:Description></rdf:RDF>").encode()


def test_billion_laughs_is_refused_by_the_gate_alone() -> None:
    # Never handed to a parser: pyoxigraph would expand it to gigabytes.
    with pytest.raises(UnsafeInputError, match="DTD or entity"):
        reject_xml_dtd(_billion_laughs(), "laughs.rdf")


@pytest.mark.parametrize("encode", [
    pytest.param(lambda text: text.encode("utf-16"), id="utf-16-bom"),
    pytest.param(lambda text: text.encode("utf-16-le"), id="utf-16le-no-bom"),
    pytest.param(lambda text: text.encode("utf-16-be"), id="utf-16be-no-bom"),
    pytest.param(lambda text: text.encode("utf-32"), id="utf-32"),
    pytest.param(lambda text: b"\xef\xbb\xbf" + text.encode(), id="utf-8-bom"),
])
def test_dtd_hidden_by_an_encoding_is_refused(encode) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnsafeInputError):
        reject_xml_dtd(encode(_billion_laughs(3).decode()), "laughs.rdf")


def test_dtd_hidden_by_a_declared_encoding_is_refused() -> None:
    body = f'<!DOCTYPE r [<!ENTITY a "b">]><rdf:RDF xmlns:rdf="{RDF_NS}"/>'
    utf7 = b'<?xml version="1.0" encoding="UTF-7"?>' + body.encode("utf-7").replace(b"<", b"+ADw-")
    assert b"<!DOCTYPE" not in utf7
    with pytest.raises(UnsafeInputError):
        reject_xml_dtd(utf7, "a.rdf")
    with pytest.raises(UnsafeInputError, match="unknown character encoding"):
        reject_xml_dtd(b'<?xml version="1.0" encoding="x-no-such"?><r/>', "a.rdf")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "iso-8859-1"])
def test_clean_rdfxml_passes(encoding: str) -> None:
    reject_xml_dtd(RDFXML_CLEAN.format(enc=encoding).encode(encoding), "clean.rdf")


def test_clean_rdfxml_parses_after_the_gate() -> None:
    data = RDFXML_CLEAN.format(enc="utf-8").encode()
    reject_xml_dtd(data, "clean.rdf")
    assert len(list(ox.parse(data, format=ox.RdfFormat.RDF_XML))) == 1


def test_the_shipped_rdfxml_ontology_passes_the_gate() -> None:
    reject_xml_dtd(resources.ontology_owl_path().read_bytes(), "itkg.owl")


# ---------------------------------------------------------------------------------------------
# JSON and JSON-LD
# ---------------------------------------------------------------------------------------------

def _parse_jsonld_guarded(data: bytes) -> rdflib.Graph:
    """What the loader does: gate, then parse what was checked (not the raw bytes)."""
    checked = load_json_safely(data, "input.jsonld")
    return rdflib.Graph().parse(data=json.dumps(checked), format="json-ld")


def _doc(context: object, key: str = "@context") -> bytes:
    return json.dumps({key: context, "@id": "urn:ex:p1", "name": SECRET}).encode()


def test_remote_http_context_is_refused_without_a_request(server: Witness) -> None:
    with pytest.raises(UnsafeInputError, match="inline the context"):
        _parse_jsonld_guarded(_doc(server.url + "/ctx"))
    assert server.hits == []


@pytest.mark.parametrize("as_uri", [True, False], ids=["file-uri", "bare-path"])
def test_file_context_is_refused_without_reading_it(tmp_path: Path, opened: list[str],
                                                    as_uri: bool) -> None:
    context = tmp_path / "itkgprobe-context.jsonld"
    context.write_text('{"@context": {"name": "http://schema.org/name"}}')
    opened.clear()
    with pytest.raises(UnsafeInputError, match="inline the context"):
        _parse_jsonld_guarded(_doc(context.as_uri() if as_uri else str(context)))
    assert opened == []


@pytest.mark.parametrize("document", [
    pytest.param({"@context": {"@import": "URL", "name": "http://schema.org/name"}}, id="@import"),
    pytest.param({"@context": [{"name": "http://schema.org/name"}, "URL"]}, id="list-with-string"),
    pytest.param({"@context": {"knows": {"@id": "http://schema.org/knows", "@context": "URL"}}},
                 id="scoped-context"),
    pytest.param({"@graph": [{"@context": "URL", "@id": "urn:ex:p1"}]}, id="nested-node"),
])
def test_every_place_a_context_can_name_a_document_is_refused(server: Witness,
                                                              document: dict) -> None:
    data = json.dumps(document).replace('"URL"', json.dumps(server.url + "/ctx")).encode()
    with pytest.raises(UnsafeInputError, match="inline the context"):
        _parse_jsonld_guarded(data)
    assert server.hits == []


@pytest.mark.parametrize("context", [{"name": "http://schema.org/name"}, None,
                                     [None, {"name": "http://schema.org/name"}]])
def test_embedded_contexts_are_accepted(context: object) -> None:
    graph = _parse_jsonld_guarded(_doc(context))
    assert len(graph) == (1 if context else 0)


def test_duplicate_keys_are_refused() -> None:
    data = b'{"@context": "http://x.invalid/", "@context": {}, "@id": "urn:ex:p"}'
    with pytest.raises(UnsafeInputError, match="repeats a key"):
        load_json_safely(data, "a.jsonld")


@pytest.mark.parametrize("depth", [5000, 100_000])
def test_json_nested_beyond_the_stack_is_refused_without_crashing(depth: int) -> None:
    # pyoxigraph segfaults on this; it is only ever given to the gate.
    deep = '{"@id": "urn:ex:s", ' + '"urn:ex:p": {' * depth + '"@id": "urn:ex:o"' + "}" * depth + "}"
    with pytest.raises(InputTooLargeError, match="nested deeper"):
        load_json_safely(deep.encode(), "deep.jsonld")


def _nested(shape: list[bool]) -> object:
    value: object = "leaf"
    for as_list in shape:
        value = [value] if as_list else {"urn:ex:p": value}
    return value


@HYPOTHESIS
@given(st.lists(st.booleans(), min_size=1, max_size=150), st.integers(min_value=1, max_value=100))
def test_json_depth_limit_is_exact(shape: list[bool], limit: int) -> None:
    data = json.dumps(_nested(shape)).encode()
    if len(shape) <= limit:
        assert load_json_safely(data, "x.json", max_depth=limit) == _nested(shape)
    else:
        with pytest.raises(InputTooLargeError):
            load_json_safely(data, "x.json", max_depth=limit)


def test_json_syntax_error_names_line_and_column_only() -> None:
    data = f'{{\n  "name": "{SECRET}",\n  "x": [1 2]\n}}'.encode()
    with pytest.raises(ParseError) as caught:
        load_json_safely(data, "bad.json")
    assert (caught.value.line, caught.value.column) == (3, 11)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("data, error", [
    (b'{"a": "\xff\xfe\xfa"}', ParseError),
    (b'{"mrn": ' + b"9" * 5000 + b"}", InputTooLargeError),
])
def test_undecodable_json_is_an_input_error(data: bytes, error: type) -> None:
    with pytest.raises(error):
        load_json_safely(data, "x.json")


def test_size_limit() -> None:
    check_size(100, "a.ttl", 100)
    with pytest.raises(InputTooLargeError, match="over the limit"):
        check_size(101, "a.ttl", 100)


# ---------------------------------------------------------------------------------------------
# SPARQL
# ---------------------------------------------------------------------------------------------

def _query_guarded(graph: rdflib.Graph, text: str) -> list:
    gate_query(text)
    return list(graph.query(text))


def _patient_graph() -> rdflib.Graph:
    graph = rdflib.Graph()
    graph.add((rdflib.URIRef("urn:patient:1"), rdflib.URIRef("urn:p:name"), rdflib.Literal(SECRET)))
    return graph


@pytest.mark.parametrize("template", [
    "SELECT * WHERE {{ ?p <urn:p:name> ?n . SERVICE <{url}/sparql> {{ ?x ?y ?n }} }}",
    "SELECT * WHERE {{ ?p <urn:p:name> ?n . SERVICE SILENT <{url}/sparql> {{ ?x ?y ?n }} }}",
    "SELECT * WHERE {{ ?p ?q ?n FILTER EXISTS {{ SERVICE <{url}/sparql> {{ ?x ?y ?n }} }} }}",
    "SELECT * WHERE {{ {{ SELECT ?n WHERE {{ SERVICE <{url}/sparql> {{ ?x ?y ?n }} }} }} }}",
    "ASK {{ sErViCe <{url}/sparql> {{ ?x ?y ?n }} }}",
    "SELECT * WHERE {{ ?p <urn:p:name> ?n . \\u0053ERVICE <{url}/sparql> {{ ?x ?y ?n }} }}",
], ids=["service", "service-silent", "in-exists", "in-subquery", "lower-case", "escaped"])
def test_service_is_refused_without_a_request(server: Witness, template: str) -> None:
    # The escaped form is refused for its escape before SERVICE is looked for.
    with pytest.raises(QueryError, match="SERVICE|escapes are refused"):
        _query_guarded(_patient_graph(), template.format(url=server.url))
    assert server.hits == []


@pytest.mark.parametrize("clause", ["FROM <{url}/graph>", "FROM NAMED <{url}/graph>"])
def test_dataset_clauses_are_refused_without_a_request(server: Witness,
                                                       clause: str) -> None:
    with pytest.raises(QueryError, match="FROM / FROM NAMED"):
        _query_guarded(rdflib.Graph(), f"SELECT * {clause.format(url=server.url)} WHERE {{ ?s ?p ?o }}")
    assert server.hits == []


def test_from_file_is_refused_without_reading_it(tmp_path: Path, opened: list[str]) -> None:
    other = tmp_path / "itkgprobe-other-patient.ttl"
    other.write_text('<urn:patient:2> <urn:p:hiv> "positive" .\n')
    opened.clear()
    with pytest.raises(QueryError, match="FROM"):
        _query_guarded(rdflib.Graph(), f"SELECT * FROM <{other.as_uri()}> WHERE {{ ?s ?p ?o }}")
    assert opened == []


@pytest.mark.parametrize("update", [
    "LOAD <http://127.0.0.1:9/x>",
    f'INSERT DATA {{ <urn:patient:1> <urn:p:name> "{SECRET}" }}',
    "DROP ALL",
    "CLEAR DEFAULT",
    "DELETE WHERE { ?s ?p ?o }",
    "PREFIX ex: <urn:ex:> DELETE { ?s ex:p ?o } WHERE { ?s ex:p ?o }",
])
def test_updates_are_refused_with_a_clear_message(update: str) -> None:
    with pytest.raises(QueryError, match="updates .* are refused") as caught:
        gate_query(update)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("query", [
    "SELECT ?s WHERE { ?s ?p ?o }",
    'SELECT * WHERE { ?s ?p "SERVICE <http://x.invalid/> { ?a ?b ?c }" }',
    "SELECT * WHERE { ?s <http://x.invalid/SERVICE> ?o } # SERVICE <http://x.invalid/>",
    "PREFIX service: <urn:ex:> SELECT ?service WHERE { ?service service:SERVICE ?o }",
    "CONSTRUCT { ?s ?p ?o } WHERE { GRAPH ?g { ?s ?p ?o } }",
])
def test_plain_queries_pass(query: str) -> None:
    gate_query(query)


@pytest.mark.parametrize("text, expected", [
    ("SELECT * WHERE { ?s ?p ?o .SERVICE <urn:x> { ?s ?p ?o } }", True),
    ("SELECT * WHERE { service\n?endpoint { ?s ?p ?o } }", True),
    ("SELECT * WHERE { ?s ?p '''a'' SERVICE <urn:x> ''' }", False),
    ('SELECT * WHERE { ?s ?p "a\\" SERVICE <urn:x>" }', False),
    ('SELECT * WHERE { ?s ?p "x"@SERVICE . ?s _:SERVICE ?service }', False),
])
def test_service_keyword_is_found_lexically_too(text: str, expected: bool) -> None:
    # A second opinion beside rdflib's algebra, against a query two parsers read differently.
    assert mentions_service(text) is expected


def test_the_shipped_queries_pass_the_gate() -> None:
    for path in sorted(resources.queries_dir().rglob("*.rq")):
        gate_query(path.read_text(encoding="utf-8"), str(path))


@pytest.mark.parametrize("query, expected", [
    (f'SELECT * WHERE {{\n  ?s ?p "{SECRET}" .\n  ?s ?p }}', r"<query>:3:\d+: SPARQL syntax error"),
    (f'SELECT * WHERE {{ ?s ex:name "{SECRET}" }}', "undeclared prefix"),
    ("SELECT * WHERE " + "{ " * 500 + "?s ?p ?o" + " }" * 500, "nested too deeply"),
])
def test_bad_queries_are_reported_without_quoting_them(query: str, expected: str) -> None:
    with pytest.raises(QueryError, match=expected) as caught:
        gate_query(query)
    assert SECRET not in str(caught.value)


# ---------------------------------------------------------------------------------------------
# Ill-typed literals
# ---------------------------------------------------------------------------------------------

def _triples(turtle: str) -> list[ox.Triple]:
    prefixes = f"@prefix xsd: <{XSD}> . @prefix itkg: <{ITKG}> .\n"
    return [quad.triple for quad in ox.parse(prefixes + turtle, format=ox.RdfFormat.TURTLE)]


@pytest.mark.parametrize("lexical, datatype", [
    ("maybe", "boolean"), ("2026-13-45", "date"), ("abc", "integer"), ("2024-02-30", "date"),
    ("2023-02-29", "date"), ("2024-01-01T10:00:00", "date"), ("2024-1-01", "date"),
    ("2024-01-01T10:00", "dateTime"), ("2024-01-01 10:00:00", "dateTime"), ("1e5", "decimal"),
    ("1_000", "integer"), (" 5", "integer"), ("-5", "nonNegativeInteger"), ("99999999999", "int"),
    ("0", "positiveInteger"), ("1" + "0" * 30, "long"), ("inf", "double"), ("25:00:00", "time"),
    ("2024-01-01T10:00:00", "dateTimeStamp"), ("P", "duration"),
])
def test_ill_typed_literal_is_found_and_named_without_its_value(lexical: str, datatype: str) -> None:
    found = find_ill_typed(_triples(f'<urn:p1> itkg:consentDate "{lexical}"^^xsd:{datatype} .'))
    assert [(x.predicate, x.datatype) for x in found] == [(ITKG + "consentDate", XSD + datatype)]
    assert found[0].describe() == f"ill-typed xsd:{datatype} literal (object of itkg:consentDate)"


@pytest.mark.parametrize("literal", [
    '"2024-02-29"^^xsd:date', '"2024-02-29Z"^^xsd:date', '"-0044-03-15"^^xsd:date',
    '"true"^^xsd:boolean', '"0"^^xsd:boolean', '"42"^^xsd:integer', '"+007"^^xsd:integer',
    '"1' + "0" * 5000 + '"^^xsd:integer', '"-0.5"^^xsd:decimal', '"5."^^xsd:decimal',
    '"1.5e-3"^^xsd:double', '"-INF"^^xsd:float', '"2024-01-01T24:00:00"^^xsd:dateTime',
    '"2024-01-01T10:00:00.123+14:00"^^xsd:dateTime', '"P1Y2M"^^xsd:duration', '"yes"',
    '"maybe"@en', '"maybe"^^<urn:ex:myBoolean>', "<urn:o>", "[]",
])
def test_well_typed_literal_passes(literal: str) -> None:
    assert find_ill_typed(_triples(f"<urn:p1> <urn:p> {literal} .")) == []


def test_ill_typed_literals_are_found_in_rdflib_triples_too() -> None:
    install_library_defaults()
    graph = rdflib.Graph().parse(data=f'<urn:p1> <urn:hiv> "maybe"^^<{XSD}boolean> .\n'
                                      f'<urn:p1> <urn:ok> "true"^^<{XSD}boolean> .', format="nt")
    assert [x.predicate for x in find_ill_typed(graph)] == ["urn:hiv"]


@HYPOTHESIS
@given(st.integers(1, 9999), st.integers(0, 13), st.integers(0, 32))
def test_date_check_agrees_with_the_calendar(year: int, month: int, day: int) -> None:
    try:
        date(year, month, day)
        real = True
    except ValueError:
        real = False
    assert is_valid_lexical(f"{year:04d}-{month:02d}-{day:02d}", XSD + "date") is real


@HYPOTHESIS
@given(st.integers(-2**70, 2**70))
def test_integer_range_checks_agree_with_arithmetic(value: int) -> None:
    assert is_valid_lexical(str(value), XSD + "integer")
    assert is_valid_lexical(str(value), XSD + "int") is (-2**31 <= value < 2**31)
    assert is_valid_lexical(str(value), XSD + "unsignedLong") is (0 <= value < 2**64)


def test_rdflib_keeps_an_ill_typed_boolean_as_written() -> None:
    install_library_defaults()
    graph = rdflib.Graph().parse(data=f'<urn:p> <urn:hiv> "maybe"^^<{XSD}boolean> .', format="nt")
    assert '"maybe"' in graph.serialize(format="nt")


# ---------------------------------------------------------------------------------------------
# Logs and messages never carry patient values
# ---------------------------------------------------------------------------------------------

_LEAKY_SCRIPT = textwrap.dedent(f"""
    import logging, sys
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    if sys.argv[1] == "guarded":
        from itkg.guards import install_library_defaults
        install_library_defaults()
    import rdflib
    from rdflib.namespace import XSD
    rdflib.Literal("{SECRET} 2024-02-30", datatype=XSD.date)
    rdflib.Literal("{SECRET}", datatype=XSD.boolean)
    rdflib.URIRef("urn:patient:{SECRET}")
    logging.getLogger("rdflib.plugins.parsers").warning("bad input: %s", "{SECRET}")
    logging.getLogger("owlready2").error("bad input {SECRET}")
""")


@pytest.mark.parametrize("mode, leaks", [("plain", True), ("guarded", False)])
def test_library_logs_and_warnings_never_carry_patient_values(mode: str, leaks: bool) -> None:
    # The plain run shows the triggers do leak; the guarded run shows the defaults stop them.
    done = subprocess.run([sys.executable, "-c", _LEAKY_SCRIPT, mode], capture_output=True,
                          text=True, timeout=120, check=True)
    assert (SECRET in done.stderr + done.stdout) is leaks


def test_redacted_records_keep_their_origin(caplog: pytest.LogCaptureFixture) -> None:
    install_library_defaults()
    with caplog.at_level("INFO"):
        import logging
        logging.getLogger("pyshacl.validate").warning("focus node %s", SECRET)
        logging.getLogger("itkg.loading").warning("loaded %s", "patients.ttl")
    assert SECRET not in caplog.text
    assert "pyshacl.validate" in caplog.text and "patients.ttl" in caplog.text


def _all_gate_errors() -> Iterator[ItkgError]:
    attempts = [
        lambda: reject_xml_dtd(f'<!DOCTYPE r [<!ENTITY a "{SECRET}">]><r/>'.encode(), "a.rdf"),
        lambda: load_json_safely(f'{{"name": "{SECRET}" "x"}}'.encode(), "a.json"),
        lambda: load_json_safely(_doc(f"http://x.invalid/{SECRET}"), "a.jsonld"),
        lambda: load_json_safely(f'{{"{SECRET}": 1, "{SECRET}": 2}}'.encode(), "a.json"),
        lambda: gate_query(f'SELECT * WHERE {{ ?s ?p "{SECRET}" . SERVICE <urn:x> {{ ?s ?p ?o }} }}'),
        lambda: gate_query(f'SELECT * FROM <urn:{SECRET.replace(" ", "")}> WHERE {{ ?s ?p ?o }}'),
        lambda: gate_query(f'INSERT DATA {{ <urn:a> <urn:b> "{SECRET}" }}'),
        lambda: gate_query(f'SELECT * WHERE {{ ?s ?p "{SECRET}"'),
    ]
    for attempt in attempts:
        with pytest.raises(ItkgError) as caught:
            attempt()
        yield caught.value


def test_no_gate_error_quotes_the_input() -> None:
    for error in _all_gate_errors():
        assert SECRET not in str(error)
        assert SECRET.replace(" ", "") not in str(error)
        assert error.__cause__ is None  # and no chained parser exception that quotes it


@HYPOTHESIS
@given(st.text(max_size=30), st.text(max_size=30))
def test_json_errors_never_quote_the_input(before: str, after: str) -> None:
    data = (before + json.dumps(SECRET) + after).encode("utf-8", "surrogatepass")
    try:
        load_json_safely(data, "fuzz.json")
    except ItkgError as error:
        assert SECRET not in str(error)


# ---------------------------------------------------------------------------------------------
# Network guard (backstop)
# ---------------------------------------------------------------------------------------------

def test_network_guard_blocks_python_clients(server: Witness) -> None:
    with network_guard():
        with pytest.raises(UnsafeInputError, match="network access refused"):
            urllib.request.urlopen(server.url + "/ctx")
        with pytest.raises(UnsafeInputError):
            httpx.get(server.url + "/ctx")
        with pytest.raises(UnsafeInputError):  # rdflib fetching a context, gate bypassed
            rdflib.Graph().parse(data=_doc(server.url + "/ctx"), format="json-ld")
        with pytest.raises(UnsafeInputError):  # a DNS lookup is a request too
            socket.getaddrinfo("localhost", 80)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, \
                pytest.raises(UnsafeInputError):
            udp.sendto(b"x", ("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
    assert server.hits == []
    assert httpx.get(server.url + "/ctx").status_code == 200  # guard lifted after the block


def test_network_guard_stops_owlready2_imports(server: Witness) -> None:
    import owlready2

    ontology = (f'<urn:ex:onto> <{RDF_NS}type> <http://www.w3.org/2002/07/owl#Ontology> .\n'
                f'<urn:ex:onto> <http://www.w3.org/2002/07/owl#imports> <{server.url}/owl> .\n')
    with network_guard(), pytest.raises(owlready2.OwlReadyOntologyParsingError):
        owlready2.World().get_ontology("urn:ex:onto").load(fileobj=io.BytesIO(ontology.encode()),
                                                           format="ntriples")
    assert server.hits == []


def test_network_guard_allows_only_the_named_endpoint(server: Witness,
                                                      other_server: Witness) -> None:
    with network_guard([server.url + "/sparql"]):
        assert httpx.get(server.url + "/sparql").status_code == 200
        assert urllib.request.urlopen(server.url + "/sparql").status == 200
        with pytest.raises(UnsafeInputError):  # same host, other port
            httpx.get(other_server.url + "/ctx")
    port = server.url.rsplit(":", 1)[1]
    with network_guard([f"http://localhost:{port}/sparql"]):  # named by host name
        assert httpx.get(f"http://localhost:{port}/sparql").status_code == 200
    assert len(server.hits) == 3 and other_server.hits == []


def test_network_guard_leaves_local_ipc_alone() -> None:
    with network_guard():
        left, right = socket.socketpair()
        with left, right:
            left.sendall(b"ping")
            assert right.recv(4) == b"ping"


def test_network_guard_wants_an_http_url() -> None:
    with pytest.raises(EndpointError):
        install_network_guard(["127.0.0.1:7878"])


# ---------------------------------------------------------------------------------------------
# Atomic outputs; inputs are never written
# ---------------------------------------------------------------------------------------------

def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_atomic_write_replaces_and_keeps_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")
    target.chmod(0o640)
    atomic_write(target, '{"results": []}')
    assert target.read_text() == '{"results": []}'
    assert target.stat().st_mode & 0o777 == 0o640
    atomic_write(tmp_path / "new.bin", b"\x00\x01")
    assert (tmp_path / "new.bin").stat().st_mode & 0o777 == 0o600
    assert _leftovers(tmp_path) == []


def test_failed_encoding_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(OutputError, match="cannot be encoded") as caught:
        atomic_write(target, f"{SECRET} \ud800")
    assert SECRET not in str(caught.value)
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_failed_rename_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "keep").write_text("kept")
    with pytest.raises(OutputError, match="not a regular file"):
        atomic_write(folder, "data")
    assert (folder / "keep").read_text() == "kept"
    assert _leftovers(tmp_path) == []
    with pytest.raises(OutputError, match="cannot write"):
        atomic_write(tmp_path / "missing" / "x.json", "data")
    target = tmp_path / "result.json"
    target.write_text("old")

    def failing_replace(src: object, dst: object) -> None:
        raise OSError(18, "Invalid cross-device link")  # what a rename across file systems gives

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OutputError, match="cannot write"):
        atomic_write(target, "new")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_an_input_is_never_written_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "patients.ttl"
    source.write_text('<urn:p1> <urn:name> "Alice" .\n')
    before = sha256_file(source)
    (tmp_path / "link.ttl").symlink_to(source)
    os.link(source, tmp_path / "hard.ttl")
    monkeypatch.chdir(tmp_path)
    for name in [source, "patients.ttl", "./sub/../patients.ttl", tmp_path / "link.ttl",
                 tmp_path / "hard.ttl"]:
        with pytest.raises(OutputError, match="input file"):
            atomic_write(name, "overwritten", protect=[source])
    assert sha256_file(source) == before
    atomic_write(tmp_path / "report.json", "ok", protect=[source])
