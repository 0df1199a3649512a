"""Deciding a large FHIR Bulk export in waves, so that no process holds the index of the whole export.

Why: a parallel run (:mod:`itkg.parallel`, :mod:`itkg.fhir.index`) used to map every chunk of a
process into one index, with the reader's state beside it (every record's note, every resource's
``Type/id``, every patient's treatments), and decide only then: about 3.2 KB a patient, most of
the 3.7 GB peak of a million-patient export. A patient can be decided as soon as the chunks that
hold its resources are mapped, *if* no other chunk holds one of them. As for N-Triples
(:mod:`itkg.waves`), a cheap pre-scan says so before any mapping:

1. Every NDJSON file is cut into *parts* (:func:`itkg.fhir.index.plan`): part *k* of every file
   is one wave, read by worker ``k % workers``. A Bulk export lists each patient's resources at
   about the same place in every file, so a part holds most of its patients whole.
2. :func:`prescan` finds, in each part's bytes, the patients its records name (``"reference":
   "Patient/<id>"``, one regular expression), as the names the reader gives them;
   :func:`itkg.waves.crossing` finds those named in more than one part.
3. :class:`FhirWaves` maps one part at a time into a fresh index and decides, there and then,
   every patient that is *local*: not named in another part, and with no resource still waiting
   for a Medication of another part. Its etiologies and intolerances (fhir.md §2) are linked as
   one process links them at its end, its rows are worded, annotated with the records' notes and
   kept as pickled bytes, and its facts, notes and reader state are dropped. What is not local
   (and the Medications, which later parts may name) is kept for the end, which is
   :class:`itkg.parallel._Run`'s: the kept patients are finished and decided as every patient of
   a parallel run is (:mod:`itkg.fhir.index`).

The pre-scan is checked against the mapping: every patient a part's records link to (or an
intolerance or a waiting resource names) must be one the pre-scan found in that part
(:class:`itkg.waves.Mismatch` otherwise: the run starts again without waves), so that a reference
the pre-scan reads differently (an absolute URL, an escape, a ``_history`` suffix) can never make a
patient look local when it is not. A record without id (numbered in input order) or named the
general way (an id that is not a plain FHIR id: two could meet in one name) makes the run start
again in one process, as a ``Type/id`` read in two parts does (found at the end from every part's
hashes, :meth:`FhirWaves.wave`).
"""

from __future__ import annotations

import pickle
import re
from array import array
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .. import vocab, waves
from ..engine import PatientIndex, RuleEngine
from ..knowledge import Knowledge
from ..reader import Untrusted
from .reader import SEVERE_SIDE_EFFECTS, _iri, severe_side_effects

if TYPE_CHECKING:
    from ..streaming import IndexBuilder
    from .index import FhirChunk, FhirIndexer

#: FHIR input of at least this many bytes, all of it NDJSON, is decided in waves. Below it, one
#: index per process costs about 3.4 bytes of memory per byte of input (480 MB for the 142 MB
#: of 100,000 patients), and skipping the pre-scan saves about 4% of the CPU time.
FHIR_WAVES_FROM = 256 * 1024**2
#: Bytes of NDJSON per wave (one part of every file): about 34,000 patients of a Bulk export, an
#: index and reader state of about 110 MB while it lasts.
FHIR_WAVE_BYTES = 48 * 1024**2

#: A reference to a patient with a plain FHIR id, relative or absolute, as the reader names it
#: (:meth:`itkg.fhir.reader.FhirReader._map`: ``base`` + ``Patient/<id>``, the index's node too). Any
#: JSON string that ends so is taken: a name too many only makes a patient wait for the end.
_REFERENCE = re.compile(rb'Patient/([A-Za-z0-9.-]+)(?:/_history/[A-Za-z0-9.-]+)?"')


def prescan(chunks: Sequence[FhirChunk]) -> bytes:
    """The ids of the patients the chunks' ``Patient/<id>`` references name (distinct), one a line."""
    ids: set[bytes] = set()
    for chunk in chunks:
        with chunk.file.open("rb") as handle:
            handle.seek(chunk.start)
            ids.update(_REFERENCE.findall(handle.read(chunk.end - chunk.start)))
    return b"\n".join(ids)


