"""The storage path every instance takes, from C-STORE and from STOW-RS alike.

Check the stream, read the header, write the file (temp + rename), index it, and tell the
ImagingStudy sync. The result is a C-STORE status (PS3.4 B.2.3):

====== ============================================================================
0x0000 Success: stored, or a re-sent SOP Instance UID handled by the duplicate policy
0xA700 Refused, out of resources: the file or the index could not be written
0xA900 Error, data set does not match SOP Class: required UIDs missing or disagreeing
       with the request's Affected SOP Class/Instance UID
0xC000 Error, cannot understand: truncated stream, undecodable header, invalid value
====== ============================================================================
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import OperationalError

from adapters.dicom.files import InstanceFiles, file_meta_bytes
from adapters.dicom.header import DatasetMismatch, HeaderError, read_header
from adapters.dicom.index import DicomIndex, DuplicatePolicy, Source

log = logging.getLogger(__name__)

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATASET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000


@dataclass(frozen=True, slots=True)
class StoreResult:
    status: int
    comment: str = ""
    study_uid: str | None = None
    outcome: str = ""

    @property
    def ok(self) -> bool:
        return self.status == SUCCESS


class Ingest:
    def __init__(
        self,
        files: InstanceFiles,
        index: DicomIndex,
        *,
        policy: DuplicatePolicy = DuplicatePolicy.KEEP_FIRST,
        on_study_changed: Callable[[str], None] = lambda study_uid: None,
    ) -> None:
        self.files = files
        self.index = index
        self.policy = policy
        self.on_study_changed = on_study_changed

    def store(
        self,
        *,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax_uid: str,
        dataset: bytes,
        source: Source,
    ) -> StoreResult:
        meta = file_meta_bytes(
            sop_class_uid, sop_instance_uid, transfer_syntax_uid, source.calling_ae
        )
        try:
            header = read_header(meta, dataset, transfer_syntax_uid)
            if header.sop_instance_uid != sop_instance_uid:
                raise DatasetMismatch("SOPInstanceUID differs from the request")
            if header.sop_class_uid != sop_class_uid:
                raise DatasetMismatch("SOPClassUID differs from the request")
        except HeaderError as exc:
            log.warning("refused %s from %s: %s", sop_instance_uid, source.calling_ae, exc)
            return StoreResult(exc.status, exc.comment)

        try:
            if self.policy is DuplicatePolicy.KEEP_FIRST and self.index.instance_path(
                sop_instance_uid
            ):
                return StoreResult(SUCCESS, study_uid=header.study_uid, outcome="kept")
            path = self.files.write(header.study_uid, sop_instance_uid, (meta, dataset))
        except (OSError, OperationalError) as exc:
            log.error("cannot store %s: %s", sop_instance_uid, exc)
            return StoreResult(OUT_OF_RESOURCES, f"cannot write: {exc}"[:64])
        try:
            recorded = self.index.record(
                header,
                source=source,
                transfer_syntax_uid=transfer_syntax_uid,
                path=path,
                size=len(meta) + len(dataset),
                policy=self.policy,
            )
        except OperationalError as exc:
            self.files.remove(path)
            log.error("cannot index %s: %s", sop_instance_uid, exc)
            return StoreResult(OUT_OF_RESOURCES, "index unavailable")
        except BaseException:
            self.files.remove(path)
            raise
        if recorded.outcome == "kept":
            self.files.remove(path)
        elif recorded.old_path and recorded.old_path != path:
            self.files.remove(recorded.old_path)
        if recorded.outcome != "kept":
            self.on_study_changed(header.study_uid)
        return StoreResult(SUCCESS, study_uid=header.study_uid, outcome=recorded.outcome)
