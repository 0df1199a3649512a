"""One command for itkg's performance figures: eligibility, queries, validation and reasoning by size.

    python benchmarks/run.py [--sizes 1000,10000,100000,1000000] [--only eligibility,query,validate,reason]
                             [--out benchmarks/out/results.json]

Why a harness and not a stopwatch: the targets in docs/performance.md compare itkg with plain
rdflib + pySHACL and with a near-limit reference (benchmarks/reference.py), so every tool must be
measured the same way and must be shown to give the same answers. Each (tool, size) runs in a fresh
subprocess; wall time is measured around it, peak memory is the larger of the biggest single
process's maximum RSS (``wait4``) and the sampled sum of PSS over the whole process tree (parallel
workers count), and CPU time is user + system of the tree. Before comparing times, the outputs are
checked against each other: reference rows = itkg rows, query rows = itkg's ``qualifies`` rows,
``itkg validate`` verdict = plain pySHACL verdict.

Plain baselines (rdflib, pySHACL) are capped: a baseline is not run at a size when it took longer
than ``--cap`` seconds at the previous size. Every run is killed at ``--timeout`` seconds or when the
tree passes ``--memory-limit`` MB, and recorded as such. Data comes from benchmarks/generate.py,
is written once per size, seed and format to benchmarks/data/ and reused.

``python benchmarks/run.py task NAME ...`` runs one plain baseline step inside a measured
subprocess; the harness calls it, people need not.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DEFAULT_SIZES = (1_000, 10_000, 100_000, 1_000_000)
GROUPS = ("eligibility", "query", "validate", "reason")
_PAGE = os.sysconf("SC_PAGE_SIZE")


# -- measuring one subprocess tree ----------------------------------------------------------------

@dataclass
class Measurement:
    """One (tool, size) run. ``status``: ok, failed, timeout, memory (killed at the limit), skipped."""

    group: str
    tool: str
    size: int
    status: str
    wall_s: float | None = None
    peak_mb: float | None = None
    tree_pss_peak_mb: float | None = None
    max_process_rss_mb: float | None = None
    cpu_s: float | None = None
    exit_code: int | None = None
    load_before: float | None = None
    note: str = ""
    command: str = ""
    when: str = ""
    commit: str = ""


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                ppid = int(handle.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _tree(root: int) -> list[int]:
    children, found, stack = _children_map(), [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, ()))
    return found


def _pss_kb(pid: int) -> int:
    """Proportional set size: shared pages split between the processes that share them, so the
    sum over forked workers is the memory the tree really holds (RSS would count them twice)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
            for line in handle:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    try:
        with open(f"/proc/{pid}/statm", "rb") as handle:
            return int(handle.read().split()[1]) * _PAGE // 1024
    except (OSError, ValueError, IndexError):
        return 0


def measure(argv: list[str], timeout: float, memory_limit_mb: float, interval: float = 0.2) -> dict:
    """Run ``argv`` in its own process group; return wall time, memory, CPU and how it ended."""
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    process = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    state = {"peak_kb": 0, "killed": ""}
    done = threading.Event()

    def watch() -> None:
        # Sample often while runs are short, less often later: the sampler shares the 2 cores.
        while not done.wait(interval if time.perf_counter() - started < 20 else 3 * interval):
            total = sum(_pss_kb(pid) for pid in _tree(process.pid))
            state["peak_kb"] = max(state["peak_kb"], total)
            reason = ("timeout" if time.perf_counter() - started > timeout
                      else "memory" if total > memory_limit_mb * 1024 else "")
            if reason:
                state["killed"] = reason
                try:
                    os.killpg(process.pid, signal.SIGKILL)  # the group this harness started
                except ProcessLookupError:
                    pass
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        stderr = process.stderr.read() if process.stderr else b""
        _, status, usage = os.wait4(process.pid, 0)
    except BaseException:
        # The command runs in a session of its own (so that a kill reaches its workers): when the
        # harness is interrupted (Ctrl-C, or SIGTERM, see main), the command goes with it.
        done.set()
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
        raise
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    watcher.join()
    rss_mb = usage.ru_maxrss / 1024
    pss_mb = state["peak_kb"] / 1024
    return {"wall_s": round(wall, 2), "exit_code": process.returncode, "killed": state["killed"],
            "tree_pss_peak_mb": round(pss_mb, 1), "max_process_rss_mb": round(rss_mb, 1),
            "peak_mb": round(max(rss_mb, pss_mb), 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 2), "load_before": round(load_before, 2),
            "stderr": stderr.decode("utf-8", "replace")[-2000:]}


