"""Mapping a large FHIR Bulk export in several processes, with the result of one.

The NDJSON files are cut at line starts into chunks; forked workers (they inherit the mapping set
and the ontology) each map their chunks with a :class:`~itkg.fhir.reader.FhirReader`, as the one
process would, but leave what crosses chunks to the main process: medications referenced from
another chunk, the etiologies and intolerances of a patient, and duplicates. The main process
then merges the workers' state, in input order, and finishes as :meth:`FhirReader.read` does.

Whenever the result could differ from one process's, :func:`read` returns None and the caller
reads in one process: a resource type and id found in two chunks (which one is "first" matters),
or any error (one process reports it with its exact line).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyoxigraph as ox

from .. import processes
from ..errors import InputError
from ..knowledge import Knowledge, load_knowledge
from ..loading import checked_size
from ..mappings import MappingSet
from .reader import Fact, FhirGraph, FhirReader, line_start_after, lines_before, merged_reports, to_triple

#: Chunks are at least this large; inputs smaller than two chunks are read in one process.
MIN_CHUNK_BYTES = 16 * 1024**2


@dataclass(frozen=True)
class _Chunk:
    number: int
    out: int
    path: Path
    start: int
    end: int
    ndjson: bool


#: What the workers need, set before they are forked (inherited, never pickled).
_JOB: dict[str, Any] = {}


def _plan(paths: Sequence[Path], max_bytes: int, parts: int, min_chunk: int) -> list[_Chunk] | None:
    chunks: list[_Chunk] = []
    for out, path in enumerate(paths):
        files = sorted(p for p in path.iterdir() if p.suffix == ".ndjson" and p.is_file()) \
            if path.is_dir() else [path]
        for file in files:
            try:
                size = checked_size(file, max_bytes)
            except InputError:
                return None
            ndjson = file.suffix.lower() in (".ndjson", ".jsonl")
            cuts = [0]
            if ndjson and size >= 2 * min_chunk:
                count = min(parts, size // min_chunk)
                for k in range(1, count):
                    cut = line_start_after(file, max(size * k // count, cuts[-1]))
                    if cut is not None and cut > cuts[-1] and cut < size:
                        cuts.append(cut)
            cuts.append(size)
            chunks += [_Chunk(len(chunks), out, file, cuts[k], cuts[k + 1], ndjson) for k in range(len(cuts) - 1)]
    return chunks


def _work(chunk: _Chunk) -> dict[str, Any] | None:
    """Map one chunk (in a worker); None when it has an error (one process will report it)."""
    reader = FhirReader(base=_JOB["base"], mappings=_JOB["mappings"], knowledge=_JOB["knowledge"],
                        strict=_JOB["strict"], max_bytes=_JOB["max_bytes"])
    reader.anonymous_prefix = f"{chunk.number}-"
    out: list[list[Fact]] = [[] for _ in range(_JOB["paths"])]
    reader._out = out
    try:
        if chunk.ndjson:
            with chunk.path.open("rb") as handle:
                handle.seek(chunk.start)
                data = handle.read(chunk.end - chunk.start)
            reader.read_lines(data, chunk.path, chunk.out, lines_before(chunk.path, chunk.start) + 1)
        else:
            reader._read_file(chunk.path, chunk.out, hashlib.sha256())
    except (InputError, RecursionError, MemoryError):
        return None
    return {
        "blob": ox.serialize([to_triple(f) for f in out[chunk.out]], format=ox.RdfFormat.N_TRIPLES) or b""
        if out[chunk.out] else b"",
        "notes": reader.notes, "report": reader.report, "seen": reader._seen,
        "medications": reader.medications, "patients": reader._patients, "pending": reader._pending,
        "spastic": dict(reader._spastic), "etiologies": dict(reader._etiologies),
        "intolerances": dict(reader._intolerances), "treatments": dict(reader._treatments),
    }


def read(paths: Sequence[str | os.PathLike[str]], *, base: str, mappings: MappingSet, strict: bool,
         max_bytes: int, workers: int, min_chunk_bytes: int = MIN_CHUNK_BYTES,
         knowledge: Knowledge | None = None) -> FhirGraph | None:
    """The graph of :func:`itkg.fhir.read`, mapped by ``workers`` processes; None when the input
    is too small to cut, fork is not available, or one process must read it (see the module)."""
    if workers < 2 or not processes.forking_available():
        return None
    inputs = [Path(p) for p in paths]
    if any(not p.exists() for p in inputs):
        return None
    chunks = _plan(inputs, max_bytes, workers * 2, min_chunk_bytes)
    if chunks is None or len(chunks) < 2 or not any(c.ndjson for c in chunks) \
            or sum(c.end - c.start for c in chunks) < 2 * min_chunk_bytes:
        return None
    _JOB.update(base=base, mappings=mappings, knowledge=knowledge or load_knowledge(), strict=strict,
                max_bytes=max_bytes, paths=len(inputs))
    try:
        with processes.fork_pool(min(workers, len(chunks))) as pool:
            results = pool.map(_work, chunks, chunksize=1)
    finally:
        _JOB.clear()
    if any(r is None for r in results):
        return None
    seen: set[str | tuple[str, str]] = set()
    for result in results:
        assert result is not None
        if not seen.isdisjoint(result["seen"]):
            return None  # a type and id in two chunks: which one is first must be decided in order
        seen |= result["seen"]
    reader = FhirReader(base=base, mappings=mappings, knowledge=knowledge, strict=strict, max_bytes=max_bytes)
    reader._out = [[] for _ in inputs]
    reader._seen = seen
    blobs: list[list[bytes]] = [[] for _ in inputs]
    for chunk, result in zip(chunks, results):
        assert result is not None
        blobs[chunk.out].append(result["blob"])
        reader.notes.update(result["notes"])
        for key, value in result["medications"].items():
            reader.medications.setdefault(key, value)
        reader._patients |= result["patients"]
        reader._pending += result["pending"]
        for patient, nodes in result["spastic"].items():
            reader._spastic[patient] += nodes
        for patient, found in result["etiologies"].items():
            reader._etiologies[patient] |= found
        for patient, found in result["intolerances"].items():
            reader._intolerances[patient] += found
        for patient, found in result["treatments"].items():
            reader._treatments[patient] += found
    reader.report = merged_reports([r["report"] for r in results if r is not None])
    reader.finish()
    digests = []
    for path in inputs:
        digest = hashlib.sha256()
        for file in sorted(p for p in path.iterdir() if p.suffix == ".ndjson" and p.is_file()) \
                if path.is_dir() else [path]:
            with file.open("rb") as handle:
                while block := handle.read(1 << 20):
                    digest.update(block)
        digests.append(digest.hexdigest())
    files = [(path, out, digest) for path, out, digest in zip(inputs, reader._out, digests)]
    return FhirGraph(files, reader.notes, reader.report, blobs)
