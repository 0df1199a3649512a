"""Reasoning on demand: classify patients into the indication classes with HermiT.

The ontology states each indication's open-world part (a condition plus a failed prior treatment)
as an OWL defined class, linked from the indication by ``itkg:patientClass``. :func:`reason` asks
HermiT which patients fall into those classes, whether the data is consistent and whether any class
is unsatisfiable; :func:`agreement` compares HermiT's answer with the rule engine's (SPARQL) rows,
so that a drift between the defined classes and the indication facts shows up.

HermiT runs through owlready2, which is unsafe to call directly on patient data: it follows
``owl:imports`` over the network even with ``only_local=True``, leaves a copy of the whole world in
``$TMPDIR`` when the data is inconsistent, has no timeout and asks Java for a fixed 2 GB heap (see
docs/reasoning.md). So :func:`reason` strips every ``owl:imports`` triple, and runs owlready2 in a
child process (:mod:`itkg._hermit_worker`) in its own session, with a private temporary
directory as working directory, ``TMPDIR`` and ``java.io.tmpdir``, a deadline after which the whole
process group (Python and Java) is killed, and an explicit heap size. The private directory is
removed whatever happens.

HermiT is a tableau reasoner over the whole ABox: it is meant for cohorts, not populations (44 s
and 1.1 GB for 10,000 patients when the issue was filed; docs/reasoning.md has more figures), hence
``max_patients``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rdflib
from rdflib import OWL, RDF, RDFS, XSD, BNode, Graph, Literal, URIRef

from itkg import _hermit_worker, names, processes, resources, vocab
from itkg._hermit_worker import exception_names
from itkg.errors import ReasonerError
from itkg.loading import node_id

#: Properties whose subject is a patient (each has ``rdfs:domain itkg:Patient``).
PATIENT_LINKS = tuple(URIRef(p) for p in (vocab.HAS_CONDITION, vocab.RECEIVED_TREATMENT,
                                          vocab.HAS_CONSENT, vocab.HAS_CSF_ASSESSMENT,
                                          vocab.PLANNED_THERAPY))
_PATIENT = URIRef(vocab.PATIENT)
_PATIENT_CLASS = URIRef(vocab.ITKG + "patientClass")

#: The OWL 2 datatype map (OWL 2 Structural Specification §4) plus rdf:langString. HermiT rejects
#: literals of any other datatype, xsd:date among them.
OWL2_DATATYPES = frozenset({
    OWL.real, OWL.rational, RDF.PlainLiteral, RDF.XMLLiteral, RDF.langString, RDFS.Literal,
    XSD.decimal, XSD.integer, XSD.nonNegativeInteger, XSD.nonPositiveInteger,
    XSD.positiveInteger, XSD.negativeInteger, XSD.long, XSD.int, XSD.short, XSD.byte,
    XSD.unsignedLong, XSD.unsignedInt, XSD.unsignedShort, XSD.unsignedByte,
    XSD.double, XSD.float, XSD.string, XSD.normalizedString, XSD.token, XSD.language,
    XSD.Name, XSD.NCName, XSD.NMTOKEN, XSD.boolean, XSD.hexBinary, XSD.base64Binary,
    XSD.anyURI, XSD.dateTime, XSD.dateTimeStamp,
})

#: Blank nodes that are patient-data individuals are renamed to these IRIs before HermiT sees them
#: (HermiT reports no classification for anonymous individuals) and mapped back afterwards.
_SKOLEM_PREFIX = "urn:x-itkg:node:"

#: Namespaces of the OWL/RDF(S) vocabulary: a blank node only used with these is part of an axiom
#: (a restriction, a list), not an individual, and must stay blank.
_VOCABULARY = (str(RDF), str(RDFS), str(OWL))

#: Runs the worker file without importing the itkg package (and rdflib, pyshacl, pyoxigraph with
#: it): the worker needs only owlready2, and this saves about a second per call.
_BOOTSTRAP = "import runpy, sys; runpy.run_path(sys.argv.pop(1), run_name='__main__')"

#: Java heap for HermiT (defined in :mod:`itkg.names`, beside the API's other defaults).
DEFAULT_JAVA_MEMORY_MB = names.DEFAULT_JAVA_MEMORY_MB


@dataclass(frozen=True)
class ReasoningReport:
    """What HermiT concluded about a set of patient graphs.

    ``consistent`` is False when the ontology and the patients together are contradictory; then
    nothing else HermiT could say is meaningful and ``memberships`` is empty. ``unsatisfiable``
    lists the classes that can have no member (a modelling error). ``memberships`` maps every
    patient (its IRI, or ``"_:id"`` for a blank node, as elsewhere in itkg) to the indications
    whose defined patient class HermiT put it in, sorted; a patient meeting none maps to ``()``.
    ``patients`` counts the patients found; ``elapsed_seconds`` is the wall time of the whole call,
    Java start-up included.
    """

    consistent: bool
    unsatisfiable: tuple[str, ...]
    memberships: dict[str, tuple[str, ...]] = field(hash=False)
    patients: int
    elapsed_seconds: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready rendering (lists instead of tuples).

        >>> ReasoningReport(True, (), {"_:b0": ()}, 1, 1.23456).to_dict()["elapsed_seconds"]
        1.235
        """
        return {
            "consistent": self.consistent,
            "unsatisfiable": list(self.unsatisfiable),
            "memberships": {p: list(i) for p, i in self.memberships.items()},
            "patients": self.patients,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
        }


