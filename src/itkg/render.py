"""Rendering results for people and programs: tables, JSON, CSV, text and RDF (Turtle with PROV-O).

Every renderer returns the whole output as one string, so that the command line can write it
atomically (all or nothing) to a file or print it. The eligibility JSON, the one output that
reaches hundreds of megabytes, can also be had as a stream of chunks
(:func:`eligibility_json_chunks`) that :func:`itkg.safeio.atomic_write` writes to its temporary
file one by one, so that no full copy of the text is ever held.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import re
import shutil
import uuid
from json.encoder import encode_basestring as _json_string
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import pyoxigraph as ox

from .knowledge import Knowledge
from .lazyimport import lazy
from .loading import Source, node_id, to_oxigraph_triple
from .results import EligibilityResult, PatientExplanation
from .termsafe import printable

# rich is imported by the tables and texts that use it (JSON and CSV output do not), and the
# validation and query results' modules only for their types (pySHACL comes with the first).
if TYPE_CHECKING:
    import rdflib
    from rich.console import Console

    from .reasoning import Disagreement, ReasoningReport
    from .sparql import QueryResult
    from .validation import ValidationReport
else:  # imported when first used (itkg.lazyimport): JSON and CSV output need no rdflib
    rdflib = lazy("rdflib", globals())

_ITKG = "https://w3id.org/itkg/"
_STATUS_STYLE = {"qualifies": "bold green", "pending": "yellow", "excluded": "bold red"}


def _short(iri: str) -> str:
    return "itkg:" + iri[len(_ITKG):] if iri.startswith(_ITKG) else iri


def _console(color: bool, width: int | None = None, wrap: bool = True) -> tuple[Console, io.StringIO]:
    """A console writing into a string: as wide as the terminal (``COLUMNS``, else the terminal
    standard output is, else 160 columns for files and pipes)."""
    from rich.console import Console
    buffer = io.StringIO()
    width = width or shutil.get_terminal_size((160, 24)).columns
    console = Console(file=buffer, force_terminal=color, no_color=not color, width=width,
                      highlight=False, soft_wrap=not wrap)
    return console, buffer


def table(columns: Sequence[str], rows: Iterable[Sequence[str]], *, color: bool = False,
          styles: dict[str, str] | None = None, title: str | None = None) -> str:
    """A readable table; ``color`` adds ANSI colours (only when writing to a terminal)."""
    from rich.table import Table
    console, buffer = _console(color)
    grid = Table(*[printable(c) for c in columns], title=title, show_lines=False, header_style="bold")
    for row in rows:
        grid.add_row(*[f"[{styles[c]}]{c}[/]" if styles and c in styles and color else
                       printable(c).replace("[", "\\[") for c in row])
    console.print(grid)
    return buffer.getvalue()


#: A cell a spreadsheet would run as a formula: it starts (or a line in it starts) with one of
#: these. OWASP's list; a CR or tab before them is skipped by some spreadsheets.
_FORMULA = re.compile(r"(^|[\r\n])(?=[=+\-@\t\r])")
#: A plain number (``-5``, ``+1.5e3``) is no formula, and keeps its sign.
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
#: The first characters :data:`_FORMULA` looks for (a cell that starts otherwise and holds no
#: line break is left as it is, without a regular expression: most cells, an IRI or a code).
_FORMULA_START = frozenset("=+-@\t\r")
#: A field that must be quoted.
_QUOTED = re.compile(r'[,"\r\n]')


def csv_cell(value: str) -> str:
    r"""``value`` made safe for a spreadsheet: a ``'`` before a leading ``=``, ``+``, ``-``, ``@``,
    tab or carriage return (and before one that starts a line inside the cell), so that opening
    the CSV never runs a formula such as ``=HYPERLINK(...)`` planted in patient data. Plain
    numbers are left alone.

    >>> [csv_cell(v) for v in ["=1+2", "-5", "@SUM(A1)", "Zoe", "a\r=cmd()"]]
    ["'=1+2", '-5', "'@SUM(A1)", 'Zoe', "a\r'=cmd()"]
    """
    if not value or value[0] not in _FORMULA_START and "\n" not in value and "\r" not in value:
        return value
    if _NUMBER.fullmatch(value):
        return value
    return _FORMULA.sub(r"\1'", value)


def _csv_field(value: str) -> str:
    # Python's csv writer leaves a bare CR unquoted when the line terminator is "\n"; quote it.
    if _QUOTED.search(value):
        return '"' + value.replace('"', '""') + '"'
    return value


def _csv_row(cells: Sequence[str]) -> str:
    if len(cells) == 1 and not cells[0]:
        return '""\n'  # as the csv module writes it: an empty line would read as no row
    return ",".join(_csv_field(csv_cell(c)) for c in cells) + "\n"


def csv_text(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """CSV (RFC 4180 quoting, every CR and LF inside a quoted field) with every cell passed
    through :func:`csv_cell`."""
    return _csv_row(columns) + "".join(_csv_row(row) for row in rows)


# -- eligibility ---------------------------------------------------------------------------------


def eligibility_json(results: Sequence[EligibilityResult]) -> str:
    """The contract's JSON object: ``{"results": [...]}``, exactly as
    ``json.dumps({"results": [r.to_dict() for r in results]}, indent=1, ensure_ascii=False) + "\\n"``
    writes it (see :func:`eligibility_json_chunks` for why it is not written that way).

    >>> row = EligibilityResult("urn:p1", "urn:t", "urn:i", "pending", ("csf-circulation",), ("fait \u00e0 \\"Paris\\"",))
    >>> print(eligibility_json([row]), end="")
    {
     "results": [
      {
       "patient": "urn:p1",
       "therapy": "urn:t",
       "indication": "urn:i",
       "status": "pending",
       "unmet": [
        "csf-circulation"
       ],
       "evidence": [
        "fait \u00e0 \\"Paris\\""
       ]
      }
     ]
    }
    """
    return "".join(eligibility_json_chunks(results))


_JSON_ROWS_PER_CHUNK = 2048  # about 1 MB of text per chunk: few writes, little memory


def eligibility_json_chunks(results: Sequence[EligibilityResult]) -> Iterator[str]:
    """:func:`eligibility_json` in pieces of a couple of thousand rows, whose concatenation is
    byte for byte what ``json.dumps(..., indent=1, ensure_ascii=False)`` gives.

    Why not ``json.dumps``: with an indent, the standard library falls back to its pure-Python
    encoder, which walks the ~730,000 rows of a million patients as dictionaries built only for
    it (``to_dict``) and yields some ten million tiny strings; that cost ~12 s of the 60 s
    budget. Here the layout of a row is fixed, so each row is one f-string whose strings are
    quoted by the same C function ``json.dumps`` uses when ``ensure_ascii=False``
    (``json.encoder.encode_basestring``: it escapes only ``"``, ``\\`` and control characters
    and leaves every other character, lone surrogates included, as it is; the caller's UTF-8
    encoding then refuses the surrogates, as before). Therapy, indication, status and the list
    of unmet prerequisites take a handful of values, so each is quoted once.
    ``tests/test_render.py`` checks the equality against ``json.dumps`` on adversarial strings.

    Why chunks: the command line writes them to its temporary file one at a time, so no copy of
    the whole (multi-hundred-megabyte) text is ever built. Every field must be a ``str`` (as
    :class:`EligibilityResult` declares), else ``TypeError``: never silently different output.
    """
    if not results:
        yield '{\n "results": []\n}\n'
        return
    quote = _json_string
    quoted: dict[str, str] = {}
    quoted_lists: dict[tuple[str, ...], str] = {}

    def once(text: str) -> str:
        out = quoted.get(text)
        if out is None:
            out = quoted[text] = quote(text)
        return out

    def json_list(items: Sequence[str]) -> str:
        return "[\n    " + ",\n    ".join(map(quote, items)) + "\n   ]" if items else "[]"

    def list_once(items: tuple[str, ...]) -> str:
        out = quoted_lists.get(items)
        if out is None:
            out = quoted_lists[items] = json_list(items)
        return out

    opening = '{\n "results": [\n'
    for start in range(0, len(results), _JSON_ROWS_PER_CHUNK):
        yield opening + ",\n".join([
            f'  {{\n   "patient": {quote(r.patient)},\n   "therapy": {once(r.therapy)},'
            f'\n   "indication": {once(r.indication)},\n   "status": {once(r.status)},'
            f'\n   "unmet": {list_once(tuple(r.unmet))},\n   "evidence": {json_list(r.evidence)}\n  }}'
            for r in results[start:start + _JSON_ROWS_PER_CHUNK]])
        opening = ",\n"
    yield "\n ]\n}\n"


def eligibility_csv(results: Sequence[EligibilityResult]) -> str:
    return csv_text(["patient", "therapy", "indication", "status", "unmet", "evidence"],
                    ([r.patient, r.therapy, r.indication, r.status, " ".join(r.unmet),
                      "; ".join(r.evidence)] for r in results))


def eligibility_table(results: Sequence[EligibilityResult], *, color: bool = False) -> str:
    if not results:
        return "No patient meets an indication for intrathecal therapy.\n"
    counts = {s: sum(r.status == s for r in results) for s in _STATUS_STYLE}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    return table(["patient", "therapy", "indication", "status", "unmet"],
                 ([r.patient, _short(r.therapy), _short(r.indication), r.status, ", ".join(r.unmet) or "-"]
                  for r in results),
                 color=color, styles=_STATUS_STYLE, title=f"Eligibility: {summary}")


def eligibility_turtle(results: Sequence[EligibilityResult], *, knowledge: Knowledge,
                       sources: Sequence[Source], started: _dt.datetime, ended: _dt.datetime,
                       software_version: str) -> str:
    """The results as RDF: one ``itkg:EligibilityAssessment`` per row, generated by a
    ``prov:Activity`` that records when it ran, which ontology version it used and which input
    files (by SHA-256 checksum) it read, so results can be stored beside the data and queried."""
    from rdflib.namespace import PROV, RDF, RDFS, XSD
    ITKG = rdflib.Namespace(_ITKG)  # noqa: N806 - the namespace, as rdflib's PROV, RDF, RDFS
    graph = rdflib.Graph()
    graph.bind("itkg", ITKG)
    graph.bind("prov", PROV)
    run_id = f"urn:uuid:{_run_uuid(started, sources)}"
    run = rdflib.URIRef(run_id)
    graph.add((run, RDF.type, PROV.Activity))
    graph.add((run, RDF.type, ITKG.EligibilityRun))
    graph.add((run, RDFS.label, rdflib.Literal("itkg eligibility run", lang="en")))
    graph.add((run, PROV.startedAtTime, rdflib.Literal(started.isoformat(), datatype=XSD.dateTime)))
    graph.add((run, PROV.endedAtTime, rdflib.Literal(ended.isoformat(), datatype=XSD.dateTime)))
    agent = rdflib.URIRef(f"https://w3id.org/itkg/software/{software_version}")
    graph.add((agent, RDF.type, PROV.SoftwareAgent))
    graph.add((agent, RDFS.label, rdflib.Literal(f"itkg {software_version}")))
    graph.add((run, PROV.wasAssociatedWith, agent))
    if knowledge.version_iri:
        ontology = rdflib.URIRef(knowledge.version_iri)
        graph.add((ontology, RDF.type, PROV.Entity))
        graph.add((ontology, ITKG.ontologyVersion, rdflib.Literal(knowledge.version)))
        graph.add((run, PROV.used, ontology))
    for source in sources:
        entity = rdflib.URIRef(f"urn:sha256:{source.sha256}") if source.sha256 else rdflib.BNode()
        graph.add((entity, RDF.type, PROV.Entity))
        graph.add((entity, ITKG.sha256, rdflib.Literal(source.sha256)))
        graph.add((entity, PROV.atLocation, rdflib.Literal(source.path)))
        graph.add((entity, ITKG.tripleCount, rdflib.Literal(source.triples, datatype=XSD.integer)))
        graph.add((run, PROV.used, entity))
    for number, result in enumerate(results, 1):
        node = rdflib.URIRef(f"{run_id}#assessment-{number}")
        patient = rdflib.BNode(result.patient[2:]) if result.patient.startswith("_:") \
            else rdflib.URIRef(result.patient)
        graph.add((node, RDF.type, ITKG.EligibilityAssessment))
        graph.add((node, ITKG.assessedPatient, patient))
        graph.add((node, ITKG.assessedTherapy, rdflib.URIRef(result.therapy)))
        graph.add((node, ITKG.assessedIndication, rdflib.URIRef(result.indication)))
        graph.add((node, ITKG.eligibilityStatus, ITKG[_STATUS_TERMS[result.status]]))
        for code in result.unmet:
            graph.add((node, ITKG.unmetPrerequisite, ITKG[_PREREQUISITE_TERMS[code]]))
        for text in result.evidence:
            graph.add((node, ITKG.evidence, rdflib.Literal(text, lang="en")))
        graph.add((node, PROV.wasGeneratedBy, run))
    return graph.serialize(format="turtle")


_STATUS_TERMS = {"qualifies": "Qualifies", "pending": "Pending", "excluded": "Excluded"}
_PREREQUISITE_TERMS = {"informed-consent": "InformedConsentPrerequisite",
                       "csf-circulation": "CSFCirculationPrerequisite"}


def _run_uuid(started: _dt.datetime, sources: Sequence[Source]) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, started.isoformat() + "|" + "|".join(s.sha256 for s in sources)))


# -- explain -------------------------------------------------------------------------------------


def explanation_text(explanation: PatientExplanation, *, color: bool = False) -> str:
    """One patient, every indication, met or not, with the criterion that failed."""
    from rich.markup import escape as markup_escape
    console, buffer = _console(color, wrap=False)
    patient = printable(explanation.patient)
    console.print(f"[bold]Patient {markup_escape(patient)}[/]" if color else f"Patient {patient}", markup=color)
    for item in explanation.indications:
        verdict = "met" if item.met else "not met"
        console.print("")
        head = printable(f"{item.label} ({_short(item.indication)}) -> {_short(item.therapy)}: {verdict}")
        console.print(f"[bold]{markup_escape(head)}[/]" if color else head, markup=color)
        for criterion in item.criteria:
            mark = "+" if criterion.met else "-"
            console.print(f"  {mark} {printable(criterion.label)}", markup=False)
            for fact in criterion.evidence:
                console.print(f"      found: {printable(fact)}", markup=False)
            for reason in criterion.failed:
                console.print(f"      failed: {printable(reason)}", markup=False)
        if item.result is not None:
            status = item.result.status
            line = f"  status: {status}" + (f" (unmet: {', '.join(item.result.unmet)})" if item.result.unmet else "")
            console.print(f"[{_STATUS_STYLE[status]}]{line}[/]" if color else line, markup=color)
            for check in item.result.prerequisites:
                console.print(printable(f"      {check.code}: {check.state}: {check.reason}"), markup=False)
    return buffer.getvalue()


def explanation_json(explanation: PatientExplanation) -> str:
    return json.dumps(explanation.to_dict(), indent=1, ensure_ascii=False) + "\n"


# -- validate ------------------------------------------------------------------------------------


def validation_text(report: ValidationReport) -> str:
    if report.conforms:
        return "Conforms: every patient graph meets the consent, CSF and record shapes.\n"
    lines = [f"Does not conform: {len(report.results)} result(s)."]
    for result in report.results:
        lines.append(printable(f"{result.severity}: {result.text}"))
        detail = f"  focus: {printable(result.focus_text or result.focus)}"
        if result.path:
            detail += f"; property: {printable(_short(result.path))}"
        lines.append(detail)
    return "\n".join(lines) + "\n"


def validation_json(report: ValidationReport) -> str:
    return json.dumps(report.to_dict(), indent=1, ensure_ascii=False) + "\n"


def validation_turtle(report: ValidationReport) -> str:
    """The SHACL report graph as Turtle, written by pyoxigraph: rdflib's serializer would write an
    ill-typed ``"maybe"^^xsd:boolean`` as a bare ``maybe``, which is neither valid Turtle nor the
    value as written."""
    triples = [to_oxigraph_triple(t) for t in report.graph]
    text = ox.serialize(triples, format=ox.RdfFormat.TURTLE,
                        prefixes={"sh": "http://www.w3.org/ns/shacl#", "itkg": _ITKG,
                                  "xsd": "http://www.w3.org/2001/XMLSchema#"})
    assert text is not None  # no output given: the bytes are returned
    return text.decode("utf-8")


# -- query ---------------------------------------------------------------------------------------


def _cell(term: rdflib.term.Identifier | None) -> str:
    if term is None:
        return ""
    if isinstance(term, (rdflib.URIRef, rdflib.BNode)):
        return node_id(term)
    return str(term)


def query_table(result: QueryResult, *, color: bool = False) -> str:
    return table(list(result.variables), ([_cell(row.get(v)) for v in result.variables] for row in result.rows),
                 color=color, title=f"{len(result.rows)} row(s)")


def query_csv(result: QueryResult) -> str:
    return csv_text(list(result.variables), ([_cell(row.get(v)) for v in result.variables] for row in result.rows))


def query_json(result: QueryResult) -> str:
    """SPARQL 1.1 Query Results JSON."""
    def binding(term: rdflib.term.Identifier) -> dict[str, Any]:
        if isinstance(term, rdflib.URIRef):
            return {"type": "uri", "value": str(term)}
        if isinstance(term, rdflib.BNode):
            return {"type": "bnode", "value": str(term)}
        assert isinstance(term, rdflib.Literal)
        out: dict[str, Any] = {"type": "literal", "value": str(term)}
        if term.language:
            out["xml:lang"] = term.language
        elif term.datatype is not None:
            out["datatype"] = str(term.datatype)
        return out
    payload = {"head": {"vars": list(result.variables)},
               "results": {"bindings": [{k: binding(v) for k, v in row.items()} for row in result.rows]}}
    return json.dumps(payload, indent=1, ensure_ascii=False) + "\n"


# -- reason --------------------------------------------------------------------------------------


def reasoning_json(report: "ReasoningReport", differences: "Sequence[Disagreement] | None" = None) -> str:
    """HermiT's verdict as JSON (:meth:`ReasoningReport.to_dict`), with the agreement when checked."""
    payload = report.to_dict()
    if differences is not None:
        payload["agreement"] = {"agrees": not differences, "differences": [d.to_dict() for d in differences]}
    return json.dumps(payload, indent=1) + "\n"


def reasoning_text(report: "ReasoningReport", differences: "Sequence[Disagreement] | None" = None, *,
                   color: bool = False) -> str:
    """HermiT's verdict: consistency, unsatisfiable classes, which patients each indication's
    defined class captured and, with ``--check-agreement``, where HermiT and the rules differ."""
    lines = [f"HermiT: {report.patients} patient(s) in {report.elapsed_seconds:.1f} s; "
             + ("consistent" if report.consistent else "INCONSISTENT: the ontology and the data contradict each other")]
    lines.append("Unsatisfiable classes: " + (", ".join(printable(_short(c)) for c in report.unsatisfiable) or "none"))
    text = "\n".join(lines) + "\n"
    if report.consistent:
        text += table(["patient", "indications (defined classes)"],
                      ([p, ", ".join(_short(i) for i in inds) or "-"] for p, inds in sorted(report.memberships.items())),
                      color=color)
    if differences is not None:
        if not differences:
            text += "Agreement: HermiT and the rule engine find the same indications.\n"
        else:
            text += f"Disagreement: {len(differences)} difference(s)\n"
            for d in differences:
                text += printable(f"  {d.patient} {_short(d.indication)}: found only by the {d.found_by}") + "\n"
    return text
