"""IRIs of the contract's vocabulary (contract §2) as plain strings.

These are the *terms* patient graphs use, not rules: which conditions, treatments and outcomes meet
which indication is read from the ontology (see :mod:`itkg.knowledge`).
"""

from __future__ import annotations

ITKG = "https://w3id.org/itkg/"
RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
RDFS_SUBCLASS_OF = "http://www.w3.org/2000/01/rdf-schema#subClassOf"
RDFS_LABEL = "http://www.w3.org/2000/01/rdf-schema#label"
XSD_DATE = "http://www.w3.org/2001/XMLSchema#date"

PATIENT = ITKG + "Patient"
HAS_CONDITION = ITKG + "hasCondition"
RECEIVED_TREATMENT = ITKG + "receivedTreatment"
HAS_OUTCOME = ITKG + "hasOutcome"
HAS_CONSENT = ITKG + "hasConsent"
CONSENT_STATUS = ITKG + "consentStatus"
COVERS_THERAPY = ITKG + "coversTherapy"
CONSENT_DATE = ITKG + "consentDate"
HAS_CSF_ASSESSMENT = ITKG + "hasCSFAssessment"
FINDING = ITKG + "finding"
ASSESSMENT_DATE = ITKG + "assessmentDate"
PLANNED_THERAPY = ITKG + "plannedTherapy"

INTRATHECAL_THERAPY = ITKG + "IntrathecalTherapy"
CONSENT_GRANTED = ITKG + "ConsentGranted"
CONSENT_REFUSED = ITKG + "ConsentRefused"
CONSENT_WITHDRAWN = ITKG + "ConsentWithdrawn"
GOOD_CSF = ITKG + "GoodCSFCirculation"
IMPAIRED_CSF = ITKG + "ImpairedCSFCirculation"

#: The prerequisites' codes (``skos:notation`` in the ontology), in the order ``unmet`` lists them.
INFORMED_CONSENT = "informed-consent"
CSF_CIRCULATION = "csf-circulation"
PREREQUISITE_ORDER = (INFORMED_CONSENT, CSF_CIRCULATION)

#: Predicates the rule engine indexes; every other triple is kept only for SPARQL and SHACL.
INDEXED_PREDICATES = frozenset({
    RDF_TYPE, HAS_CONDITION, RECEIVED_TREATMENT, HAS_OUTCOME, HAS_CONSENT, CONSENT_STATUS,
    COVERS_THERAPY, CONSENT_DATE, HAS_CSF_ASSESSMENT, FINDING, ASSESSMENT_DATE, PLANNED_THERAPY,
})
