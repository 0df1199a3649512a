"""The SSSOM mapping set (fhir.md §3): valid SSSOM, one source with the ontology, and its semantics."""

from __future__ import annotations

from pathlib import Path

import pytest
import rdflib
from rdflib.namespace import SKOS

from itkg import mappings, vocab
from itkg.errors import InputError
from itkg.mappings import coding_iri, load_mappings, read_sssom, shipped_path
from itkg.resources import ontology_path

ICD, SCT, RX, ATC = (mappings.ICD10CM_SYSTEM, mappings.SNOMED_SYSTEM, mappings.RXNORM_SYSTEM,
                     mappings.ATC_SYSTEM)
I = vocab.ITKG

#: The codes issue 10 lists as verified for the contract's terms, with the term each must decide.
REQUIRED = [
    (ICD, "G89.3", "CancerPain"), (ICD, "M96.1", "FailedBackSurgerySyndrome"),
    (ICD, "G90.5", "ComplexRegionalPainSyndromeType1"), (ICD, "G56.4", "Causalgia"),
    (ICD, "G57.7", "Causalgia"), (ICD, "G54.6", "PhantomLimbPain"),
    (ICD, "G54.0", "BrachialPlexopathy"), (ICD, "G54.1", "LumbosacralPlexopathy"),
    (SCT, "221360009", "Spasticity"), (SCT, "27151001", "FailedBackSurgerySyndrome"),
    (SCT, "202725007", "LumbarPostLaminectomySyndrome"), (SCT, "128200000", "ComplexRegionalPainSyndrome"),
    (SCT, "408751001", "Causalgia"), (SCT, "3548001", "BrachialPlexopathy"),
    (SCT, "4062006", "LumbosacralPlexopathy"), (SCT, "2231001", "Plexopathy"),
    (SCT, "24700007", "MultipleSclerosis"), (SCT, "90584004", "SpinalCordInjury"),
    (SCT, "128188000", "CerebralPalsy"), (SCT, "230690007", "Stroke"),
    (RX, "7052", "SystemicAnalgesicTherapy"), (RX, "4337", "SystemicAnalgesicTherapy"),
    (RX, "3423", "SystemicAnalgesicTherapy"), (RX, "7804", "SystemicAnalgesicTherapy"),
    (RX, "197391", "OralBaclofenTherapy"), (RX, "313413", "TizanidineTherapy"),
    (RX, "856652", "DantroleneTherapy"), (ATC, "N02A", "SystemicAnalgesicTherapy"),
    (ATC, "M03BX01", "OralBaclofenTherapy"), (ATC, "M03BX02", "TizanidineTherapy"),
    (ATC, "M03CA01", "DantroleneTherapy"),
]
#: Documenting rows the issue names: the severity and the three routes.
DOCUMENTED = [(SCT, "24484000"), (SCT, "26643006"), (SCT, "45890007"), (SCT, "72607000")]


def test_the_shipped_set_is_valid_sssom() -> None:
    from sssom.parsers import parse_sssom_table
    from sssom.validators import validate

    msdf = parse_sssom_table(str(shipped_path()))
    reports = validate(msdf, fail_on_error=False)
    assert all(not report.results for report in reports.values()), reports
    df = msdf.df
    assert len(df) == len(read_sssom(shipped_path())) > 50
    for column in ("mapping_justification", "author_id", "see_also", "object_label"):
        assert df[column].notna().all() and (df[column].astype(str).str.strip() != "").all(), column
    assert set(df["mapping_justification"]) == {"semapv:ManualMappingCuration"}
    # a site's file may use the shipped prefixes without declaring them
    assert {k: v for k, v in msdf.converter.prefix_map.items() if k in mappings.DEFAULT_PREFIXES} \
        == {k: v for k, v in mappings.DEFAULT_PREFIXES.items() if k in msdf.converter.prefix_map}
    assert df["see_also"].astype(str).str.startswith("https://").all()


def test_every_required_code_decides_its_term() -> None:
    mapped = load_mappings()
    for system, code, term in REQUIRED:
        assert I + term in mapped.terms(coding_iri(system, code)), (system, code)
    objects = {row.object for row in mapped.rows}
    for system, code in DOCUMENTED:
        iri = coding_iri(system, code)
        assert iri in objects and not mapped.terms(iri), code


def test_the_ontology_cross_references_are_the_mapping_set_exactly() -> None:
    graph = rdflib.Graph().parse(ontology_path())
    in_ontology = {(str(s), str(p), str(o)) for p in (SKOS.exactMatch, SKOS.narrowMatch, SKOS.closeMatch,
                                                      SKOS.broadMatch, SKOS.relatedMatch)
                   for s, o in graph.subject_objects(p)}
    in_tsv = {(r.subject, r.predicate, r.object) for r in read_sssom(shipped_path())}
    assert in_ontology == in_tsv
    # and the generated block is what build_owl writes (no hand edits in it)
    text = ontology_path().read_text(encoding="utf-8")
    assert mappings.synced_ontology(text) == text


def test_a_changed_tsv_is_caught_by_the_build_check(tmp_path: Path) -> None:
    ttl = tmp_path / "itkg.ttl"
    ttl.write_text(ontology_path().read_text(encoding="utf-8").replace(
        "<http://purl.bioontology.org/ontology/ICD10CM/G89.3>", "<http://example.org/X>"), encoding="utf-8")
    assert mappings.sync_ontology(ttl, check=True) is False
    assert mappings.sync_ontology(ttl) is True
    assert "ICD10CM/G89.3>" in ttl.read_text(encoding="utf-8")


