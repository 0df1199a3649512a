"""Reading FHIR R4 JSON into contract §2 triples: files, Bundles, NDJSON, Bulk export directories.

What is read (fhir.md §1): a JSON file holding one resource or a ``Bundle`` of any type (nested
Bundles too), an NDJSON file (one resource per line), or a directory of ``*.ndjson`` files (a Bulk
Data export, read in name order). Files are told apart from RDF by content (:func:`is_fhir`).

Naming. A patient is named by its Bundle entry's ``fullUrl`` when it has one, else
``BASE + "Patient/" + id``; ``BASE`` is :data:`DEFAULT_BASE` unless set (``--fhir-base``). A record
is named by its entry's ``fullUrl`` when that is an ``http(s)`` URL, else ``BASE + Type/id``.

References (to the patient and to a Medication) resolve within the input: contained (``#id``),
``urn:uuid:`` and absolute ``fullUrl``\\ s of the same Bundle, relative ``Type/id`` (the Bundle's
entries first, then every Medication read so far), and absolute URLs ending in ``Type/id``. A
subject that is not in the input still counts, under the name its reference gives. A medication
whose Medication comes later in the input is decided at the end.

Duplicates. The first resource of a given type and id in input order (files in the order given,
a directory's files by name, lines and entries in order) is used; later ones are skipped and
counted. Bad JSON stops the run (:class:`~itkg.errors.ParseError` with file and line, never the
value); a resource that is not FHIR R4 is reported and skipped, or stops the run under ``strict``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import weakref
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import orjson
import pyoxigraph as ox

from .. import vocab
from ..errors import InputError, InputTooLargeError, ParseError
from ..knowledge import Knowledge, load_knowledge
from ..loading import DEFAULT_MAX_BYTES, checked_size, read_at_most
from ..mappings import SYSTEM_NAMES, MappingSet, coding_iri, load_mappings, safe_iri
from . import rules

#: The base of patient and record IRIs when the input gives none (set it to the FHIR server's base).
DEFAULT_BASE = "https://fhir.invalid/"
#: The longest NDJSON line read (a resource); longer ones are refused.
MAX_LINE_BYTES = 64 * 1024**2
_SNIFF_BYTES = 64 * 1024
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
#: Texts with fewer brackets than this (or shorter than twice this: each level takes two bytes)
#: nest less deeply than json allows (the recursion limit, 1,000 levels, less the caller's frames).
_ORJSON_MAX_DEPTH = 512
#: Lines shorter than this cannot nest deeper than json allows: orjson reads them (:func:`_loads`).
_SHORT = 2 * _ORJSON_MAX_DEPTH
DCTERMS_IDENTIFIER = "http://purl.org/dc/terms/identifier"
RDFS_SEE_ALSO = "http://www.w3.org/2000/01/rdf-schema#seeAlso"
XSD_STRING = "http://www.w3.org/2001/XMLSchema#string"

#: One mapped statement: subject IRI, predicate IRI, and an object IRI or a literal as
#: ``(lexical form, datatype IRI)``; every IRI already valid (:func:`_valid`). The reader emits
#: these plain tuples, never RDF terms: the rule engine's index takes them as they are
#: (:mod:`itkg.fhir.index`), and :func:`to_triple` makes RDF of them for ``load`` and ``convert``.
Fact = tuple[str, str, Union[str, tuple[str, str]]]


def to_triple(fact: Fact) -> ox.Triple:
    """A fact as a pyoxigraph triple."""
    subject, predicate, obj = fact
    return ox.Triple(_node(subject), _node(predicate),
                     ox.Literal(obj[0], datatype=_node(obj[1])) if isinstance(obj, tuple) else _node(obj))


def is_fhir(path: Path, input_format: str | None = None) -> bool:
    """Whether ``path`` is FHIR input: a directory (a Bulk export), or a file whose content starts
    as a JSON object with a ``resourceType`` and no JSON-LD ``@context`` (or ``--input-format fhir``)."""
    if input_format is not None:
        return input_format == "fhir"
    if path.is_dir():
        return True
    if not path.is_file():  # a FIFO or a device: never opened here (it could block or never end)
        return False
    try:
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError:
        return False
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    return start == b"{" and b'"resourceType"' in head and b'"@context"' not in head


@dataclass
class FhirReport:
    """What reading FHIR found, by counts only (never a patient value); see :meth:`lines`."""

    resources: Counter[str] = field(default_factory=Counter)
    skipped_types: Counter[str] = field(default_factory=Counter)
    not_counted: Counter[tuple[str, str]] = field(default_factory=Counter)
    not_r4: list[str] = field(default_factory=list)
    not_r4_count: int = 0
    duplicates: int = 0
    first_duplicate: str = ""
    no_patient: int = 0
    unresolved_medications: int = 0
    unmapped: Counter[tuple[str, str]] = field(default_factory=Counter)

    def note_not_r4(self, where: str, why: str) -> None:
        self.not_r4_count += 1
        if len(self.not_r4) < 20:
            self.not_r4.append(f"{where}: {why}; skipped")

    def lines(self) -> list[str]:
        """The report as lines for standard error."""
        out = list(self.not_r4)
        if self.not_r4_count > len(self.not_r4):
            out.append(f"... and {self.not_r4_count - len(self.not_r4)} more resources that are not FHIR R4")
        if self.duplicates:
            out.append(f"{self.duplicates} resource(s) repeat the type and id of an earlier one and were "
                       f"skipped (the first in input order is used; first repeat at {self.first_duplicate})")
        if self.no_patient:
            out.append(f"{self.no_patient} resource(s) name no patient and were skipped")
        if self.skipped_types:
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.skipped_types.items()))
            out.append(f"resource types that give no fact, skipped: {kinds}")
        if self.unmapped:
            out.append(f"{len(self.unmapped)} code(s) are mapped to no itkg term "
                       f"({sum(self.unmapped.values())} occurrences); --unmapped-codes FILE lists them")
        return out

    def unmapped_tsv(self) -> str:
        """Unmapped codes by system and code with their counts, most frequent first (TSV)."""
        rows = sorted(self.unmapped.items(), key=lambda item: (-item[1], item[0]))
        return "system\tcode\tcount\n" + "".join(f"{s}\t{c}\t{n}\n" for (s, c), n in rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "resources": dict(sorted(self.resources.items())),
            "skipped_types": dict(sorted(self.skipped_types.items())),
            "not_counted": [{"type": t, "reason": r, "count": n}
                            for (t, r), n in sorted(self.not_counted.items())],
            "not_r4": self.not_r4_count, "duplicates": self.duplicates, "no_patient": self.no_patient,
            "unmapped": [{"system": s, "code": c, "count": n}
                         for (s, c), n in sorted(self.unmapped.items(), key=lambda i: (-i[1], i[0]))],
        }


@dataclass
class FhirGraph:
    """The triples FHIR input gave, per input path; notes on the records for the evidence
    (record IRI → ``Condition/c1, ICD-10-CM G89.3``); and the report."""

    files: list[tuple[Path, list[Fact], str]]
    notes: dict[str, str]
    report: FhirReport
    #: per input path, N-Triples already serialised by worker processes (:mod:`itkg.fhir.parallel`)
    blobs: list[list[bytes]] = field(default_factory=list)

    def _blobs(self, index: int) -> list[bytes]:
        return self.blobs[index] if index < len(self.blobs) else []

    @property
    def triples(self) -> list[ox.Triple]:
        """Every triple, of every input path."""
        out: list[ox.Triple] = []
        for index, (_, facts, _) in enumerate(self.files):
            out += map(to_triple, facts)
            for blob in self._blobs(index):
                out += [q.triple for q in ox.parse(blob, format=ox.RdfFormat.N_TRIPLES)]
        return out

    def ntriples(self, index: int) -> bytes:
        """The facts of input path ``index`` as N-Triples."""
        triples = [to_triple(f) for f in self.files[index][1]]
        head = ox.serialize(triples, format=ox.RdfFormat.N_TRIPLES) or b"" if triples else b""
        return head + b"".join(self._blobs(index))

    def count(self, index: int) -> int:
        """How many triples input path ``index`` gave."""
        return len(self.files[index][1]) + sum(blob.count(b"\n") for blob in self._blobs(index))


@dataclass
class _Scope:
    """The entries of one Bundle, for resolving references inside it."""

    by_url: dict[str, dict] = field(default_factory=dict)
    by_key: dict[tuple[str, str], str] = field(default_factory=dict)


#: Per resource type, the elements that make it not R4 (:func:`rules.not_r4` says which).
_NOT_R4_ELEMENTS = {kind: frozenset(names) for kind, names in rules.NOT_R4.items()}


class _ResourceContext:
    """:class:`rules.Context` for the resources of one Bundle (or of none): the meanings of their
    codes (:meth:`FhirReader.meaning`, remembered per distinct coding list) and their references."""

    __slots__ = ("reader", "scope", "final", "_meanings")

    def __init__(self, reader: FhirReader, scope: _Scope | None, final: bool) -> None:
        # weakly: the reader keeps its contexts, and a cycle would keep everything it read alive
        # until the garbage collector walks it all
        self.reader = weakref.proxy(reader) if scope is None else reader
        self.scope, self.final = scope, final
        self._meanings = reader._meanings

    def read(self, concept: Any) -> rules.Meaning:
        key: Any = ()
        if type(concept) is dict:
            codings = concept.get("coding")
            if type(codings) is list:
                if len(codings) == 1 and type(codings[0]) is dict:  # the usual concept: one coding
                    coding = codings[0]
                    code, system = coding.get("code"), coding.get("system")
                    if type(code) is str and code:  # what _codings_key gives, without its loop
                        key = ((system if type(system) is str else "", code),)
                else:
                    key = _codings_key(codings)
        found = self._meanings.get(key)
        if found is None:
            found = self.reader.meaning(key)
        if found.unmapped:
            counts = self.reader.report.unmapped
            for item in found.unmapped:
                counts[item] += 1
        return found

    def medication(self, resource: dict) -> Any:
        if "medicationCodeableConcept" in resource:
            return resource["medicationCodeableConcept"]
        reference = resource.get("medicationReference")
        ref = reference.get("reference") if isinstance(reference, dict) else None
        if not isinstance(ref, str):
            return None
        if ref.startswith("#"):
            for contained in rules.as_list(resource.get("contained")):
                if isinstance(contained, dict) and contained.get("id") == ref[1:] \
                        and contained.get("resourceType") == "Medication":
                    return contained.get("code")
            return None
        found = self.reader.resolve(ref, self.scope, "Medication")
        if isinstance(found, dict):
            return found.get("code")
        key = _type_id(ref)
        if key is not None and key[0] == "Medication" and key[1] in self.reader.medications:
            return _unpacked(self.reader.medications[key[1]])
        if not self.final:
            raise rules.Pending()
        self.reader.report.unresolved_medications += 1
        return None



def _codings_key(codings: list) -> tuple[tuple[str, str], ...]:
    """``(system, code)`` of each Coding with a code (system ``""`` when absent): the key of a
    concept's meaning."""
    key = []
    for coding in codings:
        if type(coding) is dict:
            code = coding.get("code")
            if type(code) is str and code:
                system = coding.get("system")
                key.append((system if type(system) is str else "", code))
    return tuple(key)


