"""The eligibility JSON writer: byte for byte the ``json.dumps`` it replaced, and written whole or
not at all when streamed in chunks into an output file.

``render.eligibility_json`` builds its text by hand for speed (see its docstring); the oracle
here is the old implementation, ``json.dumps({"results": [r.to_dict() ...]}, indent=1,
ensure_ascii=False) + "\\n"``, run on the same rows, with strings chosen to break a hand-written
encoder: quotes, backslashes, every control character, U+2028/U+2029, non-BMP characters and
lone surrogates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, Sequence
from unittest import mock

import pytest
from support import invoke as _itkg
from hypothesis import given, settings
from hypothesis import strategies as st

from itkg import render
from itkg.results import EligibilityResult
from itkg.safeio import OutputError, atomic_write

def reference(results: Sequence[EligibilityResult]) -> str:
    """The implementation ``render.eligibility_json`` replaced: the contract's JSON."""
    return json.dumps({"results": [r.to_dict() for r in results]}, indent=1, ensure_ascii=False) + "\n"


# Pieces a JSON string encoder has to get right, mixed into arbitrary text below.
NASTY = ['"', "\\", "\\\"", "\"\\", "/", "\b", "\f", "\n", "\r", "\t", "\x00", "\x01", "\x1f", "\x7f",
         "\x80", "\u00e9", "\u2028", "\u2029", "\ufeff", "\uffff", "\U0001f600", "\U0010ffff",
         "\ud800", "\udfff", "\ud83d", "\ude00", "\\u0000", "</script>", "[", "]", "{", "}", ",", ":",
         "\n   ", '",\n    "', "\u00e0 \"Paris\""]

# Every code point, surrogates (category Cs) included: a Python str can hold them and
# json.dumps passes them through when ensure_ascii=False.
ANY_CHARACTER = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, blacklist_categories=())
TEXT = st.one_of(
    st.text(ANY_CHARACTER, max_size=12),
    st.lists(st.one_of(st.sampled_from(NASTY), st.text(ANY_CHARACTER, max_size=3)), max_size=6).map("".join),
)
# Few distinct values, as therapies, indications, statuses and prerequisite codes are in practice:
# rows then share them, which exercises the writer's per-value cache.
FEW = st.sampled_from(["qualifies", "pending", "excluded", "", '"', "\\", "\x00", "\ud800", "\U0001f600"])
ROW = st.builds(
    EligibilityResult,
    patient=st.one_of(TEXT, FEW),
    therapy=st.one_of(FEW, TEXT),
    indication=st.one_of(FEW, TEXT),
    status=st.one_of(FEW, TEXT),
    unmet=st.lists(st.one_of(FEW, TEXT), max_size=3).map(tuple),
    evidence=st.lists(TEXT, max_size=4).map(tuple),
)


@settings(max_examples=400, deadline=None)
@given(rows=st.lists(ROW, max_size=8), per_chunk=st.integers(min_value=1, max_value=4))
@pytest.mark.slow
def test_fast_writer_is_byte_identical_to_json_dumps(rows: list[EligibilityResult], per_chunk: int) -> None:
    # Small chunks, so that the joins between chunks are exercised as often as those between rows.
    with mock.patch.object(render, "_JSON_ROWS_PER_CHUNK", per_chunk):
        text = render.eligibility_json(rows)
        chunks = list(render.eligibility_json_chunks(rows))
    expected = reference(rows)
    assert text == expected
    assert "".join(chunks) == expected
    assert all(chunks)
    # str equality is byte equality in any encoding; say so for the bytes actually written.
    assert text.encode("utf-8", "surrogatepass") == expected.encode("utf-8", "surrogatepass")


def test_cases_the_property_must_cover() -> None:
    """Named edge cases, run on every test run whatever hypothesis happens to draw."""
    def row(patient: str = "urn:p", unmet: tuple[str, ...] = (), evidence: tuple[str, ...] = ()) -> EligibilityResult:
        return EligibilityResult(patient, "urn:t", "urn:i", "qualifies", unmet, evidence)

    cases: list[list[EligibilityResult]] = [
        [],
        [row()],
        [row(), row()],
        [row(unmet=("informed-consent", "csf-circulation"), evidence=("a",))],
        [row(patient="".join(NASTY), unmet=tuple(NASTY), evidence=tuple(NASTY))],
        [row(patient=chr(c), evidence=(chr(c),)) for c in range(0x20)],
        [row(patient=f"urn:p{n}", evidence=(f"fact {n}",)) for n in range(render._JSON_ROWS_PER_CHUNK * 2 + 1)],
    ]
    for rows in cases:
        assert render.eligibility_json(rows) == reference(rows)


def test_golden_text() -> None:
    """The exact layout, written out, in case json.dumps itself ever changed under the oracle."""
    rows = [EligibilityResult("urn:p\"1\\", "urn:t", "urn:i", "pending", ("csf-circulation",),
                              ("d\u00e9j\u00e0 \U0001f600\n", "tab\there")),
            EligibilityResult("urn:p2", "urn:t", "urn:i", "qualifies")]
    assert render.eligibility_json(rows) == (
        '{\n "results": [\n'
        '  {\n   "patient": "urn:p\\"1\\\\",\n   "therapy": "urn:t",\n   "indication": "urn:i",\n'
        '   "status": "pending",\n   "unmet": [\n    "csf-circulation"\n   ],\n'
        '   "evidence": [\n    "d\u00e9j\u00e0 \U0001f600\\n",\n    "tab\\there"\n   ]\n  },\n'
        '  {\n   "patient": "urn:p2",\n   "therapy": "urn:t",\n   "indication": "urn:i",\n'
        '   "status": "qualifies",\n   "unmet": [],\n   "evidence": []\n  }\n'
        ' ]\n}\n')
    assert render.eligibility_json([]) == '{\n "results": []\n}\n'