@dataclass(frozen=True, order=True)
class Disagreement:
    """One (patient, indication) pair that only one side found.

    ``found_by`` is ``"reasoner"`` when HermiT classified the patient into the indication's class
    but the rules gave no row, and ``"rules"`` for the opposite.
    """

    patient: str
    indication: str
    found_by: typing.Literal["reasoner", "rules"]

    def to_dict(self) -> dict[str, str]:
        """A JSON-ready rendering."""
        return {"patient": self.patient, "indication": self.indication, "found_by": self.found_by}


def patient_nodes(graph: Graph) -> set[rdflib.term.Node]:
    """Nodes typed ``itkg:Patient`` or used as the subject of a patient link property."""
    found = set(graph.subjects(RDF.type, _PATIENT))
    for link in PATIENT_LINKS:
        found.update(graph.subjects(link, None))
    return found


#: Individuals (distinct subjects) allowed per patient of ``max_patients``: a patient with a
#: condition, a treatment, a consent and a CSF assessment is 5; the rest is headroom.
INDIVIDUALS_PER_PATIENT = 10


def reason(patients: Graph, *, ontology: Graph | None = None, timeout: float = 300.0,
           max_patients: int = 20_000,
           java_memory_mb: int = DEFAULT_JAVA_MEMORY_MB) -> ReasoningReport:
    """Run HermiT over the ontology and ``patients`` and report consistency and memberships.

    ``ontology`` defaults to itkg's own. Neither graph is modified. Before HermiT sees them:

    - every ``owl:imports`` triple is removed from both graphs: nothing is fetched, ever;
    - triples whose object is a literal with a datatype outside the OWL 2 datatype map are dropped
      (HermiT refuses them). These are the ``xsd:date`` consent and assessment dates: closed-world
      data that the SHACL shapes and the SPARQL rules use and the defined classes do not;
    - blank nodes used as individuals are given temporary IRIs and mapped back in the report.

    An inconsistent input is a result (``consistent=False``), not an error. Raises
    :class:`~itkg.errors.ReasonerError` when there are more than ``max_patients`` patients (raise
    the limit if you have the time and the heap), when a literal is ill-typed, when Java is
    missing, when HermiT fails (a summary, never its output) or does not finish within ``timeout``
    seconds; Java and its parent are then killed. ``java_memory_mb`` is the Java heap (``-Xmx``).
    """
    started = time.monotonic()
    ontology = ontology if ontology is not None else Graph().parse(resources.ontology_path())
    patient_set = patient_nodes(patients)
    if len(patient_set) > max_patients:
        raise ReasonerError(
            f"{len(patient_set)} patients exceed the reasoning limit of {max_patients}: HermiT is "
            "for cohorts, not populations (it took 44 s and 1.1 GB for 10,000 patients). Use "
            "`itkg eligibility` for whole populations, or raise max_patients deliberately.")
    # HermiT's work grows with every individual, not only with patients: records that hang off
    # patients, and individuals linked to no patient at all, count against the limit too.
    described = len(set(patients.subjects()))
    if described > max_patients * INDIVIDUALS_PER_PATIENT:
        raise ReasonerError(
            f"{described} individuals (patients, their records and anything else described) "
            f"exceed the reasoning limit of {max_patients * INDIVIDUALS_PER_PATIENT} "
            f"({INDIVIDUALS_PER_PATIENT} per allowed patient): use `itkg eligibility`, or raise "
            "max_patients deliberately.")
    classes = _patient_classes(ontology)
    skolem: dict[BNode, URIRef] = {}
    individuals = _individual_bnodes(patients)
    with tempfile.TemporaryDirectory(prefix="itkg-reason-") as job:
        job_dir = Path(job)
        # The worker starts first, so that from the first byte of patient data on, someone
        # removes the folder if this process dies (see _start_worker).
        process = _start_worker(job_dir)
        try:
            _write_nt(_handover(ontology, set(), skolem), job_dir / "ontology.nt")
            _write_nt(_handover(patients, individuals, skolem), job_dir / "patients.nt")
            (job_dir / "job.json").write_text(json.dumps(
                {"java_memory_mb": int(java_memory_mb), "classes": sorted(classes)}), encoding="utf-8")
        except BaseException:
            processes.kill(process, group=True)
            process.communicate()
            raise
        result = _run_worker(process, job_dir, timeout)
    if result["status"] == "inconsistent":
        return ReasoningReport(False, (), {}, len(patient_set), time.monotonic() - started)
    back = {str(iri): node_id(bnode) for bnode, iri in skolem.items()}
    memberships: dict[str, set[str]] = {node_id(p): set() for p in patient_set}
    for class_iri, members in result["members"].items():
        for member in members:
            memberships.setdefault(back.get(member, member), set()).update(classes[class_iri])
    return ReasoningReport(
        consistent=True,
        unsatisfiable=tuple(result["unsatisfiable"]),
        memberships={p: tuple(sorted(memberships[p])) for p in sorted(memberships)},
        patients=len(patient_set),
        elapsed_seconds=time.monotonic() - started,
    )


