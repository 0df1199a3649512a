"""FHIR input straight into the rule engine's index: the decision path of ``itkg eligibility``.

The reader (:mod:`itkg.fhir.reader`, with the mapping of :mod:`itkg.fhir.rules`) turns resources
into facts, plain ``(subject, predicate, object)`` tuples. For ``load`` and ``convert`` those
become RDF triples; on the decision path they go into a :class:`~itkg.engine.PatientIndex`
through :meth:`itkg.streaming.IndexBuilder.add_facts`, with the checks every parsed triple gets
and the same counts, but with no RDF term, no N-Triples text and no second parse in between.

Pieces. :func:`plan` cuts a FHIR input (a file, or a Bulk export directory of ``*.ndjson``
files) like :func:`itkg.streaming.plan` cuts RDF files: when the FHIR input is large, every NDJSON
file is cut at line starts into ``parts`` chunks of about equal size, and chunk *k* of every file
is read by worker *k*. A Bulk export lists each patient's resources at about the same place in
every file, so a worker holds most of its patients whole and decides them itself
(:mod:`itkg.parallel`). Other JSON files (a Bundle) are read whole.

What crosses chunks is finished by the main process, with one process's result as the
reference: a worker resolves what it can (medications it has read, the etiologies it holds) and
reports the rest (:meth:`FhirIndexer.export`); the main process asks the workers for the
medications and treatments it still needs and adds the facts that only the whole input gives
(:meth:`FhirIndexer.finish_main`). Its own index then holds those facts, so the patients they
touch are decided by it over every worker's triples. When the result could differ from one
process's (a resource type and id, or a patient, read by two workers; a record without id,
whose name counts records in input order; any error, which one process reports with its exact
line), the run starts again in one process (:class:`itkg.streaming.Untrusted`).
"""

from __future__ import annotations

import weakref
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from .. import processes, vocab
from ..errors import InputError
from ..knowledge import Knowledge, load_knowledge
from ..loading import checked_size
from ..mappings import MappingSet, load_mappings
from .reader import (DCTERMS_IDENTIFIER, SEVERE_SIDE_EFFECTS, XSD_STRING, Fact, FhirReader, FhirReport, _iri, _type_id, files_of, line_start_after,
                     lines_before, merged_reports, severe_side_effects)

if TYPE_CHECKING:
    from ..streaming import IndexBuilder, PieceReport


@dataclass(frozen=True, eq=False)
class FhirJob:
    """What every FHIR piece of one plan is read with: made before workers fork (inherited)."""

    base: str
    mappings: MappingSet
    strict: bool
    max_bytes: int
    #: how many FHIR inputs the run has (the reader keeps one output per input)
    inputs: int
    knowledge: Knowledge


@dataclass(frozen=True)
class FhirChunk:
    """One FHIR piece: the bytes ``[start, end)`` of ``file`` (NDJSON cut at line starts, or a
    whole file), of FHIR input number ``out``, for worker ``part``."""

    job: FhirJob
    out: int
    file: Path
    start: int
    end: int
    ndjson: bool
    part: int


def plan(paths: Sequence[Path], *, parts: int, min_piece_bytes: int, max_bytes: int,
         first_share: float = 1.0) -> list[list[FhirChunk]]:
    """The chunks of each FHIR input, in input order (see the module). Raises what reading the
    inputs would raise first: a missing or too large file, a directory with no NDJSON file.

    :param first_share: the size of part 0 of every file (the main process's, in a parallel run)
        relative to each other part's: below 1 when the main process has more to do after the
        parts than the workers (:func:`itkg.parallel.main_share`)."""
    from . import hook
    settings = hook.SETTINGS
    job = FhirJob(base=settings.base, mappings=load_mappings(settings.mappings), strict=settings.strict,
                  max_bytes=max_bytes, inputs=len(paths), knowledge=load_knowledge())
    sized = [[(file, checked_size(file, max_bytes)) for file in files_of(path)] for path in paths]
    cut = parts > 1 and sum(size for files in sized for _, size in files) >= 2 * min_piece_bytes
    chunks: list[list[FhirChunk]] = []
    for out, files in enumerate(sized):
        mine: list[FhirChunk] = []
        for file, size in files:
            ndjson = file.suffix.lower() in (".ndjson", ".jsonl")
            bounds = [0]
            if cut and ndjson:
                for k in range(1, parts):  # part k starts after k - 1 + first_share shares
                    at = int(size * (k - 1 + first_share) / (parts - 1 + first_share))
                    start = line_start_after(file, max(at, bounds[-1]))
                    if start is not None and bounds[-1] < start < size:
                        bounds.append(start)
            bounds.append(size)
            mine += [FhirChunk(job, out, file, bounds[k], bounds[k + 1], ndjson, k) for k in range(len(bounds) - 1)]
        chunks.append(mine)
    return chunks


