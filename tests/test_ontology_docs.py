"""The ontology's HTML documentation (docs/ontology/index.html, built by ``python -m itkg.build_owl``).

The page is generated, so it is checked like itkg.owl: the checked-in file must be what the build
writes. Its content is checked against the ontology itself (every term with its label, definition
and mappings; the indications' criteria; the prerequisites), its escaping against a hostile copy,
and its behaviour in a real browser (Debian's chromium through Playwright): no request leaves the
page and no script error occurs.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from rdflib import Graph, Literal, URIRef
from rdflib.namespace import OWL, RDF, RDFS, SKOS

from itkg import build_owl, ontology_docs
from itkg.knowledge import Knowledge
from itkg.resources import ontology_path

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "ontology" / "index.html"
CHROMIUM = Path("/usr/bin/chromium")
ITKG = "https://w3id.org/itkg/"


@pytest.fixture(scope="module")
def ontology() -> Graph:
    return Graph().parse(ontology_path(), format="turtle")


@pytest.fixture(scope="module")
def page() -> str:
    return PAGE.read_text(encoding="utf-8")


def _section(page: str, anchor: str) -> str:
    """The unescaped text and hrefs of one term's section."""
    match = re.search(rf'<section class="term" id="{re.escape(anchor)}">(.*?)</section>', page, flags=re.DOTALL)
    assert match, anchor
    return html.unescape(match[1])


def _labelled_terms(graph: Graph) -> list[URIRef]:
    kinds = (OWL.Class, OWL.ObjectProperty, OWL.DatatypeProperty, OWL.AnnotationProperty, OWL.NamedIndividual)
    return sorted({s for k in kinds for s in graph.subjects(RDF.type, k)
                   if isinstance(s, URIRef) and graph.value(s, RDFS.label) is not None})


def test_checked_in_page_is_what_the_build_writes() -> None:
    assert ontology_docs.build(ontology_path(), PAGE, check=True), "run `python -m itkg.build_owl`"


def test_build_check_fails_on_a_stale_page_and_build_repairs_it(tmp_path: Path) -> None:
    stale = tmp_path / "index.html"
    stale.write_text(PAGE.read_text(encoding="utf-8").replace("cancer pain", "cancer pains", 1), encoding="utf-8")
    assert build_owl.main(["--check", "--docs", str(stale)]) == 1
    assert build_owl.main(["--docs", str(stale)]) == 0
    assert stale.read_bytes() == PAGE.read_bytes()


def test_every_term_has_a_section_with_label_definition_source_and_mappings(ontology: Graph, page: str) -> None:
    terms = _labelled_terms(ontology)
    assert len(terms) > 100
    for term in terms:
        text = _section(page, ontology_docs._anchor(str(term)))
        assert str(ontology.value(term, RDFS.label)) in text, term
        assert str(term) in text, term
        definition = ontology.value(term, ontology_docs.DEFINITION)
        if definition is not None:
            assert str(definition) in text, term
        for source in ontology.objects(term, URIRef("http://purl.org/dc/terms/source")):
            shown = ontology.value(source, RDFS.label) or ontology_docs.curie(str(source))
            assert str(shown) in text, (term, source)
        for relation, heading in ontology_docs.MAPPING_RELATIONS:
            for code in ontology.objects(term, relation):
                assert heading in text and f'href="{code}"' in text, (term, code)
                assert ontology_docs.curie(str(code)) in text, (term, code)


def test_defined_classes_show_their_definition_in_manchester_syntax(page: str) -> None:
    text = re.sub(r"<[^>]+>", "", _section(page, ontology_docs._anchor(ITKG + "CancerPainIndicationPatient")))
    assert ("equivalent to" in text and "patient and has condition some cancer pain and received treatment some "
            "(systemic analgesic therapy and has outcome some {inadequate pain relief, severe side effects})" in text)


def test_mapping_table_lists_every_cross_reference(ontology: Graph, page: str) -> None:
    table = page.split('<section id="mappings">', 1)[1].split("</section>", 1)[0]
    codes = {str(o) for p, _ in ontology_docs.MAPPING_RELATIONS for o in ontology.objects(None, p)}
    assert {SKOS.exactMatch, SKOS.closeMatch} <= {p for p, _ in ontology_docs.MAPPING_RELATIONS
                                                  if (None, p, None) in ontology}
    assert len(codes) > 30
    assert {c for c in codes if f'href="{c}"' not in table} == set()


