"""The Apache Jena SHACL back-end (itkg.jena): choice, command line, failures and hygiene.

That Jena gives pySHACL's verdict and results on every corpus, partitioned or not, is checked in
tests/test_scale_validation.py; this file covers what surrounds it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyoxigraph as ox
import pytest
from support import assert_validate_prints_what_pyshacl_prints, run_forked as itkg_cli

from itkg import jena, validation
from itkg.errors import ValidationEngineError
from itkg.loading import PatientData, load
from itkg.resources import data_root

EXAMPLES = data_root() / "examples" / "patients.ttl"
TESTS = Path(__file__).resolve().parent
CONFORMING = TESTS / "data" / "shapes" / "pt-consent-granted-after-withdrawal.ttl"


@pytest.fixture
def no_jena(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A machine where the Jena jars are not where itkg looks."""
    monkeypatch.setenv("ITKG_JENA_JARS", str(tmp_path / "no-jars-here"))
    jena.find.cache_clear()
    yield
    jena.find.cache_clear()


def test_auto_uses_pyshacl_for_small_inputs_and_rejects_unknown_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyshacl_turbo", None)  # without turbo (see test_turbo_engine.py)
    data = load(EXAMPLES)
    assert len(data.triples) < validation.AUTO_JENA_TRIPLES
    assert validation.engine_for(data) == "pyshacl"
    assert validation.engine_for(data, "jena") == "jena"
    with pytest.raises(ValidationEngineError, match="unknown SHACL engine"):
        validation.engine_for(data, "rudof")


def test_auto_falls_back_to_pyshacl_without_jena(no_jena: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validation, "AUTO_JENA_TRIPLES", 1)
    monkeypatch.setitem(sys.modules, "pyshacl_turbo", None)
    assert not jena.available()
    data = load(EXAMPLES)
    assert validation.engine_for(data) == "pyshacl"
    assert not validation.validate(data).conforms  # and it still validates


@pytest.mark.java
def test_auto_uses_jena_for_large_inputs(jena_required: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validation, "AUTO_JENA_TRIPLES", 1)
    monkeypatch.setattr(validation, "AUTO_TURBO_MAX_TRIPLES", 1)  # turbo, when installed, stops below
    data = load(EXAMPLES)
    assert validation.engine_for(data) == "jena"
    assert validation.validate(data).results == validation.validate(data, engine="pyshacl").results


def test_asking_for_jena_where_it_is_missing_is_a_clear_error(no_jena: None) -> None:
    with pytest.raises(ValidationEngineError, match="libapache-jena-java"):
        validation.validate(load(EXAMPLES), engine="jena")


def test_cli_engine_jena_missing_exits_2_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "ITKG_JENA_JARS": str(tmp_path / "no-jars-here")}
    run = itkg_cli("validate", str(EXAMPLES), "--engine", "jena", env=env)
    assert run.returncode == 2
    assert run.stdout == ""
    assert len(run.stderr.strip().splitlines()) == 1 and "Jena" in run.stderr


@pytest.mark.java
@pytest.mark.parametrize("path, code", [(EXAMPLES, 1), (CONFORMING, 0)])
@pytest.mark.parametrize("fmt", ["json", "text"])
@pytest.mark.slow
def test_cli_engines_print_the_same_report(jena_required: None, path: Path, code: int, fmt: str) -> None:
    assert_validate_prints_what_pyshacl_prints("jena", path, code, fmt)


