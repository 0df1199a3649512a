"""Codes as data: the SSSOM mapping set that ties clinical codes to the contract's terms (fhir.md §3).

``ontology/itkg.sssom.tsv`` is the one source of the ontology's cross-references. Each row says
that an itkg term (the subject) and a code (the object) are related; only ``skos:exactMatch`` and
``skos:narrowMatch`` rows *decide* (the code is the term, or narrower), the other SKOS predicates
document. The ontology's SKOS annotations are generated from the file (:func:`xref_block`,
written into ``ontology/itkg.ttl`` by ``python -m itkg.build_owl``), so the two cannot drift.

Sites add their own rows in SSSOM files of the same shape (``--mappings FILE``, ``mappings=``).
A coding (FHIR ``system`` and ``code``) is named by an IRI (:func:`coding_iri`); ICD-10-CM and ATC
codes are hierarchical, so a row for ``G90.5`` also decides ``G90.50`` and ``G90.511``.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

import yaml  # type: ignore[import-untyped]

from . import vocab
from .errors import InputError
from .resources import data_root

SKOS = "http://www.w3.org/2004/02/skos/core#"
#: Predicates whose rows decide: the code is the term (exact) or narrower than it (narrow).
DECIDING = frozenset({SKOS + "exactMatch", SKOS + "narrowMatch"})
#: Every predicate a mapping row may use.
PREDICATES = frozenset({SKOS + p for p in ("exactMatch", "narrowMatch", "closeMatch", "broadMatch",
                                           "relatedMatch")})

SNOMED_SYSTEM = "http://snomed.info/sct"
ICD10CM_SYSTEM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM_SYSTEM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC_SYSTEM = "http://www.whocc.no/atc"
LOINC_SYSTEM = "http://loinc.org"

#: IRIs of the standard code systems' codes: a coding (S, C) is the IRI prefix of S then C. The
#: prefixes are those of the ontology's cross-references (BioPortal for ICD-10-CM, RxNorm, ATC).
SYSTEM_IRIS: dict[str, str] = {
    SNOMED_SYSTEM: "http://snomed.info/id/",
    ICD10CM_SYSTEM: "http://purl.bioontology.org/ontology/ICD10CM/",
    RXNORM_SYSTEM: "http://purl.bioontology.org/ontology/RXNORM/",
    ATC_SYSTEM: "http://purl.bioontology.org/ontology/ATC/",
    LOINC_SYSTEM: "https://loinc.org/",
    vocab.ITKG: vocab.ITKG,
}
#: Short names of the standard systems, as evidence and reports show them (``ICD-10-CM G89.3``).
SYSTEM_NAMES: dict[str, str] = {
    SNOMED_SYSTEM: "SNOMED CT", ICD10CM_SYSTEM: "ICD-10-CM", RXNORM_SYSTEM: "RxNorm",
    ATC_SYSTEM: "ATC", LOINC_SYSTEM: "LOINC", vocab.ITKG: "itkg",
}
#: Systems whose codes cover their descendants by prefix (fhir.md §3).
HIERARCHICAL = (SYSTEM_IRIS[ICD10CM_SYSTEM], SYSTEM_IRIS[ATC_SYSTEM])

#: CURIE prefixes every mapping file may use without declaring them (those of the shipped set).
DEFAULT_PREFIXES: dict[str, str] = {
    "itkg": vocab.ITKG, "skos": SKOS, "semapv": "https://w3id.org/semapv/vocab/",
    "SCTID": SYSTEM_IRIS[SNOMED_SYSTEM], "ICD10CM": SYSTEM_IRIS[ICD10CM_SYSTEM],
    "RXNORM": SYSTEM_IRIS[RXNORM_SYSTEM], "ATC": SYSTEM_IRIS[ATC_SYSTEM], "LOINC": SYSTEM_IRIS[LOINC_SYSTEM],
    "MONDO": "http://purl.obolibrary.org/obo/MONDO_", "HP": "http://purl.obolibrary.org/obo/HP_",
    "OGMS": "http://purl.obolibrary.org/obo/OGMS_", "OBI": "http://purl.obolibrary.org/obo/OBI_",
    "CHEBI": "http://purl.obolibrary.org/obo/CHEBI_",
}

_CODE_SAFE = "-._~!$&'()*+,;=:@"
_SKIP_CHARS = re.compile(r"[.\s]")


def coding_iri(system: str, code: str) -> str:
    """The IRI of a coding: the documented IRI prefix of a standard system, else ``system/code``.

    >>> coding_iri("http://snomed.info/sct", "221360009")
    'http://snomed.info/id/221360009'
    >>> coding_iri("https://hospital.example/codes", "PAIN-ONC")
    'https://hospital.example/codes/PAIN-ONC'
    >>> coding_iri("https://w3id.org/itkg/", "CancerPain")
    'https://w3id.org/itkg/CancerPain'
    """
    return _coding_iri(system, code)


@lru_cache(maxsize=1 << 16)
def _coding_iri(system: str, code: str) -> str:
    prefix = SYSTEM_IRIS.get(system)
    if prefix is None:
        prefix = safe_iri(system if system.endswith(("/", "#")) else system + "/")
    return prefix + quote(code.strip(), safe=_CODE_SAFE)


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
#: Kept as they are; everything else (``%``, ``?``, ``#``, brackets, spaces...) is percent-encoded.
_IRI_SAFE = ":/@!$&'()*+,;=-._~"


def safe_iri(text: str) -> str:
    """``text`` as a valid absolute IRI: characters IRIs may not hold (spaces, ``<>"{}|\\^```,
    controls) percent-encoded, and ``urn:itkg:invalid:`` before it when it has no scheme. Input
    IRIs (FHIR ids, fullUrls, systems) are data and may be anything.

    >>> safe_iri("https://fhir.invalid/Condition/a b")
    'https://fhir.invalid/Condition/a%20b'
    >>> safe_iri("local codes")
    'urn:itkg:invalid:local%20codes'
    """
    match = _SCHEME.match(text)
    scheme, rest = (match.group(0), text[match.end():]) if match else ("urn:itkg:invalid:", text)
    return scheme + quote(rest, safe=_IRI_SAFE)


def shipped_path() -> Path:
    """The mapping set shipped with the ontology."""
    return data_root() / "ontology" / "itkg.sssom.tsv"


@dataclass(frozen=True)
class Mapping:
    """One SSSOM row: ``subject`` (an itkg term) ``predicate`` ``object`` (a code), both IRIs."""

    subject: str
    predicate: str
    object: str
    object_label: str = ""
    source: str = ""
    origin: str = ""  # the file it came from

    @property
    def decides(self) -> bool:
        """Whether the row decides (exactMatch or narrowMatch) or only documents."""
        return self.predicate in DECIDING


@dataclass
class MappingSet:
    """Mapping rows, indexed for :meth:`terms`: which itkg terms a code decides."""

    rows: list[Mapping] = field(default_factory=list)
    _exact: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set), repr=False)
    _prefix: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set), repr=False)
    _cache: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)

    def add(self, rows: Iterable[Mapping]) -> None:
        self._cache.clear()
        for row in rows:
            self.rows.append(row)
            if not row.decides:
                continue
            self._exact[row.object].add(row.subject)
            for base in HIERARCHICAL:
                if row.object.startswith(base):
                    self._prefix[(base, _normal(row.object[len(base):]))].add(row.subject)

    def terms(self, iri: str) -> frozenset[str]:
        """The itkg terms that the code ``iri`` decides: the exact and narrow rows for it or, for
        ICD-10-CM and ATC, for the nearest of its ancestors (a prefix) that has any; and an itkg
        term itself (the system ``https://w3id.org/itkg/`` is always understood)."""
        found = self._cache.get(iri)
        if found is None:
            found = self._terms(iri)
            if len(self._cache) < 1 << 16:
                self._cache[iri] = found
        return found

    def _terms(self, iri: str) -> frozenset[str]:
        found = self._exact.get(iri)
        if found:
            return frozenset(found)
        if iri.startswith(vocab.ITKG):
            return frozenset({iri})
        for base in HIERARCHICAL:
            if iri.startswith(base):
                code = _normal(iri[len(base):])
                for end in range(len(code) - 1, 0, -1):
                    hit = self._prefix.get((base, code[:end]))
                    if hit:
                        return frozenset(hit)
        return frozenset()


def _normal(code: str) -> str:
    """A hierarchical code compared by prefix: upper case, without dots (``g90.5`` is ``G905``)."""
    return _SKIP_CHARS.sub("", code).upper()


def read_sssom(path: str | os.PathLike[str]) -> list[Mapping]:
    """The rows of an SSSOM TSV file (embedded YAML metadata with a ``curie_map``), CURIEs expanded.

    :raises InputError: naming the file (and line) when it is not a usable SSSOM table.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(file, f"cannot read the mapping file ({type(error).__name__})") from None
    lines = text.splitlines()
    header = [ln[1:] for ln in lines if ln.startswith("#")]
    body = [ln for ln in lines if not ln.startswith("#") and ln.strip()]
    first_data_line = next((i for i, ln in enumerate(lines, 1) if not ln.startswith("#") and ln.strip()), 1)
    try:
        meta = yaml.safe_load("\n".join(header)) if header else {}
    except yaml.YAMLError:
        raise InputError(file, "the mapping file's metadata (# lines) is not valid YAML") from None
    prefixes = dict(DEFAULT_PREFIXES)
    if isinstance(meta, dict) and isinstance(meta.get("curie_map"), dict):
        prefixes.update({str(k): str(v) for k, v in meta["curie_map"].items()})
    reader = csv.DictReader(io.StringIO("\n".join(body)), delimiter="\t")
    needed = {"subject_id", "predicate_id", "object_id"}
    if reader.fieldnames is None or not needed <= set(reader.fieldnames):
        raise InputError(file, "not an SSSOM table: needs subject_id, predicate_id and object_id columns",
                         first_data_line)
    rows = []
    for number, record in enumerate(reader, first_data_line + 1):
        try:
            subject = _expand(record["subject_id"], prefixes)
            predicate = _expand(record["predicate_id"], prefixes)
            obj = _expand(record["object_id"], prefixes)
        except (KeyError, AttributeError, TypeError):
            raise InputError(file, "a row lacks a subject, predicate or object", number) from None
        except ValueError as error:
            raise InputError(file, str(error), number) from None
        if predicate not in PREDICATES:
            raise InputError(file, "predicate_id must be a SKOS mapping predicate "
                                   "(exactMatch, narrowMatch, closeMatch, broadMatch, relatedMatch)", number)
        rows.append(Mapping(subject, predicate, obj, record.get("object_label") or "",
                            record.get("see_also") or "", str(file)))
    return rows


def _expand(curie: str, prefixes: dict[str, str]) -> str:
    curie = curie.strip()
    if curie.startswith(("http://", "https://", "urn:")):
        return curie
    prefix, sep, local = curie.partition(":")
    if not sep or prefix not in prefixes:
        raise ValueError(f"unknown CURIE prefix {prefix!r} (add it to the curie_map)")
    return str(prefixes[prefix]) + local


@lru_cache(maxsize=1)
def _shipped() -> tuple[Mapping, ...]:
    return tuple(read_sssom(shipped_path()))


def load_mappings(extra: Sequence[str | os.PathLike[str]] = ()) -> MappingSet:
    """The shipped mapping set plus a site's SSSOM files ``extra`` (their rows add to it)."""
    mappings = MappingSet()
    mappings.add(_shipped())
    for path in extra:
        mappings.add(read_sssom(path))
    return mappings


# -- the ontology's SKOS cross-references, generated from the shipped set ----------------------------

BLOCK_START = ("# --- SKOS cross-references: generated from ontology/itkg.sssom.tsv by "
               "`python -m itkg.build_owl`. Edit the TSV, not these lines. ---")
BLOCK_END = "# --- end of the generated cross-references ---"


def xref_block(rows: Sequence[Mapping] | None = None) -> str:
    """The Turtle lines of the ontology's SKOS cross-references: one statement per term, predicates
    and codes sorted, and the annotation-property declarations OWL 2 DL needs."""
    rows = list(_shipped() if rows is None else rows)
    by_subject: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for row in rows:
        by_subject[row.subject][row.predicate].add(row.object)
    lines = [BLOCK_START]
    for predicate in sorted({row.predicate for row in rows}):
        lines.append(f"skos:{predicate[len(SKOS):]} a owl:AnnotationProperty .")
    for subject in sorted(by_subject):
        name = "itkg:" + subject[len(vocab.ITKG):] if subject.startswith(vocab.ITKG) else f"<{subject}>"
        parts = [f"skos:{p[len(SKOS):]} " + " , ".join(f"<{o}>" for o in sorted(objs))
                 for p, objs in sorted(by_subject[subject].items())]
        lines.append(f"{name} " + " ;\n  ".join(parts) + " .")
    lines.append(BLOCK_END)
    return "\n".join(lines) + "\n"


def synced_ontology(text: str) -> str:
    """``text`` (the ontology's Turtle) with its generated block replaced by :func:`xref_block`
    (appended when it has none)."""
    block = xref_block()
    start, end = text.find(BLOCK_START), text.find(BLOCK_END)
    if start >= 0 and end > start:
        return text[:start] + block + text[end + len(BLOCK_END):].lstrip("\n")
    return text.rstrip("\n") + "\n\n" + block


def sync_ontology(path: Path, check: bool = False) -> bool:
    """Write the generated cross-references into the ontology at ``path``; with ``check``, only
    say whether they are already in sync. Returns True when the file is (now) in sync."""
    text = path.read_text(encoding="utf-8")
    wanted = synced_ontology(text)
    if wanted == text:
        return True
    if check:
        return False
    path.write_text(wanted, encoding="utf-8")
    return True