def agreement(report: ReasoningReport,
              indicated: Iterable[tuple[str, str]]) -> list[Disagreement]:
    """Compare HermiT's memberships with (patient, indication) pairs the rules found.

    ``indicated`` are the pairs of the eligibility rows, whatever their status (the defined
    classes leave consent and CSF out). Returns the pairs only one side has, sorted; an empty list
    means the two agree. Raises :class:`~itkg.errors.ReasonerError` for an inconsistent report,
    whose empty memberships say nothing.

    >>> r = ReasoningReport(True, (), {"p": ("I1",), "q": ()}, 2, 0.0)
    >>> agreement(r, [("p", "I1"), ("q", "I2")])
    [Disagreement(patient='q', indication='I2', found_by='rules')]
    """
    if not report.consistent:
        raise ReasonerError("cannot compare with the rules: HermiT found the input inconsistent")
    by_reasoner = {(p, i) for p, inds in report.memberships.items() for i in inds}
    by_rules = {(str(p), str(i)) for p, i in indicated}
    return sorted([Disagreement(p, i, "reasoner") for p, i in by_reasoner - by_rules]
                  + [Disagreement(p, i, "rules") for p, i in by_rules - by_reasoner])


def _patient_classes(ontology: Graph) -> dict[str, set[str]]:
    """Defined patient class IRI -> the indications that name it with ``itkg:patientClass``."""
    classes: dict[str, set[str]] = {}
    for indication, cls in ontology.subject_objects(_PATIENT_CLASS):
        classes.setdefault(str(cls), set()).add(str(indication))
    return classes


def _individual_bnodes(graph: Graph) -> set[BNode]:
    """Blank nodes used as individuals: with a non-vocabulary property, or typed with a
    non-vocabulary class. Blank nodes of OWL axioms (restrictions, lists) stay untouched."""
    found: set[BNode] = set()
    for s, p, o in graph:
        if p == RDF.type:
            if isinstance(s, BNode) and not str(o).startswith(_VOCABULARY):
                found.add(s)
        elif not str(p).startswith(_VOCABULARY):
            found.update(n for n in (s, o) if isinstance(n, BNode))
    return found