@pytest.mark.java
def test_a_worker_that_dies_is_an_engine_error_and_leaves_nothing_behind(
        jena_required: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a private temporary folder: the shared one may hold other runs' files meanwhile."""
    private = tmp_path / "tmpdir"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    shapes = validation.shapes_graph().serialize(format="nt", encoding="utf-8")
    pool = jena.JenaPool(1, shapes, b"")
    assert list(private.glob("itkg-jena-*"))
    worker = pool.workers[0]
    try:
        triple = ox.Triple(ox.NamedNode("https://example.org/p"), ox.NamedNode("https://w3id.org/itkg/hasCondition"),
                           ox.BlankNode("c"))
        assert worker.validate([triple]) == []  # alive: a condition has no shape, nothing to say
        worker._process.kill()
        worker._process.wait()
        with pytest.raises(ValidationEngineError, match="stopped"):
            worker.validate([triple])
    finally:
        pool.close()
    assert list(private.iterdir()) == []
    assert worker._process.poll() is not None


@pytest.mark.java
def test_workers_get_the_data_on_a_pipe_not_on_the_command_line(jena_required: None) -> None:
    """No patient value in a process listing, and no environment beyond PATH and the locale."""
    data = PatientData(triples=load(EXAMPLES).triples)
    shapes = validation.shapes_graph().serialize(format="nt", encoding="utf-8")
    with jena.JenaPool(1, shapes, ox.serialize(data.triples, format=ox.RdfFormat.N_TRIPLES)) as pool:
        process = pool.workers[0]._process
        argv = " ".join(map(str, process.args))
        assert "example.org" not in argv and "patients" not in argv
        environ = Path(f"/proc/{process.pid}/environ")
        if environ.exists():
            names = {entry.split(b"=", 1)[0] for entry in environ.read_bytes().split(b"\0") if entry}
            assert names <= {b"PATH", b"LANG"}


def test_malformed_worker_output_is_refused() -> None:
    with pytest.raises(ValidationEngineError, match="malformed"):
        jena._decode(["<https://example.org/p>\t\t"])
    with pytest.raises(ValidationEngineError, match="not N-Triples"):
        jena._decode(["not a term\t\t\t\t\t\t"])
    decoded = jena._decode(['<https://example.org/p>\t<https://w3id.org/itkg/hasOutcome>\t"x\\ty"@en\t\t\t\t"m"'])
    assert decoded[0][0] == ox.NamedNode("https://example.org/p")
    assert decoded[0][2] == ox.Literal("x\ty", language="en")
    assert decoded[0][3] is None and decoded[0][6] == ox.Literal("m")


def test_a_batch_that_cannot_be_cut_gets_a_larger_heap() -> None:
    assert jena.heap_mb(20_000) == jena.HEAP_MB
    assert jena.heap_mb(16_000_000) == 256 + 16_000


def test_a_java_too_old_for_source_files_means_no_jena(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """auto must not pick a back-end that cannot start: Java 8 cannot run ``java File.java``."""
    fake = tmp_path / "java"
    fake.write_text('#!/bin/sh\necho \'openjdk version "1.8.0_392"\' >&2\n', encoding="utf-8")
    fake.chmod(0o755)
    assert jena.java_major(str(fake)) == 8
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    jena.find.cache_clear()
    try:
        assert jena.find() is None
    finally:
        jena.find.cache_clear()
    if shutil.which("java", path=os.environ["PATH"].split(os.pathsep, 1)[1]):
        real = shutil.which("java", path=os.environ["PATH"].split(os.pathsep, 1)[1])
        assert (jena.java_major(real) or 0) >= jena.MIN_JAVA



@pytest.mark.java
def test_the_worker_is_compiled_once_into_a_private_cache(
        jena_required: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Compiled on first use (where ``javac`` is beside ``java``), then started from the class
    file. (That the compiled worker gives pySHACL's results is what every Jena case of
    tests/test_scale_validation.py and tests/test_engines_fuzz.py checks.)"""
    setup = jena.find()
    assert setup is not None
    if not (Path(os.path.realpath(setup.java)).with_name("javac")).is_file():
        pytest.skip("this Java has no javac: the worker runs from source (the next test)")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = jena.compiled(setup)
    assert folder is not None and folder.parent == tmp_path / "cache" / "itkg"
    assert (folder / "ItkgJenaShacl.class").is_file() and folder.stat().st_mode & 0o077 == 0
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temporary folder left
    stamp = (folder / "ItkgJenaShacl.class").stat().st_mtime_ns
    assert jena.compiled(setup) == folder and (folder / "ItkgJenaShacl.class").stat().st_mtime_ns == stamp
    shapes = validation.shapes_graph().serialize(format="nt", encoding="utf-8")
    batch = load(TESTS / "data" / "shapes" / "pt-consent-refused.ttl", strict_literals=False).triples
    with jena.JenaPool(1, shapes, validation.ontology_graph().serialize(format="nt", encoding="utf-8")) as pool:
        args = list(map(str, pool.workers[0]._process.args))
        assert str(jena.SOURCE) not in args and args[-1] == "ItkgJenaShacl" and str(folder) in args[-2]
        assert any("refused" in str(result[6]) for result in pool.workers[0].validate(batch))


@pytest.mark.java
def test_a_cache_that_cannot_be_used_means_running_from_source(
        jena_required: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache path that is a file, or a cached folder others may write to: no class file is
    trusted, and Jena still works, from source."""
    setup = jena.find()
    assert setup is not None
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("", encoding="utf-8")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    assert jena.compiled(setup) is None
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # ignored, as XDG says: ~/.cache
    monkeypatch.setenv("HOME", "relative-home")
    assert jena.cache_folder() is None
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    with jena.JenaPool(1, validation.shapes_graph().serialize(format="nt", encoding="utf-8"),
                       validation.ontology_graph().serialize(format="nt", encoding="utf-8")) as pool:
        assert str(jena.SOURCE) in map(str, pool.workers[0]._process.args)
        found = pool.workers[0].validate(load(EXAMPLES).triples)
    assert {result[0] for result in found} == {ox.NamedNode("https://example.org/patient/dev")}
    javac = Path(os.path.realpath(setup.java)).with_name("javac")
    if javac.is_file():
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        planted = tmp_path / "cache" / "itkg" / f"jena-worker-{jena._compile_key(setup, javac)}"
        planted.mkdir(parents=True)
        (planted / "ItkgJenaShacl.class").write_bytes(b"not from itkg")
        planted.chmod(0o777)
        assert jena.compiled(setup) is None


@pytest.mark.java
def test_a_pool_tells_every_worker_to_end_before_waiting_for_one(
        jena_required: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each JVM takes a while to exit: the workers of a pool exit together, not one after another."""
    events: list[str] = []
    ask, wait = jena.JenaWorker.ask_to_end, subprocess.Popen.wait

    def asking(self: jena.JenaWorker) -> None:
        events.append(f"ask {self._process.pid}")
        ask(self)

    def waiting(self: subprocess.Popen, timeout: float | None = None) -> int:
        events.append(f"wait {self.pid}")
        return wait(self, timeout)

    shapes = validation.shapes_graph().serialize(format="nt", encoding="utf-8")
    with jena.JenaPool(2, shapes, b"") as pool:
        pids = [worker._process.pid for worker in pool.workers]
        monkeypatch.setattr(jena.JenaWorker, "ask_to_end", asking)
        monkeypatch.setattr(subprocess.Popen, "wait", waiting)
    first_wait = next(i for i, event in enumerate(events) if event.startswith("wait"))
    assert {f"ask {pid}" for pid in pids} <= set(events[:first_wait]), events
    assert all(worker._process.poll() is not None for worker in pool.workers)
