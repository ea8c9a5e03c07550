"""DICOMweb (PS3.18) as a Flask blueprint: QIDO-RS, WADO-RS and STOW-RS.

The application mounts it (at ``/dicomweb``) and passes ``authenticate(request) ->
RequestContext``, the same bearer-token check as FHIR. Every read goes through the consent
filter (``Records.visible_study_uids``); a study the caller may not see is "not found".
Instances are served exactly as stored (``transfer-syntax`` of each part says which), never
transcoded; STOW-RS takes the same storage path as C-STORE.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson
from flask import Blueprint, Request, Response, request, url_for
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID

from adapters.dicom.files import InstanceFiles
from adapters.dicom.handlers import IDENTIFIER_MISMATCH
from adapters.dicom.index import Source
from adapters.dicom.ingest import Ingest
from adapters.dicom.models import DicomInstance
from adapters.dicom.ports import Records
from adapters.dicom.query import (
    DEFAULT_RETURN,
    KEYS,
    InvalidQuery,
    Level,
    Query,
    QueryEngine,
    condition_for,
    query_from_params,
    to_dataset,
)
from adapters.dicom.render import MEDIA_TYPES, RenderError, Window, render_frame
from hie.context import RequestContext
from hie.errors import FhirError

Authenticate = Callable[[Request], RequestContext]
DICOM_JSON = "application/dicom+json"
_RESERVED = {"includefield", "limit", "offset", "fuzzymatching", "accept", "charset"}
_MAX_LIMIT = 1000


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def create_blueprint(
    *,
    engine: QueryEngine,
    files: InstanceFiles,
    ingest: Ingest,
    records: Records,
    authenticate: Authenticate,
    name: str = "dicomweb",
) -> Blueprint:
    bp = Blueprint(name, __name__)

    def context() -> RequestContext:
        return authenticate(request)

    def visible(ctx: RequestContext) -> Callable[[Any], set[str]]:
        return lambda uids: records.visible_study_uids(ctx, uids)

    @bp.errorhandler(_HttpError)
    def _http_error(exc: _HttpError) -> Response:
        return _json({"error": exc.message}, exc.status)

    @bp.errorhandler(FhirError)
    def _fhir_error(exc: FhirError) -> Response:
        response = Response(
            orjson.dumps(exc.outcome()), status=exc.status, mimetype="application/fhir+json"
        )
        response.headers.update(exc.headers)
        return response

    # -- QIDO-RS ---------------------------------------------------------------------

    def search(level: Level, fixed: dict[str, str]) -> Response:
        ctx = context()
        params = [(k, v) for k, v in request.args.items(multi=True) if k.lower() not in _RESERVED]
        try:
            query = query_from_params(level, [*params, *fixed.items()])
        except InvalidQuery as exc:
            raise _HttpError(400, exc.comment) from exc
        query.limit, query.offset = _paging()
        for keyword in [*DEFAULT_RETURN[level], *_include_fields(level)]:
            if keyword not in query.return_keys:
                query.return_keys.append(keyword)
        matches = engine.find(query, visible(ctx))
        out = []
        for match in matches:
            ds = to_dataset(match, query)
            del ds.QueryRetrieveLevel
            if match.study is not None:
                ds.RetrieveURL = url_for(
                    f"{bp.name}.retrieve_study", study=match.study.study_uid, _external=True
                )
            out.append(ds.to_json_dict())
        return _json(out)

    @bp.get("/studies")
    def search_studies() -> Response:
        return search(Level.STUDY, {})

    @bp.get("/series")
    def search_all_series() -> Response:
        return search(Level.SERIES, {})

    @bp.get("/studies/<study>/series")
    def search_series(study: str) -> Response:
        return search(Level.SERIES, {"StudyInstanceUID": study})

    @bp.get("/instances")
    def search_all_instances() -> Response:
        return search(Level.IMAGE, {})

    @bp.get("/studies/<study>/instances")
    def search_study_instances(study: str) -> Response:
        return search(Level.IMAGE, {"StudyInstanceUID": study})

    @bp.get("/studies/<study>/series/<series>/instances")
    def search_instances(study: str, series: str) -> Response:
        return search(Level.IMAGE, {"StudyInstanceUID": study, "SeriesInstanceUID": series})

    # -- WADO-RS ---------------------------------------------------------------------

    def selected(
        study: str, series: str | None = None, sop: str | None = None
    ) -> list[DicomInstance]:
        keys = {"StudyInstanceUID": study, "SeriesInstanceUID": series, "SOPInstanceUID": sop}
        query = Query(level=Level.IMAGE)
        for keyword, value in keys.items():
            if value is not None:
                query.add(KEYS[keyword], condition_for(KEYS[keyword], value))
        found = engine.instances(query, visible(context()))
        if not found:
            raise _HttpError(404, "no such study, series or instance")
        return found

    def retrieve(instances: list[DicomInstance]) -> Response:
        _check_accept("application/dicom")
        boundary = secrets.token_hex(16)

        def parts() -> Iterator[bytes]:
            for instance in instances:
                yield (
                    f"--{boundary}\r\nContent-Type: application/dicom; "
                    f"transfer-syntax={instance.transfer_syntax_uid}\r\n\r\n"
                ).encode()
                yield files.read(instance.path)
                yield b"\r\n"
            yield f"--{boundary}--\r\n".encode()

        return Response(
            parts(),
            mimetype=None,
            content_type=f'multipart/related; type="application/dicom"; boundary={boundary}',
        )

    @bp.get("/studies/<study>")
    def retrieve_study(study: str) -> Response:
        return retrieve(selected(study))

    @bp.get("/studies/<study>/series/<series>")
    def retrieve_series(study: str, series: str) -> Response:
        return retrieve(selected(study, series))

    @bp.get("/studies/<study>/series/<series>/instances/<sop>")
    def retrieve_instance(study: str, series: str, sop: str) -> Response:
        return retrieve(selected(study, series, sop))

    def metadata(instances: list[DicomInstance]) -> Response:
        out = []
        for instance in instances:
            base = url_for(
                f"{bp.name}.retrieve_instance",
                study=_study_of(instance, engine),
                series=_series_of(instance, engine),
                sop=instance.sop_uid,
                _external=True,
            )
            out.append(_instance_json(files, instance, base))
        return _json(out)

    @bp.get("/studies/<study>/metadata")
    def study_metadata(study: str) -> Response:
        return metadata(selected(study))

    @bp.get("/studies/<study>/series/<series>/metadata")
    def series_metadata(study: str, series: str) -> Response:
        return metadata(selected(study, series))

    @bp.get("/studies/<study>/series/<series>/instances/<sop>/metadata")
    def instance_metadata(study: str, series: str, sop: str) -> Response:
        return metadata(selected(study, series, sop))

    @bp.get("/studies/<study>/series/<series>/instances/<sop>/bulkdata/<tag>")
    def bulkdata(study: str, series: str, sop: str, tag: str) -> Response:
        (instance,) = selected(study, series, sop)
        if not re.fullmatch(r"[0-9A-Fa-f]{8}", tag):
            raise _HttpError(404, "no such bulk data")
        ds = dcmread(files.path(instance.path))
        element = ds.get(int(tag, 16))
        if element is None or not isinstance(element.value, bytes):
            raise _HttpError(404, "no such bulk data")
        boundary = secrets.token_hex(16)
        body = (
            f"--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n".encode()
            + element.value
            + f"\r\n--{boundary}--\r\n".encode()
        )
        return Response(
            body,
            content_type=f'multipart/related; type="application/octet-stream"; boundary={boundary}',
        )

    def rendered(study: str, series: str, sop: str, frame: int) -> Response:
        (instance,) = selected(study, series, sop)
        media_type = _rendered_type()
        try:
            image = render_frame(
                files.path(instance.path), frame, media_type, _window(), _quality()
            )
        except RenderError as exc:
            raise _HttpError(404, str(exc)) from exc
        return Response(image, mimetype=media_type)

    @bp.get("/studies/<study>/series/<series>/instances/<sop>/rendered")
    def rendered_instance(study: str, series: str, sop: str) -> Response:
        return rendered(study, series, sop, 1)

    @bp.get("/studies/<study>/series/<series>/instances/<sop>/frames/<frames>/rendered")
    def rendered_frames(study: str, series: str, sop: str, frames: str) -> Response:
        try:
            numbers = [int(f) for f in frames.split(",")]
        except ValueError as exc:
            raise _HttpError(400, "frame numbers must be integers") from exc
        if len(numbers) != 1:
            raise _HttpError(400, "one frame per rendered request")
        return rendered(study, series, sop, numbers[0])

    # -- STOW-RS ---------------------------------------------------------------------

    def store(study: str | None) -> Response:
        ctx = context()
        parts = list(_multipart_parts(request))
        if not parts:
            raise _HttpError(400, "no application/dicom parts")
        stored: list[Dataset] = []
        failed: list[Dataset] = []
        for part in parts:
            outcome = _store_part(ingest, part, ctx, study)
            (stored if outcome.Status == 0 else failed).append(outcome)
        ingest.drain()
        response = Dataset()
        if stored:
            for item in stored:
                del item.Status
            response.ReferencedSOPSequence = stored
        if failed:
            for item in failed:
                item.FailureReason = item.Status
                del item.Status
            response.FailedSOPSequence = failed
        status = 200 if not failed else 409 if not stored else 202
        return _json(response.to_json_dict(), status)

    @bp.post("/studies")
    def stow() -> Response:
        return store(None)

    @bp.post("/studies/<study>")
    def stow_study(study: str) -> Response:
        return store(study)

    return bp


def _json(value: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status=status, mimetype=DICOM_JSON)


def _paging() -> tuple[int | None, int]:
    try:
        limit = request.args.get("limit", type=int)
        offset = request.args.get("offset", default=0, type=int) or 0
    except ValueError as exc:
        raise _HttpError(400, "limit and offset must be integers") from exc
    if limit is not None:
        limit = max(0, min(limit, _MAX_LIMIT))
    return limit, max(0, offset)


def _include_fields(level: Level) -> list[str]:
    out: list[str] = []
    for value in request.args.getlist("includefield"):
        for name in value.split(","):
            if name == "all":
                out.extend(k for k, key in KEYS.items() if _at_or_above(key.level, level))
            elif name in KEYS:
                out.append(name)
            elif re.fullmatch(r"[0-9A-Fa-f]{8}", name):
                from pydicom.datadict import keyword_for_tag

                keyword = keyword_for_tag(int(name, 16))
                if keyword in KEYS:
                    out.append(keyword)
    return [k for k in out if _at_or_above(KEYS[k].level, level)]


def _at_or_above(key_level: Level, level: Level) -> bool:
    order = [Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE]
    return order.index(key_level) <= order.index(level)


def _check_accept(media_type: str) -> None:
    accept = request.headers.get("Accept", "")
    if not accept or "*/*" in accept or media_type in accept or "multipart/related" in accept:
        return
    raise _HttpError(406, f"only multipart/related; type={media_type} is available")


def _rendered_type() -> str:
    wanted = request.args.get("accept") or request.headers.get("Accept", "image/jpeg")
    for candidate in re.split(r"\s*,\s*", wanted):
        media_type = candidate.split(";")[0].strip()
        if media_type in MEDIA_TYPES:
            return media_type
        if media_type in ("*/*", "image/*", ""):
            return "image/jpeg"
    raise _HttpError(406, "rendered frames are image/png or image/jpeg")


def _window() -> Window | None:
    value = request.args.get("window")
    if not value:
        return None
    try:
        center, width, *_ = value.split(",")
        return Window(float(center), float(width))
    except ValueError as exc:
        raise _HttpError(400, "window is center,width[,function]") from exc


def _quality() -> int:
    try:
        return max(1, min(100, int(request.args.get("quality", "90"))))
    except ValueError as exc:
        raise _HttpError(400, "quality is 1..100") from exc


def _study_of(instance: DicomInstance, engine: QueryEngine) -> str:
    from adapters.dicom.models import DicomStudy

    with engine.sessions() as session:
        return session.get_one(DicomStudy, instance.study_pk).study_uid


def _series_of(instance: DicomInstance, engine: QueryEngine) -> str:
    from adapters.dicom.models import DicomSeries

    with engine.sessions() as session:
        return session.get_one(DicomSeries, instance.series_pk).series_uid


def _instance_json(files: InstanceFiles, instance: DicomInstance, base: str) -> dict[str, Any]:
    ds = dcmread(files.path(instance.path), stop_before_pixels=True)

    def bulk(element: Any) -> str:
        return f"{base}/bulkdata/{int(element.tag):08X}"

    out: dict[str, Any] = ds.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=bulk)
    if "Rows" in ds:
        vr = "OW" if not UID(instance.transfer_syntax_uid).is_compressed else "OB"
        out["7FE00010"] = {"vr": vr, "BulkDataURI": f"{base}/bulkdata/7FE00010"}
    return out


def _multipart_parts(req: Request) -> Iterable[bytes]:
    content_type = req.headers.get("Content-Type", "")
    if not content_type.lower().startswith("multipart/related"):
        raise _HttpError(415, 'STOW-RS takes multipart/related; type="application/dicom"')
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        raise _HttpError(400, "multipart boundary missing")
    delimiter = b"--" + match.group(1).encode()
    body = req.get_data()
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        head, sep, payload = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        if b"application/dicom" not in head.lower() and b"content-type" in head.lower():
            continue
        if payload.endswith(b"\r\n"):
            payload = payload[:-2]
        yield payload


def _store_part(ingest: Ingest, part: bytes, ctx: RequestContext, study: str | None) -> Dataset:
    from io import BytesIO

    from pydicom.filereader import _read_file_meta_info, read_preamble

    item = Dataset()
    try:
        fp = BytesIO(part)
        read_preamble(fp, False)
        meta = _read_file_meta_info(fp)
        sop_class = str(meta.MediaStorageSOPClassUID)
        sop_uid = str(meta.MediaStorageSOPInstanceUID)
        syntax = str(meta.TransferSyntaxUID)
        body = part[fp.tell() :]
    except Exception:
        item.Status = 0xC000
        return item
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_uid
    if study is not None:
        header = dcmread(BytesIO(part), stop_before_pixels=True, specific_tags=["StudyInstanceUID"])
        if str(header.get("StudyInstanceUID", "")) != study:
            item.Status = IDENTIFIER_MISMATCH
            return item
    result = ingest.store(
        sop_class_uid=sop_class,
        sop_instance_uid=sop_uid,
        transfer_syntax_uid=syntax,
        dataset=body,
        source=Source(ctx.actor, ctx.organization),
    )
    item.Status = result.status
    return item