#: A statement's fate in the checker, asked once: the index's key for it (None: checked and
#: counted, not indexed) and whether it says the input holds a patient. None: anything else
#: (set aside, ill-typed, ...): such a record goes the general way.
_Fate = Union[tuple[Any, bool, Any], None]
#: The neutral subject the checker is asked about (not an ``itkg:`` term).
_PROBE = "urn:itkg:probe"
#: Not asked yet (a fate may be None).
_UNASKED: Any = object()


class _Sink:
    """Where the facts of one FHIR input go: the builder's index, counted in ``report``. Facts
    are indexed a few thousand at a time (:meth:`flush` before ``report`` changes); a usual
    record goes in at once (:meth:`record`)."""

    __slots__ = ("builder", "report", "facts", "append", "_fates", "_shapes")

    def __init__(self, builder: IndexBuilder) -> None:
        # weakly: the builder holds the FHIR reading (``builder.fhir``) that holds this sink, and
        # a cycle would keep the reader's state for the garbage collector to walk, at the end
        self.builder = weakref.proxy(builder)
        self.report: PieceReport | None = None
        self.facts: list[Fact] = []
        self.append = self.facts.append
        self._fates: dict[tuple[str, Any], _Fate] = {}
        #: per link and types: the keys of the link and of rdf:type, and whether they note a patient
        self._shapes: dict[tuple[str, tuple[str, ...]], tuple[Any, Any, bool]] = {}

    def extend(self, facts: Iterable[Fact]) -> None:
        self.facts += facts
        if len(self.facts) > 8192:
            self.flush()

    def flush(self) -> None:
        if self.facts:
            assert self.report is not None
            self.builder.add_facts(self.facts, self.report)
            self.facts.clear()

    def _fate(self, predicate: str, value: Any) -> _Fate:
        """What the checker does with ``(a neutral subject, predicate, value)``: asked of the
        checker itself (:meth:`~itkg.reader.Checker.check_facts`), once per predicate and value."""
        from ..reader import PieceReport
        key = (predicate, value)
        if key in self._fates:
            return self._fates[key]
        report = PieceReport(0)
        kept = list(self.builder.checker.check_facts([(_PROBE, predicate, value)], report))
        fate: _Fate = None
        if report.triples == 1 and not (report.schema_set_aside or report.ill_typed_count or report.imports
                                        or report.triple_terms):
            if not kept:
                fate = (None, report.holds_patient, value)
            elif len(kept) == 1 and kept[0][3] == value:
                fate = (kept[0][2], report.holds_patient, kept[0][3])
        if len(self._fates) < 1 << 16:
            self._fates[key] = fate
        return fate

    def record(self, patient: str, link: str, iri: str, types: tuple[str, ...],
               values: list[tuple[str, Any]]) -> bool:
        """Index one record as :meth:`extend` would index its facts, in the same order: ``(patient,
        link, iri)``, ``(iri, rdf:type, t)`` for each of ``types``, ``(iri, p, v)`` for each of
        ``values``, then its ``dcterms:identifier`` (a plain ``Type/id``, checked as such). Only
        when the checker keeps each of these statements as it is (asked once, :meth:`_fate`) and
        neither node is an ``itkg:`` term; else returns False and indexes nothing."""
        itkg = vocab.ITKG
        if patient.startswith(itkg) or iri.startswith(itkg):
            return False
        shape = (link, types)
        head = self._shapes.get(shape)
        if head is None:
            head = self._shape(link, types)
            if head is None:
                return False
        link_key, type_key, holds = head
        fates = self._fates
        kept = []
        for pair in values:
            fate = fates.get(pair, _UNASKED)
            if fate is _UNASKED:
                fate = self._fate(*pair)
            if fate is None:
                return False
            if fate[1]:
                holds = True
            if fate[0] is not None:
                kept.append((fate[0], fate[2]))
        if self.facts:
            self.flush()  # the index changes in the order of the facts
        report = self.report
        assert report is not None
        report.triples += 2 + len(types) + len(values)
        if holds:
            report.holds_patient = True
        nodes = self.builder.index.nodes  # (not kept: the index is let go once everyone is decided)
        # (get, then set what is missing: setdefault would make a dict and a list every time)
        if link_key is not None:
            props = nodes.get(patient)
            if props is None:
                nodes[patient] = {link_key: [iri]}
            else:
                found = props.get(link_key)
                if found is None:
                    props[link_key] = [iri]
                else:
                    found.append(iri)
        typed = type_key is not None and types
        if typed or kept:  # the record's node only when it holds a fact
            props = nodes.get(iri)
            if props is None:
                props = nodes[iri] = {}
            if typed:
                found = props.get(type_key)
                if found is None:
                    props[type_key] = list(types)
                else:
                    found.extend(types)
            for key, value in kept:
                props.setdefault(key, []).append(value)
        return True

    def _shape(self, link: str, types: tuple[str, ...]) -> tuple[Any, Any, bool] | None:
        """The index keys of ``link`` and of ``rdf:type`` and whether they note a patient, for a
        record of this link and these types with its identifier, or None (remembered). A link's
        and an identifier's fate hang on the predicate alone (a named object, a plain text)."""
        fates = [self._fate(link, _PROBE + "/record"), self._fate(DCTERMS_IDENTIFIER, ("Type/id", XSD_STRING)),
                 *(self._fate(vocab.RDF_TYPE, t) for t in types)]
        shape: tuple[Any, Any, bool] | None = None
        if all(f is not None for f in fates):
            keys = {f[0] for f in fates[2:] if f is not None}
            if len(keys) <= 1 and fates[1] is not None and fates[1][0] is None and fates[0] is not None:
                shape = (fates[0][0], keys.pop() if keys else None, any(f[1] for f in fates if f is not None))
        if shape is not None and len(self._shapes) < 1 << 16:
            self._shapes[(link, types)] = shape
        return shape