# -- tools ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tool:
    """A measured command: ``argv(data, output, timeout)``; ``baseline`` tools are capped."""

    group: str
    name: str
    argv: Callable[[Path, Path, float], list[str]]
    suffix: str
    ok_codes: tuple[int, ...] = (0,)
    baseline: bool = False


def _itkg() -> list[str]:
    return [sys.executable, "-m", "itkg.cli"]


def _task(name: str) -> Callable[[Path, Path, float], list[str]]:
    return lambda data, out, timeout: [sys.executable, str(Path(__file__)), "task", name, str(data), str(out)]


TOOLS: tuple[Tool, ...] = (
    Tool("eligibility", "itkg eligibility",
         lambda d, o, t: _itkg() + ["eligibility", str(d), "--format", "json", "-o", str(o)], "json"),
    Tool("eligibility", "reference (pyoxigraph + dicts)",
         lambda d, o, t: [sys.executable, str(BENCH / "reference.py"), str(d), "-o", str(o)], "json"),
    Tool("eligibility", "plain rdflib: parse + eligible-therapies.rq", _task("rdflib-query"), "json",
         baseline=True),
    Tool("query", "plain Oxigraph Store: bulk load + eligible-therapies.rq", _task("oxigraph-query"), "json"),
    Tool("query", "itkg query eligible-therapies --engine oxigraph",
         lambda d, o, t: _itkg() + ["query", "eligible-therapies", str(d), "--engine", "oxigraph",
                                    "--format", "csv", "--timeout", str(int(t)), "-o", str(o)], "csv"),
    Tool("validate", "itkg validate",
         lambda d, o, t: _itkg() + ["validate", str(d), "--format", "json", "-o", str(o)], "json",
         ok_codes=(0, 1)),
    Tool("validate", "itkg validate --engine pyshacl",
         lambda d, o, t: _itkg() + ["validate", str(d), "--engine", "pyshacl", "--format", "json", "-o", str(o)],
         "json", ok_codes=(0, 1), baseline=True),
    Tool("validate", "plain pySHACL: whole graph", _task("pyshacl"), "json", baseline=True),
    Tool("reason", "itkg reason (HermiT)",
         lambda d, o, t: _itkg() + ["reason", str(d), "--format", "json", "--timeout", str(int(t)),
                                    "--max-patients", "10000000", "-o", str(o)], "json"),
)


# -- plain baseline tasks (run inside a measured subprocess) -------------------------------------

def _rdflib_graph(data: Path):
    import rdflib
    from itkg.resources import ontology_path
    graph = rdflib.Graph()
    graph.parse(ontology_path(), format="turtle")
    graph.parse(data, format="nt" if data.suffix == ".nt" else "turtle")
    return graph


def _node(term) -> str:
    import rdflib
    return f"_:{term}" if isinstance(term, rdflib.BNode) else str(term)


def _task_rdflib_query(data: Path, out: Path) -> None:
    """rdflib as a user would run it: parse ontology and data into one graph, run the query."""
    from itkg.resources import query_path
    result = _rdflib_graph(data).query(query_path("eligible-therapies").read_text(encoding="utf-8"))
    rows = [[_node(row.patient), str(row.therapy), str(row.indication)] for row in result]
    out.write_text(json.dumps(rows), encoding="utf-8")


