"""itkg.ordering: rows are put in the query's ORDER BY order on this side of the wire (issue 13:
some servers do not honour ORDER BY), with SPARQL's order of terms."""

from __future__ import annotations

from rdflib import XSD, BNode, Literal, URIRef

from itkg.ordering import order_keys, sort_result
from itkg.sparql import QueryResult


def test_order_keys_reads_variables_and_directions() -> None:
    assert order_keys("SELECT ?a ?b WHERE { ?a ?p ?b } ORDER BY DESC(?a) ?b LIMIT 3") == [
        ("a", True), ("b", False)]
    assert order_keys("SELECT ?a WHERE { ?a ?p ?b }") == []
    assert order_keys("SELECT ?a WHERE { ?a ?p ?b } ORDER BY STR(?a)") is None
    assert order_keys("not sparql") is None


def test_sort_result_uses_sparql_term_order_then_the_other_columns() -> None:
    rows = ({"x": Literal("10", datatype=XSD.integer), "y": URIRef("urn:b")},
            {"x": Literal("9", datatype=XSD.integer), "y": URIRef("urn:a")},
            {"y": URIRef("urn:c")},
            {"x": URIRef("urn:z"), "y": URIRef("urn:d")},
            {"x": BNode("b1"), "y": URIRef("urn:e")},
            {"x": Literal("9", datatype=XSD.integer), "y": URIRef("urn:0")})
    result = sort_result(QueryResult(("x", "y"), rows), "SELECT ?x ?y WHERE { ?x ?p ?y } ORDER BY ?x")
    assert [row["y"] for row in result.rows] == [URIRef("urn:c"), URIRef("urn:e"), URIRef("urn:d"),
                                                 URIRef("urn:0"), URIRef("urn:a"), URIRef("urn:b")]
    descending = sort_result(QueryResult(("x", "y"), rows), "SELECT * WHERE { ?x ?p ?y } ORDER BY DESC(?x)")
    assert descending.rows[0]["x"] == Literal("10", datatype=XSD.integer)


def test_a_key_that_is_not_a_column_keeps_the_engines_order_among_ties() -> None:
    """worklist.rq orders by ?actionOrder, which it does not return."""
    rows = ({"p": URIRef("urn:2"), "action": Literal("Obtain consent")},
            {"p": URIRef("urn:1"), "action": Literal("Obtain consent")},
            {"p": URIRef("urn:1"), "action": Literal("Assess CSF")})
    result = sort_result(QueryResult(("p", "action"), rows),
                         "SELECT ?p ?action WHERE { ?p ?q ?action BIND(1 AS ?o) } ORDER BY ?p ?o")
    assert [str(row["action"]) for row in result.rows] == ["Obtain consent", "Assess CSF", "Obtain consent"]
    assert [str(row["p"]) for row in result.rows] == ["urn:1", "urn:1", "urn:2"]


def test_the_gate_notes_the_order_keys_it_parsed(monkeypatch) -> None:
    """The query gate parses the query (in a child process when there is a deadline); the rows
    are sorted by the ORDER BY it read there, without a second parse of the text (a quarter of a
    second for a contract query): the same keys as a parse here."""
    from itkg import ordering, sparql
    from itkg.resources import query_path

    for name in ("eligible-therapies", "worklist"):
        text = query_path(name).read_text(encoding="utf-8") + f"\n# {name} gated by this test\n"
        expected = ordering.order_keys(text)
        sparql.gate(text, name, timeout=60)
        monkeypatch.setattr(ordering, "prepareQuery", lambda *a, **k: (_ for _ in ()).throw(AssertionError("parsed again")))
        assert ordering.order_keys(text) == expected and expected
        monkeypatch.undo()
