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

#: Every back-end, one vocabulary (``--engine``, ``engine=``, :mod:`itkg.backends`, the docs): its
#: name and its kind. A *decision* back-end decides eligibility (contract §3) and implements
#: :class:`itkg.backends.DecisionBackend`; a *validation* back-end judges the shapes (§4) and
#: implements :class:`itkg.backends.ValidationBackend`. Every back-end of a kind gives the same
#: results and the same evidence text.
#: ``native`` names itkg's own engine of each kind: the rule engine (decision) and the SHACL engine
#: (validation, :mod:`itkg.native_shacl`).
BACKENDS: dict[str, tuple[str, ...]] = {
    "native": ("decision", "validation"), "rdflib": ("decision",), "oxigraph": ("decision",),
    "endpoint": ("decision",), "pyshacl": ("validation",), "jena": ("validation",), "turbo": ("validation",),
}

#: The decision back-ends: the native rule engine, or the contract's SPARQL queries in rdflib, in
#: Oxigraph or on a remote endpoint.
DECISION_BACKENDS: tuple[str, ...] = tuple(n for n, kinds in BACKENDS.items() if "decision" in kinds)

#: The decision back-ends chosen by name (``--engine``); ``endpoint`` is chosen by giving its URL.
LOCAL_DECISION_BACKENDS: tuple[str, ...] = tuple(n for n in DECISION_BACKENDS if n != "endpoint")

#: The decision back-ends that run SPARQL locally (``itkg query``).
SPARQL_BACKENDS: tuple[str, ...] = tuple(n for n in LOCAL_DECISION_BACKENDS if n != "native")

#: The validation back-ends; ``turbo`` is pyshacl-turbo (the optional extra ``itkg[turbo]``),
#: ``native`` itkg's own SHACL engine (:mod:`itkg.native_shacl`).
#: (``native`` last: the validation engines in the order they came.)
VALIDATION_BACKENDS: tuple[str, ...] = tuple(
    n for n, kinds in BACKENDS.items() if "validation" in kinds and n != "native") + ("native",)

#: What ``validate --engine`` accepts: a validation back-end, or ``auto`` (itkg picks by size and
#: by what is installed; :func:`itkg.validation.engine_for`).
VALIDATION_CHOICES: tuple[str, ...] = ("auto", *VALIDATION_BACKENDS)

#: The earlier name of :data:`VALIDATION_CHOICES` (kept for callers of 0.x).
SHACL_BACKENDS = VALIDATION_CHOICES

#: How queries are POSTed to an endpoint: ``direct`` (``application/sparql-query``), ``form``
#: (URL-encoded), or ``auto`` (direct if the server answers it).
ENDPOINT_METHODS: tuple[str, ...] = ("auto", "direct", "form")

#: Rows shown per list in the HTML report (beyond: a note, and every row in a CSV beside it).
DEFAULT_MAX_LISTED = 2000

#: Patients whose full explanation the HTML report includes.
DEFAULT_MAX_DETAILS = 300

#: Java heap for HermiT (``itkg reason``), in MB. 10,000 patients needed 1.1 GB; this leaves
#: room for the largest cohort it accepts.
DEFAULT_JAVA_MEMORY_MB = 4096
