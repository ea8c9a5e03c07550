"""Query/retrieve against real peers: findscu, movescu, getscu and pynetdicom."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom import config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
)

from adapters.dicom.service import DicomService
from tests.adapters.dicom.dicom_support import (
    CT_STUDY,
    FIXTURES,
    MR_STUDY,
    ORG_B,
    VALID,
    FakeRecords,
    ServiceFactory,
    file_info,
    inflated,
    run,
    send_all,
)

pytestmark = pytest.mark.usefixtures("dcmtk")


@pytest.fixture
def loaded(service: DicomService, monkeypatch: pytest.MonkeyPatch) -> DicomService:
    send_all(service, monkeypatch, VALID)
    return service


def find(
    service: DicomService,
    identifier: Dataset,
    model: Any = StudyRootQueryRetrieveInformationModelFind,
    aet: str = "FINDSCU",
) -> tuple[list[Dataset], Dataset]:
    ae = AE(ae_title=aet)
    ae.add_requested_context(model)
    assoc = ae.associate(*service.address, ae_title="HIE")
    assert assoc.is_established
    results, final = [], Dataset()
    try:
        for status, ds in assoc.send_c_find(identifier, model):
            if status.Status == 0xFF00:
                results.append(ds)
            else:
                final = status
    finally:
        assoc.release()
    return results, final


def q(level: str, **keys: Any) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        tag = tag_for_keyword(keyword)
        # no validation: some tests send invalid values on purpose
        ds[tag] = DataElement(tag, dictionary_VR(tag), value, validation_mode=config.IGNORE)
    return ds


def uids(results: list[Dataset], keyword: str = "StudyInstanceUID") -> set[str]:
    return {str(getattr(r, keyword)) for r in results}


def test_find_study_level_wildcards_and_counts(loaded: DicomService) -> None:
    results, final = find(
        loaded,
        q(
            "STUDY",
            PatientName="compressedsamples^m*",
            StudyInstanceUID="",
            ModalitiesInStudy="",
            NumberOfStudyRelatedInstances="",
            NumberOfStudyRelatedSeries="",
            PatientID="",
        ),
    )
    assert final.Status == 0x0000
    assert uids(results) == {MR_STUDY}
    (study,) = results
    assert study.PatientName == "CompressedSamples^MR1"
    assert study.ModalitiesInStudy == "MR"
    assert (study.NumberOfStudyRelatedSeries, study.NumberOfStudyRelatedInstances) == (1, 1)
    assert study.RetrieveAETitle == "HIE" if "RetrieveAETitle" in study else True
    results, _ = find(loaded, q("STUDY", PatientID="?CT1", StudyInstanceUID=""))
    assert uids(results) == {CT_STUDY}


def test_find_universal_list_and_ranges(loaded: DicomService) -> None:
    everything, _ = find(loaded, q("STUDY", StudyInstanceUID=""))
    assert len(everything) == len({file_info(p)[3] for p in VALID})
    listed, _ = find(loaded, q("STUDY", StudyInstanceUID=[CT_STUDY, MR_STUDY]))
    assert uids(listed) == {CT_STUDY, MR_STUDY}
    in_2004, _ = find(loaded, q("STUDY", StudyDate="20040101-20041231", StudyInstanceUID=""))
    assert CT_STUDY in uids(in_2004)
    assert MR_STUDY in uids(in_2004)
    assert all(str(r.StudyDate).startswith("2004") for r in in_2004)
    before, _ = find(loaded, q("STUDY", StudyDate="-20040120", StudyInstanceUID=""))
    assert CT_STUDY in uids(before)
    assert MR_STUDY not in uids(before)
    assert all(str(r.StudyDate) <= "20040120" for r in before)
    morning, _ = find(
        loaded, q("STUDY", StudyDate="2004", StudyTime="0700-0800", StudyInstanceUID="")
    )
    del morning
    timed, _ = find(loaded, q("STUDY", StudyTime="0700-0730", StudyInstanceUID=""))
    assert uids(timed) == {CT_STUDY}
    after, _ = find(loaded, q("STUDY", StudyDate="20190101-", StudyInstanceUID=""))
    assert {str(r.StudyDate) for r in after} == {"20190124"}
    modality, _ = find(loaded, q("STUDY", ModalitiesInStudy=["CT", "CR"], StudyInstanceUID=""))
    assert len(modality) == 2


def test_find_chinese_names(loaded: DicomService) -> None:
    query = q("STUDY", PatientName="王*", StudyInstanceUID="")
    query.SpecificCharacterSet = "ISO_IR 192"
    results, _ = find(loaded, query)
    assert {str(r.PatientName) for r in results} == {
        "Wang^XiaoDong=王^小東",
        "Wang^XiaoDong=王^小东",
    }
    query = q("STUDY", PatientName="=王^小东", PatientID="")
    query.SpecificCharacterSet = "ISO_IR 192"
    results, _ = find(loaded, query)
    assert [str(r.PatientID) for r in results] == ["X2EXAMPLE"]


def test_find_patient_root_levels(loaded: DicomService) -> None:
    patients, final = find(
        loaded,
        q(
            "PATIENT",
            PatientID="4MR1",
            PatientName="",
            NumberOfPatientRelatedStudies="",
            NumberOfPatientRelatedInstances="",
            IssuerOfPatientID="",
        ),
        PatientRootQueryRetrieveInformationModelFind,
    )
    assert final.Status == 0
    (patient,) = patients
    assert (patient.NumberOfPatientRelatedStudies, patient.NumberOfPatientRelatedInstances) == (
        1,
        1,
    )
    assert patient.IssuerOfPatientID == "hosp-a"
    series, _ = find(
        loaded,
        q(
            "SERIES",
            StudyInstanceUID=CT_STUDY,
            SeriesInstanceUID="",
            Modality="",
            NumberOfSeriesRelatedInstances="",
        ),
    )
    assert [(s.Modality, s.NumberOfSeriesRelatedInstances) for s in series] == [("CT", 1)]
    images, _ = find(
        loaded,
        q("IMAGE", StudyInstanceUID=CT_STUDY, SOPInstanceUID="", SOPClassUID="", InstanceNumber=""),
    )
    assert [str(i.SOPClassUID) for i in images] == ["1.2.840.10008.5.1.4.1.1.2"]
    nm, _ = find(loaded, q("IMAGE", Modality="NM", SOPInstanceUID="", InstanceNumber="3"))
    del nm


@pytest.mark.parametrize(
    "identifier",
    [
        q("STUDY", SOPInstanceUID=""),  # a key below the level
        q("NOTALEVEL", PatientID=""),
        q("STUDY", StudyDate="2004x", StudyInstanceUID=""),
    ],
    ids=["below-level", "bad-level", "bad-date"],
)
def test_find_invalid_key_fails_with_comment(loaded: DicomService, identifier: Dataset) -> None:
    results, final = find(loaded, identifier)
    assert results == []
    assert final.Status == 0xA900
    assert final.ErrorComment


def test_find_study_root_has_no_patient_level(loaded: DicomService) -> None:
    _, final = find(loaded, q("PATIENT", PatientID=""))
    assert final.Status == 0xA900


def test_find_applies_the_consent_filter(loaded: DicomService, records: FakeRecords) -> None:
    records.hidden_studies.add(CT_STUDY)
    results, _ = find(loaded, q("STUDY", PatientID="1CT1", StudyInstanceUID=""))
    assert results == []
    patients, _ = find(
        loaded, q("PATIENT", PatientID="1CT1"), PatientRootQueryRetrieveInformationModelFind
    )
    assert patients == []
    ctx, asked = records.visibility_calls[-1]
    assert (ctx.actor, ctx.organization) == ("FINDSCU", ORG_B)
    assert CT_STUDY in asked


def test_findscu(loaded: DicomService, tmp_path: Path) -> None:
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    host, port = loaded.address
    result = run(
        [
            "findscu",
            "-S",
            "-aet",
            "FINDSCU",
            "-aec",
            "HIE",
            "-X",
            "-od",
            str(tmp_path),
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            "PatientName=CompressedSamples*",
            "-k",
            "StudyInstanceUID",
            "-k",
            "StudyDate",
            host,
            str(port),
        ]
    )
    assert result.returncode == 0, result.stderr
    found = {str(pydicom.dcmread(p).StudyInstanceUID) for p in tmp_path.glob("rsp*.dcm")}
    assert {CT_STUDY, MR_STUDY} <= found
    assert len(found) == 5  # CT1, MR1, NM1, RG3, US1


@pytest.mark.parametrize(
    "keys",
    [
        ["QueryRetrieveLevel=STUDY", "SOPInstanceUID"],
        ["QueryRetrieveLevel=SERIES", "SeriesNumber=one"],
        ["QueryRetrieveLevel=STUDY", "StudyTime=noon"],
    ],
    ids=["below-level", "bad-number", "bad-time"],
)
def test_findscu_invalid_key(loaded: DicomService, keys: list[str]) -> None:
    host, port = loaded.address
    args = [a for k in keys for a in ("-k", k)]
    result = run(["findscu", "-S", "-v", "-aet", "FINDSCU", "-aec", "HIE", *args, host, str(port)])
    output = (result.stdout + result.stderr).lower()
    assert "error: datasetdoesnotmatchsopclass" in output, output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_movescu_to_registered_destination(loaded: DicomService, tmp_path: Path) -> None:
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    port = _free_port()
    loaded.registry.add("MOVESCU", ORG_B, "127.0.0.1", port)
    host, scp_port = loaded.address
    result = run(
        [
            "movescu",
            "-S",
            "-aet",
            "MOVESCU",
            "-aec",
            "HIE",
            "-aem",
            "MOVESCU",
            "+P",
            str(port),
            "+xa",
            "-od",
            str(tmp_path),
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={CT_STUDY}\\{MR_STUDY}",
            host,
            str(scp_port),
        ]
    )
    assert result.returncode == 0, result.stderr
    received = sorted(str(pydicom.dcmread(p).SOPInstanceUID) for p in tmp_path.iterdir())
    assert received == sorted(
        [file_info(FIXTURES / "valid" / n)[1] for n in ("CT_small.dcm", "MR_small.dcm")]
    )


def test_movescu_unknown_destination(loaded: DicomService) -> None:
    host, port = loaded.address
    result = run(
        [
            "movescu",
            "-S",
            "-v",
            "-aet",
            "MOVESCU",
            "-aec",
            "HIE",
            "-aem",
            "NOWHERE",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={CT_STUDY}",
            host,
            str(port),
        ]
    )
    assert "refused: movedestinationunknown" in (result.stdout + result.stderr).lower()


def test_getscu(loaded: DicomService, tmp_path: Path) -> None:
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    host, port = loaded.address
    result = run(
        [
            "getscu",
            "-S",
            "-aet",
            "GETSCU",
            "-aec",
            "HIE",
            "-od",
            str(tmp_path),
            "-k",
            "QueryRetrieveLevel=SERIES",
            "-k",
            f"StudyInstanceUID={CT_STUDY}",
            "-k",
            "SeriesInstanceUID=1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322",
            host,
            str(port),
        ]
    )
    assert result.returncode == 0, result.stderr
    (path,) = tmp_path.iterdir()
    original = pydicom.dcmread(FIXTURES / "valid" / "CT_small.dcm")
    assert pydicom.dcmread(path).PixelData == original.PixelData


def c_get_raw(
    service: DicomService, sop_class: str, ts: str, identifier: Dataset
) -> list[tuple[str, bytes]]:
    """C-GET with pynetdicom, keeping each received data set's bytes as they came."""
    received: list[tuple[str, bytes]] = []

    def on_store(event: Any) -> int:
        received.append(
            (str(event.context.transfer_syntax), event.encoded_dataset(include_meta=False))
        )
        return 0x0000

    ae = AE(ae_title="GETSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(sop_class, [ts])
    assoc = ae.associate(
        *service.address,
        ae_title="HIE",
        ext_neg=[build_role(sop_class, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    assert assoc.is_established
    try:
        statuses = [
            s.Status
            for s, _ in assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet)
        ]
    finally:
        assoc.release()
    assert statuses[-1] == 0x0000, statuses
    return received


ALL_FILES = [*VALID]


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_every_file_comes_back_byte_identical_through_c_get(
    make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch, path: Path
) -> None:
    service = make_service()
    send_all(service, monkeypatch, [path])
    sop_class, sop_uid, ts, study_uid, body = file_info(path)
    identifier = q("IMAGE", StudyInstanceUID=study_uid, SOPInstanceUID=sop_uid)
    ((got_ts, got),) = c_get_raw(service, sop_class, ts, identifier)
    assert got_ts == ts
    # Deflated data sets are compressed again on the way out; their content is identical.
    assert inflated(ts, got) == inflated(ts, body)
    if ts != "1.2.840.10008.1.2.1.99":
        assert got == body


def test_c_get_respects_consent(loaded: DicomService, records: FakeRecords) -> None:
    records.hidden_studies.add(CT_STUDY)
    sop_class, _, ts, _, _ = file_info(FIXTURES / "valid" / "CT_small.dcm")
    assert c_get_raw(loaded, sop_class, ts, q("STUDY", StudyInstanceUID=CT_STUDY)) == []
