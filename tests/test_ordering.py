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