def _task_oxigraph_query(data: Path, out: Path) -> None:
    """The query in an in-memory pyoxigraph Store, bulk-loaded straight from the files."""
    import pyoxigraph as ox
    from itkg.resources import ontology_path, query_path
    store = ox.Store()
    store.bulk_load(path=ontology_path(), format=ox.RdfFormat.TURTLE)
    store.bulk_load(path=data, format=ox.RdfFormat.N_TRIPLES if data.suffix == ".nt" else ox.RdfFormat.TURTLE)
    result = store.query(query_path("eligible-therapies").read_text(encoding="utf-8"))
    rows = [[str(s["patient"])[1:-1] if isinstance(s["patient"], ox.NamedNode) else str(s["patient"]),
             s["therapy"].value, s["indication"].value] for s in result]
    out.write_text(json.dumps(rows), encoding="utf-8")


def _task_pyshacl(data: Path, out: Path) -> None:
    """pySHACL over the whole graph as contract §4 states it: ontology as ont_graph, no inference.
    ``inplace=True`` spares the baseline a copy of the data graph (the kindest fair setting)."""
    import pyshacl
    import rdflib
    from rdflib.namespace import SH
    from itkg.resources import ontology_path, shapes_paths
    graph = rdflib.Graph().parse(data, format="nt" if data.suffix == ".nt" else "turtle")
    shapes = rdflib.Graph()
    for path in shapes_paths():
        shapes.parse(path, format="turtle")
    ontology = rdflib.Graph().parse(ontology_path(), format="turtle")
    conforms, report, _ = pyshacl.validate(graph, shacl_graph=shapes, ont_graph=ontology, inference="none",
                                           abort_on_first=False, allow_warnings=True, do_owl_imports=False,
                                           inplace=True)
    results = []
    for result in report.subjects(rdflib.RDF.type, SH.ValidationResult):
        path, severity = report.value(result, SH.resultPath), report.value(result, SH.resultSeverity)
        messages = sorted(str(m) for m in report.objects(result, SH.resultMessage))
        results.append({"focus": _node(report.value(result, SH.focusNode)),
                        "path": _node(path) if path is not None else None,
                        "severity": str(severity).rsplit("#", 1)[-1] if severity else "Violation",
                        "message": messages[0] if messages else "constraint violated"})
    out.write_text(json.dumps({"conforms": bool(conforms), "results": results}), encoding="utf-8")


TASKS = {"rdflib-query": _task_rdflib_query, "oxigraph-query": _task_oxigraph_query,
         "pyshacl": _task_pyshacl}


# -- data ----------------------------------------------------------------------------------------

def dataset(size: int, seed: int, fmt: str, data_dir: Path) -> Path:
    """The generated file for ``size`` patients, written once (atomically) and reused."""
    path = data_dir / f"patients-{size}-seed{seed}.{fmt}"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{fmt}.partial")
        print(f"generating {path.name} ...", flush=True)
        subprocess.run([sys.executable, str(BENCH / "generate.py"), str(size), "--seed", str(seed),
                        "--format", fmt, "-o", str(partial)], check=True)
        partial.replace(path)
    return path


# -- agreement checks ----------------------------------------------------------------------------

def _eligibility_rows(path: Path) -> Counter:
    rows = json.loads(path.read_text(encoding="utf-8"))["results"]
    return Counter((r["patient"], r["therapy"], r["indication"], r["status"], tuple(r["unmet"])) for r in rows)


def _query_rows(path: Path) -> Counter:
    if path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            return Counter((r["patient"], r["therapy"], r["indication"]) for r in csv.DictReader(handle))
    return Counter(tuple(r) for r in json.loads(path.read_text(encoding="utf-8")))


def _verdict(path: Path) -> tuple[bool, Counter]:
    """conforms and the results, blank node focus nodes reduced to ``_:`` (their ids differ)."""
    report = json.loads(path.read_text(encoding="utf-8"))
    return report["conforms"], Counter(
        ("_:" if r["focus"].startswith("_:") else r["focus"], r["path"], r["severity"], r["message"])
        for r in report["results"])


