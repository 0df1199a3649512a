"""Time ``itkg validate``'s population path stage by stage: read (into the spool), plan, judge, merge.

    PYTHONPATH=src python benchmarks/validate_stages.py FILE [--engine jena] [--workers 2]

Each stage's wall time and CPU time (this process and its children that have ended: the reading
workers, pySHACL's and Jena's workers once they are waited for) are printed as one JSON line, with
the ``uptime`` load before the run, the result count and the peak resident set of this process.
The stages are those :func:`itkg.validation.validate` runs, called one by one as it calls them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from typing import Any, Callable


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--engine", default="jena")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--label", default="")
    args = parser.parse_args()

    from itkg import validation
    from itkg.knowledge import ontology_graph

    load = os.getloadavg()[0]
    stages: dict[str, list[float]] = {}

    def timed(name: str, function: Callable[[], Any]) -> Any:
        wall, cpu = time.perf_counter(), _cpu()
        value = function()
        stages[name] = [round(time.perf_counter() - wall, 2), round(_cpu() - cpu, 2)]
        return value

    shapes, ontology = validation.shapes_graph(), ontology_graph()
    chosen = validation.engine_for(range(2_000_000), args.engine)
    backend = validation.BACKENDS[chosen]()
    try:
        spool, _ = timed("read", lambda: validation.read([args.file], workers=args.workers))
    except TypeError:  # a commit whose read() takes no workers
        spool, _ = timed("read", lambda: validation.read([args.file]))
    cut = timed("plan", lambda: validation._plan(spool, backend.batch_triples, shapes, ontology))
    batches = timed("judge", lambda: backend.judge(spool, cut, workers=args.workers, progress=None,
                                                   shapes=shapes, ontology=ontology, extended=False))
    report = timed("merge", lambda: validation._naming_patients(validation._merged(batches), spool))
    spool.close()
    print(json.dumps({"label": args.label, "engine": chosen, "triples": len(spool), "results": len(report.results),
                      "conforms": report.conforms, "stages (wall s, CPU s)": stages, "load before": load,
                      "peak MB (this process)": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
