"""The generated shapes files, and the vocabulary shapes: values a record must take from the ontology.

Contract 1.1 §6 asks ``validate`` to report a consent record whose ``itkg:coversTherapy`` is not an
intrathecal therapy class, and a prior treatment whose outcome is not one of the five. Which
classes and which outcomes those are is knowledge, so the shapes are generated from the ontology
(and a site's extension files) rather than written by hand:

* a record of a prerequisite with a scope property (consent: ``itkg:scopeProperty
  itkg:coversTherapy``) may only name, in that property, a class that requires the prerequisite
  (``itkg:requiresPrerequisite``: ``itkg:IntrathecalTherapy``) or a subclass of one;
* a prior treatment's ``itkg:hasOutcome`` is an individual of the property's range
  (``itkg:TreatmentOutcome``): the members of its ``owl:oneOf`` and the individuals typed with it.

The values are spelled out as ``sh:in`` lists, SHACL Core, so pySHACL, Jena and pyshacl-turbo give
the same results and the validation batches stay independent (:mod:`itkg.partition`). Patient data
cannot widen the lists: they are read from the ontology and the extensions only.

:data:`GENERATED` names every generated shapes file and its generator, for ``python -m itkg.build``
and for :func:`itkg.validation.shapes_graph`, which makes them anew when extension files are given.
"""

from __future__ import annotations

from collections.abc import Callable

import rdflib
from rdflib.collection import Collection
from rdflib.namespace import OWL, RDF, RDFS

from . import rulegen, vocab
from .knowledge import Knowledge, Prerequisite

_HEAD = """\
# SHACL shapes for values a record must take from the ontology's vocabulary (contract 1.1 §6).
#
{note}
#
# - a record of a prerequisite with a scope property (an informed consent record and itkg:coversTherapy)
#   names only classes that require the prerequisite (itkg:requiresPrerequisite) or their subclasses: a
#   consent to an oral drug, or to an IRI the ontology does not know, covers no intrathecal therapy;
# - a prior treatment's itkg:hasOutcome is one of the individuals of the property's range.
# SHACL Core sh:in lists, spelled out from the ontology and the extension files (never from patient
# data), so every SHACL engine gives the same results. The focus node of each result is the record; the
# patient is the subject of the link that points to it (itkg validate names it).

@prefix itkg: <https://w3id.org/itkg/> .
@prefix itkgsh: <https://w3id.org/itkg/shapes/> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix sh: <http://www.w3.org/ns/shacl#> .
"""


def _listed(items: list[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def scope_classes(k: Knowledge, p: Prerequisite) -> tuple[list[str], list[str]]:
    """The classes that require ``p`` (the roots), and every class below one of them (sorted)."""
    roots = sorted(therapy for therapy, found in k.prerequisites.items() if any(x.iri == p.iri for x in found))
    below = {str(c) for c in k.graph.subjects(RDFS.subClassOf) if isinstance(c, rdflib.URIRef)}
    kinds = sorted(c for c in below if c not in roots and k.ancestors(c) & set(roots))
    return roots, kinds


def outcome_values(k: Knowledge) -> list[str]:
    """The individuals of the range of ``itkg:hasOutcome``: its ``owl:oneOf`` members in their
    order, then any other individual typed with it (a site's own outcome), sorted."""
    found: list[str] = []
    for outcome_class in k.graph.objects(rdflib.URIRef(vocab.HAS_OUTCOME), RDFS.range):
        for equivalent in k.graph.objects(outcome_class, OWL.equivalentClass):
            members = k.graph.value(equivalent, OWL.oneOf)
            if members is not None:
                found += [str(m) for m in Collection(k.graph, members) if str(m) not in found]
        found += sorted(str(s) for s in k.graph.subjects(RDF.type, outcome_class)
                        if isinstance(s, rdflib.URIRef) and str(s) not in found)
    return found


def _scope_shape(k: Knowledge, p: Prerequisite) -> str:
    assert p.scope is not None
    name = rulegen._local(p.iri).removesuffix("Prerequisite") or rulegen._local(p.iri)
    record = k.label(p.record_class) if p.record_class else k.label(p.link)
    roots, kinds = scope_classes(k, p)
    allowed = _listed([k.label(r) for r in roots])
    message = (f"The {record} record names a therapy it covers that is not {allowed}"
               + (f" or one of its kinds ({', '.join(k.label(c) for c in kinds)})." if kinds else "."))
    targets = (f"  sh:targetClass {rulegen.term(p.record_class)} ;\n" if p.record_class else "") \
        + f"  sh:targetObjectsOf {rulegen.term(p.link)} ;\n"
    return f'''
itkgsh:{name}ScopeShape a sh:NodeShape ;
  rdfs:label {rulegen._string(f"{record} record covers a therapy that needs it")}@en ;
  rdfs:comment {rulegen._string(f"Every {record} record names, in {rulegen.term(p.scope)}, only {allowed} or its subclasses: the therapies that require the {p.label}.")}@en ;
{targets}  sh:severity sh:Violation ;
  sh:property itkgsh:{name}ScopeValueShape .

itkgsh:{name}ScopeValueShape a sh:PropertyShape ;
  rdfs:label {rulegen._string(f"{record} covers a known therapy")}@en ;
  rdfs:comment {rulegen._string(f"The value of {rulegen.term(p.scope)} is {allowed} or a subclass of it in the ontology or an extension file.")}@en ;
  sh:path {rulegen.term(p.scope)} ;
  sh:in ( {" ".join(rulegen.term(c) for c in roots + kinds)} ) ;
  sh:severity sh:Violation ;
  sh:message {rulegen._string(message)}@en .
'''


def _outcome_shape(k: Knowledge) -> str:
    values = outcome_values(k)
    if not values:
        return ""
    message = f"The prior treatment records an outcome other than {_listed([k.label(v) for v in values])}."
    return f'''
itkgsh:TreatmentOutcomeVocabularyShape a sh:NodeShape ;
  rdfs:label "prior treatment outcome from the vocabulary"@en ;
  rdfs:comment "Every prior treatment records its outcome as one of the treatment outcomes of the ontology."@en ;
  sh:targetObjectsOf itkg:receivedTreatment ;
  sh:severity sh:Violation ;
  sh:property itkgsh:TreatmentOutcomeValueShape .

itkgsh:TreatmentOutcomeValueShape a sh:PropertyShape ;
  rdfs:label "known treatment outcome"@en ;
  rdfs:comment "The outcome of a prior treatment is one of the individuals of itkg:TreatmentOutcome."@en ;
  sh:path itkg:hasOutcome ;
  sh:in ( {" ".join(rulegen.term(v) for v in values)} ) ;
  sh:severity sh:Violation ;
  sh:message {rulegen._string(message)}@en .
'''


def vocabulary_shapes(k: Knowledge) -> str:
    """The text of ``shapes/vocabulary.ttl``."""
    note = "\n".join(f"# {line}" for line in rulegen.NOTE.splitlines())
    scoped = [p for p in k.all_prerequisites() if p.complete and p.scope]
    return _HEAD.format(note=note) + "".join(_scope_shape(k, p) for p in scoped) + _outcome_shape(k)


#: Every generated file of ``shapes/`` and the function that writes it.
GENERATED: dict[str, Callable[[Knowledge], str]] = {
    "planned-therapy.ttl": rulegen.planned_therapy_shapes,
    "vocabulary.ttl": vocabulary_shapes,
}
