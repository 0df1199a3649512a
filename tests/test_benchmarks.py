"""Smoke tests of the benchmark harness (benchmarks/run.py) and its near-limit reference.

No timing assertions: these check that the one command runs end to end at a tiny size, that the
reference it compares itkg with gives itkg's rows (else the comparison would be unfair), and that
the measuring wrapper counts the whole process tree and enforces its deadline.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import load_by_path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"


def _module(name: str):
    return load_by_path(f"itkg_benchmarks_{name}", BENCH / f"{name}.py")


@pytest.fixture(scope="module")
def run_module():
    return _module("run")


def test_reference_gives_the_contract_examples_rows() -> None:
    reference = _module("reference")
    expected = json.loads((ROOT / "examples" / "expected-eligibility.json").read_text(encoding="utf-8"))
    assert reference.rows(reference.read(ROOT / "examples" / "patients.ttl")) == expected["results"]


def test_harness_runs_eligibility_at_a_tiny_size_and_the_reference_agrees(tmp_path: Path) -> None:
    out = tmp_path / "out" / "results.json"
    completed = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--sizes", "200", "--only", "eligibility",
         "--data-dir", str(tmp_path / "data"), "--out", str(out), "--timeout", "120"],
        cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    results = json.loads(out.read_text(encoding="utf-8"))
    statuses = {m["tool"]: m["status"] for m in results["measurements"]}
    assert statuses == {"itkg eligibility": "ok", "reference (pyoxigraph + dicts)": "ok",
                        "plain rdflib: parse + eligible-therapies.rq": "ok"}
    checks = {c["check"]: c for c in results["checks"]}
    assert checks["reference rows = itkg eligibility rows"]["agree"], checks
    assert checks["plain rdflib query rows = itkg 'qualifies' rows"]["agree"], checks
    assert " 0 rows" not in checks["reference rows = itkg eligibility rows"]["detail"]
    assert all(m["wall_s"] > 0 and m["peak_mb"] > 0 for m in results["measurements"])
    assert "### Targets" in out.with_suffix(".md").read_text(encoding="utf-8")


def test_measure_counts_the_memory_of_parallel_grandchildren_together(run_module) -> None:
    # Like parallel workers: two grandchildren hold 200 MB each at the same time, so the tree
    # peaks near 400 MB above an interpreter's own size, although no single process ever holds
    # more than one 200 MB buffer. The interpreter's size is measured with the same children
    # holding nothing (it differs between machines: an absolute bound was flaky).
    def tree(megabytes: int) -> dict:
        grandchild = f"b = bytearray({megabytes} * 1024 * 1024); import time; time.sleep(1.5)"
        child = ("import subprocess, sys; "
                 f"workers = [subprocess.Popen([sys.executable, '-c', {grandchild!r}]) for _ in range(2)]; "
                 "[w.wait() for w in workers]")
        result = run_module.measure([sys.executable, "-c", child], timeout=60, memory_limit_mb=10_000)
        assert result["exit_code"] == 0 and not result["killed"]
        return result

    empty, full = tree(0), tree(200)
    # the largest single process holds one buffer, not two
    assert full["max_process_rss_mb"] < empty["max_process_rss_mb"] + 300
    # the tree holds both buffers at once
    assert full["peak_mb"] >= 380


def test_measure_kills_a_run_at_its_deadline(run_module) -> None:
    child = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
    result = run_module.measure([sys.executable, "-c", child], timeout=1.0, memory_limit_mb=10_000)
    assert result["killed"] == "timeout"
    assert result["wall_s"] < 30


def test_a_terminated_harness_takes_the_measured_command_with_it(tmp_path: Path) -> None:
    """The command runs in a session of its own; SIGTERM (or Ctrl-C) on the harness ends it too."""
    import os
    import signal
    import time
    pid_file = tmp_path / "pid"
    child = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    harness = (f"import sys; sys.path.insert(0, {str(BENCH)!r}); import run; run.exit_on_sigterm(); "
               f"run.measure([sys.executable, '-c', {child!r}], timeout=600, memory_limit_mb=10_000)")
    process = subprocess.Popen([sys.executable, "-c", harness])
    for _ in range(600):
        if pid_file.exists() and pid_file.read_text():
            break
        time.sleep(0.05)
    measured = int(pid_file.read_text())
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM
    for _ in range(200):  # reaped by the harness: gone at once, or a zombie of init for a moment
        try:
            os.kill(measured, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the measured command outlived the harness")
