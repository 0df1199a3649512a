"""Deciding large N-Triples input piece by piece ("in waves"), so that no process holds the index
of the whole input.

Why: the parallel path (:mod:`itkg.parallel`) used to parse every piece into one index per worker
and decide only then; at a million patients those indexes were most of a 4.7 GB peak. A patient
can be decided as soon as the piece holding it is parsed, *if* nothing about it (its own triples
and its records') is anywhere else. A cheap pre-scan says so before any parsing:

1. :func:`prescan` reads each piece's bytes and keeps the hash of every subject it writes, in the
   names the reader gives nodes (:class:`itkg.reader.Namer`: an IRI is itself, ``_:p1`` is
   ``_:<file scope>p1``). One regular expression finds the runs of lines that share a subject, so
   this costs a fraction of parsing.
2. :func:`crossing` finds the subjects written in more than one piece (in files grouped by
   patient, as exports are, a few at each cut), working through the hashes in buckets so that no
   set of every subject is ever built.
3. :class:`Waves` parses one piece at a time into a fresh index and decides, there and then,
   every patient that is *local*: neither it nor any of its records crosses, and every record is
   a subject of this piece. Their triples are dropped; everything else of the piece (patients
   that cross or whose records live elsewhere, and nodes no local patient used) is kept, for the
   main process to decide at the end over everyone's kept triples, as before.

A record that a local patient used (and so was dropped) may also be a record of a patient decided
at the end (two patients sharing one record node): the hashes of dropped nodes are kept per
piece, and such a node's triples are read again from its piece (:meth:`Waves.reread`).

The pre-scan is checked against the parse: every subject the parser names in a piece must be one
the pre-scan found there (:class:`Mismatch` otherwise, and the run starts again in one process),
so that a name the pre-scan would derive differently (an escape it does not know) can never make a
patient look local when it is not.
"""

from __future__ import annotations

import re
import sys
from array import array
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pyoxigraph as ox

from .engine import RECORD_LINKS, PatientIndex, RuleEngine
from .knowledge import Knowledge
from .reader import Piece, PieceReport, parse_piece
from .results import EligibilityResult
from .streaming import IndexBuilder

#: N-Triples input of at least this many bytes is decided in waves (:mod:`itkg.parallel`).
#: Below it, one index per process costs about 3.6 bytes of memory per byte of input (580 MB
#: for the 160 MB of 100,000 patients, under 1 GB here), and skipping the pre-scan and the
#: per-wave bookkeeping saves about a seventh of the CPU time (docs/performance.md, session six).
WAVES_FROM = 256 * 1024**2
#: Bytes of N-Triples per wave: about 30,000 patients, an index of about 100 MB while it lasts.
WAVE_BYTES = 48 * 1024**2
#: The pre-scan reads this much at a time (then up to the end of the line).
_BLOCK = 16 * 1024**2
#: Hash buckets of :func:`crossing` (each holds about 1/16 of the subjects at a time).
_BUCKETS = 16

#: A run of lines with the same subject: the subject (an IRI or a labelled blank node) and the
#: lines that repeat it. Lines that start otherwise (comments, blank lines, triple terms) match
#: nothing; a subject the parser finds and this misses fails the check (:class:`Mismatch`).
#: (Possessive from Python 3.11: nothing is ever given back, which makes it a third faster.)
_RUN = re.compile((rb"^[ \t]*+(<[^>\n]*+>|_:[^\s<]++)(?=[ \t<]).*+\n(?:[ \t]*+\1(?=[ \t<]).*+\n)*+"
                   if sys.version_info >= (3, 11) else
                   rb"^[ \t]*(<[^>\n]*>|_:[^\s<]+)(?=[ \t<]).*\n(?:[ \t]*\1(?=[ \t<]).*\n)*"), re.MULTILINE)
_BOM = b"\xef\xbb\xbf"
_UCHAR = re.compile(r"\\u([0-9A-Fa-f]{4})|\\U([0-9A-Fa-f]{8})")


class Mismatch(Exception):
    """The parser named a subject the pre-scan did not find in that piece: the run cannot trust
    the pre-scan and starts again in one process. Never escapes :mod:`itkg`."""