#: What a coding means: the terms it decides, its name for the evidence, its IRI.
_Code = tuple[frozenset[str], str, str]


def _plain(path: str) -> bool:
    """Whether ``path`` holds only ASCII letters, digits, ``-``, ``.`` and ``/`` (and something)."""
    if path.isalnum():
        return path.isascii()
    path = path.replace("/", "").replace("-", "").replace(".", "")
    return path.isascii() and path.isalnum()


def _packed(code: Any) -> Any:
    """A Medication's code as compact JSON bytes (a million of them as dicts take gigabytes);
    what orjson cannot write (an integer beyond 64 bits) is kept as it is."""
    if code is None:
        return None
    try:
        return orjson.dumps(code)
    except TypeError:
        return code


def _unpacked(code: Any) -> Any:
    """A code kept by :func:`_packed`, as the JSON value again (what the rules read is the same:
    orjson writes a non-finite number as null, and no rule reads a number)."""
    return _decoded(code) if isinstance(code, bytes) else code


@functools.lru_cache(maxsize=1 << 12)
def _decoded(code: bytes) -> Any:
    """The few distinct packed codes, decoded once each (the rules never change what they read)."""
    return orjson.loads(code)


def _type_id(ref: str) -> tuple[str, str] | None:
    """``(Type, id)`` of a relative or absolute reference ending in ``Type/id`` (or ``Type/id/_history/v``)."""
    kind, slash, rid = ref.partition("/")
    if slash and rid and "/" not in rid and "?" not in rid and kind[:1].isupper() and kind.isalpha():
        return kind, rid  # the usual relative reference, without the general case's lists
    parts = [p for p in ref.split("?")[0].split("/") if p]
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-2][:1].isupper() and parts[-2].isalpha():
        return parts[-2], parts[-1]
    return None