@pytest.mark.parametrize(("system", "code", "term"), [
    (ICD, "G90.50", "ComplexRegionalPainSyndromeType1"), (ICD, "G90.511", "ComplexRegionalPainSyndromeType1"),
    (ICD, "g90.59", "ComplexRegionalPainSyndromeType1"), (ICD, "G56.43", "Causalgia"),
    (ICD, "G57.70", "Causalgia"), (ICD, "I63.9", "Stroke"), (ICD, "I69.351", "Stroke"),
    (ATC, "N02AA01", "SystemicAnalgesicTherapy"), (ATC, "N02AB03", "TransdermalOpioidTherapy"),
])
def test_icd10cm_and_atc_codes_cover_their_descendants(system: str, code: str, term: str) -> None:
    assert I + term in load_mappings().terms(coding_iri(system, code))


@pytest.mark.parametrize(("system", "code"), [
    (ICD, "G90"), (ICD, "G90.4"), (ICD, "G54.7"), (ICD, "G89"), (ATC, "N02"), (ATC, "N02BE01"),
    (ATC, "M03B"),
    # SNOMED CT descendants are not computed: a code that is not listed decides nothing.
    (SCT, "2213600091"), (SCT, "22136000"), (RX, "70521"),
])
def test_ancestors_siblings_and_snomed_children_decide_nothing(system: str, code: str) -> None:
    assert load_mappings().terms(coding_iri(system, code)) == frozenset()


def test_close_broad_and_related_matches_never_decide(tmp_path: Path) -> None:
    mapped = load_mappings()
    # shipped closeMatch rows: M96.1 is close to lumbar post-laminectomy syndrome, ATC M03BX01 to
    # intrathecal baclofen therapy; only the deciding rows count
    assert mapped.terms(coding_iri(ICD, "M96.1")) == {I + "FailedBackSurgerySyndrome"}
    assert I + "IntrathecalBaclofenTherapy" not in mapped.terms(coding_iri(ATC, "M03BX01"))
    assert mapped.terms("http://purl.obolibrary.org/obo/OBI_0000810") == frozenset()
    site = tmp_path / "site.sssom.tsv"
    site.write_text(
        "# curie_map:\n#   HOSP: https://hospital.example/codes/\n"
        "subject_id\tpredicate_id\tobject_id\tmapping_justification\n"
        "itkg:CancerPain\tskos:closeMatch\tHOSP:PAIN-ONC\tsemapv:ManualMappingCuration\n"
        "itkg:CancerPain\tskos:broadMatch\tHOSP:PAIN-ANY\tsemapv:ManualMappingCuration\n"
        "itkg:CancerPain\tskos:relatedMatch\tHOSP:PAIN-REL\tsemapv:ManualMappingCuration\n"
        "itkg:MultipleSclerosis\tskos:closeMatch\tICD10CM:G35\tsemapv:ManualMappingCuration\n",
        encoding="utf-8")
    with_site = load_mappings([site])
    for code in ("PAIN-ONC", "PAIN-ANY", "PAIN-REL"):
        assert with_site.terms(coding_iri("https://hospital.example/codes", code)) == frozenset()
    assert with_site.terms(coding_iri(ICD, "G35")) == frozenset()  # a site's closeMatch: documents only
    assert with_site.terms(coding_iri(ICD, "G35.A")) == frozenset()


def test_site_rows_add_to_the_shipped_set(tmp_path: Path) -> None:
    site = tmp_path / "site.sssom.tsv"
    site.write_text(
        "# curie_map:\n#   HOSP: https://hospital.example/codes/\n"
        "#   ICD10CM: http://purl.bioontology.org/ontology/ICD10CM/\n"
        "subject_id\tpredicate_id\tobject_id\tmapping_justification\n"
        "itkg:CancerPain\tskos:exactMatch\tHOSP:PAIN-ONC\tsemapv:ManualMappingCuration\n"
        "itkg:MultipleSclerosis\tskos:exactMatch\tICD10CM:G35\tsemapv:ManualMappingCuration\n",
        encoding="utf-8")
    assert load_mappings().terms(coding_iri(ICD, "G35.A")) == frozenset()
    with_site = load_mappings([site])
    assert with_site.terms(coding_iri("https://hospital.example/codes", "PAIN-ONC")) == {I + "CancerPain"}
    assert with_site.terms(coding_iri(ICD, "G35.A")) == {I + "MultipleSclerosis"}  # prefix, site row
    assert with_site.terms(coding_iri(ICD, "G89.3")) == {I + "CancerPain"}  # shipped rows stay


def test_itkg_codes_are_always_understood() -> None:
    assert load_mappings().terms(coding_iri(vocab.ITKG, "OralOpioidTherapy")) == {I + "OralOpioidTherapy"}


@pytest.mark.parametrize(("content", "line"), [
    ("subject_id\tobject_id\nitkg:A\tX:1\n", 1),
    ("subject_id\tpredicate_id\tobject_id\nitkg:A\tskos:exactMatch\tNOPE:1\n", 2),
    ("subject_id\tpredicate_id\tobject_id\nitkg:A\towl:sameAs\titkg:B\n", 2),
    (("# curie_map:\n#   X: https://x.example/\nsubject_id\tpredicate_id\tobject_id\n"
     "itkg:A\tskos:exactMatch\tX:1\nitkg:A\tskos:exactMatch\tBAD:2\n"), 5),
])
def test_a_bad_mapping_file_names_file_and_line(tmp_path: Path, content: str, line: int) -> None:
    path = tmp_path / "bad.sssom.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        read_sssom(path)
    assert caught.value.line == line and "bad.sssom.tsv" in str(caught.value)
