"""The shared-record view of a study: a FHIR R4 transaction with the source Patient, the
DICOMweb Endpoint and the ImagingStudy, built from the index rows (pure functions).

- Patient: ``POST`` with ``ifNoneExist`` on the sending organisation's MRN
  (:func:`adapters.dicom.identifiers.mrn_system`), so an existing source Patient (from the
  same hospital's HL7 feed) is reused and a minimal one is created from the header only
  when there is none.
- Endpoint: ``POST`` with ``ifNoneExist``; one per hie, the DICOMweb base URL.
- ImagingStudy: conditional ``PUT`` on ``urn:dicom:uid|urn:oid:<StudyInstanceUID>``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from pydicom.uid import UID

from adapters.dicom.identifiers import (
    ACSN_TYPE,
    DICOM_UID_SYSTEM,
    DICOMWEB_ENDPOINT_ID,
    ENDPOINT_SYSTEM,
    accession_system,
    mrn_system,
    study_identifier_value,
    unidentified_patient_system,
    unregistered_mrn_system,
)
from adapters.dicom.index import StudyTree
from adapters.dicom.models import DicomPatient, DicomStudy

DCM = "http://dicom.nema.org/resources/ontology/DCM"
SNOMED = "http://snomed.info/sct"
NAME_REPRESENTATION = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"
_NAMESPACE = uuid.UUID("8f6c1b2e-0d4b-4b8e-9a57-2f4f3f0f9d11")

# DICOM PS3.16 CID 4031 body parts -> SNOMED CT, the common ones.
BODY_PARTS = {
    "ABDOMEN": ("818981001", "Abdomen"),
    "ANKLE": ("70258002", "Ankle joint"),
    "BRAIN": ("12738006", "Brain"),
    "BREAST": ("76752008", "Breast"),
    "CHEST": ("51185008", "Thorax"),
    "CSPINE": ("122494005", "Cervical spine"),
    "ELBOW": ("16953009", "Elbow joint"),
    "EXTREMITY": ("66019005", "Limb"),
    "HAND": ("85562004", "Hand"),
    "HEAD": ("69536005", "Head"),
    "HEART": ("80891009", "Heart"),
    "HIP": ("29836001", "Hip"),
    "KNEE": ("72696002", "Knee"),
    "LSPINE": ("122496007", "Lumbar spine"),
    "NECK": ("45048000", "Neck"),
    "PELVIS": ("816092008", "Pelvis"),
    "SHOULDER": ("16982005", "Shoulder"),
    "SKULL": ("89546000", "Skull"),
    "TSPINE": ("122495006", "Thoracic spine"),
    "WHOLEBODY": ("38266002", "Entire body as a whole"),
}


@dataclass(frozen=True)
class RecordOptions:
    dicomweb_url: str
    default_timezone: str = "+08:00"


def search_value(system: str, value: str) -> str:
    """``system|value`` as a FHIR token search value, escaped and URL-quoted."""
    escaped = value.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,")
    escaped = escaped.replace("$", "\\$")
    return quote(f"{system}|{escaped}", safe=":/|\\")


def patient_identifier(patient: DicomPatient, study: DicomStudy) -> tuple[str, str]:
    """The (system, value) that names this study's source Patient."""
    if not patient.patient_id:
        return unidentified_patient_system(), study.study_uid
    if patient.issuer.startswith("Organization/"):
        return mrn_system(patient.issuer), patient.patient_id
    return unregistered_mrn_system(patient.issuer.removeprefix("ae:")), patient.patient_id


def _name(group: str, representation: str) -> dict[str, Any] | None:
    parts = [p.strip() for p in group.split("^")] + [""] * 5
    family, given, middle, prefix, suffix = parts[:5]
    if not any((family, given, middle, prefix, suffix)):
        return None
    name: dict[str, Any] = {"use": "official"}
    if family:
        name["family"] = family
    givens = [g for g in (given, middle) if g]
    if givens:
        name["given"] = givens
    if prefix:
        name["prefix"] = [prefix]
    if suffix:
        name["suffix"] = [suffix]
    if representation != "ABC":
        # Chinese, Japanese and Korean names are written family name first, without spaces.
        name["text"] = family + "".join(givens)
        name["extension"] = [{"url": NAME_REPRESENTATION, "valueCode": representation}]
    return name


def patient_resource(patient: DicomPatient, study: DicomStudy) -> dict[str, Any]:
    system, value = patient_identifier(patient, study)
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"use": "usual", "system": system, "value": value}],
    }
    names = [
        n
        for n in (
            _name(patient.name_ideographic, "IDE"),
            _name(patient.name_alphabetic, "ABC"),
            _name(patient.name_phonetic, "SYL"),
        )
        if n is not None
    ]
    if names:
        resource["name"] = names
    gender = {"M": "male", "F": "female", "O": "other"}.get((patient.sex or "").upper())
    if gender:
        resource["gender"] = gender
    if patient.birth_date:
        d = patient.birth_date
        resource["birthDate"] = f"{d[:4]}-{d[4:6]}-{d[6:8]}"
    if patient.issuer.startswith("Organization/"):
        resource["managingOrganization"] = {"reference": patient.issuer}
    return resource