@functools.lru_cache(maxsize=1 << 16)
def _node(iri: str) -> ox.NamedNode:
    """The pyoxigraph node of a valid IRI (those that repeat, types and predicates, are remembered)."""
    return ox.NamedNode(iri)


@functools.lru_cache(maxsize=1 << 16)
def _iri(iri: str) -> str:
    """:func:`_valid` for the IRIs that repeat (codes, terms, predicates): remembered."""
    return _valid(iri)


def _valid(iri: str) -> str:
    """``iri`` as the valid IRI that names it in the graph (and in the evidence)."""
    try:
        return ox.NamedNode(iri).value
    except ValueError:
        pass
    encoded = safe_iri(iri)
    try:
        return ox.NamedNode(encoded).value
    except ValueError:  # still not an IRI (an odd authority): a stable name for it
        return "urn:itkg:invalid:" + hashlib.sha256(iri.encode("utf-8", "replace")).hexdigest()


class FhirReader:
    """Reads FHIR inputs into triples (see the module's description). One reader per run: it keeps
    what must be resolved across files (Medications, duplicates, patients' etiologies)."""

    def __init__(self, *, base: str = DEFAULT_BASE, mappings: MappingSet | None = None,
                 knowledge: Knowledge | None = None, strict: bool = False,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.base = base if base.endswith("/") else base + "/"
        try:  # a base that is an IRI: names made of it and a FHIR id need no further check
            self._base_ok = ox.NamedNode(self.base + "x").value == self.base + "x"
        except ValueError:
            self._base_ok = False
        self.mappings = mappings or load_mappings()
        self.knowledge = knowledge or load_knowledge()
        self.strict = strict
        self.max_bytes = max_bytes
        self.report = FhirReport()
        self.medications: dict[str, Any] = {}
        self.notes: dict[str, str] = {}
        #: ``Type/id`` of every resource read (see :meth:`_resource`)
        self._seen: set[str | tuple[str, str]] = set()
        self._patients: set[str] = set()
        self._pending: list[tuple[dict, _Scope | None, int, str]] = []
        self._spastic: dict[str, list[tuple[str, int]]] = defaultdict(list)
        self._etiologies: dict[str, set[str]] = defaultdict(set)
        self._intolerances: dict[str, list[tuple[frozenset[str], str]]] = defaultdict(list)
        self._treatments: dict[str, list[tuple[str, int, frozenset[str]]]] = defaultdict(list)
        self._codes: dict[tuple[str, str], _Code] = {}
        self._meanings: dict[tuple[tuple[str, str], ...], rules.Meaning] = {}
        self._sorted: dict[frozenset[str], tuple[str, ...]] = {}
        self._packs: dict[bytes, bytes] = {}
        #: the contexts of resources outside Bundles, before and at the end (``final``)
        self._contexts = (_ResourceContext(self, None, False), _ResourceContext(self, None, True))
        self._names: dict[str, str] = {}
        self._type_sets: dict[frozenset[str], frozenset[str]] = {}
        #: per input path, where its facts go: a list, or the rule engine's index (:mod:`itkg.fhir.index`)
        self._out: list[Any] = []
        self.on_read: Callable[[int], None] | None = None
        self._anonymous = 0
        #: before the number of a record without id or fullUrl (a worker's chunk, in parallel reads)
        self.anonymous_prefix = ""
        #: records named the general way (a fullUrl, an id that is not a plain FHIR id, ...): two
        #: of them may meet in one name, which :mod:`itkg.fhir.waves` cannot see
        self.general_names = 0

    # -- public ---------------------------------------------------------------------------------------

    def read(self, paths: Sequence[str | os.PathLike[str]]) -> FhirGraph:
        """Read every path (files or Bulk directories) and return their triples."""
        digests = []
        for raw in paths:
            path = Path(raw)
            self._out.append([])
            digest = hashlib.sha256()
            for file in files_of(path):
                self._read_file(file, len(self._out) - 1, digest)
            digests.append(digest.hexdigest())
        self.finish()
        files = [(Path(p), out, d) for p, out, d in zip(paths, self._out, digests)]
        return FhirGraph(files, self.notes, self.report)

    def code(self, system: str, code: str) -> _Code:
        """What the coding ``system``/``code`` means (remembered: codes repeat across resources)."""
        key = (system, code)
        found = self._codes.get(key)
        if found is None:
            iri = coding_iri(system, code) if system else ""
            found = (self.mappings.terms(iri) if system else frozenset(),
                     f"{SYSTEM_NAMES.get(system, system)} {code}", iri)
            if len(self._codes) < 1 << 16:
                self._codes[key] = found
        return found

    def meaning(self, key: tuple[tuple[str, str], ...]) -> rules.Meaning:
        """What the codings ``key`` mean (``(system, code)`` of each, :func:`_codings_key`),
        remembered."""
        terms: frozenset[str] = frozenset()
        names, iris, unmapped = [], set(), []
        for system, code in key:
            hit, name, iri = self.code(system, code)
            names.append(name)
            if system:
                iris.add(iri)
            if hit:
                terms |= hit
            else:
                unmapped.append((system or "(no system)", code))
        found = rules.meaning(terms, tuple(names), frozenset(iris), tuple(unmapped), self)
        if len(self._meanings) < 1 << 16:
            self._meanings[key] = found
        return found

    def is_a(self, term: str, ancestor: str) -> bool:
        return ancestor in self.knowledge.ancestors(term)

    def typed(self, term: str, cls: str) -> bool:
        return term in self.individuals(cls)

    def individuals(self, cls: str) -> frozenset[str]:
        """The ontology's individuals typed ``cls`` (outcomes, CSF findings, disorders)."""
        return self.knowledge.individuals(cls)

    def resolve(self, ref: str, scope: _Scope | None, kind: str) -> dict | None:
        """The resource of type ``kind`` that ``ref`` names in the Bundle ``scope``, if any."""
        if scope is None:
            return None
        found = scope.by_url.get(ref)
        if found is None:
            key = _type_id(ref)
            url = scope.by_key.get(key) if key else None
            found = scope.by_url.get(url) if url else None
        return found if isinstance(found, dict) and found.get("resourceType") == kind else None

    # -- files ----------------------------------------------------------------------------------------

    def _read_file(self, path: Path, out: int, digest: Any) -> None:
        size = checked_size(path, self.max_bytes)
        try:
            with path.open("rb") as handle:
                data = read_at_most(handle, self.max_bytes + 1, size)
        except OSError as error:
            raise InputError(path, f"cannot read file ({error.strerror or type(error).__name__})") from None
        if len(data) > self.max_bytes:
            raise InputTooLargeError(path, f"larger than {self.max_bytes} bytes")
        if digest is not None:
            digest.update(data)
        if path.suffix.lower() in (".ndjson", ".jsonl") or self._looks_ndjson(data):
            self.read_lines(data, path, out, 1)
        else:
            self._document(_loads(data, path, None), None, out, str(path), path, None)
            if self.on_read is not None:
                self.on_read(len(data))

    def read_lines(self, data: bytes, path: Path, out: int, first_line: int) -> None:
        """Map the NDJSON lines ``data`` of ``path`` (its line ``first_line`` onwards)."""
        on_read, resource_of, loads, invalid = self.on_read, self._resource, orjson.loads, orjson.JSONDecodeError
        number = first_line
        done = 0
        for block in _blocks(data):
            for number, line in enumerate(block.splitlines(), number):  # noqa: B020 - numbered on
                if on_read is not None:
                    done += len(line) + 1
                    if number % 4096 == 0:
                        on_read(done)
                        done = 0
                if not line or line.isspace():
                    continue
                if len(line) < _SHORT:  # the usual line: what _loads tries first, without the call
                    try:
                        value = loads(line)
                    except invalid:
                        value = _loads(line, path, number)
                elif len(line) > MAX_LINE_BYTES:
                    raise InputTooLargeError(path, "an NDJSON line is longer than 64 MiB", number)
                else:
                    value = _loads(line, path, number)
                resource_of(value, None, out, None, path, number)
            number += 1
        if on_read is not None:
            on_read(done)

    @staticmethod
    def _looks_ndjson(data: bytes) -> bool:
        """Several JSON objects, one per line (a one-line file reads the same either way)."""
        first, _, rest = data.lstrip(b"\xef\xbb\xbf \t\r\n").partition(b"\n")
        if not rest.strip():
            return False
        try:
            return isinstance(json.loads(first), dict)
        except (ValueError, RecursionError):
            return False

    # -- resources ------------------------------------------------------------------------------------

    def _document(self, resource: Any, scope: _Scope | None, out: int, where: str, path: Path,
                  line: int | None) -> None:
        if isinstance(resource, dict) and resource.get("resourceType") == "Bundle":
            self._bundle(resource, out, where, path, line)
        else:
            self._resource(resource, scope, out, where, path, line)

    def _bundle(self, bundle: dict, out: int, where: str, path: Path, line: int | None) -> None:
        self.report.resources["Bundle"] += 1
        scope = _Scope()
        entries = [e for e in rules.as_list(bundle.get("entry")) if isinstance(e, dict)]
        for entry in entries:  # first the index, so that references may point forward
            resource, url = entry.get("resource"), entry.get("fullUrl")
            if not isinstance(resource, dict):
                continue
            key = (resource.get("resourceType"), resource.get("id"))
            if not isinstance(url, str) and isinstance(key[1], str):
                url = f"{key[0]}/{key[1]}"
            if isinstance(url, str):
                scope.by_url.setdefault(url, resource)
                if isinstance(key[0], str) and isinstance(key[1], str):
                    scope.by_key.setdefault((key[0], key[1]), url)
        for number, entry in enumerate(entries, 1):
            resource = entry.get("resource")
            if resource is None:
                continue
            url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
            entry_where = f"{where} (Bundle entry {number})"
            if isinstance(resource, dict) and resource.get("resourceType") == "Bundle":
                self._bundle(resource, out, entry_where, path, line)
            else:
                self._resource(resource, scope, out, entry_where, path, line, url)

    def _refuse_or_note(self, where: str | None, why: str, path: Path, line: int | None) -> None:
        if self.strict:
            raise InputError(path, why + " (refused under --strict)", line)
        self.report.note_not_r4(where or f"{path}:{line}", why)

    def _resource(self, resource: Any, scope: _Scope | None, out: int, where: str | None, path: Path,
                  line: int | None, url: str | None = None) -> None:
        """Map one resource; ``where`` names it in the report (default: ``path:line``)."""
        kind = resource.get("resourceType") if type(resource) is dict else None
        if type(kind) is not str:
            self._refuse_or_note(where, "not a FHIR resource (no resourceType)", path, line)
            return
        r5 = _NOT_R4_ELEMENTS.get(kind)
        if r5 is not None and not r5.isdisjoint(resource):  # (the usual resource: one pass in C)
            why = rules.not_r4(resource)
            if why is not None:
                self._refuse_or_note(where, why, path, line)
                return
        if kind == "Bundle":
            self._bundle(resource, out, where or f"{path}:{line}", path, line)
            return
        report = self.report
        report.resources[kind] += 1
        rid = resource.get("id")
        name: str | None = None
        if type(rid) is not str:
            rid = None
        else:
            # one string (its hash is kept); a type with "/" (not FHIR's) keeps the pair apart
            name = kind + "/" + rid
            key: str | tuple[str, str] = name
            if "/" in kind:
                key = (kind, rid)
            if key in self._seen:
                report.duplicates += 1
                report.first_duplicate = report.first_duplicate or where or f"{path}:{line}"
                return
            self._seen.add(key)
        if kind == "Medication":
            if rid is not None and rid not in self.medications:
                code = _packed(resource.get("code"))
                if type(code) is bytes and len(self._packs) < 1 << 16:  # the same few codes: held once
                    code = self._packs.setdefault(code, code)
                self.medications[rid] = code
            return
        if kind == "Patient":
            patient = self._patient_name(url, rid)
            if patient is not None and patient not in self._patients:
                self._patients.add(patient)
                self._out[out].append((self._valid(patient), vocab.RDF_TYPE, vocab.PATIENT))
            return
        if kind not in rules.RULES:
            report.skipped_types[kind] += 1
            return
        self._map(resource, scope, out, url, False, kind, name)

    def _patient_name(self, url: str | None, rid: str | None) -> str | None:
        if url is not None and ":" in url:
            return url
        return self.base + "Patient/" + rid if rid is not None else None

    def _patient_of(self, resource: dict, scope: _Scope | None) -> str | None:
        reference = resource.get(rules.PATIENT_ELEMENT[resource["resourceType"]])
        ref = reference.get("reference") if isinstance(reference, dict) else None
        if not isinstance(ref, str) or not ref or ref.startswith("#"):
            return None
        if scope is not None:
            url = ref if ref in scope.by_url else scope.by_key.get(_type_id(ref) or ("", ""))
            target = scope.by_url.get(url) if url else None
            if isinstance(target, dict) and target.get("resourceType") == "Patient":
                return self._patient_name(url if url and ":" in url else None, target.get("id"))
        if ref.startswith("urn:"):
            return ref
        key = _type_id(ref)
        if key is None or key[0] != "Patient":
            return None
        return self.base + "Patient/" + key[1]

    def _record_iri(self, resource: dict, url: str | None) -> str:
        """The record's name, a valid IRI (:func:`_valid`)."""
        if url is not None and url.startswith(("http://", "https://")):
            return _valid(url)
        rid = resource.get("id")
        if isinstance(rid, str) and rid:
            iri = f"{self.base}{resource['resourceType']}/{rid}"
            return iri if self._base_ok and _plain(rid) else _valid(iri)
        if url is not None and ":" in url:
            return _valid(url)
        self._anonymous += 1
        return _valid(f"{self.base}{resource['resourceType']}/_itkg-{self.anonymous_prefix}{self._anonymous}")

    def _map(self, resource: dict, scope: _Scope | None, out: int, url: str | None, final: bool,
             kind: str | None = None, name: str | None = None) -> None:
        """Map one resource of a type with a rule; ``name`` is its ``Type/id`` when it has an id."""
        if kind is None:
            kind = resource["resourceType"]
            rid = resource.get("id")
            name = kind + "/" + rid if type(rid) is str else None
        patient = subject = None
        if scope is None:  # the usual reference, "Patient/id" outside a Bundle, without the general case
            reference = resource.get(rules.PATIENT_ELEMENT[kind])
            ref = reference.get("reference") if type(reference) is dict else None
            if type(ref) is str and ref.startswith("Patient/"):
                pid = ref[8:]
                if pid and "/" not in pid and "?" not in pid:
                    patient = self.base + ref
                    if self._base_ok and _plain(pid):
                        subject = patient  # a valid IRI as it is (see _valid)
        if patient is None:
            patient = self._patient_of(resource, scope)
            if patient is None:
                self.report.no_patient += 1
                return
        context = self._contexts[final] if scope is None else _ResourceContext(self, scope, final)
        try:
            record, reason = rules.RULES[kind](resource, context)
        except rules.Pending:
            self._pending.append((resource, scope, out, url or ""))
            return
        if record is None:
            self.report.not_counted[(kind, reason)] += 1
            return
        if record.intolerance:  # an outcome for this patient's treatments: added at the end
            self._intolerances[patient].append((record.intolerance, name or kind))
            return
        self._emit(patient, resource, url, record, out, name, subject)

    def _valid(self, iri: str) -> str:
        """:func:`_valid`, without its cost for the usual names: the base (checked once) then a
        path of letters, digits, ``-``, ``.`` and ``/`` (a FHIR id is ``[A-Za-z0-9.-]{1,64}``);
        a patient's name, which repeats, is remembered."""
        found = self._names.get(iri)
        if found is not None:
            return found
        found = iri
        if not (self._base_ok and iri.startswith(self.base) and _plain(iri[len(self.base):])):
            found = _valid(iri)
        if len(self._names) < 1 << 16:
            self._names[iri] = found
        return found

    def _emit(self, patient: str, resource: dict, url: str | None, record: rules.Record, out: int,
              name: str | None, subject: str | None = None) -> None:
        """Put the record's facts into output ``out``; ``subject``: the patient's valid IRI, when known."""
        if subject is None:
            subject = self._valid(patient)
        link = record.link
        if link == vocab.PLANNED_THERAPY:
            self._out[out].extend([(subject, link, t) for t in self._sorted_terms(record.types)])
            return
        sink = self._out[out]
        types = self._sorted_terms(record.types)
        values = [(predicate, _iri(value) if type(value) is str else (value[0], _iri(value[1])))
                  for predicate, value in record.values]
        if url is None and name is not None and name[-1] != "/" and self._base_ok and _plain(name):
            iri = self.base + name  # the usual record: its name and identifier need no check
            if type(sink) is list or not sink.record(subject, link, iri, types, values):
                sink.extend([(subject, link, iri), *[(iri, vocab.RDF_TYPE, t) for t in types],
                             *[(iri, predicate, value) for predicate, value in values],
                             (iri, DCTERMS_IDENTIFIER, (name, XSD_STRING))])
        else:
            self.general_names += 1
            iri = self._record_iri(resource, url)
            facts: list[Fact] = [(subject, link, iri), *[(iri, vocab.RDF_TYPE, t) for t in types],
                                 *[(iri, predicate, value) for predicate, value in values]]
            if name is None:
                name = iri
            facts.append((iri, DCTERMS_IDENTIFIER, (name, XSD_STRING)))
            if url is not None and url != iri and ":" in url:
                facts.append((iri, RDFS_SEE_ALSO, _valid(url)))
            sink.extend(facts)
        codes = record.codes
        self.notes[iri] = name + ", " + codes[0] if len(codes) == 1 else ", ".join([name, *codes])
        if record.spasticity:
            self._spastic[patient].append((iri, out))  # iri: already valid
        if record.etiologies:
            self._etiologies[patient] |= record.etiologies
        if link == vocab.RECEIVED_TREATMENT:
            classes = frozenset(record.types)  # the same few sets, held once
            self._treatments[patient].append((iri, out, self._type_sets.setdefault(classes, classes)))

    def _sorted_terms(self, terms: AbstractSet[str]) -> tuple[str, ...]:
        """``terms`` sorted, as valid IRIs (:func:`_iri`); the same few sets recur, remembered."""
        key = frozenset(terms)
        found = self._sorted.get(key)
        if found is None:
            found = tuple(_iri(t) for t in sorted(terms))
            if len(self._sorted) < 1 << 16:
                self._sorted[key] = found
        return found

    def finish(self) -> None:
        """Map what had to wait for the whole input: medications whose Medication came later,
        then the etiologies of spasticity conditions and the outcomes intolerances give."""
        pending, self._pending = self._pending, []
        for resource, scope, out, url in pending:
            self._map(resource, scope, out, url or None, final=True)
        for iri, out, sources in severe_side_effects(self._intolerances, self._treatments):
            self._out[out].append((iri, vocab.HAS_OUTCOME, SEVERE_SIDE_EFFECTS))
            self.notes[iri] = self.notes.get(iri, iri) + sources
        etiology = vocab.ITKG + "hasEtiology"
        for patient, nodes in self._spastic.items():
            for iri, out in nodes:
                self._out[out].extend([(iri, etiology, _iri(e))
                                       for e in sorted(self._etiologies.get(patient, ()))])


def _blocks(data: bytes, size: int = 1 << 22) -> Iterator[bytes]:
    """``data`` in blocks of about ``size`` bytes, each cut just after a ``\\n`` (or at the end):
    their lines are those of ``data``, without a list of every line of a large chunk at once."""
    start = 0
    while start < len(data):
        cut = data.find(b"\n", start + size)
        end = len(data) if cut < 0 else cut + 1
        yield data[start:end]
        start = end


def _loads(data: bytes, path: Path, line: int | None) -> Any:
    """Decode one JSON text; errors name the file and line (the NDJSON line, or the line in the
    file), never the value."""
    # orjson first: four times faster. What it refuses (lone surrogates, NaN, numbers beyond a
    # double, a byte order mark, bad UTF-8...) goes on to json, which accepts or refuses it exactly
    # as before. orjson nests deeper than json: a text with many brackets goes to json too.
    if len(data) < _SHORT or data.count(b"{") + data.count(b"[") < _ORJSON_MAX_DEPTH:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    try:
        value = json.loads(data)
        if _SURROGATE.search(data):  # escaped surrogates: only a pair makes a character
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        return value
    except UnicodeEncodeError:
        raise ParseError(path, "a JSON string holds a lone surrogate: not valid Unicode text", line) from None
    except json.JSONDecodeError as error:
        raise ParseError(path, f"not valid JSON ({error.msg})", line if line is not None else error.lineno,
                         None if line is not None else error.colno) from None
    except UnicodeDecodeError:
        raise ParseError(path, "not valid UTF-8 text", line) from None
    except RecursionError:
        raise InputTooLargeError(path, "JSON nested too deeply", line) from None
    except ValueError:
        raise InputTooLargeError(path, "a JSON number has too many digits", line) from None


def read(paths: Sequence[str | os.PathLike[str]], *, base: str = DEFAULT_BASE,
         mappings: Sequence[str | os.PathLike[str]] = (), strict: bool = False,
         max_bytes: int = DEFAULT_MAX_BYTES, on_read: Callable[[int], None] | None = None,
         workers: int = 1, min_chunk_bytes: int | None = None) -> FhirGraph:
    """Read FHIR files and Bulk directories into §2 triples (one reader for all of them).

    :param on_read: called with the number of bytes mapped so far since the last call (progress).
    :param workers: processes that map large NDJSON inputs (:mod:`itkg.fhir.parallel`); the
        result is the same as in one process, which is used whenever that could differ.
    """
    mapping_set = load_mappings(mappings)
    if workers > 1:
        from . import parallel
        graph = parallel.read(paths, base=base, mappings=mapping_set, strict=strict, max_bytes=max_bytes,
                              workers=workers, min_chunk_bytes=min_chunk_bytes or parallel.MIN_CHUNK_BYTES)
        if graph is not None:
            if on_read is not None:
                on_read(sum(f.stat().st_size for p in paths
                            for f in (sorted(Path(p).glob("*.ndjson")) if Path(p).is_dir() else [Path(p)])))
            return graph
    reader = FhirReader(base=base, mappings=mapping_set, strict=strict, max_bytes=max_bytes)
    reader.on_read = on_read
    return reader.read(paths)


SEVERE_SIDE_EFFECTS = vocab.ITKG + "SevereSideEffects"


def severe_side_effects(intolerances: dict[str, list[tuple[frozenset[str], str]]],
                        treatments: dict[str, list[tuple[str, int, frozenset[str]]]]
                        ) -> Iterator[tuple[str, int, str]]:
    """fhir.md §2's rule for an AllergyIntolerance (or intolerance) to a drug the patient took:
    that prior treatment's outcome is severe side effects. Yields, per such treatment, its node,
    its output batch and the evidence suffix naming the intolerance resources. One place for the
    rule, whichever path (one process, or the parallel index) finished the reading."""
    for patient, found in intolerances.items():
        for iri, out, classes in treatments.get(patient, ()):
            sources = sorted({name for drugs, name in found if drugs & classes})
            if sources:
                yield iri, out, ", severe side effects from " + " and ".join(sources)


def merged_reports(reports: Sequence[FhirReport]) -> FhirReport:
    """One report of several, in input order: what one reader reading them in turn would say."""
    merged = FhirReport()
    for report in reports:
        merged.resources.update(report.resources)
        merged.skipped_types.update(report.skipped_types)
        merged.not_counted.update(report.not_counted)
        merged.unmapped.update(report.unmapped)
        merged.not_r4 += report.not_r4
        merged.not_r4_count += report.not_r4_count
        merged.duplicates += report.duplicates
        merged.first_duplicate = merged.first_duplicate or report.first_duplicate
        merged.no_patient += report.no_patient
        merged.unresolved_medications += report.unresolved_medications
    merged.not_r4 = merged.not_r4[:20]
    return merged


def files_of(path: Path) -> list[Path]:
    """The files a FHIR input is read from: a directory's ``*.ndjson`` files by name (a Bulk
    export), else the file itself."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".ndjson" and p.is_file())
        if not files:
            raise InputError(path, "a directory is read as a FHIR Bulk export, and it holds no *.ndjson file")
        return files
    return [path]


def line_start_after(path: Path, position: int) -> int | None:
    """Where the first line that starts after byte ``position`` of ``path`` begins (``None``: no
    line starts after it); NDJSON inputs are cut into chunks there."""
    with path.open("rb") as handle:
        handle.seek(position)
        while True:
            block = handle.read(1 << 20)
            if not block:
                return None
            newline = block.find(b"\n")
            if newline >= 0:
                return position + newline + 1
            position += len(block)


def lines_before(path: Path, position: int) -> int:
    """How many lines of ``path`` end before byte ``position`` (an error in a chunk that starts
    there is reported with the file's own line number)."""
    lines = 0
    with path.open("rb") as handle:
        while position > 0:
            block = handle.read(min(1 << 20, position))
            if not block:
                break
            lines += block.count(b"\n")
            position -= len(block)
    return lines
