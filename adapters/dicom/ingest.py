"""The storage path every instance takes, from C-STORE and from STOW-RS alike.

On the caller's thread: check the stream, read the header, write the file durably
(``.pending``), answer. An indexer thread then records pending files in the index in
batches (one transaction, one commit for many instances), moves each into place and
tells the ImagingStudy sync. Like the HL7 inbox, the file on disk is the durable record
of the C-STORE; files still pending at start-up are indexed then (:meth:`Ingest.start`).
Reads call :meth:`Ingest.drain` first, so a query sees what this node has acknowledged.

The result is a C-STORE status (PS3.4 B.2.3):

====== ============================================================================
0x0000 Success: stored, or a re-sent SOP Instance UID handled by the duplicate policy
0xA700 Refused, out of resources: the file could not be written (disk full, I/O error)
0xA900 Error, data set does not match SOP Class: required UIDs missing or disagreeing
       with the request's Affected SOP Class/Instance UID
0xC000 Error, cannot understand: truncated stream, undecodable header, invalid value
====== ============================================================================
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import OperationalError

from adapters.dicom.files import InstanceFiles, PendingFile, file_meta_bytes
from adapters.dicom.header import DatasetMismatch, HeaderError, read_header
from adapters.dicom.index import DicomIndex, DuplicatePolicy, Entry, Recorded, Source

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


@dataclass(frozen=True, slots=True)
class _Queued:
    entry: Entry
    pending: PendingFile
    seq: int


class Ingest:
    def __init__(
        self,
        files: InstanceFiles,
        index: DicomIndex,
        *,
        policy: DuplicatePolicy = DuplicatePolicy.KEEP_FIRST,
        on_study_changed: Callable[[str], None] = lambda study_uid: None,
        organization_of: Callable[[str], str | None] = lambda ae_title: None,
        batch_size: int = 500,
        batch_wait: float = 0.05,
    ) -> None:
        self.files = files
        self.index = index
        self.policy = policy
        self.on_study_changed = on_study_changed
        self.organization_of = organization_of
        self.batch_size = batch_size
        self.batch_wait = batch_wait
        self._queue: deque[_Queued] = deque()
        self._queued_sops: dict[str, int] = {}
        self._cond = threading.Condition()
        self._enqueued = 0
        self._indexed = 0
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> None:
        """Index what a previous run left pending, then start the indexer thread."""
        self.files.prepare()
        self.recover()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="dicom-indexer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.drain(timeout=30)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.files.close()  # anything left pending is adopted by the next process

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until everything acknowledged so far is indexed (False on timeout): by
        this process, and by the other live processes sharing the data dir (their pending
        files leave ``.pending`` only once their index rows are committed)."""
        deadline = time.monotonic() + timeout
        others = self.files.others_pending() if self.files.owner else set()
        with self._cond:
            target = self._enqueued
            if self._thread is None:
                if self._indexed < target:
                    return False
            elif not self._cond.wait_for(lambda: self._indexed >= target, timeout):
                return False
        while others:
            others = {path for path in others if path.exists()}
            if others and time.monotonic() > deadline:
                return False
            if others:
                time.sleep(0.002)
        return True

    # -- the synchronous part ----------------------------------------------------------

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

        if self.policy is DuplicatePolicy.KEEP_FIRST and self._known(sop_instance_uid):
            return StoreResult(SUCCESS, study_uid=header.study_uid, outcome="kept")
        try:
            pending = self.files.write(header.study_uid, sop_instance_uid, (meta, dataset))
        except OSError as exc:
            log.error("cannot store %s: %s", sop_instance_uid, exc)
            return StoreResult(OUT_OF_RESOURCES, f"cannot write: {exc}"[:64])
        entry = Entry(header, source, transfer_syntax_uid, pending.final, len(meta) + len(dataset))
        with self._cond:
            self._enqueued += 1
            queued = _Queued(entry, pending, self._enqueued)
            self._queue.append(queued)
            self._queued_sops[sop_instance_uid] = self._queued_sops.get(sop_instance_uid, 0) + 1
            self._cond.notify_all()
            running = self._thread is not None
        if not running:  # not started (tools, tests): index on the caller's thread
            self._index(self._take_all())
        return StoreResult(SUCCESS, study_uid=header.study_uid, outcome="queued")

    def _known(self, sop_uid: str) -> bool:
        # Only the queue is asked here (no database round trip per instance): a re-send of
        # an indexed instance is written, then found "kept" by the indexer and dropped.
        with self._cond:
            return sop_uid in self._queued_sops

    # -- the indexer -------------------------------------------------------------------

    def _take_all(self) -> list[_Queued]:
        with self._cond:
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.batch_size))]
        return batch

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue) or self._stopping)
                if not self._queue and self._stopping:
                    return
            if self.batch_wait:
                time.sleep(self.batch_wait)  # let concurrent associations join the batch
            batch = self._take_all()
            try:
                self._index(batch)
            except Exception:  # database down: keep the files pending, retry
                log.exception("cannot index %d instances; retrying", len(batch))
                with self._cond:
                    self._queue.extendleft(reversed(batch))
                time.sleep(1.0)

    def _index(self, batch: list[_Queued]) -> None:
        if not batch:
            return
        try:
            results: list[Recorded | None] = list(
                self.index.record_many([q.entry for q in batch], self.policy)
            )
        except OperationalError:
            raise
        except Exception:
            log.exception("batch failed; indexing its %d instances one by one", len(batch))
            results = []
            for queued in batch:
                try:
                    results.append(self.index.record_many([queued.entry], self.policy)[0])
                except OperationalError:
                    raise
                except Exception:
                    log.exception("cannot index %s; moved to .rejected", queued.pending.path)
                    results.append(None)
        changed: set[str] = set()
        for queued, recorded in zip(batch, results, strict=True):
            self._settle(queued.pending, recorded)
            if recorded is not None and recorded.outcome != "kept":
                changed.add(queued.entry.header.study_uid)
        with self._cond:
            for queued in batch:
                sop = queued.entry.header.sop_instance_uid
                left = self._queued_sops.get(sop, 0) - 1
                if left > 0:
                    self._queued_sops[sop] = left
                else:
                    self._queued_sops.pop(sop, None)
            self._indexed = max(self._indexed, max(q.seq for q in batch))
            self._cond.notify_all()
        for study_uid in changed:
            self.on_study_changed(study_uid)

    def _settle(self, pending: PendingFile, recorded: Recorded | None) -> None:
        try:
            if recorded is None:
                self.files.reject(pending)
            elif recorded.outcome == "kept":
                self.files.discard(pending)
            else:
                self.files.commit(pending)
                if recorded.old_path and recorded.old_path != pending.final:
                    self.files.remove(recorded.old_path)
        except OSError:
            log.exception("cannot move %s into place", pending.path)

    def recover(self) -> int:
        """Index files a previous run acknowledged but did not index; return how many."""
        count = 0
        for pending in self.files.pending_files():
            count += 1
            if self.index.instance_path(pending.sop_uid) == pending.final:
                self.files.commit(pending)  # indexed, then the process stopped
                continue
            data = pending.path.read_bytes()
            try:
                entry = _entry_from_file(data, pending, self.organization_of)
            except HeaderError:
                self.files.reject(pending)
                continue
            self._index_one(entry, pending)
        return count

    def _index_one(self, entry: Entry, pending: PendingFile) -> None:
        recorded = self.index.record_many([entry], self.policy)[0]
        self._settle(pending, recorded)
        if recorded.outcome != "kept":
            self.on_study_changed(entry.header.study_uid)


def _entry_from_file(
    data: bytes, pending: PendingFile, organization_of: Callable[[str], str | None]
) -> Entry:
    from io import BytesIO

    from pydicom.filereader import _read_file_meta_info, read_preamble

    fp = BytesIO(data)
    read_preamble(fp, False)
    meta = _read_file_meta_info(fp)
    syntax = str(meta.TransferSyntaxUID)
    header = read_header(data[: fp.tell()], data[fp.tell() :], syntax)
    source_ae = str(meta.get("SourceApplicationEntityTitle", "") or "")
    source = Source(source_ae, organization_of(source_ae) if source_ae else None)
    return Entry(header, source, syntax, pending.final, len(data))
