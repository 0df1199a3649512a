"""The ontology's human-readable documentation: one self-contained HTML page, built from the Turtle.

Why our own renderer: pyLODE (3.3 and 3.4) crashes on this ontology (pyLODE issue #231), and the
page must show what is particular to itkg (the indications and their criteria as tables, the
prerequisites) beside the usual class hierarchy and term list. The page is rendered by Jinja2 with
autoescaping, from ``templates/ontology.html.j2``; it loads nothing from outside (inline CSS, no
script, a Content-Security-Policy of ``default-src 'none'``), and its bytes depend only on the
ontology, so ``python -m itkg.build_owl --check`` can keep ``docs/ontology/index.html`` in sync.
Links only ever point to ``http(s)`` IRIs or to anchors on the page.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from rdflib import BNode, Graph, Literal, URIRef
from rdflib.collection import Collection
from rdflib.namespace import DCTERMS, OWL, RDF, RDFS, SKOS
from rdflib.term import Node

from itkg import vocab
from itkg.knowledge import Knowledge

DEFINITION = URIRef("http://purl.obolibrary.org/obo/IAO_0000115")
ONTOLOGY = URIRef(vocab.ITKG + "ontology")
PATIENT_CLASS = URIRef(vocab.ITKG + "patientClass")
_KINDS = [(OWL.Class, "class"), (OWL.ObjectProperty, "object property"),
          (OWL.DatatypeProperty, "datatype property"), (OWL.AnnotationProperty, "annotation property"),
          (OWL.NamedIndividual, "individual")]
#: The SKOS mapping relations, in the order the page shows them.
MAPPING_RELATIONS = [(SKOS.exactMatch, "exact match"), (SKOS.narrowMatch, "narrow match"),
                     (SKOS.broadMatch, "broad match"), (SKOS.closeMatch, "close match"),
                     (SKOS.relatedMatch, "related match")]
_PLURALS = {"class": "Classes", "object property": "Object properties", "datatype property": "Datatype properties",
            "annotation property": "Annotation properties", "individual": "Individuals"}
#: CURIE prefixes, as in the curie_map of ontology/itkg.sssom.tsv; OBO IRIs are handled by pattern.
_PREFIXES = [
    (vocab.ITKG, "itkg"),
    ("http://snomed.info/id/", "SCTID"),
    ("http://purl.bioontology.org/ontology/ICD10CM/", "ICD10CM"),
    ("http://purl.bioontology.org/ontology/RXNORM/", "RXNORM"),
    ("http://purl.bioontology.org/ontology/ATC/", "ATC"),
    ("http://www.w3.org/ns/prov#", "prov"),
    ("http://purl.org/dc/terms/", "dcterms"),
    ("http://www.w3.org/2004/02/skos/core#", "skos"),
]
_OBO = re.compile(r"http://purl\.obolibrary\.org/obo/([A-Za-z][A-Za-z0-9]*)_(\w+)\Z")
_TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class Link:
    """A term or IRI as the page shows it: text, and where it points (``href`` None: plain text)."""

    text: str
    href: str | None
    curie: str = ""


@dataclass
class Term:
    """Everything the page says about one term."""

    iri: str
    curie: str
    anchor: str
    label: str
    kinds: list[str]
    definition: str = ""
    comments: list[str] = field(default_factory=list)
    sources: list[Link] = field(default_factory=list)
    citation: str = ""
    notation: str = ""
    parents: list[Link] = field(default_factory=list)
    types: list[Link] = field(default_factory=list)
    mappings: dict[str, list[Link]] = field(default_factory=dict)
    defined: bool = False
    equivalents: list[list[Link]] = field(default_factory=list)


@dataclass(frozen=True)
class TreeNode:
    """One class of the hierarchy with its subclasses."""

    link: Link
    children: tuple[TreeNode, ...]


def curie(iri: str) -> str:
    """A compact name for ``iri`` (``itkg:CancerPain``, ``MONDO:0005301``), or the IRI itself."""
    match = _OBO.match(iri)
    if match:
        return f"{match[1]}:{match[2]}"
    for namespace, prefix in _PREFIXES:
        if iri.startswith(namespace) and len(iri) > len(namespace):
            return f"{prefix}:{iri[len(namespace):]}"
    return iri


def _safe_href(iri: str) -> str | None:
    """Only web IRIs become links: a ``javascript:`` or ``data:`` IRI in an ontology stays text."""
    return iri if re.match(r"https?://", iri) else None


def _anchor(iri: str) -> str:
    return "term-" + re.sub(r"[^A-Za-z0-9_.-]", "-", curie(iri))


def _en(graph: Graph, subject: Node, predicate: URIRef) -> list[str]:
    """The values of ``predicate``: English or untagged literals first, sorted, deduplicated."""
    values = [o for o in graph.objects(subject, predicate) if isinstance(o, Literal)]
    preferred = [v for v in values if v.language in (None, "en")] or values
    return sorted({str(v) for v in preferred})


class _Page:
    """Collects the page's data from one ontology graph."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.knowledge = Knowledge(graph)
        self.terms: dict[str, Term] = {}
        for kind, name in _KINDS:
            for subject in graph.subjects(RDF.type, kind):
                if isinstance(subject, URIRef) and graph.value(subject, RDFS.label) is not None:
                    self._term(subject).kinds.append(name)

    def link(self, node: Node) -> Link:
        iri = str(node)
        if iri in self.terms:
            return Link(self.terms[iri].label, "#" + self.terms[iri].anchor, curie(iri))
        return Link(curie(iri), _safe_href(iri), curie(iri))

    def _term(self, subject: URIRef) -> Term:
        iri = str(subject)
        if iri not in self.terms:
            labels = _en(self.graph, subject, RDFS.label)
            self.terms[iri] = Term(iri, curie(iri), _anchor(iri), labels[0] if labels else curie(iri), [])
        return self.terms[iri]

    def fill(self) -> None:
        """Annotations and links, once every term is known (links need the target's label)."""
        g = self.graph
        for iri, term in self.terms.items():
            subject = URIRef(iri)
            term.definition = " ".join(_en(g, subject, DEFINITION))
            term.comments = _en(g, subject, RDFS.comment)
            term.citation = " ".join(_en(g, subject, DCTERMS.bibliographicCitation))
            term.notation = " ".join(str(n) for n in g.objects(subject, SKOS.notation))
            term.sources = sorted((self.link(s) for s in g.objects(subject, DCTERMS.source)), key=_key)
            term.parents = sorted((self.link(p) for p in g.objects(subject, RDFS.subClassOf)
                                   if isinstance(p, URIRef)), key=_key)
            term.types = sorted((self.link(t) for t in g.objects(subject, RDF.type)
                                 if isinstance(t, URIRef) and str(t) in self.terms), key=_key)
            for relation, name in MAPPING_RELATIONS:
                found = sorted((self.link(m) for m in g.objects(subject, relation)), key=_key)
                if found:
                    term.mappings[name] = found
            term.defined = any(not isinstance(e, URIRef) for e in g.objects(subject, OWL.equivalentClass))
            term.equivalents = sorted((self.expression(e) for e in g.objects(subject, OWL.equivalentClass)),
                                      key=lambda parts: [p.text for p in parts])

    def expression(self, node: Node, depth: int = 0) -> list[Link]:
        """An OWL class expression in Manchester syntax, as text pieces and term links (the
        template escapes them). Unknown shapes are shown as "…", never guessed at."""
        g = self.graph
        if isinstance(node, URIRef):
            return [self.link(node)]
        if not isinstance(node, BNode) or depth > 12:
            return [Link("…", None)]
        text = _plain
        for keyword, joiner in ((OWL.intersectionOf, " and "), (OWL.unionOf, " or ")):
            members = g.value(node, keyword)
            if members is not None:
                parts: list[Link] = [text("(")] if depth else []
                for i, member in enumerate(Collection(g, members)):
                    parts += ([text(joiner)] if i else []) + self.expression(member, depth + 1)
                return parts + ([text(")")] if depth else [])
        members = g.value(node, OWL.oneOf)
        if members is not None:
            parts = [text("{")]
            for i, member in enumerate(Collection(g, members)):
                parts += ([text(", ")] if i else []) + [self.link(member)]
            return parts + [text("}")]
        complement = g.value(node, OWL.complementOf)
        if complement is not None:
            return [text("not ")] + self.expression(complement, depth + 1)
        prop = g.value(node, OWL.onProperty)
        if prop is not None:
            for keyword, word in ((OWL.someValuesFrom, " some "), (OWL.allValuesFrom, " only ")):
                filler = g.value(node, keyword)
                if filler is not None:
                    return [self.link(prop), text(word)] + self.expression(filler, depth + 1)
            value = g.value(node, OWL.hasValue)
            if value is not None:
                return [self.link(prop), text(" value "),
                        self.link(value) if isinstance(value, URIRef) else text(str(value))]
        return [text("…")]

    def hierarchy(self) -> tuple[TreeNode, ...]:
        """The asserted class tree: roots are classes with no named superclass."""
        classes = {iri for iri, t in self.terms.items() if "class" in t.kinds}
        children: dict[str, set[str]] = defaultdict(set)
        has_parent = set()
        for iri in classes:
            for parent in self.graph.objects(URIRef(iri), RDFS.subClassOf):
                if str(parent) in classes and str(parent) != iri:
                    children[str(parent)].add(iri)
                    has_parent.add(iri)

        def node(iri: str, path: frozenset[str]) -> TreeNode:
            kids = sorted(children[iri] - path, key=lambda c: self.terms[c].label.lower())
            return TreeNode(self.link(URIRef(iri)), tuple(node(k, path | {k}) for k in kids))

        roots = sorted(classes - has_parent, key=lambda c: self.terms[c].label.lower())
        return tuple(node(r, frozenset({r})) for r in roots)

    def indications(self) -> list[dict[str, Any]]:
        """Each indication with its therapy, defined patient class and criteria (links)."""
        out = []
        for indication in self.knowledge.indications:
            patient = self.graph.value(URIRef(indication.iri), PATIENT_CLASS)
            out.append({
                "link": self.link(URIRef(indication.iri)),
                "therapy": self.link(URIRef(indication.therapy)),
                "patient_class": self.link(patient) if patient is not None else None,
                "criteria": [{
                    "link": self.link(URIRef(c.iri)),
                    "conditions": self._links(c.condition_classes),
                    "treatments": self._links(c.treatment_classes),
                    "outcomes": self._links(c.outcomes),
                } for c in indication.criteria],
            })
        return out

    def prerequisites(self) -> list[dict[str, Any]]:
        """One row per therapy and prerequisite, with how the prerequisite is decided (the facts
        ``itkg:recordLink``, ``recordClass``, ``recordDate``, ``scopeProperty``, ``decisionProperty``,
        ``meetingValue``, ``failingValue`` and ``worklistAction``, where the ontology states them)."""
        g = self.graph

        def links(subject: URIRef, name: str) -> list[Link]:
            return sorted((self.link(o) for o in g.objects(subject, URIRef(vocab.ITKG + name))
                           if isinstance(o, URIRef)), key=_key)

        def order(p: Any) -> tuple[int, str]:
            value = g.value(URIRef(p.iri), URIRef(vocab.ITKG + "prerequisiteOrder"))
            return (int(value) if isinstance(value, Literal) and str(value).isdigit() else 1 << 30, p.code)

        rows = []
        for therapy, found in sorted(self.knowledge.prerequisites.items()):
            for prerequisite in sorted(found, key=order):
                subject = URIRef(prerequisite.iri)
                rows.append({
                    "therapy": self.link(URIRef(therapy)), "term": self.terms.get(prerequisite.iri),
                    "code": prerequisite.code, "link": self.link(subject),
                    "records": links(subject, "recordClass"), "via": links(subject, "recordLink"),
                    "dated": links(subject, "recordDate"), "scope": links(subject, "scopeProperty"),
                    "decision": links(subject, "decisionProperty"), "meets": links(subject, "meetingValue"),
                    "fails": links(subject, "failingValue"),
                    "action": " ".join(_en(g, subject, URIRef(vocab.ITKG + "worklistAction"))),
                })
        return rows

    def _links(self, iris: frozenset[str]) -> list[Link]:
        return sorted((self.link(URIRef(i)) for i in iris), key=_key)