def _handover(graph: Graph, individuals: set[BNode], skolem: dict[BNode, URIRef]) -> Graph:
    """The copy of ``graph`` HermiT gets: no imports, no literals it rejects, individuals named."""
    def name(node: Any) -> Any:
        if node in individuals:
            if node not in skolem:
                skolem[node] = URIRef(f"{_SKOLEM_PREFIX}{len(skolem)}")
            return skolem[node]
        return node

    out = Graph()
    for s, p, o in graph:
        if p == OWL.imports:
            continue
        if isinstance(o, Literal):
            if o.datatype is not None and o.datatype not in OWL2_DATATYPES:
                continue
            if o.ill_typed:
                raise ReasonerError("the input has an ill-typed literal, which HermiT cannot "
                                    "read; `itkg validate` reports where")
        out.add((name(s), p, name(o)))
    return out


def _write_nt(graph: Graph, path: Path) -> None:
    """N-Triples, the one syntax both owlready2 and HermiT read without a network fetch."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        graph.serialize(handle, format="nt", encoding="utf-8")


def _child_env(job_dir: Path) -> dict[str, str]:
    """The worker's environment: every temporary file, Python's and Java's, in ``job_dir``."""
    env = dict(os.environ)
    for var in ("TMPDIR", "TEMP", "TMP"):
        env[var] = str(job_dir)
    # No hsperfdata file in /tmp (it outlives a killed JVM); Java's own temp files in job_dir.
    java_opts = "-XX:-UsePerfData"
    if not any(c.isspace() for c in str(job_dir)):  # the variable is split at white space
        java_opts += f" -Djava.io.tmpdir={job_dir}"
    env["JAVA_TOOL_OPTIONS"] = f"{env.get('JAVA_TOOL_OPTIONS', '')} {java_opts}".strip()
    return env


def _start_worker(job_dir: Path) -> subprocess.Popen[bytes]:
    """Start the HermiT worker on ``job_dir``; it waits for "go" on its standard input.

    It runs in its own session (so that Java, which owlready2 starts, is in its process group)
    and gets ``SIGTERM`` if this process dies, even by ``SIGKILL``: it then removes ``job_dir``
    and kills its process group (itself and Java). So neither HermiT nor the patient data
    outlives itkg.
    """
    return processes.popen(
        [sys.executable, "-c", _BOOTSTRAP, _hermit_worker.__file__, str(job_dir), str(os.getpid())],
        new_session=True, parent_death_signal=signal.SIGTERM, cwd=job_dir, env=_child_env(job_dir),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _run_worker(process: subprocess.Popen[bytes], job_dir: Path, timeout: float) -> Mapping[str, Any]:
    """Let the worker go on ``job_dir`` under the deadline and return its parsed result."""
    try:
        output, _ = process.communicate(_hermit_worker.GO, timeout=timeout)
    except subprocess.TimeoutExpired:
        processes.kill(process, group=True)
        process.communicate()
        raise ReasonerError(f"reasoning did not finish within {timeout:g} s; give a longer "
                            "timeout or reason over fewer patients") from None
    except BaseException:
        processes.kill(process, group=True)
        process.communicate()
        raise
    result_file = job_dir / "result.json"
    if process.returncode != 0 or not result_file.is_file():
        processes.kill(process, group=True)  # a crashed worker may have left Java running
        names = exception_names(output.decode("utf-8", "replace"))
        raise ReasonerError(f"the HermiT worker stopped with exit status {process.returncode}"
                            + (f" ({', '.join(names)})" if names else ""))
    result = json.loads(result_file.read_text(encoding="utf-8"))
    if result["status"] == "error":
        raise ReasonerError(_error_message(result["kind"], result["names"]))
    return result


def _error_message(kind: str, names: list[str]) -> str:
    """A patient-free sentence for a worker error."""
    if kind == "java-missing":
        return ("Java was not found: HermiT needs a Java runtime (11 or later) on PATH, "
                "e.g. `apt-get install default-jre-headless`")
    detail = f" ({', '.join(names)})" if names else ""
    if kind == "unreadable":
        return f"owlready2 could not read the graphs handed to it{detail}"
    if any(n.endswith("OutOfMemoryError") for n in names):
        return f"HermiT ran out of Java heap{detail}; give a larger java_memory_mb"
    return f"HermiT failed{detail}; its output is withheld because it may quote patient data"
