"""`itkg validate`'s stages, engine by engine: read (into the spool), plan, judge, merge.

Each engine reads its own spool (planning drops the spool's node table), plans with its own batch
size and judges with ``WORKERS`` workers; CPU seconds are this process's and its waited-for
children's (spawned workers, ``java`` workers), from ``getrusage``.

    python benchmarks/validate_stages.py benchmarks/data/patients-100000-seed1.nt native,turbo,jena 2
"""

from __future__ import annotations

import resource
import sys
import time


def cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    from itkg import validation
    from itkg.knowledge import ontology_graph
    path, engines = sys.argv[1], sys.argv[2].split(",")
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    shapes, ontology = validation.shapes_graph(), ontology_graph()
    for engine in engines:
        backend = validation.BACKENDS[engine]()
        c0, w0 = cpu(), time.perf_counter()
        spool, _ = validation.read([path])
        c1, w1 = cpu(), time.perf_counter()
        cut = validation._plan(spool, backend.batch_triples, shapes, ontology)
        c2, w2 = cpu(), time.perf_counter()
        batches = backend.judge(spool, cut, workers=workers, progress=None, shapes=shapes, ontology=ontology,
                                extended=False)
        c3, w3 = cpu(), time.perf_counter()
        report = validation._merged(batches)
        c4, w4 = cpu(), time.perf_counter()
        spool.close()
        print(f"{engine}: {len(spool)} triples; read {w1 - w0:.1f} s wall / {c1 - c0:.1f} s CPU, "
              f"plan {w2 - w1:.1f} / {c2 - c1:.1f}, judge {w3 - w2:.1f} / {c3 - c2:.1f}, "
              f"merge {w4 - w3:.1f} / {c4 - c3:.1f}; {len(report.results)} results, conforms {report.conforms}",
              flush=True)


if __name__ == "__main__":  # spawned workers import this module: run only as a script
    main()
