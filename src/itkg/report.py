"""The clinic report: one self-contained HTML page of an eligibility run (``itkg report``).

Why a page: the people who act on itkg's answers are a pain or spasticity clinic's team, meeting
weekly to go through who could be offered intrathecal therapy and to chase missing consent forms
and CSF assessments. They need the summary, a worklist and each patient's reasons, not JSON.

What makes it safe to open and to keep:

* every string from the input is escaped by Jinja2's autoescaping (never string concatenation),
  and strings are cut to a bounded length, so hostile IRIs, labels or display texts are text;
* the page carries a Content-Security-Policy that forbids loading anything (``default-src
  'none'``) and allows only its own stylesheet, by hash: no script runs at all, the worklist is
  filtered with CSS alone (radio buttons and ``:has()``);
* it is written atomically and readable by its owner only (:func:`itkg.safeio.atomic_write`),
  because it holds patient data;
* its size is bounded: lists beyond ``max_listed`` rows and explanations beyond ``max_details``
  patients are left out with a note, and every row then goes to a CSV file beside the page.

The rows are decided once, over one index of the input, by the same rule engine as ``itkg
eligibility``; the explanations of the patients shown are asked of that same engine and index
(``RuleEngine.explain``, what :func:`itkg.explain` does), so a population is parsed only once.
"""

from __future__ import annotations

import base64
import dataclasses
import csv
import datetime as _dt
import hashlib
import io
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import jinja2
from markupsafe import Markup

from . import vocab
from .names import DEFAULT_MAX_DETAILS, DEFAULT_MAX_LISTED
from .engine import PatientIndex, RuleEngine
from .errors import InputError
from .knowledge import Knowledge, load_knowledge
from .loading import PatientData, Source, load
from .results import EligibilityResult, PatientExplanation
from .safeio import atomic_write

#: Longest text from the input shown in one place (an IRI, an evidence line); longer is cut.
MAX_TEXT = 400
#: Most lines shown for one criterion, or records for one prerequisite (a patient with thousands
#: of records would otherwise make one section arbitrarily large); the rest is counted.
MAX_ITEMS = 20

STATUS_WORDS = {"qualifies": "qualifies", "pending": "pending", "excluded": "excluded"}
STATE_WORDS = {"met": "met", "failed": "not met (decided against)", "missing": "not documented"}

_PATIENTS_QUERY = """PREFIX itkg: <https://w3id.org/itkg/>
SELECT (COUNT(DISTINCT ?patient) AS ?patients) WHERE {
  { ?patient a itkg:Patient }
  UNION { ?patient itkg:hasCondition|itkg:receivedTreatment|itkg:hasConsent|itkg:hasCSFAssessment|itkg:plannedTherapy ?record }
}"""


@dataclass(frozen=True)
class ReportResult:
    """What :func:`itkg.report` wrote, and the counts the page shows.

    ``counts`` maps each indication IRI to its attrition and statuses: ``met``, ``consent``
    (met and informed consent granted), ``csf`` (also CSF circulation good), ``qualifies``,
    ``pending`` and ``excluded``.
    """

    output: Path
    csv: Path | None
    patients: int
    rows: int
    counts: Mapping[str, Mapping[str, int]]
    capped: bool
    size: int
    #: The inputs read (for the command line's notes on what was set aside); empty for an endpoint.
    sources: tuple[Source, ...] = ()


@dataclass
class _Input:
    """The decided input: rows, the index they were decided over (when local), sources."""

    rows: list[EligibilityResult]
    patients: int
    sources: tuple[Source, ...]
    engine: RuleEngine | None = None
    origin: str = ""
    messages: list[str] = field(default_factory=list)
    #: FHIR input: record IRI -> the resource and codes it came from (``Condition/c1, ICD-10-CM G89.3``).
    fhir_notes: Mapping[str, str] = field(default_factory=dict)