def endpoint_resource(options: RecordOptions) -> dict[str, Any]:
    return {
        "resourceType": "Endpoint",
        "identifier": [{"system": ENDPOINT_SYSTEM, "value": DICOMWEB_ENDPOINT_ID}],
        "status": "active",
        "connectionType": {
            "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
            "code": "dicom-wado-rs",
        },
        "name": "hie DICOMweb",
        "payloadType": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/endpoint-payload-type",
                        "code": "DICOM",
                    }
                ]
            }
        ],
        "payloadMimeType": ["application/dicom"],
        "address": options.dicomweb_url,
    }


def _timezone(study: DicomStudy, default: str) -> str:
    offset = (study.timezone_offset or "").strip()
    if len(offset) == 5 and offset[0] in "+-" and offset[1:].isdigit():
        return f"{offset[:3]}:{offset[3:]}"
    return default


def _started(date: str | None, time: str | None, tz: str) -> str | None:
    if not date:
        return None
    day = f"{date[:4]}-{date[4:6]}-{date[6:8]}"
    if not time:
        return day
    base, _, fraction = time.partition(".")
    clock = f"{base[:2]}:{base[2:4]}:{base[4:6]}"
    if fraction:
        clock += "." + fraction
    return f"{day}T{clock}{tz}"


def _sop_class(uid: str) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": "urn:ietf:rfc:3986", "code": f"urn:oid:{uid}"}
    name = UID(uid).name
    if name and name != uid:
        coding["display"] = name
    return coding


def _body_site(value: str) -> dict[str, Any] | None:
    if not value:
        return None
    known = BODY_PARTS.get(value.upper().replace(" ", ""))
    if known:
        return {"system": SNOMED, "code": known[0], "display": known[1]}
    return {"display": value}


def imaging_study(
    tree: StudyTree,
    *,
    subject: str,
    endpoint: str,
    based_on: str | None,
    options: RecordOptions,
) -> dict[str, Any]:
    study = tree.study
    tz = _timezone(study, options.default_timezone)
    identifiers: list[dict[str, Any]] = [
        {"system": DICOM_UID_SYSTEM, "value": study_identifier_value(study.study_uid)}
    ]
    if study.accession_number:
        accession: dict[str, Any] = {"type": ACSN_TYPE, "value": study.accession_number}
        if study.organization:
            accession["system"] = accession_system(study.organization)
            accession["assigner"] = {"reference": study.organization}
        identifiers.append(accession)
    modalities: dict[str, None] = {}
    series_out = []
    total = 0
    for series, instances in tree.series:
        if series.modality:
            modalities.setdefault(series.modality)
        entry: dict[str, Any] = {
            "uid": series.series_uid,
            "modality": {"system": DCM, "code": series.modality or "OT"},
            "numberOfInstances": len(instances),
            "endpoint": [{"reference": endpoint}],
        }
        if series.series_number is not None and series.series_number >= 0:
            entry["number"] = series.series_number
        if series.description:
            entry["description"] = series.description
        site = _body_site(series.body_part)
        if site:
            entry["bodySite"] = site
        started = _started(series.series_date, series.series_time, tz)
        if started:
            entry["started"] = started
        entry["instance"] = []
        for instance in instances:
            item: dict[str, Any] = {
                "uid": instance.sop_uid,
                "sopClass": _sop_class(instance.sop_class_uid),
            }
            if instance.instance_number is not None and instance.instance_number >= 0:
                item["number"] = instance.instance_number
            entry["instance"].append(item)
        total += len(instances)
        series_out.append(entry)
    resource: dict[str, Any] = {
        "resourceType": "ImagingStudy",
        "identifier": identifiers,
        "status": "available",
        "subject": {"reference": subject},
        "endpoint": [{"reference": endpoint}],
        "numberOfSeries": len(series_out),
        "numberOfInstances": total,
        "series": series_out,
    }
    if modalities:
        resource["modality"] = [{"system": DCM, "code": m} for m in modalities]
    started = _started(study.study_date, study.study_time, tz)
    if started:
        resource["started"] = started
    if based_on:
        resource["basedOn"] = [{"reference": based_on}]
    if study.description:
        resource["description"] = study.description
    return resource


def study_bundle(
    tree: StudyTree, *, based_on: str | None, options: RecordOptions
) -> dict[str, Any]:
    """The transaction that makes the shared record's view of ``tree`` current."""
    system, value = patient_identifier(tree.patient, tree.study)
    patient_url = f"urn:uuid:{uuid.uuid5(_NAMESPACE, system + '|' + value)}"
    endpoint_url = f"urn:uuid:{uuid.uuid5(_NAMESPACE, options.dicomweb_url)}"
    study_url = f"urn:uuid:{uuid.uuid5(_NAMESPACE, tree.study.study_uid)}"
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": patient_url,
                "resource": patient_resource(tree.patient, tree.study),
                "request": {
                    "method": "POST",
                    "url": "Patient",
                    "ifNoneExist": "identifier=" + search_value(system, value),
                },
            },
            {
                "fullUrl": endpoint_url,
                "resource": endpoint_resource(options),
                "request": {
                    "method": "POST",
                    "url": "Endpoint",
                    "ifNoneExist": "identifier="
                    + search_value(ENDPOINT_SYSTEM, DICOMWEB_ENDPOINT_ID),
                },
            },
            {
                "fullUrl": study_url,
                "resource": imaging_study(
                    tree,
                    subject=patient_url,
                    endpoint=endpoint_url,
                    based_on=based_on,
                    options=options,
                ),
                "request": {
                    "method": "PUT",
                    "url": "ImagingStudy?identifier="
                    + search_value(DICOM_UID_SYSTEM, study_identifier_value(tree.study.study_uid)),
                },
            },
        ],
    }
