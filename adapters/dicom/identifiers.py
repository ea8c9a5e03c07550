"""Identifier systems the DICOM adapter writes into the shared record.

A DICOM PatientID is the sending organisation's local MRN, so it only means something
together with that organisation: :func:`hie.fhir.identifiers.mrn_system` names that
system, shared with the HL7 v2 adapter so both feeds of a hospital meet on one source
Patient.
"""

from __future__ import annotations

import re

from hie.fhir.identifiers import mrn_system, organization_id

DICOM_UID_SYSTEM = "urn:dicom:uid"
ENDPOINT_SYSTEM = "urn:hie:endpoint"
DICOMWEB_ENDPOINT_ID = "dicomweb"
ACSN_TYPE = {
    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]
}

_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5 AE: no backslash, no controls


def accession_system(organization_ref: str) -> str:
    """The identifier system of one organisation's accession numbers (placer/filler)."""
    return f"urn:hie:accession:{organization_id(organization_ref)}"


def unregistered_mrn_system(ae_title: str) -> str:
    """MRNs from a calling AE that belongs to no registered organisation."""
    return f"urn:hie:mrn:dicom-ae:{ae_title.strip()}"


def unidentified_patient_system() -> str:
    """Placeholder patients for studies sent with an empty PatientID, one per study."""
    return "urn:hie:dicom:unidentified-patient"


def study_identifier_value(study_uid: str) -> str:
    return f"urn:oid:{study_uid}"


def valid_ae_title(value: str) -> bool:
    return bool(_AE_TITLE.match(value)) and bool(value.strip())


__all__ = ["mrn_system", "organization_id"]