def _plain(text: str) -> Link:
    """A piece of plain text in a class expression."""
    return Link(text, None)


def _key(link: Link) -> tuple[str, str]:
    return (link.text.lower(), link.curie)


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
        autoescape=True,  # every value is text from the ontology: always escaped
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
    )


def render(graph: Graph) -> str:
    """The HTML page for the ontology in ``graph``: a pure function of its triples."""
    page = _Page(graph)
    page.fill()
    header = {
        "title": " ".join(_en(graph, ONTOLOGY, DCTERMS.title)) or "itkg ontology",
        "description": " ".join(_en(graph, ONTOLOGY, DCTERMS.description)),
        "comments": _en(graph, ONTOLOGY, RDFS.comment),
        "iri": str(ONTOLOGY),
        "version_iri": str(graph.value(ONTOLOGY, OWL.versionIRI) or ""),
        "version": str(graph.value(ONTOLOGY, OWL.versionInfo) or ""),
        "licenses": sorted((page.link(x) for x in graph.objects(ONTOLOGY, DCTERMS.license)), key=_key),
    }
    terms = sorted(page.terms.values(), key=lambda t: (t.label.lower(), t.iri))
    sections = [(name.replace(" ", "-"), _PLURALS[name], [t for t in terms if t.kinds and t.kinds[0] == name])
                for _, name in _KINDS]
    mapped = [t for t in terms if t.mappings]
    relations = [name for _, name in MAPPING_RELATIONS if any(name in t.mappings for t in mapped)]
    return _environment().get_template("ontology.html.j2").render(
        header=header, hierarchy=page.hierarchy(), indications=page.indications(),
        prerequisites=page.prerequisites(), sections=[s for s in sections if s[2]], mapped=mapped,
        relations=relations)


def build(source: Path, target: Path, check: bool = False) -> bool:
    """Render ``source`` (Turtle) to ``target`` unless ``check``. True if ``target`` was up to date."""
    text = render(Graph().parse(source, format="turtle"))
    current = target.read_text(encoding="utf-8") if target.is_file() else None
    if current == text:
        return True
    if not check:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8", newline="\n")
    return False