def _cut(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` cut to ``limit`` characters (with an ellipsis), so that one hostile value cannot
    make the page arbitrarily large."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _cap(items: Iterable[str], limit: int = MAX_ITEMS) -> list[str]:
    """At most ``limit`` items, each cut to :data:`MAX_TEXT`, and a line saying how many more.

    >>> _cap(["a", "b", "c"], 2)
    ['a', 'b', '… and 1 more']
    """
    items = list(items)
    shown = [_cut(item) for item in items[:limit]]
    return shown + ([f"\u2026 and {len(items) - limit} more"] if len(items) > limit else [])


_RECORD_REF = re.compile(r"<([^<>\s]+)>")


class _Namer:
    """Adds the FHIR resource (and codes) a record came from to its name, where the input was FHIR:
    ``<https://fhir.invalid/Condition/c1>`` becomes ``<…/Condition/c1> (Condition/c1; ICD-10-CM G89.3)``.

    >>> _Namer({"https://x/Condition/c1": "Condition/c1, ICD-10-CM G89.3"}).text("diagnosis <https://x/Condition/c1>")
    'diagnosis <https://x/Condition/c1> (Condition/c1; ICD-10-CM G89.3)'
    >>> _Namer({"https://x/Condition/c1": "Condition/c1"}).record("https://x/Condition/c1")
    'https://x/Condition/c1 (Condition/c1)'
    """

    def __init__(self, notes: Mapping[str, str]) -> None:
        self.notes = notes

    def _note(self, iri: str) -> str | None:
        found = self.notes.get(iri)
        if found is None:
            return None
        name, _, codes = found.partition(", ")
        return f"{name}; {codes}" if codes else name

    def text(self, text: str) -> str:
        if not self.notes or "<" not in text:
            return text

        def named(match: re.Match[str]) -> str:
            note = self._note(match.group(1))
            return match.group(0) if note is None else f"{match.group(0)} ({note})"
        return _RECORD_REF.sub(named, text)

    def record(self, node: str) -> str:
        note = self._note(node) if self.notes else None
        return node if note is None else f"{node} ({note})"


def _count_patients(index: PatientIndex) -> int:
    return sum(1 for node in index.nodes if index.is_patient(node))


def _prerequisites(knowledge: Knowledge) -> dict[str, Any]:
    """Every prerequisite the knowledge (ontology and extensions) names, by code, in its order."""
    found = {p.code: p for group in knowledge.prerequisites.values() for p in group}
    return dict(sorted(found.items(), key=lambda item: (getattr(item[1], "order", 0), item[0])))


def next_step(code: str, therapy_label: str, knowledge: Knowledge) -> str:
    """The clinic's next step for an unmet prerequisite, in words: the prerequisite's
    ``itkg:worklistAction`` in the ontology (or an extension), for this therapy.

    >>> next_step("csf-circulation", "intrathecal baclofen therapy", load_knowledge())
    'Assess CSF circulation'
    >>> next_step("informed-consent", "intrathecal baclofen therapy", load_knowledge())
    'Obtain informed consent for intrathecal baclofen therapy'
    """
    prerequisite = _prerequisites(knowledge).get(code)
    action = getattr(prerequisite, "action", "") if prerequisite is not None else ""
    if action:
        return action.replace("{therapy}", therapy_label)
    label = prerequisite.label if prerequisite is not None else code
    return f"Document the {label}"


_THERAPY_PHRASE = re.compile(r"\s*\b(?:for|before|of|to)\s+\{therapy\}|\s*\{therapy\}")


def _step_words(code: str, knowledge: Knowledge) -> str:
    """The step without its therapy, for the worklist's filter (``Obtain informed consent``)."""
    prerequisite = _prerequisites(knowledge).get(code)
    action = getattr(prerequisite, "action", "") if prerequisite is not None else ""
    if action:
        return _THERAPY_PHRASE.sub("", action).strip() or action
    return f"Document the {prerequisite.label if prerequisite is not None else code}"


def _prerequisite_words(code: str, knowledge: Knowledge) -> str:
    """A prerequisite's name for a table: its label without the word "prerequisite"."""
    prerequisite = _prerequisites(knowledge).get(code)
    label = prerequisite.label if prerequisite is not None else code
    return re.sub(r"\s*\bprerequisite\b", "", label).strip() or label


def attrition(rows: Iterable[EligibilityResult]) -> dict[str, dict[str, int]]:
    """Per indication: how many rows meet it, then also have consent granted, then also good
    CSF circulation, and qualify, plus the status counts (OHDSI-style inclusion attrition).

    >>> row = EligibilityResult("p", "t", "i", "pending", ("csf-circulation",))
    >>> attrition([row])["i"]
    {'met': 1, 'consent': 1, 'csf': 0, 'qualifies': 0, 'pending': 1, 'excluded': 0}
    """
    counts: dict[str, dict[str, int]] = defaultdict(
        lambda: {"met": 0, "consent": 0, "csf": 0, "qualifies": 0, "pending": 0, "excluded": 0})
    for row in rows:
        c = counts[row.indication]
        c["met"] += 1
        if vocab.INFORMED_CONSENT not in row.unmet:
            c["consent"] += 1
            if vocab.CSF_CIRCULATION not in row.unmet:
                c["csf"] += 1
        if row.status in ("qualifies", "pending", "excluded"):
            c[row.status] += 1
    return dict(counts)


# -- deciding ---------------------------------------------------------------------------------------


def _decide_files(paths: Sequence[Path], *, engine: str, input_format: str | None,
                  knowledge: Knowledge, timeout: float | None, strict: bool = False) -> _Input:
    """One index of the files, in this process: the rows come from it, and so do the
    explanations (a second parse would double the cost at scale)."""
    from .fhir import hook
    from .streaming import build_index, gc_paused

    fhir_paths = set(hook.split(paths, input_format)[0])
    if engine == "native":
        index, sources = build_index(paths, input_format=input_format, checksums=True, strict=strict,
                                     predicates=knowledge.indexed_predicates())
        with gc_paused():
            rule_engine = RuleEngine(knowledge, index)
            rows = sorted(row for patient in index.patients() for row in rule_engine.rows(patient))
        decided = _Input(rows, _count_patients(index), sources, rule_engine)
    else:
        decided = _decide_data(load(list(paths), input_format=input_format, strict=strict), engine=engine,
                               knowledge=knowledge, timeout=timeout)
    if fhir_paths:
        decided.sources = tuple(_fhir_source(s) if Path(s.path) in fhir_paths else s for s in decided.sources)
        decided.fhir_notes = dict(hook.LAST.notes) if hook.LAST is not None else {}
    return decided


def _fhir_source(source: Source) -> Source:
    """A FHIR input as the reader names it: format ``fhir`` and the SHA-256 of the file (of a Bulk
    export directory: of its ``*.ndjson`` files, in name order, one after the other), not of the
    N-Triples the reader made of it."""
    path = Path(source.path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.suffix == ".ndjson" and p.is_file()) if path.is_dir() else [path]
    for file in files:
        with file.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return dataclasses.replace(source, sha256=digest.hexdigest(), format="fhir")


def _decide_data(data: PatientData, *, engine: str, knowledge: Knowledge,
                 timeout: float | None) -> _Input:
    from . import api

    index = PatientIndex.from_triples(data.triples, knowledge.indexed_predicates())
    rule_engine = RuleEngine(knowledge, index)
    if engine == "native":
        rows = sorted(row for patient in index.patients() for row in rule_engine.rows(patient))
    else:
        rows = api.eligibility(data, engine=engine, knowledge=knowledge, timeout=timeout)
    return _Input(rows, _count_patients(index), tuple(data.sources), rule_engine)


def _decide_endpoint(endpoint: Any, knowledge: Knowledge) -> _Input:
    from . import api
    from .endpoint import _display

    rows = api.eligibility(cast(PatientData, None), endpoint=endpoint, knowledge=knowledge)
    _, found = endpoint.select(_PATIENTS_QUERY)
    patients = int(str(found[0]["patients"])) if found and "patients" in found[0] else 0
    note = ("The data is on the endpoint: each patient's section shows the indications met with their "
            "evidence; run the report on the files for the criterion-by-criterion explanation.")
    return _Input(rows, patients, (), None, origin=_display(endpoint.query_url), messages=[note])


# -- the page model ---------------------------------------------------------------------------------


def _row_model(row: EligibilityResult, knowledge: Knowledge, indication_keys: Mapping[str, str],
               step_keys: Mapping[str, str], anchors: Mapping[str, str], namer: _Namer) -> dict[str, Any]:
    therapy = knowledge.label(row.therapy)
    steps = [(step_keys.get(code, "x"), next_step(code, therapy, knowledge)) for code in row.unmet]
    reasons = _cap((namer.text(check.reason) for check in row.prerequisites if check.state == "failed"), 4)
    if row.status == "excluded" and not reasons:
        reasons = [f"{code}: not met" for code in row.unmet]
    return {
        "patient": _cut(row.patient), "anchor": anchors.get(row.patient),
        "indication": knowledge.label(row.indication), "ikey": indication_keys.get(row.indication, "x"),
        "therapy": therapy, "status": row.status, "steps": steps,
        "step_keys": " ".join(key for key, _ in steps), "reasons": reasons,
    }


def _explanation_model(explanation: PatientExplanation, knowledge: Knowledge,
                       namer: _Namer) -> list[dict[str, Any]]:
    indications = []
    for ind in explanation.indications:
        result = ind.result
        indications.append({
            "label": ind.label, "therapy": knowledge.label(ind.therapy), "met": ind.met,
            "status": result.status if result else None,
            "criteria": [{"label": c.label, "met": c.met, "evidence": _cap(map(namer.text, c.evidence)),
                          "failed": _cap(map(namer.text, c.failed))} for c in ind.criteria],
            "prerequisites": [{"label": _prerequisite_words(p.code, knowledge), "state": p.state,
                               "state_words": STATE_WORDS.get(p.state, p.state),
                               "reason": _cut(namer.text(p.reason)), "records": _cap(map(namer.record, p.records))}
                              for p in (result.prerequisites if result else ())],
        })
    return indications


def _rows_only_model(rows: Sequence[EligibilityResult], knowledge: Knowledge) -> list[dict[str, Any]]:
    """A patient's section from its rows alone (no index: the data is on an endpoint)."""
    by_indication = {row.indication: row for row in rows}
    indications = []
    for ind in knowledge.indications:
        row = by_indication.pop(ind.iri, None)
        indications.append(_row_only(ind.label, knowledge.label(ind.therapy), row, knowledge))
    for iri, row in sorted(by_indication.items()):  # an indication this ontology does not know
        indications.append(_row_only(knowledge.label(iri), knowledge.label(row.therapy), row, knowledge))
    return indications


def _row_only(label: str, therapy: str, row: EligibilityResult | None, knowledge: Knowledge) -> dict[str, Any]:
    return {
        "label": label, "therapy": therapy, "met": row is not None,
        "status": row.status if row else None,
        "criteria": [{"label": "criteria met", "met": True, "failed": [],
                      "evidence": _cap(row.evidence)}] if row else [],
        "prerequisites": [{"label": _prerequisite_words(p.code, knowledge), "state": p.state,
                           "state_words": STATE_WORDS.get(p.state, p.state), "reason": _cut(p.reason),
                           "records": _cap(p.records)}
                          for p in (row.prerequisites if row else ())],
    }




def _chart(attrition_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Geometry of the attrition chart: one group of four horizontal bars per indication."""
    steps = (("met", "indication met"), ("consent", "consent granted"), ("csf", "CSF circulation good"),
             ("qualifies", "qualifies"))
    top = max([a["met"] for a in attrition_rows] + [1])
    bar_h, gap, label_w, bar_w = 18, 4, 190, 360
    y = 10
    groups = []
    for a in attrition_rows:
        title_y = y + 14
        y += 22
        bars = []
        for key, words in steps:
            value = a[key]
            bars.append({"key": key, "words": words, "value": value, "y": y,
                         "width": max(1, round(bar_w * value / top)) if value else 0,
                         "pct": f"{100 * value / a['met']:.0f}%" if a["met"] else "-"})
            y += bar_h + gap
        groups.append({"label": a["label"], "title_y": title_y, "bars": bars})
        y += 12
    return {"groups": groups, "height": y, "width": label_w + bar_w + 110, "label_w": label_w,
            "bar_h": bar_h}


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("itkg", "templates"), autoescape=True,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _sha256_csp(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def build_page(decided: _Input, knowledge: Knowledge, *, started: _dt.datetime, finished: _dt.datetime,
               max_listed: int, max_details: int, csv_name: str | None, software_version: str,
               engine_name: str) -> tuple[str, bool]:
    """The HTML page and whether any list or the explanations were capped."""
    rows = decided.rows
    known = [ind.iri for ind in knowledge.indications]
    extra = sorted({r.indication for r in rows} - set(known))
    order = known + extra
    indication_keys = {iri: f"i{n}" for n, iri in enumerate(order)}
    counts = attrition(rows)
    attrition_rows = [{"iri": iri, "key": indication_keys[iri], "label": knowledge.label(iri),
                       "therapy": knowledge.label(_therapy_of(iri, knowledge, rows)),
                       **counts.get(iri, {"met": 0, "consent": 0, "csf": 0, "qualifies": 0,
                                          "pending": 0, "excluded": 0})} for iri in order]
    totals = Counter(r.status for r in rows)

    by_patient: dict[str, list[EligibilityResult]] = defaultdict(list)
    for row in rows:
        by_patient[row.patient].append(row)
    detail_patients = sorted(by_patient)[:max_details]
    anchors = {p: f"p{n}" for n, p in enumerate(detail_patients)}

    pending_codes = {code for r in rows if r.status == "pending" for code in r.unmet}
    known_codes = list(_prerequisites(knowledge))
    codes = [c for c in known_codes if c in pending_codes] + sorted(pending_codes - set(known_codes))
    step_keys = {code: f"s{n}" for n, code in enumerate(codes)}  # generated: safe in CSS
    step_filters = [(step_keys[code], _step_words(code, knowledge)) for code in codes]

    namer = _Namer(decided.fhir_notes)
    lists: dict[str, dict[str, Any]] = {}
    for status in ("pending", "qualifies", "excluded"):
        matching = [r for r in rows if r.status == status]
        lists[status] = {"total": len(matching),
                         "rows": [_row_model(r, knowledge, indication_keys, step_keys, anchors, namer)
                                  for r in matching[:max_listed]]}
    capped = any(lists[s]["total"] > max_listed for s in lists) or len(by_patient) > max_details

    details = []
    from .nodenames import Describer, map_texts
    describer = Describer(decided.sources)  # blank-node records as written, as itkg explain words them
    for patient in detail_patients:
        if decided.engine is not None:
            indications = _explanation_model(map_texts(decided.engine.explain(patient), describer.text),
                                             knowledge, namer)
        else:
            indications = _rows_only_model(by_patient[patient], knowledge)
        details.append({"patient": _cut(patient), "anchor": anchors[patient], "indications": indications})

    model = {
        "started": started.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "seconds": f"{(finished - started).total_seconds():.1f}",
        "software_version": software_version,
        "ontology_version": knowledge.version or "unknown",
        "ontology_version_iri": knowledge.version_iri,
        "engine": engine_name, "origin": decided.origin,
        "sources": [{"name": _cut(os.path.basename(s.path)), "path": _cut(s.path), "sha256": s.sha256,
                     "format": s.format, "triples": s.triples} for s in decided.sources],
        "patients": decided.patients, "patients_indicated": len(by_patient), "rows": len(rows),
        "totals": {s: totals.get(s, 0) for s in ("qualifies", "pending", "excluded")},
        "attrition": attrition_rows, "chart": _chart(attrition_rows),
        "lists": lists, "max_listed": max_listed, "max_details": max_details,
        "details": details, "details_total": len(by_patient), "csv_name": csv_name if capped else None,
        "step_filters": step_filters, "notes": decided.messages, "status_words": STATUS_WORDS,
    }
    env = _environment()
    style = env.get_template("report.css").render(indications=attrition_rows, steps=step_filters)
    csp = (f"default-src 'none'; style-src {_sha256_csp(style)}; img-src 'none'; "
           "base-uri 'none'; form-action 'none'")
    page = env.get_template("report.html").render(style=Markup(style), csp=csp, **model)
    return page, capped


def _therapy_of(indication: str, knowledge: Knowledge, rows: Sequence[EligibilityResult]) -> str:
    for ind in knowledge.indications:
        if ind.iri == indication:
            return ind.therapy
    return next((r.therapy for r in rows if r.indication == indication), "")


_FORMULA = re.compile(r"^[=+\-@\t\r]")


def _csv_cell(text: str) -> str:
    """A cell a spreadsheet will not run as a formula."""
    return "'" + text if _FORMULA.match(text) else text


def rows_csv(rows: Sequence[EligibilityResult], knowledge: Knowledge) -> str:
    """Every row, with the next steps and exclusion reasons in words (the page's lists, uncapped).

    >>> print(rows_csv([EligibilityResult("=p", "https://w3id.org/itkg/IntrathecalBaclofenTherapy", "i",
    ...                                   "pending", ("csf-circulation",))], load_knowledge()), end="")
    patient,therapy,indication,status,unmet,next_steps,reasons
    '=p,https://w3id.org/itkg/IntrathecalBaclofenTherapy,i,pending,csf-circulation,Assess CSF circulation,
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["patient", "therapy", "indication", "status", "unmet", "next_steps", "reasons"])
    for row in rows:
        therapy = knowledge.label(row.therapy)
        steps = "; ".join(next_step(code, therapy, knowledge) for code in row.unmet) if row.status == "pending" else ""
        reasons = "; ".join(c.reason for c in row.prerequisites if c.state == "failed")
        writer.writerow([_csv_cell(row.patient), row.therapy, row.indication, row.status,
                         " ".join(row.unmet), steps, _csv_cell(reasons)])
    return out.getvalue()


def write_report(decided: _Input, output: Path, knowledge: Knowledge, *, started: _dt.datetime,
                 max_listed: int, max_details: int, protect: Iterable[Path], software_version: str,
                 engine_name: str) -> ReportResult:
    """Render the page (and the CSV beside it when a list is capped) and write both atomically,
    owner-only."""
    csv_path = output.with_name(output.stem + ".csv") if output.suffix.lower() != ".csv" \
        else output.with_name(output.name + ".rows.csv")
    finished = _dt.datetime.now(_dt.timezone.utc)
    page, capped = build_page(decided, knowledge, started=started, finished=finished,
                              max_listed=max_listed, max_details=max_details, csv_name=csv_path.name,
                              software_version=software_version, engine_name=engine_name)
    protect = list(protect)
    if capped:
        atomic_write(csv_path, rows_csv(decided.rows, knowledge), protect=protect + [output])
    data = page.encode("utf-8")
    atomic_write(output, data, protect=protect)
    return ReportResult(output, csv_path if capped else None, decided.patients, len(decided.rows),
                        attrition(decided.rows), capped, len(data))


def report(data: PatientData | str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None,
           output: str | os.PathLike[str], *, engine: str = "native", endpoint: Any = None,
           input_format: str | None = None, knowledge: Knowledge | None = None,
           extensions: Sequence[str | os.PathLike[str]] = (), strict: bool = False,
           timeout: float | None = None, max_listed: int = DEFAULT_MAX_LISTED,
           max_details: int = DEFAULT_MAX_DETAILS) -> ReportResult:
    """Decide eligibility for ``data`` and write the clinic's HTML report to ``output``.

    :param data: patient files (a path or a list of paths) or what :func:`itkg.load` returned;
        ``None`` with ``endpoint``.
    :param engine: ``native``, ``rdflib`` or ``oxigraph``, as for :func:`itkg.eligibility`.
    :param endpoint: an :class:`itkg.endpoint.SparqlEndpoint` that holds the data instead.
    :param extensions: a site's extension files, read with the ontology (or give ``knowledge``).
    :param strict: refuse input with ill-typed values, or with no patient (exit 2 on the command
        line), instead of setting them aside with a note.
    :param max_listed: rows shown per list (worklist, qualifying, excluded) before a note and
        the CSV beside the page take over.
    :param max_details: patients whose explanation is in the page.
    :returns: what was written, with the counts the page shows.
    """
    from . import __version__, names, setaside

    if engine not in names.LOCAL_DECISION_BACKENDS:
        raise InputError("<engine>", f"unknown engine; use one of {', '.join(names.LOCAL_DECISION_BACKENDS)}")
    if knowledge is not None and extensions:
        raise InputError("<extensions>", "give either knowledge or extensions, not both")
    started = _dt.datetime.now(_dt.timezone.utc)
    knowledge = knowledge or load_knowledge(extensions=extensions)
    output = Path(output)
    protect: list[Path] = [Path(e) for e in extensions]
    if endpoint is not None:
        if data is not None:
            raise InputError("<data>", "with an endpoint the data comes from the endpoint; give no data")
        decided = _decide_endpoint(endpoint, knowledge)
        engine = "endpoint"
    elif isinstance(data, PatientData):
        decided = _decide_data(data, engine=engine, knowledge=knowledge, timeout=timeout)
        protect += [Path(s.path) for s in data.sources]
    elif data is None:
        raise InputError("<none>", "no input files given (or use an endpoint)")
    else:
        paths = [Path(data)] if isinstance(data, (str, os.PathLike)) else [Path(p) for p in data]
        if not paths:
            raise InputError("<none>", "no input files given (or use an endpoint)")
        protect += paths
        decided = _decide_files(paths, engine=engine, input_format=input_format, knowledge=knowledge,
                                timeout=timeout, strict=strict)
    # Contract §6: what was set aside, and an input with no patient, said in the page too.
    decided.messages += setaside.notes(decided.sources)
    if decided.sources and not any(getattr(s, "holds_patient", True) for s in decided.sources):
        if strict:
            raise InputError(", ".join(s.path for s in decided.sources), setaside.NO_PATIENT)
        decided.messages.append(setaside.NO_PATIENT[:1].upper() + setaside.NO_PATIENT[1:] + ".")
    if extensions:
        decided.messages.append("The rules include the site's extension files: "
                                + ", ".join(os.path.basename(str(e)) for e in extensions) + ".")
    written = write_report(decided, output, knowledge, started=started, max_listed=max_listed,
                           max_details=max_details, protect=protect, software_version=__version__,
                           engine_name=engine)
    return dataclasses.replace(written, sources=tuple(decided.sources))