def _compare(left: Counter, right: Counter) -> tuple[bool, str]:
    if left == right:
        return True, f"{sum(left.values())} rows identical"
    return False, (f"{sum(left.values())} vs {sum(right.values())} rows; {sum((left - right).values())} only "
                   f"left, {sum((right - left).values())} only right")


def _qualifying(path: Path) -> Counter:
    return Counter(k[:3] for k in _eligibility_rows(path) if k[3] == "qualifies")


CHECKS: tuple[tuple[str, str, str, Callable[[Path, Path], tuple[bool, str]]], ...] = (
    ("reference rows = itkg eligibility rows", "reference (pyoxigraph + dicts)", "itkg eligibility",
     lambda a, b: _compare(_eligibility_rows(a), _eligibility_rows(b))),
    ("plain rdflib query rows = itkg 'qualifies' rows", "plain rdflib: parse + eligible-therapies.rq",
     "itkg eligibility", lambda a, b: _compare(_query_rows(a), _qualifying(b))),
    ("Oxigraph query rows = itkg 'qualifies' rows", "plain Oxigraph Store: bulk load + eligible-therapies.rq",
     "itkg eligibility", lambda a, b: _compare(_query_rows(a), _qualifying(b))),
    ("itkg query rows = Oxigraph query rows", "itkg query eligible-therapies --engine oxigraph",
     "plain Oxigraph Store: bulk load + eligible-therapies.rq",
     lambda a, b: _compare(_query_rows(a), _query_rows(b))),
    ("itkg validate verdict = plain pySHACL verdict", "plain pySHACL: whole graph", "itkg validate",
     lambda a, b: _verdict_check(_verdict(a), _verdict(b))),
    ("itkg validate results = itkg validate --engine pyshacl results", "itkg validate --engine pyshacl",
     "itkg validate", lambda a, b: _verdict_check(_verdict(a), _verdict(b))),
)


def _verdict_check(left: tuple[bool, Counter], right: tuple[bool, Counter]) -> tuple[bool, str]:
    same, detail = _compare(left[1], right[1])
    return same and left[0] == right[0], f"conforms {left[0]} vs {right[0]}; results: {detail}"


# -- the run -------------------------------------------------------------------------------------

def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def commit() -> str:
    head = _git("rev-parse", "--short", "HEAD") or "unknown"
    return head + (" with uncommitted changes" if _git("status", "--porcelain", "--untracked-files=no") else "")


