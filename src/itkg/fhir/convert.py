"""``itkg convert``: patient files (FHIR or RDF) written as one §2 graph in Turtle or N-Triples.

The mapped graph can then be loaded into any SPARQL server or opened beside the ontology in
Protégé. Each record keeps its FHIR resource: the record's IRI is the resource's, and
``dcterms:identifier`` gives its ``Type/id`` (``rdfs:seeAlso`` its ``urn:uuid:`` fullUrl, if any).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pyoxigraph as ox

from ..errors import InputError
from ..loading import load
from ..safeio import atomic_write
from . import hook

#: Output formats by file extension.
OUTPUT_FORMATS = {".ttl": ox.RdfFormat.TURTLE, ".turtle": ox.RdfFormat.TURTLE,
                  ".nt": ox.RdfFormat.N_TRIPLES, ".ntriples": ox.RdfFormat.N_TRIPLES}
PREFIXES = {"itkg": "https://w3id.org/itkg/", "dcterms": "http://purl.org/dc/terms/",
            "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
            "xsd": "http://www.w3.org/2001/XMLSchema#", "sct": "http://snomed.info/id/",
            "icd10cm": "http://purl.bioontology.org/ontology/ICD10CM/",
            "rxnorm": "http://purl.bioontology.org/ontology/RXNORM/",
            "atc": "http://purl.bioontology.org/ontology/ATC/"}


def output_format(path: Path) -> ox.RdfFormat:
    """The RDF format of an output file, by its extension (.ttl or .nt)."""
    try:
        return OUTPUT_FORMATS[path.suffix.lower()]
    except KeyError:
        raise InputError(path, "unknown output type; use .ttl or .nt") from None


def convert(sources: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str] | None = None, *,
            fmt: ox.RdfFormat | None = None, input_format: str | None = None,
            mappings: Sequence[str | os.PathLike[str]] = (), fhir_base: str | None = None,
            strict: bool = False) -> bytes:
    """The patient graph of ``sources`` (FHIR and RDF alike) serialised; written atomically to
    ``output`` when given (never over an input). Returns the bytes.

    :param fmt: Turtle or N-Triples; by default from ``output``'s extension (Turtle without one).
    """
    target = Path(output) if output is not None else None
    rdf_format = fmt or (output_format(target) if target is not None else ox.RdfFormat.TURTLE)
    with hook.configured(mappings=mappings, base=fhir_base, strict=strict):
        data = load(list(sources), input_format=input_format)
    triples = sorted(data.triples, key=lambda t: (str(t.subject), str(t.predicate), str(t.object)))
    if rdf_format == ox.RdfFormat.TURTLE:
        text = ox.serialize(triples, format=rdf_format, prefixes=PREFIXES) or b""
    else:
        text = ox.serialize(triples, format=rdf_format) or b""
    if target is not None:
        atomic_write(target, text, protect=_protected(sources))
    return text


def _protected(sources: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The input files (a Bulk directory's files too), which the output may never replace."""
    paths: list[Path] = []
    for raw in sources:
        path = Path(raw)
        paths += sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    return paths
