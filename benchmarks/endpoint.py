"""``itkg eligibility --endpoint`` on Virtuoso and on the Oxigraph server, beside the local engine.

    python benchmarks/endpoint.py --size 100000          # writes benchmarks/out/endpoint.json

For one size of synthetic patients (``generate.py``, seed 1, N-Triples) it loads the ontology and
the patients into a private Virtuoso (bulk loader; ``tests/_virtuoso_server.py``) and a private
Oxigraph server (``oxigraph load``; ``tests/_oxigraph_server.py``), both on 127.0.0.1, then times
``itkg eligibility --format json -o OUT`` three ways: locally on the file, and with ``--endpoint``
on each server. Loading is timed apart from the query. It checks that the three give the same
rows (patient, therapy, indication, status, unmet) and prints one Markdown table with the machine's
load average before each run, because the machine may be shared.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ONTOLOGY = ROOT / "ontology" / "itkg.ttl"


def _helper(name: str) -> Any:
    """A server helper of tests/ (they import each other, so tests/ goes on the path)."""
    if str(ROOT / "tests") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _timed(argv: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return time.monotonic() - started, done


def _itkg(*args: str) -> list[str]:
    return [sys.executable, "-m", "itkg.cli", *args]


def _rows(path: Path) -> set[tuple[Any, ...]]:
    return {(r["patient"], r["therapy"], r["indication"], r["status"], tuple(r["unmet"]))
            for r in json.loads(path.read_text(encoding="utf-8"))["results"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()
    data_dir = HERE / "data"
    data_dir.mkdir(exist_ok=True)
    data = data_dir / f"patients-{args.size}-seed1.nt"
    if not data.exists():
        subprocess.run([sys.executable, str(HERE / "generate.py"), str(args.size), "--seed", "1",
                        "--format", "nt", "-o", str(data)], check=True)
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    figures: list[dict[str, Any]] = []

    def record(label: str, seconds: float, done: subprocess.CompletedProcess[str] | None = None) -> None:
        if done is not None and done.returncode != 0:
            raise SystemExit(f"{label} failed:\n{done.stderr[-3000:]}")
        figures.append({"run": label, "wall_s": round(seconds, 2), "load_before": os.getloadavg()[0]})
        print(f"{label}: {seconds:.2f} s", file=sys.stderr)

    def eligibility(label: str, *where: str) -> Path:
        target = out / f"endpoint-{label.split()[0]}.json"
        load = os.getloadavg()[0]
        seconds, done = _timed(_itkg("eligibility", "--format", "json", "-o", str(target),
                                     "--timeout", str(args.timeout), *where))
        record(label, seconds, done)
        figures[-1]["load_before"] = load
        return target

    local = eligibility("local itkg eligibility FILE (native engine)", str(data))
    with tempfile.TemporaryDirectory(prefix="itkg-bench-") as work:
        work_dir = Path(work)
        # Virtuoso: bulk loader, then the endpoint.
        virtuoso = _helper("_virtuoso_server")
        staged = work_dir / "virtuoso-data"
        staged.mkdir()
        shutil.copy(ONTOLOGY, staged / "itkg.ttl")
        os.symlink(data, staged / "patients.nt")
        server = virtuoso.VirtuosoServer(work_dir / "virtuoso-db", max_rows=10_000_000,
                                         max_seconds=int(args.timeout), data_dirs=(staged, data_dir),
                                         buffers=170_000)
        server.start()
        try:
            started = time.monotonic()
            server.bulk_load(staged, "itkg.ttl", "https://example.org/graph/ontology")
            server.bulk_load(staged, "patients.nt", "https://example.org/graph/patients")
            record("Virtuoso bulk load (ld_dir + rdf_loader_run)", time.monotonic() - started)
            on_virtuoso = eligibility("virtuoso itkg eligibility --endpoint (form)", "--endpoint",
                                      server.query_url, "--endpoint-method", "form")
        finally:
            server.stop()
        # Oxigraph server: oxigraph load into the default graph, then serve.
        oxigraph = _helper("_oxigraph_server")
        store = work_dir / "oxigraph"
        executable = oxigraph.oxigraph_executable()
        started = time.monotonic()
        for path in (ONTOLOGY, data):
            subprocess.run([executable, "load", "--location", str(store), "--file", str(path)],
                           check=True, capture_output=True)
        record("Oxigraph load (oxigraph load)", time.monotonic() - started)
        with oxigraph.OxigraphServer(location=store) as running:
            on_oxigraph = eligibility("oxigraph itkg eligibility --endpoint (direct)", "--endpoint",
                                      running.query_url, "--endpoint-method", "direct")
    expected = _rows(local)
    agree = {"virtuoso": _rows(on_virtuoso) == expected, "oxigraph": _rows(on_oxigraph) == expected}
    result = {"size": args.size, "rows": len(expected), "agree": agree, "figures": figures,
              "cpus": os.cpu_count(), "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    (out / "endpoint.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(f"\n{args.size:,} patients, {len(expected):,} rows; same rows: {agree}\n")
    print("| run | wall s | load before |\n| --- | ---: | ---: |")
    for figure in figures:
        print(f"| {figure['run']} | {figure['wall_s']:.2f} | {figure['load_before']:.1f} |")
    return 0 if all(agree.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