def machine() -> dict:
    """What the figures were measured on."""
    model = ""
    try:
        model = next((line.split(":", 1)[1].strip() for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name")), "")
    except OSError:
        pass
    with open("/proc/meminfo", encoding="ascii") as handle:
        mem_kb = int(handle.readline().split()[1])
    versions = {}
    for name in ("itkg", "rdflib", "pyshacl", "pyoxigraph", "owlready2"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    try:
        java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    except (OSError, IndexError):
        java = "not installed"
    return {"nproc": os.cpu_count(), "cpu_model": model, "memory_gb": round(mem_kb / 1024**2, 1),
            "python": platform.python_version(), "platform": platform.platform(), "java": java,
            "versions": versions}


@dataclass
class Run:
    """Everything a run produced; written to ``--out`` after every measurement."""

    machine: dict
    settings: dict
    measurements: list[dict] = field(default_factory=list)
    checks: list[dict] = field(default_factory=list)

    def add(self, measurement: Measurement) -> None:
        self.measurements = [m for m in self.measurements
                             if (m["tool"], m["size"]) != (measurement.tool, measurement.size)]
        self.measurements.append(asdict(measurement))

    def add_check(self, check: dict) -> None:
        self.checks = [c for c in self.checks if (c["check"], c["size"]) != (check["check"], check["size"])]
        self.checks.append(check)

    def find(self, tool: str, size: int) -> dict | None:
        return next((m for m in self.measurements if m["tool"] == tool and m["size"] == size), None)


def _skip_reason(tool: Tool, size: int, run: Run, cap: float) -> str:
    """Why a larger size is not worth running: the previous size did not finish, or (for the
    plain baselines) took longer than the cap."""
    earlier = [m for m in run.measurements if m["tool"] == tool.name and m["size"] < size]
    if not earlier:
        return ""
    previous = max(earlier, key=lambda m: m["size"])
    if previous["status"] in ("timeout", "memory", "skipped"):
        return f"not run: did not finish at {previous['size']:,} patients"
    if tool.baseline and previous["wall_s"] is not None and previous["wall_s"] > cap:
        return f"not run: took {previous['wall_s']:.0f} s > cap {cap:.0f} s at {previous['size']:,} patients"
    return ""


def run_tool(tool: Tool, size: int, data: Path, outputs: Path, args: argparse.Namespace, run: Run) -> Path | None:
    """Measure one (tool, size); return its output file when it finished normally."""
    output = outputs / f"{re.sub(r'[^a-z0-9]+', '-', tool.name.lower()).strip('-')}-{size}.{tool.suffix}"
    argv = tool.argv(data, output, args.timeout)
    common = {"group": tool.group, "tool": tool.name, "size": size, "command": shlex.join(argv),
              "when": _dt.datetime.now().isoformat(timespec="seconds"), "commit": commit()}
    skip = _skip_reason(tool, size, run, args.cap)
    if skip:
        run.add(Measurement(status="skipped", note=skip, **common))
        print(f"  {tool.name:58} {skip}", flush=True)
        return None
    output.unlink(missing_ok=True)
    result = measure(argv, args.timeout, args.memory_limit)
    status = result.pop("killed") or ("ok" if result["exit_code"] in tool.ok_codes else "failed")
    stderr = result.pop("stderr").strip()
    if status in ("timeout", "memory"):
        # Killed workers are reaped by init, not by their parent: their CPU time is lost, and
        # the peak so far is only a lower bound.
        result["cpu_s"] = None
    note = {"timeout": f"killed after {args.timeout:.0f} s (peak so far)",
            "memory": f"killed above {args.memory_limit:.0f} MB",
            "failed": stderr.splitlines()[-1] if stderr else "non-zero exit"}.get(status, "")
    run.add(Measurement(status=status, note=note, **common, **result))
    print(f"  {tool.name:58} {status:8} {result['wall_s']:9.2f} s {result['peak_mb']:9.0f} MB "
          f"cpu {_cell(result['cpu_s'], '8.1f')} s  {note}", flush=True)
    return output if status == "ok" and output.exists() else None


def run_checks(size: int, produced: dict[str, Path], run: Run) -> None:
    for name, left, right, compare in CHECKS:
        if left in produced and right in produced:
            agree, detail = compare(produced[left], produced[right])
            run.add_check({"check": name, "size": size, "agree": agree, "detail": detail})
            print(f"  check: {name}: {'AGREE' if agree else 'DIFFER'} ({detail})", flush=True)


def save(run: Run, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    order = {tool.name: i for i, tool in enumerate(TOOLS)}
    run.measurements.sort(key=lambda m: (m["size"], order.get(m["tool"], len(order))))
    run.checks.sort(key=lambda c: (c["size"], c["check"]))
    partial = out.with_suffix(".partial")
    partial.write_text(json.dumps(asdict(run), indent=1) + "\n", encoding="utf-8")
    partial.replace(out)
    out.with_suffix(".md").write_text(report_markdown(run), encoding="utf-8")


# -- targets and report --------------------------------------------------------------------------

def _fig(m: dict | None) -> str:
    if m is None:
        return "not measured"
    if m["status"] != "ok":
        return f"{m['status']} ({m['note']})" if m["note"] else m["status"]
    return f"{m['wall_s']:.1f} s, {m['peak_mb']:,.0f} MB"


def _verdict_word(ok: bool | None) -> str:
    return "not measured" if ok is None else "met" if ok else "not met"


def targets(run: Run) -> list[tuple[str, str, str]]:
    """Each target of docs/performance.md with the measured figure and met / not met."""
    ok = lambda m: m is not None and m["status"] == "ok"
    rows: list[tuple[str, str, str]] = []
    elig = {m["size"]: m for m in run.measurements if m["tool"] == "itkg eligibility"}
    ref = {m["size"]: m for m in run.measurements if m["tool"] == "reference (pyoxigraph + dicts)"}
    big = elig.get(1_000_000)
    rows.append(("itkg eligibility, 1M patients: <= 60 s end to end", _fig(big),
                 _verdict_word(None if big is None else ok(big) and big["wall_s"] <= 60)))
    rows.append(("itkg eligibility, 1M patients: <= 8 GB peak", _fig(big),
                 _verdict_word(None if big is None else ok(big) and big["peak_mb"] <= 8192)))
    ratios = [(s, elig[s]["wall_s"] / elig[s // 10]["wall_s"]) for s in sorted(elig)
              if s // 10 in elig and s % 10 == 0 and ok(elig[s]) and ok(elig[s // 10])]
    rows.append(("itkg eligibility linear: 10x patients <= 12x time",
                 "; ".join(f"{s // 10:,}->{s:,}: x{r:.1f}" for s, r in ratios) or "not measured",
                 _verdict_word(all(r <= 12 for _, r in ratios) if ratios else None)))
    for size in sorted(set(elig) & set(ref)):
        if ok(elig[size]) and ok(ref[size]):
            factor = elig[size]["wall_s"] / ref[size]["wall_s"]
            rows.append((f"itkg eligibility within 3x of the reference, {size:,} patients",
                         f"{elig[size]['wall_s']:.1f} s vs {ref[size]['wall_s']:.1f} s: x{factor:.2f}",
                         _verdict_word(factor <= 3) if size >= 100_000 else "reported (start-up dominated)"))
    same = [c for c in run.checks if c["check"] == "reference rows = itkg eligibility rows"]
    at10k = next((c for c in same if c["size"] == 10_000), None)
    rows.append(("reference gives itkg's rows at 10,000 patients",
                 at10k["detail"] if at10k else "not measured",
                 _verdict_word(None if at10k is None else at10k["agree"])))
    val = {m["size"]: m for m in run.measurements if m["tool"] == "itkg validate"}
    shacl = {m["size"]: m for m in run.measurements if m["tool"] == "plain pySHACL: whole graph"}
    vbig = val.get(1_000_000)
    rows.append(("itkg validate, 1M patients: <= 300 s", _fig(vbig),
                 _verdict_word(None if vbig is None else ok(vbig) and vbig["wall_s"] <= 300)))
    rows.append(("itkg validate, 1M patients: <= 8 GB peak", _fig(vbig),
                 _verdict_word(None if vbig is None else ok(vbig) and vbig["peak_mb"] <= 8192)))
    rows.append(("itkg validate, 1M patients: uses both cores (CPU time / wall > 1.2)",
                 f"CPU {vbig['cpu_s']:.0f} s / wall {vbig['wall_s']:.0f} s = {vbig['cpu_s'] / vbig['wall_s']:.2f}"
                 if ok(vbig) else _fig(vbig),
                 _verdict_word(None if vbig is None else ok(vbig) and vbig["cpu_s"] / vbig["wall_s"] > 1.2)))
    # issue 12: the second round's targets at 1M
    rows.append(("issue 12: itkg validate, 1M patients: <= 60 s", _fig(vbig),
                 _verdict_word(None if vbig is None else ok(vbig) and vbig["wall_s"] <= 60)))
    rows.append(("issue 12: itkg validate, 1M patients: <= 4 GB peak", _fig(vbig),
                 _verdict_word(None if vbig is None else ok(vbig) and vbig["peak_mb"] <= 4096)))
    rows.append(("issue 12: itkg eligibility, 1M patients: <= 2 GB peak", _fig(big),
                 _verdict_word(None if big is None else ok(big) and big["peak_mb"] <= 2048)))
    qbig = run.find("itkg query eligible-therapies --engine oxigraph", 1_000_000)
    rows.append(("issue 12: itkg query --engine oxigraph, 1M patients: <= 8 GB peak", _fig(qbig),
                 _verdict_word(None if qbig is None else ok(qbig) and qbig["peak_mb"] <= 8192)))
    verdicts = [c for c in run.checks if c["check"] == "itkg validate verdict = plain pySHACL verdict"]
    rows.append(("itkg validate verdicts = plain pySHACL where it finishes",
                 ", ".join(f"{c['size']:,}: {'same' if c['agree'] else 'DIFFERENT'}" for c in verdicts)
                 or "not measured",
                 _verdict_word(all(c["agree"] for c in verdicts) if verdicts else None)))
    for size in sorted(set(val) & set(shacl)):
        if ok(val[size]) and ok(shacl[size]):
            rows.append((f"itkg validate speed-up over plain pySHACL, {size:,} patients",
                         f"{shacl[size]['wall_s']:.1f} s vs {val[size]['wall_s']:.1f} s: "
                         f"x{shacl[size]['wall_s'] / val[size]['wall_s']:.1f}", "reported"))
    oxq = run.find("plain Oxigraph Store: bulk load + eligible-therapies.rq", 100_000)
    rows.append(("eligible-therapies.rq in Oxigraph, 100k patients: <= 30 s", _fig(oxq),
                 _verdict_word(None if oxq is None else ok(oxq) and oxq["wall_s"] <= 30)))
    itq = run.find("itkg query eligible-therapies --engine oxigraph", 100_000)
    if itq is not None:
        rows.append(("same through itkg query --engine oxigraph, 100k: <= 30 s", _fig(itq),
                     _verdict_word(ok(itq) and itq["wall_s"] <= 30)))
    for m in run.measurements:
        if m["tool"] == "plain rdflib: parse + eligible-therapies.rq":
            rows.append((f"eligible-therapies.rq in rdflib, {m['size']:,} patients", _fig(m), "reported"))
    for m in run.measurements:
        if m["group"] == "reason":
            rows.append((f"itkg reason (HermiT), {m['size']:,} patients", _fig(m), "reported (limit)"))
    return rows


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def report_markdown(run: Run) -> str:
    """Tables per size (tool, status, wall s, peak MB, CPU s), the checks, then the targets."""
    lines = []
    for size in sorted({m["size"] for m in run.measurements}):
        lines += [f"### {size:,} patients", "", "| tool | status | wall s | peak MB | CPU s | load before |",
                  "| --- | --- | ---: | ---: | ---: | ---: |"]
        for m in (m for m in run.measurements if m["size"] == size):
            status = m["status"] + (f": {m['note']}" if m["note"] else "")
            lines.append(f"| {m['tool']} | {status} | {_cell(m['wall_s'], '.2f')} | {_cell(m['peak_mb'], ',.0f')} "
                         f"| {_cell(m['cpu_s'], '.1f')} | {_cell(m['load_before'], '.2f')} |")
        lines.append("")
    if run.checks:
        lines += ["### Agreement checks", "", "| size | check | result |", "| ---: | --- | --- |"]
        lines += [f"| {c['size']:,} | {c['check']} | {'agree' if c['agree'] else 'DIFFER'}: {c['detail']} |"
                  for c in run.checks]
        lines.append("")
    lines += ["### Targets", "", "| target | measured | verdict |", "| --- | --- | --- |"]
    lines += [f"| {t} | {f} | {v} |" for t, f, v in targets(run)]
    return "\n".join(lines) + "\n"


# -- command line --------------------------------------------------------------------------------

def _ints(text: str) -> list[int]:
    return sorted({int(part.replace("_", "")) for part in text.split(",") if part.strip()})


def _groups(text: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = set(chosen) - set(GROUPS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown group(s) {', '.join(sorted(unknown))}; use {', '.join(GROUPS)}")
    return chosen


def exit_on_sigterm() -> None:
    """SIGTERM ends the harness as Ctrl-C does, through :func:`measure`'s clean-up (by default
    it would end at once, leaving the measured command running in its own session)."""
    def terminated(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, terminated)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    exit_on_sigterm()
    if argv[:1] == ["task"]:
        name, data, out = argv[1:4]
        TASKS[name](Path(data), Path(out))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_ints, default=list(DEFAULT_SIZES), help="patients, comma-separated")
    parser.add_argument("--reason-sizes", type=_ints, default=[1_000, 5_000, 10_000],
                        help="patients for itkg reason (HermiT), comma-separated")
    parser.add_argument("--only", type=_groups, default=list(GROUPS), help=f"groups: {','.join(GROUPS)}")
    parser.add_argument("--tools", default="",
                        help="only these tools, by their exact names, comma-separated (e.g. 'itkg validate' "
                             "for a 1M run without the baselines)")
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "results.json")
    parser.add_argument("--append", action="store_true",
                        help="keep the other measurements already in --out (same tool and size are replaced)")
    parser.add_argument("--data-dir", type=Path, default=BENCH / "data")
    parser.add_argument("--format", choices=("nt", "ttl"), default="nt", help="format of the generated data")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1200.0, help="kill a run after this many seconds")
    parser.add_argument("--cap", type=float, default=300.0,
                        help="skip a plain baseline at a size when it took longer than this at the previous size")
    parser.add_argument("--memory-limit", type=float, default=12_000.0,
                        help="kill a run whose process tree holds more than this many MB")
    args = parser.parse_args(argv)

    settings = {"commit": commit(), "format": args.format, "seed": args.seed, "timeout_s": args.timeout,
                "cap_s": args.cap, "memory_limit_mb": args.memory_limit}
    run = Run(machine(), settings)
    if args.append and args.out.exists():
        previous = json.loads(args.out.read_text(encoding="utf-8"))
        run.measurements, run.checks = previous["measurements"], previous["checks"]
    outputs = args.out.parent / "outputs"
    outputs.mkdir(parents=True, exist_ok=True)
    print(f"itkg benchmarks at {settings['commit']} on {run.machine['nproc']} cores, "
          f"{run.machine['cpu_model']}, {run.machine['memory_gb']} GB", flush=True)
    chosen = [t for t in TOOLS if t.group in args.only]
    if args.tools:
        names = {name.strip() for name in args.tools.split(",") if name.strip()}
        unknown = names - {t.name for t in TOOLS}
        if unknown:
            parser.error(f"unknown tool(s): {', '.join(sorted(unknown))}")
        chosen = [t for t in chosen if t.name in names]
    sizes = sorted(set(args.sizes) | (set(args.reason_sizes) if "reason" in args.only else set()))
    for size in sizes:
        tools = [t for t in chosen if size in (args.reason_sizes if t.group == "reason" else args.sizes)]
        if not tools:
            continue
        data = dataset(size, args.seed, args.format, args.data_dir)
        print(f"{size:,} patients ({data.stat().st_size / 1e6:,.0f} MB {args.format}):", flush=True)
        produced = {}
        for tool in tools:
            output = run_tool(tool, size, data, outputs, args, run)
            if output is not None:
                produced[tool.name] = output
            save(run, args.out)
        run_checks(size, produced, run)
        save(run, args.out)
    print()
    print(report_markdown(run))
    print(f"results: {args.out} and {args.out.with_suffix('.md')}")
    return 1 if any(not c["agree"] for c in run.checks) else 0


if __name__ == "__main__":
    raise SystemExit(main())
