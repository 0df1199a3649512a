"""Smoke test of the FHIR Bulk generator and benchmark (benchmarks/fhir_bulk.py); no timings."""

from __future__ import annotations

from pathlib import Path

from support import load_by_path

import itkg

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "fhir_bulk.py"


def _module():
    return load_by_path("itkg_benchmarks_fhir_bulk", BENCH)


def test_the_generator_is_seeded_and_itkg_reads_what_it_writes(tmp_path: Path) -> None:
    bulk = _module()
    first = bulk.generate(60, tmp_path / "a", seed=7)
    second = bulk.generate(60, tmp_path / "b", seed=7)
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(f"{k}.ndjson" for k in bulk.TYPES)
    assert all((first / n).read_bytes() == (second / n).read_bytes() for n in names)
    lines = bulk.json_baseline(first)
    assert lines == sum(len((first / n).read_text(encoding="utf-8").splitlines()) for n in names) >= 60 * 4
    rows = itkg.eligibility(first)
    assert rows and {r.status for r in rows} <= {"qualifies", "pending", "excluded"}
    assert len({r.status for r in rows}) >= 2


def test_bench_alternates_the_commands_and_reports_their_medians(tmp_path: Path) -> None:
    bulk = _module()
    found = bulk.bench(30, tmp_path, seed=3, one_worker=False, repeat=2)
    assert found["repeat"] == 2
    assert set(found["all"]) == set(found["runs"]) == {"json.loads per line, one core",
                                                       "itkg eligibility, default workers"}
    for name, runs in found["all"].items():
        assert len(runs) == 2 and all(run["wall"] > 0 for run in runs)
        walls = sorted(run["wall"] for run in runs)
        assert found["runs"][name]["wall"] == (walls[0] + walls[1]) / 2  # the median of two
    assert found["ratios"]["json.loads per line, one core: wall ratio"] == 1.0
    assert (tmp_path / "fhir-30-s3.json").is_file()