_hashes = processes.packed_hashes


class FhirIndexer:
    """One process's FHIR reading into its :class:`~itkg.streaming.IndexBuilder`: one reader for
    all the chunks the process reads, in input order."""

    def __init__(self, builder: IndexBuilder, job: FhirJob) -> None:
        self.job = job
        self.reader = FhirReader(base=job.base, mappings=job.mappings, knowledge=job.knowledge,
                                 strict=job.strict, max_bytes=job.max_bytes)
        self.sinks = [_Sink(builder) for _ in range(job.inputs)]
        self.reader._out = self.sinks
        #: what finishing found (pending medications mapped, outcomes): counted after the pieces'
        self.final_report = FhirReport()
        #: per spasticity record: the etiologies this process linked it to
        self._linked: dict[str, tuple[str, ...]] = {}
        #: notes on records that only the whole input gives (a record's outcome from an
        #: intolerance read by another worker), added to the record's note where it is decided
        self.note_suffixes: dict[str, str] = {}
        #: the main process's own :meth:`export`, made early (:meth:`export_own`)
        self._own: dict[str, Any] | None = None
        #: the hashes of the ``Type/id`` of every resource read in waves (:mod:`itkg.fhir.waves`,
        #: which let go of the names), packed: sent with those of :attr:`FhirReader._seen`
        self.seen_waves = b""

    def read(self, chunk: FhirChunk, report: PieceReport, on_read: Callable[[int], None] | None) -> None:
        """Map one chunk into the index; its counts go into ``report``. Raises the input's error."""
        reader = self.reader
        self._flush()
        self.sinks[chunk.out].report = report
        reader.report = report.fhir = FhirReport()
        reader.on_read = on_read
        if not chunk.ndjson:
            reader._read_file(chunk.file, chunk.out, None)
        else:
            try:
                with chunk.file.open("rb") as handle:
                    handle.seek(chunk.start)
                    data = handle.read(chunk.end - chunk.start)
            except OSError as error:
                raise InputError(chunk.file, f"cannot read file ({error.strerror or type(error).__name__})") from None
            first = lines_before(chunk.file, chunk.start) + 1 if chunk.start else 1
            reader.read_lines(data, chunk.file, chunk.out, first)
        self._flush()

    def _flush(self) -> None:
        for sink in self.sinks:
            sink.flush()

    # -- one process ----------------------------------------------------------------------------

    def finish(self, first_reports: Sequence[PieceReport]) -> FhirReport:
        """Finish as :meth:`FhirReader.read` does (this process read every chunk); the facts
        this adds count in each input's first piece. Returns the run's report."""
        self._route(first_reports)
        reader = self.reader
        reader.report = self.final_report
        reader.finish()
        self._flush()
        return self.final_report

    def _route(self, first_reports: Sequence[PieceReport]) -> None:
        self._flush()
        for sink, report in zip(self.sinks, first_reports):
            sink.report = report

    # -- several processes: a worker ---------------------------------------------------------------

    def finish_local(self) -> None:
        """What a worker can finish alone: the medications it read after the resources that
        name them, and the etiologies of its spasticity records that it holds. The rest is left
        for :meth:`finish_main`."""
        reader = self.reader
        reader.report = self.final_report
        pending, reader._pending = reader._pending, []
        for resource, scope, out, url in pending:
            reader._map(resource, scope, out, url or None, final=False)
        etiology = vocab.ITKG + "hasEtiology"
        for patient, nodes in reader._spastic.items():
            local = tuple(sorted(reader._etiologies.get(patient, ())))
            for iri, out in nodes:
                self.sinks[out].extend([(iri, etiology, _iri(e)) for e in local])
                self._linked[iri] = local
        self._flush()

    def export(self) -> dict[str, Any]:
        """What the main process needs to finish (sent once, after :meth:`finish_local`, when
        every piece is read). The ``Type/id`` of every resource and the patients' names are only
        needed as these hashes from now on: they are let go (a few hundred bytes a patient)."""
        reader = self.reader
        state = {"seen": _hashes(reader._seen) + self.seen_waves, "patients": _hashes(reader._patients),
                 "anonymous": reader._anonymous, "pending": reader._pending,
                 "spastic": {patient: [(iri, out, self._linked[iri]) for iri, out in nodes]
                             for patient, nodes in reader._spastic.items()},
                 "etiologies": dict(reader._etiologies), "intolerances": dict(reader._intolerances),
                 "report": self.final_report}
        reader._seen, reader._patients, self._linked, self.seen_waves = set(), set(), {}, b""
        return state

    def export_own(self) -> None:
        """In the main process, after :meth:`finish_local`: its own :meth:`export` for
        :meth:`finish_main`, made while the workers still read or export theirs."""
        self._own = self.export()

    def lookup(self, medications: Iterable[str], patients: Iterable[str]) -> tuple[dict, dict]:
        """The Medications (codes) and the received treatments of patients this worker read."""
        reader = self.reader
        return ({m: reader.medications[m] for m in medications if m in reader.medications},
                {p: reader._treatments[p] for p in patients if p in reader._treatments})

    # -- several processes: the main process ---------------------------------------------------------

    def finish_main(self, states: list[dict[str, Any]], ask: Callable[[set[str], set[str]], list[tuple[dict, dict]]],
                    first_reports: Sequence[PieceReport]) -> None:
        """Finish the run in the main process (its own :meth:`finish_local` done), given the
        workers' :meth:`export`\\ s in worker order and ``ask``, which sends a :meth:`lookup` to
        every worker. Raises :class:`~itkg.streaming.Untrusted` when one process could differ."""
        from ..streaming import Untrusted
        reader = self.reader
        mine, self._own = self._own if self._own is not None else self.export(), None
        everyone = [mine, *states]
        for name in ("seen", "patients"):
            hashes: set[int] = set()
            for number, state in enumerate(everyone, 1):
                packed = array("q")
                packed.frombytes(state[name])
                if not hashes.isdisjoint(packed):
                    raise Untrusted("a FHIR resource type and id, or a patient, read by two workers")
                if number < len(everyone):  # (the last is only tested: a set of every hash is
                    hashes.update(packed)   # hundreds of megabytes at a million patients)
                del packed
            del hashes
        if sum(bool(s["anonymous"]) for s in everyone) and len(everyone) > 1:
            raise Untrusted("FHIR records without id are numbered in input order")
        pending = [p for state in everyone for p in state["pending"]]
        intolerant = {patient for state in everyone for patient in state["intolerances"]}
        wanted = {ref[1] for resource, *_ in pending
                  if (ref := _medication_key(resource)) is not None and ref[1] not in reader.medications}
        if wanted or intolerant:
            for medications, treatments in ask(wanted, intolerant):
                for rid, code in medications.items():
                    reader.medications.setdefault(rid, code)
                for patient, records in treatments.items():
                    reader._treatments[patient] += records
        self._route(first_reports)
        reader.report = self.final_report
        for resource, scope, out, url in pending:  # one process maps these at its end, too
            reader._map(resource, scope, out, url or None, final=True)
        reader._intolerances = defaultdict(list)
        for state in everyone:
            for patient, drugs in state["intolerances"].items():
                reader._intolerances[patient] += drugs
        for iri, out, suffix in severe_side_effects(reader._intolerances, reader._treatments):
            self.sinks[out].append((iri, vocab.HAS_OUTCOME, SEVERE_SIDE_EFFECTS))
            self.note_suffixes[iri] = suffix
        etiologies: dict[str, set[str]] = defaultdict(set)
        for state in everyone:
            for patient, causes in state["etiologies"].items():
                etiologies[patient] |= causes
        etiology = vocab.ITKG + "hasEtiology"
        for state in everyone:
            for patient, nodes in state["spastic"].items():
                for iri, out, linked in nodes:
                    missing = sorted(etiologies.get(patient, set()).difference(linked))
                    if missing:
                        self.sinks[out].extend([(iri, etiology, _iri(e)) for e in missing])
        self._flush()
        for state in states:
            self.final_report = merged_reports([self.final_report, state["report"]])

    def notes(self, found: dict[str, str]) -> dict[str, str]:
        """Notes on records (``found``, from any worker) with what finishing added to them."""
        for iri, suffix in self.note_suffixes.items():
            found[iri] = (found.get(iri) or self.reader.notes.get(iri) or iri) + suffix
        return found


def _medication_key(resource: dict) -> tuple[str, str] | None:
    """``("Medication", id)`` of the Medication a pending resource names."""
    reference = resource.get("medicationReference")
    ref = reference.get("reference") if isinstance(reference, dict) else None
    key = _type_id(ref) if isinstance(ref, str) and not ref.startswith("#") else None
    return key if key is not None and key[0] == "Medication" else None


def run_report(piece_reports: Iterable[FhirReport | None], final: FhirReport) -> FhirReport:
    """The report of a run: its pieces' reports in piece order, then what finishing found."""
    return merged_reports([*(r for r in piece_reports if r is not None), final])