def names(ids: bytes, base: str) -> list[str]:
    """The names the reader gives the patients ``ids`` (:func:`prescan`): ``base`` + ``Patient/<id>``,
    made at once, in C (no id holds a line break: the pattern stops at a quote)."""
    if not ids:
        return []
    prefix = base + "Patient/"
    return (prefix + ids.decode("utf-8", "surrogateescape").replace("\n", "\n" + prefix)).split("\n")


def pack(rows: list) -> bytes:
    """Rows (:func:`itkg.waves.pack`) as one pickled message: a fraction of their size as objects."""
    return pickle.dumps([waves.pack(r) for r in rows], protocol=pickle.HIGHEST_PROTOCOL)


class FhirWaves:
    """One process's waves: its parts mapped and decided one at a time (see the module).

    ``rows`` holds the rows of the local patients, as :func:`pack`\\ ed bytes per wave; ``kept``
    the index of everything else, which becomes the builder's index after the last wave
    (:meth:`close`).
    """

    def __init__(self, builder: IndexBuilder, knowledge: Knowledge, crossing: set[int],
                 prescanned: dict[int, bytes], base: str, decided: Callable[[int], None]) -> None:
        self.builder = builder
        self.knowledge = knowledge
        self.crossing = crossing
        self.prescanned = prescanned
        self.base = base
        self.decided = decided
        self.predicates = knowledge.indexed_predicates()
        self.links = waves.record_links(knowledge)
        #: every predicate that links a patient to something (a record, a planned therapy)
        self.patient_links = frozenset([*self.links, vocab.PLANNED_THERAPY])
        self.kept = PatientIndex(self.predicates)
        self.rows: list[bytes] = []
        self.patients = 0
        self.engine: RuleEngine | None = None
        #: the hashes of each wave's ``Type/id``\\ s
        self.seen: list[array] = []
        #: what the kept patients' records and reader state hold, put back by :meth:`close`
        self._notes: dict[str, str] = {}
        self._spastic: dict[str, list] = defaultdict(list)
        self._etiologies: dict[str, set[str]] = defaultdict(set)
        self._intolerances: dict[str, list] = defaultdict(list)
        self._treatments: dict[str, list] = defaultdict(list)
        self._waiting = 0  # resources of earlier waves still waiting for their Medication

    def start(self) -> None:
        """Before a wave's chunks are read: a fresh index."""
        self.builder.index = PatientIndex(self.predicates)

    def wave(self, part: int) -> None:
        """Decide the local patients of the part just read (see the module), keep the rest."""
        fhir = self.builder.fhir
        assert fhir is not None
        reader = fhir.reader
        if reader._anonymous or reader.general_names:
            raise Untrusted("FHIR records without id, or named the general way, in a wave")
        known = set(names(self.prescanned.pop(part, b""), self.base))
        # Resources of this wave that named a Medication not read yet: those whose Medication this
        # process has read since are mapped now, as finish_local maps them; the rest wait for the end.
        pending = reader._pending[self._waiting:]
        del reader._pending[self._waiting:]
        reader.report = fhir.final_report
        for resource, scope, out, url in pending:
            reader._map(resource, scope, out, url or None, final=False)
        waiting: set[str] = set()
        for resource, scope, _out, _url in reader._pending[self._waiting:]:
            patient = reader._patient_of(resource, scope)
            if patient is not None:
                waiting.add(patient)
        self._waiting = len(reader._pending)
        fhir._flush()
        # The check of the pre-scan. Its names have plain ids (a node named as the reader names the
        # patient), so a patient that passes it is named alike in the index and the reader's state.
        if not known.issuperset(waiting) or not known.issuperset(reader._intolerances):
            raise waves.Mismatch("the pre-scan missed a patient of a FHIR resource")
        index = self.builder.index
        nodes = index.nodes
        crossing, links, patient_links = self.crossing, self.links, self.patient_links
        # Every node is a record (it has a note), a patient the pre-scan found here, or a
        # patient's own node from its Patient resource: none of the last may link to anything.
        own: list[str] = []  # those of patients named in several parts (kept, as their records are)
        for node in nodes.keys() - known - reader.notes.keys():
            if not patient_links.isdisjoint(nodes[node]):
                raise waves.Mismatch("the pre-scan missed a patient the FHIR records link to")
            if hash(node) in crossing:
                own.append(node)
        local: list[str] = []
        kept: list[str] = []
        for node in nodes.keys() & known:
            if hash(node) in crossing or node in waiting:
                kept.append(node)
            else:
                local.append(node)
        self._finish_local(reader, fhir, waiting)
        fhir._flush()
        # decide the local patients with a condition (only those can meet an indication)
        if self.engine is None:
            self.engine = RuleEngine(self.knowledge, index)
        engine = self.engine  # one engine for every wave: its caches (classes, dates) carry over
        engine.index = index
        rows: list[Any] = []
        decide = engine.rows
        condition = vocab.HAS_CONDITION
        count = 0
        for patient in local:
            if condition in nodes[patient]:
                rows.extend(decide(patient))
                count += 1
        self.patients += count
        self.decided(count)
        if rows:
            from .hook import annotate_in_place
            annotate_in_place(rows, reader.notes)
            self.rows.append(pack(rows))
        # keep what waits: the kept patients and their records, and their own nodes
        keep: dict[str, dict[str, list]] = {}
        notes, kept_notes = reader.notes, self._notes
        for patient in kept:
            props = keep[patient] = nodes[patient]
            for link in links:
                for record in props.get(link, ()):
                    if type(record) is str and record in nodes:
                        keep[record] = nodes[record]
                        note = notes.get(record)
                        if note is not None:
                            kept_notes[record] = note
        for node in own:
            keep.setdefault(node, nodes[node])
        self.kept.merge(keep)
        # the hashes of this wave's Type/ids: one read in two waves is found by close()
        self.seen.append(array("q", map(hash, reader._seen)))
        reader._seen = set()
        reader._patients = set()
        reader.notes = {}
        engine.index = self.builder.index = PatientIndex(self.predicates)

    def _finish_local(self, reader: Any, fhir: FhirIndexer, waiting: set[str]) -> None:
        """The local patients' etiologies and intolerances, as :meth:`FhirReader.finish` adds
        them (the kept patients' wait, with their treatments, for the end)."""
        crossing = self.crossing

        def kept(patient: str) -> bool:
            return hash(patient) in crossing or patient in waiting

        spastic, etiologies = reader._spastic, reader._etiologies
        intolerances, treatments = reader._intolerances, reader._treatments
        for patient, found in intolerances.items():
            if kept(patient):
                self._intolerances[patient] += found
            else:
                for iri, out, suffix in severe_side_effects({patient: found}, treatments):
                    fhir.sinks[out].append((iri, vocab.HAS_OUTCOME, SEVERE_SIDE_EFFECTS))
                    reader.notes[iri] = reader.notes.get(iri, iri) + suffix
        etiology = vocab.ITKG + "hasEtiology"
        for patient, records in spastic.items():
            if kept(patient):
                self._spastic[patient] += records
            else:
                causes = [_iri(e) for e in sorted(etiologies.get(patient, ()))]
                for iri, out in records:
                    fhir.sinks[out].extend([(iri, etiology, e) for e in causes])
        for patient, causes in etiologies.items():
            if kept(patient):
                self._etiologies[patient] |= causes
        for patient, records in treatments.items():
            if kept(patient):
                self._treatments[patient] += records
        reader._spastic, reader._etiologies = defaultdict(list), defaultdict(set)
        reader._intolerances, reader._treatments = defaultdict(list), defaultdict(list)

    def close(self) -> None:
        """After the last wave: the builder's index and the reader's state are what was kept;
        the ``Type/id`` hashes of every wave, checked for one read in two, go with the export."""
        fhir = self.builder.fhir
        self.builder.index = self.kept
        self.kept = PatientIndex(self.predicates)
        self.engine = None
        if fhir is None:
            return
        seen = array("q")
        for hashes in self.seen:
            seen.extend(hashes)
        self.seen = []
        if len(set(seen)) != len(seen):  # (a set of this process's hashes, for a moment)
            raise Untrusted("a FHIR resource type and id read in two waves")
        fhir.seen_waves = seen.tobytes()
        reader = fhir.reader
        reader.notes.update(self._notes)
        for patient, records in self._spastic.items():
            reader._spastic[patient] += records
        for patient, causes in self._etiologies.items():
            reader._etiologies[patient] |= causes
        for patient, found in self._intolerances.items():
            reader._intolerances[patient] += found
        for patient, records in self._treatments.items():
            reader._treatments[patient] += records
        self._notes, self._spastic, self._etiologies = {}, defaultdict(list), defaultdict(set)
        self._intolerances, self._treatments = defaultdict(list), defaultdict(list)
