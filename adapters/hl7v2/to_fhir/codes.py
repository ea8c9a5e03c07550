"""Code systems and the HL7 v2 table values the mappers translate (v2-to-FHIR IG 1.0)."""

from __future__ import annotations

from urllib.parse import quote

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
V2 = "http://terminology.hl7.org/CodeSystem/v2-"
V3_ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_MARITAL = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"
V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
V3_ROLE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
V3_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
RESIDENT_ID = "urn:oid:2.16.156.10011.1.3"
"""The PRC resident identity card number (GB 11643-1999)."""
PATIENT_BIRTH_TIME = "http://hl7.org/fhir/StructureDefinition/patient-birthTime"
BASE = "urn:hie:hl7v2"

_NAMED_SYSTEMS = {
    "LN": LOINC,
    "LOINC": LOINC,
    "SCT": SNOMED,
    "SNM": SNOMED,
    "SNM3": SNOMED,
    "SNOMED": SNOMED,
    "UCUM": UCUM,
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "ICD10": "http://hl7.org/fhir/sid/icd-10",
    "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
    "ICD10CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "I9": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9CDX": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9M": "http://hl7.org/fhir/sid/icd-9-cm",
    "CVX": "http://hl7.org/fhir/sid/cvx",
    "MVX": "http://hl7.org/fhir/sid/mvx",
    "NDC": "http://hl7.org/fhir/sid/ndc",
    "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "C4": "http://www.ama-assn.org/go/cpt",
    "CPT": "http://www.ama-assn.org/go/cpt",
    "NCIT": "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl",
    "DCM": "http://dicom.nema.org/resources/ontology/DCM",
    "ISO3166_1": "urn:iso:std:iso:3166",
    "ISO+": "urn:iso:std:iso:2955",
    "CDCREC": "urn:oid:2.16.840.1.113883.6.238",
    "CDCPHINVS": "urn:oid:2.16.840.1.114222.4.5.274",
    "HL70396": "http://terminology.hl7.org/CodeSystem/v2-0396",
}


def local_system(facility: str, name: str) -> str:
    """The system of a sender's own code table (``L``, ``99xxx`` or any unknown name)."""
    return f"{BASE}:{quote(facility, safe='')}:cs:{quote(name or 'L', safe='')}"


def system_for(name: str, facility: str) -> str:
    """The FHIR system URI for a v2 coding-system name (CWE-3) as a sender uses it."""
    key = name.strip()
    upper = key.upper()
    if upper in _NAMED_SYSTEMS:
        return _NAMED_SYSTEMS[upper]
    if upper.startswith("HL7") and upper[3:].isdigit():
        return V2 + upper[3:].zfill(4)
    if key.startswith(("http://", "https://", "urn:")):
        return key
    if key.replace(".", "").isdigit() and "." in key:
        return f"urn:oid:{key}"
    return local_system(facility, key)


# HL7 table 0001 (and GB/T 2261.1 digits, which Chinese HIS systems often send).
GENDER = {
    "M": "male",
    "F": "female",
    "O": "other",
    "A": "other",
    "U": "unknown",
    "N": "unknown",
    "1": "male",
    "2": "female",
    "0": "unknown",
    "9": "unknown",
}

# HL7 table 0002 and GB/T 2261.2 codes -> v3 MaritalStatus.
MARITAL = {
    "A": "L",
    "E": "L",
    "D": "D",
    "M": "M",
    "S": "S",
    "W": "W",
    "C": "T",
    "G": "T",
    "P": "T",
    "R": "T",
    "N": "A",
    "I": "I",
    "B": "U",
    "U": "UNK",
    "T": "UNK",
    "10": "S",
    "20": "M",
    "21": "M",
    "22": "M",
    "23": "M",
    "30": "W",
    "40": "D",
    "90": "UNK",
    "MARRIED": "M",
    "SINGLE": "S",
    "DIVORCED": "D",
    "WIDOWED": "W",
}

# HL7 table 0004 patient class -> v3 ActCode encounter class.
PATIENT_CLASS = {"E": "EMER", "I": "IMP", "O": "AMB", "P": "PRENC", "R": "AMB", "B": "IMP"}

NAME_USE = {
    "L": "official",
    "D": "usual",
    "A": "usual",
    "M": "maiden",
    "N": "nickname",
    "S": "anonymous",
    "B": "old",
    "BAD": "old",
    "C": "old",
    "T": "usual",
}

ADDRESS_USE = {"H": "home", "B": "work", "O": "work", "C": "temp", "BA": "old", "BDL": "old"}
ADDRESS_TYPE = {"M": "postal", "SH": "physical", "P": "physical"}

TELECOM_USE = {"PRN": "home", "WPN": "work", "VHN": "home", "ORN": "home", "ASN": "work"}
TELECOM_SYSTEM = {
    "PH": "phone",
    "CP": "phone",
    "FX": "fax",
    "BP": "pager",
    "INTERNET": "email",
    "X.400": "email",
    "MD": "other",
    "TDD": "other",
    "TTY": "other",
}