def test_the_oracle_catches_a_broken_writer() -> None:
    """The comparison is not vacuous: one missing comma, one unescaped quote or one lost
    newline anywhere in the text makes it fail."""
    rows = [EligibilityResult("urn:p1", "urn:t", "urn:i", "pending", ("a", "b"), ("x", "y")),
            EligibilityResult('urn:"p2"', "urn:t", "urn:i", "qualifies")]
    good = render.eligibility_json(rows)
    assert good == reference(rows)
    broken = [good.replace('"a",', '"a"', 1), good.replace("},\n", "}\n", 1), good.replace('\\"', '"', 1),
              good[:-1], good.replace(" ]", "]", 1)]
    for text in broken:
        assert text != good and text != reference(rows)


def test_a_field_that_is_not_text_fails_loudly() -> None:
    """The rows' fields are declared ``str``; anything else raises rather than printing
    something json.dumps would have printed differently."""
    with pytest.raises(TypeError):
        render.eligibility_json([EligibilityResult("urn:p", "urn:t", "urn:i", "qualifies", (), (1,))])  # type: ignore[arg-type]


# -- writing the chunks --------------------------------------------------------------------------


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_chunks_are_written_whole(tmp_path: Path) -> None:
    rows = [EligibilityResult(f"urn:p{n}\u00e9", "urn:t", "urn:i", "qualifies", (), ("\U0001f600",))
            for n in range(render._JSON_ROWS_PER_CHUNK + 3)]
    target = tmp_path / "out.json"
    atomic_write(target, render.eligibility_json_chunks(rows))
    assert target.read_bytes() == reference(rows).encode("utf-8")
    assert _leftovers(tmp_path) == []


def test_a_failing_chunk_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")

    def failing() -> Iterator[str]:
        yield '{\n "results": [\n'
        raise MemoryError

    with pytest.raises(MemoryError):
        atomic_write(target, failing())
    assert target.read_text() == "old" and _leftovers(tmp_path) == []
    # A lone surrogate (never valid UTF-8) in a later chunk: refused, nothing replaced.
    rows = [EligibilityResult("urn:p", "urn:t", "urn:i", "qualifies")] * render._JSON_ROWS_PER_CHUNK
    rows.append(EligibilityResult("urn:p\ud800", "urn:t", "urn:i", "qualifies"))
    with pytest.raises(OutputError, match="cannot be encoded"):
        atomic_write(target, render.eligibility_json_chunks(rows))
    assert target.read_text() == "old" and _leftovers(tmp_path) == []


@pytest.mark.parametrize("engine", ["native", "rdflib"])
def test_cli_file_and_stdout_are_the_same_bytes(tmp_path: Path, engine: str) -> None:
    """The command line streams the JSON into the output file and joins it for standard output;
    both must be the contract's JSON, with non-ASCII IRIs and evidence written as UTF-8."""
    data = tmp_path / "patients.ttl"  # named records only: blank node labels differ per run
    data.write_text("""@prefix itkg: <https://w3id.org/itkg/> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
@prefix r: <https://example.org/record/> .
<https://example.org/pati\u00ebnt/Zo\u00eb\U0001f600> a itkg:Patient ;
  itkg:hasCondition r:Schmerz-\u00fc ; itkg:hasConsent r:Einwilligung-\u00df .
r:Schmerz-\u00fc a itkg:FailedBackSurgerySyndrome .
r:Einwilligung-\u00df a itkg:InformedConsent ; itkg:consentStatus itkg:ConsentGranted ;
  itkg:coversTherapy itkg:IntrathecalAnalgesicTherapy .
<https://example.org/anna> a itkg:Patient ;
  itkg:hasCondition r:c1 ; itkg:receivedTreatment r:t1 ; itkg:hasConsent r:k1 ; itkg:hasCSFAssessment r:a1 .
r:c1 a itkg:CancerPain .
r:t1 a itkg:OralOpioidTherapy ; itkg:hasOutcome itkg:SevereSideEffects .
r:k1 a itkg:InformedConsent ; itkg:consentStatus itkg:ConsentGranted ; itkg:coversTherapy itkg:IntrathecalTherapy ;
  itkg:consentDate "2026-03-02"^^xsd:date .
r:a1 a itkg:CSFCirculationAssessment ; itkg:finding itkg:GoodCSFCirculation ; itkg:assessmentDate "2026-02-20"^^xsd:date .
""", encoding="utf-8")
    out = tmp_path / "out.json"
    written = _itkg("eligibility", "--format", "json", "--engine", engine, "-o", out, data)
    assert written.returncode == 0, written.stderr
    printed = _itkg("eligibility", "--format", "json", "--engine", engine, data)
    assert printed.returncode == 0, printed.stderr
    body = out.read_bytes()
    assert body == printed.stdout.encode("utf-8")
    assert "Zo\u00eb\U0001f600".encode("utf-8") in body and "Schmerz-\u00fc".encode("utf-8") in body
    assert len(json.loads(body)["results"]) == 2
    # All values are strings and lists, so a re-dump of the parsed text is the oracle's output.
    assert body == (json.dumps(json.loads(body), indent=1, ensure_ascii=False) + "\n").encode("utf-8")
    assert _leftovers(tmp_path) == []
