"""The names the API and the command line share, defined once: input formats, back-ends and the
report's limits.

Pure data with no imports, so that the command line can build its options (``itkg --help``)
without loading rdflib, pySHACL, owlready2, httpx or pyoxigraph.
"""

from __future__ import annotations

#: Input format names (``--input-format``, ``input_format=``).
INPUT_FORMATS: tuple[str, ...] = ("turtle", "ntriples", "jsonld", "rdfxml")

#: File name extensions and the input format each means.
EXTENSIONS: dict[str, str] = {
    ".ttl": "turtle", ".turtle": "turtle", ".nt": "ntriples", ".ntriples": "ntriples",
    ".jsonld": "jsonld", ".json": "jsonld", ".rdf": "rdfxml", ".owl": "rdfxml", ".xml": "rdfxml",
}

#: Back-ends that decide eligibility: the native rule engine, or the contract's SPARQL queries
#: in one of the SPARQL back-ends. (A remote endpoint is chosen by giving its URL instead.)
BACKENDS: tuple[str, ...] = ("native", "rdflib", "oxigraph")

#: The back-ends that run SPARQL locally (``itkg query``; eligibility through the queries).
SPARQL_BACKENDS: tuple[str, ...] = ("rdflib", "oxigraph")

#: SHACL back-ends for validation; ``auto`` picks Jena for large inputs when it is installed;
#: ``turbo`` is pyshacl-turbo (the optional extra ``itkg[turbo]``).
SHACL_BACKENDS: tuple[str, ...] = ("auto", "pyshacl", "jena", "turbo")

#: How queries are POSTed to an endpoint: ``direct`` (``application/sparql-query``), ``form``
#: (URL-encoded), or ``auto`` (direct if the server answers it).
ENDPOINT_METHODS: tuple[str, ...] = ("auto", "direct", "form")

#: Rows shown per list in the HTML report (beyond: a note, and every row in a CSV beside it).
DEFAULT_MAX_LISTED = 2000

#: Patients whose full explanation the HTML report includes.
DEFAULT_MAX_DETAILS = 300