# HL7 table 0085 observation result status -> Observation.status.
OBSERVATION_STATUS = {
    "C": "corrected",
    "D": "entered-in-error",
    "F": "final",
    "I": "registered",
    "O": "registered",
    "P": "preliminary",
    "R": "preliminary",
    "S": "preliminary",
    "U": "final",
    "W": "entered-in-error",
    "X": "cancelled",
    "N": "cancelled",
}

# HL7 table 0123 result status -> DiagnosticReport.status.
REPORT_STATUS = {
    "O": "registered",
    "I": "registered",
    "S": "partial",
    "A": "partial",
    "P": "preliminary",
    "R": "preliminary",
    "C": "corrected",
    "F": "final",
    "X": "cancelled",
    "Y": "unknown",
    "Z": "unknown",
}

# HL7 table 0038 order status -> ServiceRequest.status.
ORDER_STATUS = {
    "A": "active",
    "CA": "revoked",
    "CM": "completed",
    "DC": "revoked",
    "ER": "entered-in-error",
    "HD": "on-hold",
    "IP": "active",
    "RP": "revoked",
    "SC": "active",
}
# HL7 table 0119 order control, when ORC-5 is empty.
ORDER_CONTROL_STATUS = {
    "NW": "active",
    "OK": "active",
    "SC": "active",
    "XO": "active",
    "RE": "active",
    "CA": "revoked",
    "CR": "revoked",
    "DC": "revoked",
    "OC": "revoked",
    "HD": "on-hold",
    "OH": "on-hold",
    "RL": "active",
    "CM": "completed",
}

PRIORITY = {"S": "stat", "A": "asap", "R": "routine", "P": "routine", "T": "urgent"}

ALLERGY_CATEGORY = {
    "DA": "medication",
    "MA": "medication",
    "FA": "food",
    "EA": "environment",
    "AA": "environment",
    "PA": "environment",
    "LA": "environment",
}
ALLERGY_CRITICALITY = {"SV": "high", "MO": "low", "MI": "low", "U": "unable-to-assess"}

SUBSCRIBER_RELATIONSHIP = {
    "SEL": "self",
    "SPO": "spouse",
    "DOM": "common",
    "CHD": "child",
    "PAR": "parent",
    "EME": "injured",
    "OTH": "other",
    "01": "self",
    "1": "self",
}

# HL7 table 0278 filler status -> Appointment.status.
APPOINTMENT_STATUS = {
    "PENDING": "pending",
    "WAITLIST": "waitlist",
    "BOOKED": "booked",
    "OVERBOOK": "booked",
    "STARTED": "arrived",
    "COMPLETE": "fulfilled",
    "CANCELLED": "cancelled",
    "DC": "cancelled",
    "DELETED": "entered-in-error",
    "NOSHOW": "noshow",
}

# HL7 table 0271 completion status -> DocumentReference.docStatus.
DOC_STATUS = {
    "AU": "final",
    "LA": "final",
    "DI": "preliminary",
    "DO": "preliminary",
    "IN": "preliminary",
    "IP": "preliminary",
    "PA": "preliminary",
}

# HL7 table 0322 completion status -> Immunization.status.
IMMUNIZATION_STATUS = {"CP": "completed", "PA": "completed", "RE": "not-done", "NA": "not-done"}

# Common non-UCUM spellings of units Chinese and other laboratories send.
UNIT_ALIASES = {
    "10^9/L": "10*9/L",
    "x10^9/L": "10*9/L",
    "\u00d710^9/L": "10*9/L",
    "10^12/L": "10*12/L",
    "x10^12/L": "10*12/L",
    "\u00d710^12/L": "10*12/L",
    "μmol/L": "umol/L",
    "µmol/L": "umol/L",
    "mg/dl": "mg/dL",
    "g/dl": "g/dL",
    "beats/min": "/min",
    "tera.l-1": "10*12/L",
    "giga.l-1": "10*9/L",
}
UCUM_UNITS = frozenset(
    {
        "%",
        "10*3/uL",
        "10*6/uL",
        "10*9/L",
        "10*12/L",
        "/min",
        "/uL",
        "U/L",
        "IU/L",
        "fL",
        "pg",
        "g",
        "kg",
        "mg",
        "ug",
        "g/L",
        "g/dL",
        "g/mL",
        "mg/L",
        "mg/dL",
        "ug/L",
        "ng/mL",
        "pg/mL",
        "mmol/L",
        "umol/L",
        "nmol/L",
        "pmol/L",
        "mol/L",
        "mL",
        "L",
        "mm[Hg]",
        "Cel",
        "cm",
        "m",
        "s",
        "min",
        "h",
        "d",
        "mmol/mol",
        "mL/min",
        "mL/min/{1.73_m2}",
        "{cells}/uL",
        "pg/{cell}",
        "[iU]/L",
        "[IU]/L",
        "mU/L",
        "mIU/L",
        "[pH]",
        "{ratio}",
        "kg/m2",
    }
)
