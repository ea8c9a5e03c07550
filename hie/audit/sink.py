"""Audit sinks: every access the exchange performs is handed to one.

When the audit trail lives in the clinical database, a write chains its records in its
own unit of work, so data and record commit together or not at all. Reads (and writes
when the trail lives in another database) go through a group-commit writer: each
request waits until its record is durable, and if it cannot be written the access
fails (fail-closed). One writer thread per process batches whatever arrived during the
previous commit, so the chain's lock is taken once per batch, not once per request.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from hie.errors import Unavailable
from hie.storage.ports import AuditLog, AuditRecord, UnitOfWork

_REFUSED = "the access could not be audited, so it was refused"


class AuditSink(Protocol):
    def record_in(self, uow: UnitOfWork, records: Sequence[AuditRecord]) -> None:
        """Record as part of a write's unit of work (durable before that work commits)."""

    def record(self, records: Sequence[AuditRecord]) -> None:
        """Record durably before returning; raise ``hie.errors.Unavailable`` if that fails."""

    def close(self) -> None: ...


@dataclass
class _Pending:
    records: Sequence[AuditRecord]
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class GroupCommitAuditSink:
    """Batches concurrent requests' records into one chained append per flush.

    ``in_transaction``: the trail shares the clinical database, so ``record_in`` adds to
    the write's own transaction; otherwise it waits for the writer before the write
    commits (a record may then outlive a write that fails to commit, never the reverse).
    """

    def __init__(self, log: AuditLog, *, in_transaction: bool, max_batch: int = 512) -> None:
        self._log = log
        self._in_transaction = in_transaction
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._max_batch = max_batch
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def record_in(self, uow: UnitOfWork, records: Sequence[AuditRecord]) -> None:
        if self._in_transaction:
            uow.append_audit(records)
        else:
            self.record(records)

    def record(self, records: Sequence[AuditRecord]) -> None:
        self._ensure_started()
        pending = _Pending(records)
        self._queue.put(pending)
        pending.done.wait()
        if pending.error is not None:
            raise Unavailable(_REFUSED) from pending.error

    def _ensure_started(self) -> None:
        # Started lazily so that the thread lives in the worker process, not its parent.
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="audit-writer", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        # No lingering: a batch is whatever arrived while the previous commit was running,
        # so a lone request pays one commit and a busy server shares each commit widely.
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._flush(batch)
            if stop:
                return

    def _flush(self, batch: list[_Pending]) -> None:
        error: BaseException | None = None
        try:
            self._log.append([r for p in batch for r in p.records])
        except Exception as exc:
            error = exc
        for pending in batch:
            pending.error = error
            pending.done.set()

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None


class SynchronousAuditSink:
    """Appends each request's records in a transaction of their own (tools, tests)."""

    def __init__(self, log: AuditLog, *, in_transaction: bool) -> None:
        self._log = log
        self._in_transaction = in_transaction

    def record_in(self, uow: UnitOfWork, records: Sequence[AuditRecord]) -> None:
        if self._in_transaction:
            uow.append_audit(records)
        else:
            self.record(records)

    def record(self, records: Sequence[AuditRecord]) -> None:
        try:
            self._log.append(records)
        except Exception as exc:
            raise Unavailable(_REFUSED) from exc

    def close(self) -> None:
        return None


class NoAudit:
    """Records nothing: only for measuring what audit costs (``audit.enabled = false``)."""

    def record_in(self, uow: UnitOfWork, records: Sequence[AuditRecord]) -> None:
        return None

    def record(self, records: Sequence[AuditRecord]) -> None:
        return None

    def close(self) -> None:
        return None