def eligible(pieces: Sequence[Piece]) -> bool:
    """Whether ``pieces`` can be decided in waves: N-Triples files read from disk (the pre-scan
    reads their lines), nothing already failed before parsing."""
    return bool(pieces) and all(p.fmt == ox.RdfFormat.N_TRIPLES and p.data is None and p.fhir is None
                                and p.error is None for p in pieces)


def _unescape(text: str) -> str:
    return _UCHAR.sub(lambda m: chr(int(m.group(1) or m.group(2), 16)), text)


def _key(token: bytes, scope: str) -> str:
    """The name the reader gives the subject written as ``token`` (see :class:`itkg.reader.Namer`)."""
    text = token.decode("utf-8", "surrogateescape")
    if text[0] == "<":
        return _unescape(text[1:-1]) if "\\" in text else text[1:-1]
    label = text[2:]
    return "_:" + scope + label if label[0] != "_" else "_:" + scope + "_" + label


def prescan(piece: Piece) -> array:
    """The hashes of the subjects ``piece`` writes (distinct), in the names of the reader."""
    tokens: set[bytes] = set()
    special = bool(piece.scope)
    with open(piece.path, "rb") as handle:
        start = piece.start
        if start == 0 and handle.read(len(_BOM)) == _BOM:  # skipped, as the reader skips it
            start = len(_BOM)
        handle.seek(start)
        left = None if piece.end is None else piece.end - start
        while left is None or left > 0:
            block = handle.read(_BLOCK if left is None else min(_BLOCK, left))
            if not block:
                break
            if left is not None:
                left -= len(block)
            if not block.endswith(b"\n") and (left is None or left > 0):
                tail = handle.readline()
                if left is not None:
                    tail = tail[:left]
                    left -= len(tail)
                block += tail
            if not block.endswith(b"\n"):
                block += b"\n"
            tokens.update(_RUN.findall(block))
    if not tokens:
        return array("q")
    joined = b"\n" + b"\n".join(tokens)
    # Only the subjects' own text matters (an escape in an IRI, a label that starts with "_"):
    # searched in the distinct subjects, a sixth of the input's bytes.
    if special or b"\\" in joined or b"\n_:_" in joined:
        return array("q", [hash(_key(t, piece.scope)) for t in tokens])
    # The names of every token at once, in C: ``<iri>`` is ``iri``, ``_:label`` itself (no token
    # holds a line break, and only an IRI starts with "<" or ends with ">" in parsable input).
    text = joined.decode("utf-8", "surrogateescape") + "\n"
    return array("q", map(hash, text.replace("\n<", "\n").replace(">\n", "\n")[1:-1].split("\n")))


def buckets(hashes: array) -> list[bytes]:
    """``hashes`` split by :data:`_BUCKETS` (the low bits), packed, for :func:`crossing`."""
    split = [array("q") for _ in range(_BUCKETS)]
    mask = _BUCKETS - 1
    for value in hashes:
        split[value & mask].append(value)
    return [b.tobytes() for b in split]


def crossing(per_piece: Sequence[list[bytes]]) -> set[int]:
    """The hashes found in more than one piece, from each piece's :func:`buckets`."""
    found: set[int] = set()
    for bucket in range(_BUCKETS):
        seen: set[int] = set()
        for packed in per_piece:
            values = array("q")
            values.frombytes(packed[bucket])
            found.update(seen.intersection(values))
            seen.update(values)
    return found


def record_links(knowledge: Knowledge) -> tuple[str, ...]:
    """The links from a patient to the nodes the rules read for it: the contract's, and every
    prerequisite's own link (an extension may add one)."""
    links = list(RECORD_LINKS)
    for prerequisite in knowledge.all_prerequisites():
        if prerequisite.link and prerequisite.link not in links:
            links.append(prerequisite.link)
    return tuple(links)


def records(index: PatientIndex, patient: str, links: Sequence[str]) -> list[str]:
    """The nodes the rules read for ``patient`` besides its own (``links`` from :func:`record_links`)."""
    found = index.nodes.get(patient)
    if not found:
        return []
    return [n for link in links for n in found.get(link, ()) if isinstance(n, str)]


