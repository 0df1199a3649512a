"""FHIR R4 in, clinical standards out (contract part 2, ``fhir.md``).

- :mod:`itkg.fhir.rules`: the resource-to-fact mapping of fhir.md §2, in one module;
- :mod:`itkg.fhir.reader`: files, Bundles, NDJSON and Bulk directories into §2 triples;
- :mod:`itkg.fhir.hook`: how every loader takes FHIR files beside RDF ones;
- :mod:`itkg.fhir.convert`: ``itkg convert``, the mapped graph as Turtle or N-Triples.
"""

from .reader import DEFAULT_BASE, FhirGraph, FhirReader, FhirReport, is_fhir, read

__all__ = ["DEFAULT_BASE", "FhirGraph", "FhirReader", "FhirReport", "is_fhir", "read"]