def test_hierarchy_nests_every_class_under_its_parents(ontology: Graph, page: str) -> None:
    tree = page.split('<section id="hierarchy"', 1)[1].split("</section>", 1)[0]
    classes = [t for t in _labelled_terms(ontology) if (t, RDF.type, OWL.Class) in ontology]
    assert {c for c in classes if f'href="#{ontology_docs._anchor(str(c))}"' not in tree} == set()
    # Causalgia sits inside the list under complex regional pain syndrome, inside pain condition.
    crps = tree.index(f'href="#{ontology_docs._anchor(ITKG + "ComplexRegionalPainSyndrome")}"')
    causalgia = tree.index(f'href="#{ontology_docs._anchor(ITKG + "Causalgia")}"')
    between = tree[crps:causalgia]
    assert "<ul>" in between and "</ul>" not in between


def test_indication_tables_show_every_criterion_with_its_alternatives(ontology: Graph, page: str) -> None:
    section = page.split('<section id="indications">', 1)[1].split("</section>", 1)[0]
    knowledge = Knowledge(ontology)
    assert len(knowledge.indications) == 3
    for indication in knowledge.indications:
        for criterion in indication.criteria:
            row = re.search(rf'<tr><td><a href="#{ontology_docs._anchor(criterion.iri)}".*?</tr>', section)
            assert row, criterion.iri
            for iri in criterion.condition_classes | criterion.treatment_classes | criterion.outcomes:
                assert f'href="#{ontology_docs._anchor(iri)}"' in row[0], (criterion.iri, iri)
            if not criterion.treatment_classes:
                assert "the diagnosis suffices" in row[0]


def test_prerequisite_table_names_each_prerequisite_and_its_code(ontology: Graph, page: str) -> None:
    section = html.unescape(page.split('<section id="prerequisites">', 1)[1].split("</section>", 1)[0])
    knowledge = Knowledge(ontology)
    found = [p for ps in knowledge.prerequisites.values() for p in ps]
    assert {p.code for p in found} >= {"informed-consent", "csf-circulation"}
    for prerequisite in found:
        assert f"<code>{prerequisite.code}</code>" in section and prerequisite.label in section
        assert str(ontology.value(URIRef(prerequisite.iri), ontology_docs.DEFINITION)) in section
    # How consent is decided: its latest record, the value that meets it and those that fail it.
    consent = html.unescape(re.search(r"<tr>(?:(?!</tr>).)*informed-consent.*?</tr>", page, flags=re.DOTALL)[0])
    for name in ("InformedConsent", "consentDate", "coversTherapy", "consentStatus", "ConsentGranted",
                 "ConsentRefused", "ConsentWithdrawn"):
        assert f'href="#{ontology_docs._anchor(ITKG + name)}"' in consent, name


def test_ontology_text_is_escaped_and_only_web_iris_become_links(ontology: Graph) -> None:
    hostile = Graph()
    for triple in ontology:
        hostile.add(triple)
    term = URIRef(ITKG + "CancerPain")
    hostile.set((term, RDFS.label, Literal('<script>alert("x")</script> & pain', lang="en")))
    hostile.add((term, SKOS.exactMatch, URIRef("javascript:alert(1)")))
    text = ontology_docs.render(hostile)
    assert "<script" not in text and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; pain" in text
    assert 'href="javascript:' not in text and "javascript:alert(1)" in text


# --- in a real browser ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """Debian's chromium driven by Playwright (no browser download). Missing, it is a broken setup
    (.ci/run installs it), as in tests/test_report.py: the test fails rather than skips."""
    from playwright import sync_api
    if not CHROMIUM.is_file():
        pytest.fail("Debian's chromium is not installed (apt-get install chromium; .ci/run does it)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.mark.browser
def test_page_in_a_real_browser_makes_no_outside_request_and_no_script_error(chromium: object) -> None:
    url = PAGE.resolve().as_uri()
    context = chromium.new_context()  # type: ignore[attr-defined]
    try:
        page = context.new_page()
        requests: list[str] = []
        errors: list[str] = []

        def route(request_route: object) -> None:
            request = request_route.request  # type: ignore[attr-defined]
            requests.append(request.url)
            if request.url.split("#", 1)[0] == url:
                request_route.continue_()  # type: ignore[attr-defined]
            else:
                request_route.abort()  # type: ignore[attr-defined]

        context.route("**/*", route)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.goto(url)
        page.wait_for_load_state("load")
        assert page.title().startswith("itkg: intrathecal therapy knowledge graph ontology")
        assert page.locator("section.term").count() > 100
        assert page.locator("#indications table.criteria tbody tr").count() == 4
        # A link in the class hierarchy leads to that term's section.
        page.locator("#hierarchy a", has_text="causalgia").first.click()
        assert page.evaluate("location.hash") == f"#{ontology_docs._anchor(ITKG + 'Causalgia')}"
        assert page.locator(f"#{ontology_docs._anchor(ITKG + 'Causalgia')}").is_visible()
        assert [r for r in requests if r.split("#", 1)[0] != url] == []
        assert errors == []
    finally:
        context.close()
