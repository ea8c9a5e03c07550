"""The ImagingStudy in the shared record: content, patient resolution, batching."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.imagingstudy import ImagingStudy
from fhir.resources.R4B.patient import Patient

from adapters.dicom.identifiers import mrn_system
from adapters.dicom.service import DicomService
from tests.adapters.dicom.dicom_support import (
    FIXTURES,
    ORG_A,
    FakeRecords,
    ServiceFactory,
    file_info,
    run,
)

pytestmark = pytest.mark.usefixtures("dcmtk")

CT = FIXTURES / "valid" / "CT_small.dcm"
CT_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
RG3 = FIXTURES / "valid" / "RG3_J2KI.dcm"  # accession FUJI95706, body part EXTREMITY


def storescu(service: DicomService, *args: str) -> None:
    host, port = service.address
    options = [a for a in args if a.startswith(("-", "+")) or a.isdigit()]
    files = [a for a in args if a not in options]
    result = run(["storescu", "-aet", "STORESCU", "-aec", "HIE", *options, host, str(port), *files])
    assert result.returncode == 0, result.stderr


def wait_for(predicate: object, timeout: float = 2.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError("not within the time limit")


def test_imaging_study_content_is_valid_r4(service: DicomService, records: FakeRecords) -> None:
    storescu(service, "-R", "-xw", str(RG3))
    service.ingest.drain()
    service.sync.run_once(force=True)
    (bundle,) = [b for _, b in records.transactions]
    Bundle.model_validate(bundle)
    study_uid = file_info(RG3)[3]
    study = records.imaging_study(study_uid)
    assert study is not None
    ImagingStudy.model_validate(study)
    assert study["identifier"][0] == {"system": "urn:dicom:uid", "value": f"urn:oid:{study_uid}"}
    accession = study["identifier"][1]
    assert accession["value"] == "FUJI95706"
    assert accession["type"]["coding"][0]["code"] == "ACSN"
    assert accession["system"] == "urn:hie:accession:hosp-a"
    assert study["started"] == "2004-08-26T18:50:59-04:00"  # TimezoneOffsetFromUTC -0400
    assert study["modality"] == [
        {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CR"}
    ]
    assert (study["numberOfSeries"], study["numberOfInstances"]) == (1, 1)
    (series,) = study["series"]
    assert series["number"] == 1
    assert series["bodySite"]["code"] == "66019005"
    (instance,) = series["instance"]
    assert instance["number"] == 3
    assert instance["sopClass"]["code"] == "urn:oid:1.2.840.10008.5.1.4.1.1.1"
    endpoint_ref = study["endpoint"][0]["reference"]
    (endpoint,) = records.of_type("Endpoint")
    assert endpoint_ref == f"Endpoint/{endpoint['id']}"
    assert endpoint["address"] == "http://hie.test/dicomweb"
    (patient,) = records.of_type("Patient")
    Patient.model_validate(patient)
    assert study["subject"]["reference"] == f"Patient/{patient['id']}"
    assert patient["identifier"][0]["system"] == mrn_system(ORG_A)
    assert patient["managingOrganization"] == {"reference": ORG_A}


def test_existing_source_patient_and_service_request_are_used(
    service: DicomService, records: FakeRecords
) -> None:
    patient = records.add(
        {
            "resourceType": "Patient",
            "identifier": [{"system": "urn:hie:mrn:hosp-a", "value": "11RG3"}],
            "name": [{"family": "from HL7"}],
        }
    )
    order = records.add(
        {
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "identifier": [{"system": "urn:hie:accession:hosp-a", "value": "FUJI95706"}],
            "subject": {"reference": f"Patient/{patient['id']}"},
        }
    )
    storescu(service, "-R", "-xw", str(RG3))
    service.ingest.drain()
    service.sync.run_once(force=True)
    assert len(records.of_type("Patient")) == 1  # not a second source Patient
    assert records.of_type("Patient")[0]["name"] == [{"family": "from HL7"}]
    study = records.imaging_study(file_info(RG3)[3])
    assert study is not None
    assert study["subject"] == {"reference": f"Patient/{patient['id']}"}
    assert study["basedOn"] == [{"reference": f"ServiceRequest/{order['id']}"}]


def test_chinese_names_from_gb18030_and_utf8(service: DicomService, records: FakeRecords) -> None:
    storescu(
        service, str(FIXTURES / "charset" / "chrX1.dcm"), str(FIXTURES / "charset" / "chrX2.dcm")
    )
    service.ingest.drain()
    service.sync.run_once(force=True)
    patients = {p["identifier"][0]["value"]: p for p in records.of_type("Patient")}
    x1, x2 = patients["X1EXAMPLE"], patients["X2EXAMPLE"]
    assert x1["name"][0]["text"] == "王小東"
    assert (x2["name"][0]["family"], x2["name"][0]["given"]) == ("王", ["小东"])
    assert x2["name"][0]["extension"][0]["valueCode"] == "IDE"
    assert x2["name"][1] == {"use": "official", "family": "Wang", "given": ["XiaoDong"]}
    for p in (x1, x2):
        Patient.model_validate(p)


def test_study_without_patient_id_gets_one_placeholder_patient(
    service: DicomService, records: FakeRecords
) -> None:
    path = FIXTURES / "valid" / "test-SR.dcm"
    storescu(service, str(path))
    service.ingest.drain()
    service.sync.run_once(force=True)
    service.ingest.drain()
    service.sync.run_once(force=True)
    (patient,) = records.of_type("Patient")
    assert patient["identifier"][0] == {
        "use": "usual",
        "system": "urn:hie:dicom:unidentified-patient",
        "value": file_info(path)[3],
    }


def test_record_is_current_within_2s_and_batched(
    service: DicomService, records: FakeRecords
) -> None:
    # 30 instances over one association (storescu +II invents one new study for them all)
    # while the sync thread runs.
    storescu(service, "+II", "--repeat", "30", str(CT))

    def current() -> bool:
        studies = records.of_type("ImagingStudy")
        return len(studies) == 1 and studies[0]["numberOfInstances"] == 30

    assert wait_for(current) < 2.0
    (study,) = records.of_type("ImagingStudy")
    assert records.version_of(study) < 10  # not one version per instance
    wait_for(lambda: service.index.stale_count() == 0)


def test_failed_record_write_is_retried(service: DicomService, records: FakeRecords) -> None:
    records.fail_transactions = True
    storescu(service, str(CT))
    service.ingest.drain()
    service.sync.run_once(force=True)
    assert service.index.stale_count() == 1
    records.fail_transactions = False
    service.ingest.drain()
    service.sync.run_once(force=True)
    assert service.index.stale_count() == 0
    assert records.imaging_study(CT_STUDY) is not None


def test_stale_studies_survive_a_restart(
    make_service: ServiceFactory, records: FakeRecords, tmp_path: Path
) -> None:
    first = make_service(sync_quiet=60, sync_max_delay=60)
    storescu(first, str(CT))
    first.sync._stop.set()  # simulate a crash: no final flush
    assert first.scp is not None
    first.scp.stop()
    first.scp = None
    assert records.imaging_study(CT_STUDY) is None
    second = make_service()
    wait_for(lambda: records.imaging_study(CT_STUDY) is not None)
    del second
