"""The DICOM network services against real peers: dcmtk and pynetdicom."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, _config
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    MRImageStorage,
    Verification,
)
from sqlalchemy import func, select

from adapters.dicom.models import DicomInstance
from adapters.dicom.service import DicomService
from tests.adapters.dicom.dicom_support import (
    FIXTURES,
    ORG_A,
    STORESCU_FLAG,
    VALID,
    FakeRecords,
    ServiceFactory,
    file_info,
    run,
    split_part10,
)

pytestmark = pytest.mark.usefixtures("dcmtk")


def _count(service: DicomService) -> int:
    service.ingest.drain()
    with service.index.sessions() as session:
        return int(session.scalar(select(func.count(DicomInstance.id))) or 0)


def _stored(service: DicomService, sop_uid: str) -> bytes:
    service.ingest.drain()
    path = service.index.instance_path(sop_uid)
    assert path is not None, sop_uid
    return service.files.read(path)


def _no_stray_files(service: DicomService) -> None:
    service.ingest.drain()
    assert list(service.files.incoming.iterdir()) == []
    assert list(service.files.pending_dir.iterdir()) == []
    assert list(service.files.rejected_dir.iterdir()) == []
    on_disk = {
        str(p.relative_to(service.files.data_dir)) for p in service.files.root.glob("[0-9]*/*.dcm")
    }
    with service.index.sessions() as session:
        indexed = set(session.scalars(select(DicomInstance.path)))
    assert on_disk == indexed


def storescu(
    service: DicomService, *files: Path, aet: str = "STORESCU", extra: tuple[str, ...] = ()
) -> Any:
    host, port = service.address
    return run(["storescu", "-aet", aet, "-aec", "HIE", *extra, host, str(port), *map(str, files)])


def test_echoscu_gets_success(service: DicomService) -> None:
    host, port = service.address
    result = run(["echoscu", "-aet", "ECHOSCU", "-aec", "HIE", host, str(port)])
    assert result.returncode == 0, result.stderr


def test_unknown_calling_ae_is_rejected_at_association(service: DicomService) -> None:
    host, port = service.address
    result = run(["echoscu", "-v", "-aet", "STRANGER", "-aec", "HIE", host, str(port)])
    assert result.returncode != 0
    assert "Calling AE Title Not Recognized" in result.stdout + result.stderr


def test_unregistered_ae_accepted_when_configured(
    make_service: ServiceFactory, records: FakeRecords
) -> None:
    service = make_service(accept_unregistered=True)
    result = storescu(service, FIXTURES / "valid" / "CT_small.dcm", aet="STRANGER")
    assert result.returncode == 0, result.stderr
    service.ingest.drain()
    service.sync.run_once(force=True)
    patient = records.of_type("Patient")[0]
    assert patient["identifier"][0] == {
        "use": "usual",
        "system": "urn:hie:mrn:dicom-ae:STRANGER",
        "value": "1CT1",
    }


def test_accepted_sockets_have_tcp_nodelay(service: DicomService) -> None:
    seen: list[int] = []
    ae = AE(ae_title="PYCLIENT")
    ae.add_requested_context(Verification)
    assoc = ae.associate(*service.address, ae_title="HIE")
    try:
        assert assoc.is_established
        assert service.scp is not None
        for acceptor in service.scp.active_associations:
            sock = acceptor.dul.socket.socket  # type: ignore[attr-defined]
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    finally:
        assoc.release()
    assert seen
    assert all(seen)


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_storescu_stores_every_transfer_syntax_as_received(
    make_service: ServiceFactory, path: Path
) -> None:
    service = make_service(duplicate_policy="overwrite")
    _, sop_uid, ts, _, body = file_info(path)
    # -R: propose only the files' own SOP classes; the flag puts the file's syntax first.
    result = storescu(service, path, extra=("-R", STORESCU_FLAG[ts]))
    assert result.returncode == 0, result.stderr
    meta, _ = split_part10(_stored(service, sop_uid))
    assert str(meta.TransferSyntaxUID) == ts  # no transcoding
    assert str(meta.SourceApplicationEntityTitle) == "STORESCU"
    # dcmtk re-encodes what it read (it drops group lengths, re-deflates); the elements
    # and the (compressed) pixel data arrive unchanged.
    assert _elements(
        pydicom.dcmread(service.files.path(service.index.instance_path(sop_uid) or ""))
    ) == _elements(pydicom.dcmread(path))
    _no_stray_files(service)
    del body


def _elements(ds: Dataset) -> dict[Any, Any]:
    # dcmtk drops group lengths and dataset trailing padding (FFFC,FFFC)
    return {
        e.tag: e.value for e in ds if e.tag.element != 0 and e.VR != "SQ" and e.tag != 0xFFFCFFFC
    }


def test_storescu_recursive_directory_in_one_association(
    service: DicomService, records: FakeRecords
) -> None:
    result = storescu(
        service, FIXTURES / "charset", extra=("+sd", "-R", "-nh")
    )  # chrSQEncoding has no SOP Class UID: storescu skips it
    stored = _count(service)
    assert stored == 5, result.stdout + result.stderr
    service.ingest.drain()
    service.sync.run_once(force=True)
    names = {
        n.get("text") for p in records.of_type("Patient") for n in p.get("name", []) if "text" in n
    }
    assert {"王小東", "王小东"} <= names


def _pyclient(*contexts: tuple[str, list[str]]) -> AE:
    ae = AE(ae_title="PYCLIENT")
    for sop_class, syntaxes in contexts:
        ae.add_requested_context(sop_class, syntaxes)
    return ae


def _send_raw(service: DicomService, path: Path, monkeypatch: pytest.MonkeyPatch) -> Dataset:
    """Send a file's bytes exactly as they are (pynetdicom's chunked send)."""
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    meta, _ = split_part10(path.read_bytes())
    ae = _pyclient((str(meta.MediaStorageSOPClassUID), [str(meta.TransferSyntaxUID)]))
    assoc = ae.associate(*service.address, ae_title="HIE")
    assert assoc.is_established
    try:
        return assoc.send_c_store(path)
    finally:
        assoc.release()


def test_resent_instance_keeps_first_by_default(
    service: DicomService, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = FIXTURES / "valid" / "MR_small.dcm"
    again = FIXTURES / "valid" / "MR_small_implicit.dcm"  # same SOP Instance UID
    assert _send_raw(service, first, monkeypatch).Status == 0x0000
    assert _send_raw(service, again, monkeypatch).Status == 0x0000
    assert _count(service) == 1
    _, sop_uid, _ts, _, body = file_info(first)
    assert split_part10(_stored(service, sop_uid))[1] == body
    _no_stray_files(service)


def test_resent_instance_overwrites_with_overwrite_policy(
    make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = make_service(duplicate_policy="overwrite")
    assert _send_raw(service, FIXTURES / "valid" / "MR_small.dcm", monkeypatch).Status == 0
    again = FIXTURES / "valid" / "MR_small_RLE.dcm"
    assert _send_raw(service, again, monkeypatch).Status == 0
    assert _count(service) == 1
    _, sop_uid, ts, _, body = file_info(again)
    meta, stored = split_part10(_stored(service, sop_uid))
    assert (str(meta.TransferSyntaxUID), stored) == (ts, body)
    _no_stray_files(service)


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("MR_truncated.dcm", 0xC000),  # Pixel Data cut short
        ("badVR.dcm", 0xC000),  # NumberOfFrames "1A"
        ("emri_small_jpeg_2k_lossless_too_short.dcm", 0xC000),  # no sequence delimiter
    ],
)
def test_malformed_dataset_fails_and_association_stays_usable(
    service: DicomService, monkeypatch: pytest.MonkeyPatch, name: str, status: int
) -> None:
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    bad = FIXTURES / "malformed" / name
    good = FIXTURES / "valid" / "CT_small.dcm"
    meta, _ = split_part10(bad.read_bytes())
    ae = _pyclient(
        (str(meta.MediaStorageSOPClassUID), [str(meta.TransferSyntaxUID)]),
        (CTImageStorage, ["1.2.840.10008.1.2.1"]),
    )
    assoc = ae.associate(*service.address, ae_title="HIE")
    try:
        response = assoc.send_c_store(bad)
        assert response.Status == status
        assert response.ErrorComment
        assert assoc.send_c_store(good).Status == 0x0000  # same association
    finally:
        assoc.release()
    assert _count(service) == 1
    _no_stray_files(service)


def _with_meta(tmp_path: Path, body: bytes, sop_class: str, sop_uid: str, ts: str) -> Path:
    from adapters.dicom.files import file_meta_bytes

    path = tmp_path / f"{sop_uid}.dcm"
    path.write_bytes(file_meta_bytes(sop_class, sop_uid, ts, "X") + body)
    return path


def test_dataset_without_sop_uids_is_a_mismatch(
    service: DicomService, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # chrSQEncoding.dcm and meta_missing_tsyntax.dcm carry no SOP Class/Instance UID.
    _, body = split_part10((FIXTURES / "charset" / "chrSQEncoding.dcm").read_bytes())
    path = _with_meta(tmp_path, body, str(MRImageStorage), "1.2.3.4.5", "1.2.840.10008.1.2.1")
    assert _send_raw(service, path, monkeypatch).Status == 0xA900
    _, body = split_part10((FIXTURES / "malformed" / "meta_missing_tsyntax.dcm").read_bytes())
    path = _with_meta(tmp_path, body, str(MRImageStorage), "1.2.3.4.6", "1.2.840.10008.1.2.1")
    response = _send_raw(service, path, monkeypatch)
    assert response.Status in (0xA900, 0xC000)
    assert _count(service) == 0


def test_dataset_without_file_meta_is_stored(service: DicomService) -> None:
    # No preamble and no file meta is a *file* problem; on the wire it is a normal data set.
    result = storescu(
        service, FIXTURES / "malformed" / "ExplVR_LitEndNoMeta.dcm", extra=("-f", "-R")
    )
    assert result.returncode == 0, result.stderr
    assert _count(service) == 1


def test_truncated_stream_fails(
    service: DicomService, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sop_class, sop_uid, ts, _, body = file_info(FIXTURES / "valid" / "CT_small.dcm")
    for cut in (len(body) // 2, 301, 7):
        path = _with_meta(tmp_path, body[:cut], sop_class, sop_uid, ts)
        response = _send_raw(service, path, monkeypatch)
        # cut inside an element: cannot understand; on an element boundary: UIDs missing
        assert response.Status in (0xC000, 0xA900), cut
    assert _count(service) == 0
    _no_stray_files(service)


def test_abort_mid_transfer_leaves_nothing_and_server_serves_on(
    service: DicomService, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pynetdicom.dimse_messages import C_STORE_RQ
    from pynetdicom.dimse_primitives import C_STORE

    sop_class, sop_uid, ts, _, body = file_info(FIXTURES / "valid" / "CT_small.dcm")
    ae = _pyclient((sop_class, [ts]))
    ae.maximum_pdu_size = 4096
    assoc = ae.associate(*service.address, ae_title="HIE", max_pdu=4096)
    assert assoc.is_established
    primitive = C_STORE()
    primitive.MessageID = 1
    primitive.AffectedSOPClassUID = sop_class
    primitive.AffectedSOPInstanceUID = sop_uid
    primitive.Priority = 2
    from io import BytesIO

    primitive.DataSet = BytesIO(body)
    message = C_STORE_RQ()
    message.primitive_to_message(primitive)
    context_id = assoc.accepted_contexts[0].context_id
    fragments = list(message.encode_msg(context_id, 4096))
    assert len(fragments) > 3
    for pdata in fragments[: len(fragments) // 2]:
        assoc.dul.send_pdu(pdata)
    assoc.abort()
    assert _count(service) == 0
    assert _send_raw(service, FIXTURES / "valid" / "CT_small.dcm", monkeypatch).Status == 0
    assert _count(service) == 1
    _no_stray_files(service)


def test_write_error_is_out_of_resources(
    service: DicomService, monkeypatch: pytest.MonkeyPatch
) -> None:
    service.files.incoming.rmdir()
    service.files.incoming.write_text("a file where the directory for writing goes")
    response = _send_raw(service, FIXTURES / "valid" / "CT_small.dcm", monkeypatch)
    assert response.Status == 0xA700
    assert _count(service) == 0
    assert list(service.files.pending_dir.iterdir()) == []
    service.files.incoming.unlink()
    service.files.incoming.mkdir()


def test_disk_full_is_out_of_resources(
    make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    if run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)]).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        service = make_service(data_dir=mount)
        response = _send_raw(
            service, FIXTURES / "valid" / "JPGLosslessP14SV1_1s_1f_8b.dcm", monkeypatch
        )
        assert response.Status == 0xA700
        assert "No space" in str(response.ErrorComment)
        assert list(service.files.incoming.iterdir()) == []
        assert _send_raw(service, FIXTURES / "valid" / "MR_small.dcm", monkeypatch).Status == 0
        service.stop()
    finally:
        run(["umount", "-l", str(mount)])  # lazy: never leave the mount behind


def test_concurrent_associations(service: DicomService, tmp_path: Path) -> None:
    # Four storescu processes at once, each inventing new UIDs for the same files.
    files = [FIXTURES / "valid" / "CT_small.dcm", FIXTURES / "valid" / "MR_small.dcm"]
    results: list[Any] = []

    def send() -> None:
        results.append(storescu(service, *files, extra=("+II", "--repeat", "5")))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    assert _count(service) == 40
    _no_stray_files(service)


def test_store_writes_imaging_study_through_records(
    service: DicomService, records: FakeRecords
) -> None:
    result = storescu(
        service, FIXTURES / "valid" / "CT_small.dcm", FIXTURES / "valid" / "MR_small.dcm"
    )
    assert result.returncode == 0, result.stderr
    service.ingest.drain()
    service.sync.run_once(force=True)
    ctx = records.transactions[0][0]
    assert (ctx.actor, ctx.organization) == ("STORESCU", ORG_A)
    study = records.imaging_study("1.3.6.1.4.1.5962.1.2.1.20040119072730.12322")
    assert study is not None
    assert study["numberOfInstances"] == 1


def test_pending_files_are_indexed_after_a_crash(
    make_service: ServiceFactory, records: FakeRecords, tmp_path: Path
) -> None:
    # A file acknowledged but not yet indexed when the process stopped.
    from adapters.dicom.files import InstanceFiles, file_meta_bytes

    files = InstanceFiles(tmp_path / "data")
    files.prepare()
    sop_class, sop_uid, ts, study_uid, body = file_info(FIXTURES / "valid" / "CT_small.dcm")
    files.write(study_uid, sop_uid, (file_meta_bytes(sop_class, sop_uid, ts, "STORESCU"), body))
    files.close()  # the process is gone: its spool's lock is released
    service = make_service()
    assert split_part10(_stored(service, sop_uid))[1] == body
    _no_stray_files(service)
    service.ingest.drain()
    service.sync.run_once(force=True)
    study = records.imaging_study(study_uid)
    assert study is not None
    assert records.transactions[-1][0].organization == ORG_A  # from the registry