def pack(row: EligibilityResult) -> tuple:
    """A row as plain tuples: smaller to hold, and pickled and rebuilt several times faster."""
    return (row.patient, row.therapy, row.indication, row.status, row.unmet, row.evidence,
            tuple((c.code, c.state, c.reason, c.records) for c in row.prerequisites))


class Waves:
    """One process's waves: its pieces parsed and decided one at a time.

    ``rows`` are the rows of the local patients (packed, to send, unless ``packed`` is false); ``kept`` the triples of everything else;
    ``dropped`` the hashes of the nodes decided and dropped, per piece number.
    """

    def __init__(self, knowledge: Knowledge, crossing: set[int], prescanned: dict[int, array], *,
                 packed: bool = True) -> None:
        self.knowledge = knowledge
        #: rows as :func:`pack` gives them (to send), else as they are
        self.packed = packed
        self.crossing = crossing
        self.prescanned = prescanned
        self.links = record_links(knowledge)
        self.predicates = knowledge.indexed_predicates()
        self.kept = PatientIndex(self.predicates)
        #: one builder for every wave, a fresh index each time: its checker's caches (verdicts
        #: of predicates, classes and literals, which a population repeats) carry over
        self.builder = IndexBuilder(predicates=self.predicates)
        self.rows: list[Any] = []
        self.dropped: dict[int, array] = {}
        self.engine: RuleEngine | None = None
        self.patients = 0

    def wave(self, piece: Piece, *, on_read: Callable[[int], None] | None,
             should_stop: Callable[[], bool] | None,
             decided: Callable[[int], None]) -> PieceReport:
        """Parse ``piece`` and decide its local patients (not when parsing found a problem: the
        run then ends with the input's error, and no row counts)."""
        builder = self.builder
        builder.index = PatientIndex(self.predicates)
        report = parse_piece(piece, builder, on_read=on_read, should_stop=should_stop)
        if report.failure is not None or report.stopped:
            return report
        index = builder.index
        nodes = index.nodes
        if not set(map(hash, nodes)).issubset(self.prescanned.pop(piece.number)):
            raise Mismatch("the pre-scan missed a subject the parser named")
        crossing, links = self.crossing, self.links
        if self.engine is None:
            self.engine = RuleEngine(self.knowledge, index)
        engine = self.engine  # one engine for every wave: its caches (classes, dates) carry over
        engine.index = index
        rows, packed, decide = self.rows, self.packed, engine.rows
        used: list[str] = []
        deferred: set[str] = set()
        patients = index.patients()
        self.patients += len(patients)
        has, empty = nodes.__contains__, ()
        for patient in patients:  # (records() inlined: a million patients)
            props = nodes[patient]
            found = [n for link in links for n in props.get(link, empty) if isinstance(n, str)]
            if not all(map(has, found)) or crossing and (
                    hash(patient) in crossing or not crossing.isdisjoint(map(hash, found))):
                deferred.add(patient)
                continue
            rows.extend(map(pack, decide(patient)) if packed else decide(patient))
            used.append(patient)
            used += found
        decided(len(patients) - len(deferred))
        dropped = array("q")
        pop = nodes.pop
        for node in used:  # (a patient decided at the end stays, even when a local one used it)
            if (not deferred or node not in deferred) and pop(node, None) is not None:
                dropped.append(hash(node))
        if dropped:
            self.dropped[piece.number] = dropped
        if nodes:
            self.kept.merge(nodes)
        return report

    def dropped_pieces(self, wanted: Iterable[int]) -> dict[int, list[int]]:
        """Of the hashes ``wanted``, those of nodes dropped here, by piece number."""
        wanted = set(wanted)
        return {number: sorted(hits) for number, hashes in self.dropped.items()
                if (hits := wanted.intersection(hashes))}


def reread(piece: Piece, nodes: Iterable[str], predicates: frozenset[str]) -> dict[str, dict[str, list]]:
    """The triples of ``nodes`` in ``piece``, parsed again (nodes a local patient used and that a
    patient decided at the end needs too)."""
    builder = IndexBuilder(predicates=predicates)
    report = parse_piece(piece, builder)
    assert report.failure is None  # it parsed without one before
    return builder.index.fragment(nodes)
