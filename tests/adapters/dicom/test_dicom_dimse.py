"""The direct encoders of the hot paths give the bytes pynetdicom and pydicom give: the
response command sets and their P-DATA fragments, and the C-FIND response identifiers."""

from __future__ import annotations

from io import BytesIO
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.dimse import _RSP_TO_MESSAGE
from pynetdicom.dimse_primitives import C_ECHO, C_FIND, C_GET, C_STORE
from pynetdicom.dsutils import encode

from adapters.dicom.dimse import encode_command, pdata
from adapters.dicom.models import DicomPatient, DicomStudy
from adapters.dicom.query import Match, Root, from_identifier, to_dataset, to_identifier

CT = "1.2.840.10008.5.1.4.1.1.2"
FIND = "1.2.840.10008.5.1.4.1.2.2.1"


def _store(status: int) -> C_STORE:
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = 7
    rsp.AffectedSOPClassUID = CT
    rsp.AffectedSOPInstanceUID = generate_uid()
    rsp.Status = status
    return rsp


def _find(identifier: bytes | None, status: int) -> C_FIND:
    rsp = C_FIND()
    rsp.MessageID = 3
    rsp.MessageIDBeingRespondedTo = 3
    rsp.AffectedSOPClassUID = FIND
    rsp.Status = status
    rsp.Identifier = BytesIO(identifier) if identifier is not None else None
    return rsp


def _echo() -> C_ECHO:
    rsp = C_ECHO()
    rsp.MessageIDBeingRespondedTo = 65535
    rsp.AffectedSOPClassUID = "1.2.840.10008.1.1"
    rsp.Status = 0
    return rsp


def _get() -> C_GET:
    rsp = C_GET()
    rsp.MessageIDBeingRespondedTo = 9
    rsp.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.2.2.3"
    rsp.Status = 0xFF00
    rsp.NumberOfRemainingSuboperations = 4
    rsp.NumberOfCompletedSuboperations = 70000 % 65536
    rsp.NumberOfFailedSuboperations = 0
    rsp.NumberOfWarningSuboperations = 1
    return rsp


def _pynetdicom(primitive: Any, context_id: int, max_pdu: int) -> tuple[bytes, list[Any]]:
    message = _RSP_TO_MESSAGE[type(primitive)]()
    message.primitive_to_message(primitive)
    command = encode(message.command_set, True, True)
    assert command is not None
    items = [p.presentation_data_value_list for p in message.encode_msg(context_id, max_pdu)]
    return command, items


IDENTIFIER = b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY " * 40


@pytest.mark.parametrize(
    "primitive",
    [
        _store(0x0000),
        _store(0xA700),
        _find(IDENTIFIER, 0xFF00),
        _find(None, 0x0000),
        _echo(),
        _get(),
    ],
    ids=["store", "store-failed", "find-pending", "find-final", "echo", "get-pending"],
)
@pytest.mark.parametrize("max_pdu", [0, 16382, 64])
def test_the_same_bytes_and_fragments_as_pynetdicom(primitive: Any, max_pdu: int) -> None:
    expected_command, expected_items = _pynetdicom(primitive, 5, max_pdu)
    encoded = encode_command(primitive)
    assert encoded is not None
    command, data = encoded
    assert command == expected_command
    items = [p.presentation_data_value_list for p in pdata(5, command, data, max_pdu)]
    assert items == expected_items


def test_what_it_does_not_encode_goes_to_pynetdicom() -> None:
    with_comment = _store(0xC000)
    with_comment.ErrorComment = "cannot understand"  # type: ignore[assignment]
    assert encode_command(with_comment) is None
    request = C_STORE()
    request.MessageID = 1
    assert encode_command(request) is None


def _match() -> Match:
    patient = DicomPatient(
        patient_id="MRN0000001", name="王^小東=WANG^XIAODONG", issuer="Organization/hosp-a"
    )
    study = DicomStudy(
        study_uid="1.2.826.0.1.3680043.10.1.1234",
        study_date="20200101",
        study_time="101000",
        accession_number="A00001234",
        description="",
    )
    match = Match(patient=patient, study=study)
    match.modalities = ["CT", "MR"]
    match.counts = {"NumberOfStudyRelatedInstances": 10, "NumberOfStudyRelatedSeries": 2}
    return match


@pytest.mark.parametrize(
    ("implicit_vr", "little_endian"), [(True, True), (False, True), (False, False)]
)
def test_a_pre_encoded_identifier_is_the_identifier_pydicom_encodes(
    implicit_vr: bool, little_endian: bool
) -> None:
    request = Dataset()
    request.QueryRetrieveLevel = "STUDY"
    for keyword in (
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "PatientName",
        "PatientID",
        "IssuerOfPatientID",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedInstances",
        "NumberOfStudyRelatedSeries",
        "StudyDescription",
        "RetrieveAETitle",
        "SmallestImagePixelValue",  # an ambiguous VR, returned empty
    ):
        setattr(request, keyword, None)
    request.PatientName = "王*"
    query = from_identifier(request, Root.STUDY)
    plain = encode(to_dataset(_match(), query, retrieve_aet="HIE"), implicit_vr, little_endian)
    raw = to_identifier(
        _match(),
        query,
        retrieve_aet="HIE",
        implicit_vr=implicit_vr,
        little_endian=little_endian,
    )
    assert plain is not None
    assert encode(raw, implicit_vr, little_endian) == plain
    assert "王^小東".encode() in plain
