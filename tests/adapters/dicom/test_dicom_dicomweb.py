"""DICOMweb through Flask's test client, with instances sent in over real C-STORE."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Request
from flask.testing import FlaskClient
from PIL import Image

from adapters.dicom.dicomweb import create_blueprint
from adapters.dicom.service import DicomService
from hie.context import RequestContext, Scopes
from hie.errors import Unauthorized
from tests.adapters.dicom.dicom_support import (
    CT_STUDY,
    FIXTURES,
    MR_STUDY,
    ORG_B,
    VALID,
    FakeRecords,
    ServiceFactory,
    file_info,
    send_all,
    split_part10,
)

AUTH = {"Authorization": "Bearer viewer"}


def authenticate(request: Request) -> RequestContext:
    if request.headers.get("Authorization") != "Bearer viewer":
        raise Unauthorized("a bearer token is required")
    return RequestContext(actor="viewer", organization=ORG_B, scopes=Scopes("system/*.cruds"))


def client_for(service: DicomService) -> FlaskClient:
    app = Flask(__name__)
    app.register_blueprint(
        create_blueprint(
            engine=service.engine,
            files=service.files,
            ingest=service.ingest,
            records=service.records,
            authenticate=authenticate,
        ),
        url_prefix="/dicomweb",
    )
    return app.test_client()


@pytest.fixture
def web(service: DicomService, monkeypatch: pytest.MonkeyPatch) -> FlaskClient:
    send_all(service, monkeypatch, VALID)
    return client_for(service)


def parts(response: Any) -> list[tuple[str, bytes]]:
    content_type = response.headers["Content-Type"]
    assert content_type.startswith('multipart/related; type="application/dicom"')
    boundary = re.search(r"boundary=([^;]+)", content_type).group(1).encode()  # type: ignore[union-attr]
    out = []
    for chunk in response.data.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, body = chunk.partition(b"\r\n\r\n")
        out.append((head.decode(), body[:-2]))
    return out


def value(item: dict[str, Any], tag: str) -> Any:
    return item.get(tag, {}).get("Value", [None])[0]


def test_requires_authentication(web: FlaskClient) -> None:
    response = web.get("/dicomweb/studies")
    assert response.status_code == 401
    assert response.json["resourceType"] == "OperationOutcome"  # type: ignore[index]


def test_qido_studies(web: FlaskClient) -> None:
    response = web.get("/dicomweb/studies?PatientID=1CT1", headers=AUTH)
    assert response.status_code == 200
    assert response.mimetype == "application/dicom+json"
    (study,) = response.json  # type: ignore[misc]
    assert value(study, "0020000D") == CT_STUDY
    assert value(study, "00201208") == 1  # NumberOfStudyRelatedInstances
    assert value(study, "00080061") == "CT"
    assert value(study, "00081190").endswith(f"/dicomweb/studies/{CT_STUDY}")
    names = web.get("/dicomweb/studies?PatientName=王*", headers=AUTH).json
    assert {value(s, "00100010")["Ideographic"] for s in names} == {"王^小東", "王^小东"}  # type: ignore[union-attr]
    dated = web.get("/dicomweb/studies?StudyDate=20040101-20041231&limit=2&offset=1", headers=AUTH)
    assert len(dated.json) == 2  # type: ignore[arg-type]
    assert web.get("/dicomweb/studies?Nonsense=1", headers=AUTH).status_code == 400
    assert web.get("/dicomweb/studies?StudyDate=yesterday", headers=AUTH).status_code == 400


def test_qido_series_and_instances(web: FlaskClient) -> None:
    series = web.get(
        f"/dicomweb/studies/{MR_STUDY}/series?includefield=BodyPartExamined", headers=AUTH
    ).json
    (one,) = series  # type: ignore[misc]
    assert value(one, "00080060") == "MR"
    assert "00180015" in one
    instances = web.get(
        "/dicomweb/instances?SOPClassUID=1.2.840.10008.5.1.4.1.1.7", headers=AUTH
    ).json
    assert len(instances) == 9  # type: ignore[arg-type]
    by_study = web.get(f"/dicomweb/studies/{CT_STUDY}/instances", headers=AUTH).json
    assert [value(i, "00080018") for i in by_study] == [
        file_info(FIXTURES / "valid" / "CT_small.dcm")[1]
    ]  # type: ignore[union-attr]


def test_consent_hides_studies(web: FlaskClient, records: FakeRecords) -> None:
    records.hidden_studies.add(CT_STUDY)
    assert web.get("/dicomweb/studies?PatientID=1CT1", headers=AUTH).json == []
    assert web.get(f"/dicomweb/studies/{CT_STUDY}", headers=AUTH).status_code == 404
    ctx, _ = records.visibility_calls[-1]
    assert ctx.actor == "viewer"


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_every_file_comes_back_byte_identical_through_wado(
    make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch, path: Path
) -> None:
    service = make_service()
    send_all(service, monkeypatch, [path])
    client = client_for(service)
    sop_class, sop_uid, ts, study_uid, body = file_info(path)
    series_uid = client.get(f"/dicomweb/studies/{study_uid}/instances", headers=AUTH).json[0][
        "0020000E"
    ]["Value"][0]  # type: ignore[index]
    response = client.get(
        f"/dicomweb/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}", headers=AUTH
    )
    assert response.status_code == 200
    ((head, data),) = parts(response)
    assert f"transfer-syntax={ts}" in head
    meta, got = split_part10(data)
    assert (str(meta.TransferSyntaxUID), str(meta.MediaStorageSOPClassUID)) == (ts, sop_class)
    assert got == body


def test_wado_study_and_series(web: FlaskClient) -> None:
    nm_study = file_info(FIXTURES / "valid" / "JPEG2000.dcm")[3]
    response = web.get(f"/dicomweb/studies/{nm_study}", headers=AUTH)
    assert len(parts(response)) == 2
    assert web.get("/dicomweb/studies/1.2.3.404", headers=AUTH).status_code == 404
    wrong = web.get(f"/dicomweb/studies/{nm_study}", headers={**AUTH, "Accept": "application/json"})
    assert wrong.status_code == 406


def _series(web: FlaskClient, study: str) -> str:
    return web.get(f"/dicomweb/studies/{study}/series", headers=AUTH).json[0]["0020000E"]["Value"][
        0
    ]  # type: ignore[index,no-any-return]


def test_metadata_and_bulkdata(web: FlaskClient) -> None:
    path = FIXTURES / "charset" / "chrX2.dcm"
    _, sop_uid, _, study_uid, _ = file_info(path)
    series = _series(web, study_uid)
    (meta,) = web.get(
        f"/dicomweb/studies/{study_uid}/series/{series}/instances/{sop_uid}/metadata", headers=AUTH
    ).json  # type: ignore[misc]
    assert value(meta, "00100010") == {"Alphabetic": "Wang^XiaoDong", "Ideographic": "王^小东"}
    uri = meta["7FE00010"]["BulkDataURI"]
    response = web.get(uri.replace("http://localhost", ""), headers=AUTH)
    assert response.status_code == 200
    assert len(response.data) > 32 * 32
    study_meta = web.get(f"/dicomweb/studies/{MR_STUDY}/metadata", headers=AUTH).json
    assert len(study_meta) == 1  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "accept", "fmt"),
    [
        ("CT_small.dcm", "image/png", "PNG"),
        ("MR_small_jpeg_ls_lossless.dcm", "image/jpeg", "JPEG"),
        ("RG3_J2KI.dcm", "image/png", "PNG"),
        ("examples_ybr_color.dcm", "image/jpeg", "JPEG"),
        ("JPGExtended.dcm", "image/png", "PNG"),
    ],
)
def test_rendered_frames(
    make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch, name: str, accept: str, fmt: str
) -> None:
    service = make_service()
    path = FIXTURES / "valid" / name
    send_all(service, monkeypatch, [path])
    client = client_for(service)
    _, sop_uid, _, study_uid, _ = file_info(path)
    base = f"/dicomweb/studies/{study_uid}/series/{_series(client, study_uid)}/instances/{sop_uid}"
    response = client.get(f"{base}/frames/1/rendered", headers={**AUTH, "Accept": accept})
    assert response.status_code == 200
    assert response.mimetype == accept
    image = Image.open(io.BytesIO(response.data))
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert image.format == fmt
    assert image.size == (ds.Columns, ds.Rows)
    assert client.get(f"{base}/frames/999/rendered", headers=AUTH).status_code == 404


def test_rendered_window_from_header_or_request(
    make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np
    import pydicom

    service = make_service()
    path = FIXTURES / "valid" / "MR_small.dcm"  # Window Center 600, Width 1600
    send_all(service, monkeypatch, [path])
    client = client_for(service)
    _, sop_uid, _, study_uid, _ = file_info(path)
    series = _series(client, study_uid)
    base = f"/dicomweb/studies/{study_uid}/series/{series}/instances/{sop_uid}/rendered"
    header = np.asarray(
        Image.open(io.BytesIO(client.get(f"{base}?accept=image/png", headers=AUTH).data))
    )
    narrow = np.asarray(
        Image.open(
            io.BytesIO(client.get(f"{base}?accept=image/png&window=600,100", headers=AUTH).data)
        )
    )
    pixels = pydicom.dcmread(path).pixel_array.astype(float)
    expected = np.clip(((pixels - 599.5) / 1599 + 0.5) * 255, 0, 255).astype(np.uint8)
    assert np.array_equal(header, expected)
    assert (narrow == 255).sum() > (header == 255).sum()


def test_stow_rs(service: DicomService, records: FakeRecords) -> None:
    client = client_for(service)
    good = (FIXTURES / "valid" / "CT_small.dcm").read_bytes()
    bad = (FIXTURES / "malformed" / "MR_truncated.dcm").read_bytes()
    boundary = "stowboundary"
    body = (
        b"".join(
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n"
            for data in (good, bad)
        )
        + f"--{boundary}--\r\n".encode()
    )
    response = client.post(
        "/dicomweb/studies",
        data=body,
        headers={
            **AUTH,
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        },
    )
    assert response.status_code == 202
    result = response.json
    assert value(result, "00081199")["00081155"]["Value"] == [
        file_info(FIXTURES / "valid" / "CT_small.dcm")[1]
    ]  # type: ignore[arg-type]
    assert value(result, "00081198")["00081197"]["Value"] == [0xC000]  # type: ignore[arg-type]
    service.ingest.drain()
    stored = service.files.read(
        service.index.instance_path(file_info(FIXTURES / "valid" / "CT_small.dcm")[1]) or ""
    )
    assert split_part10(stored)[1] == split_part10(good)[1]
    service.ingest.drain()
    service.sync.run_once(force=True)
    ctx = records.transactions[-1][0]
    assert (ctx.actor, ctx.organization) == ("viewer", ORG_B)
    wrong_study = client.post(
        "/dicomweb/studies/1.2.3",
        data=body,
        headers={
            **AUTH,
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        },
    )
    assert wrong_study.status_code == 409
    assert (
        client.post(
            "/dicomweb/studies", data=b"x", headers={**AUTH, "Content-Type": "application/json"}
        ).status_code
        == 415
    )
