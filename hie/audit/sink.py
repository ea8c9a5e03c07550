"""Audit sinks: every access the exchange performs is handed to one.

When the audit trail lives in the clinical database, a write chains its records in its
own unit of work, so data and record commit together or not at all. Reads (and writes
when the trail lives in another database) go through a group-commit writer: each
request waits until its record is durable, and if it cannot be written the access
fails (fail-closed). One writer thread per process batches whatever arrived during the
previous commit, so the chain's lock is taken once per batch, not once per request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Protocol

from hie.audit.journal import Journal, JournalWorker
from hie.errors import Unavailable
from hie.storage.ports import AuditLog, AuditRecord, UnitOfWork

_REFUSED = "the access could not be audited, so it was refused"


class AuditSink(Protocol):
    def record_in(self, uow: UnitOfWork, records: Sequence[AuditRecord]) -> None:
        """Record as part of a write's unit of work (durable before that work commits)."""

    def record(self, records: Sequence[AuditRecord]) -> None:
        """Record durably before returning; raise ``hie.errors.Unavailable`` if that fails."""

    def drain(self) -> None:
        """Bring the chain up to date with every record this host has taken (before the
        trail is read); raise ``hie.errors.Unavailable`` if that fails."""

    def close(self) -> None: ...


@dataclass
class _Pending:
    records: Sequence[AuditRecord]
    done: bool = False
    error: BaseException | None = None


class _ChainingSink:
    """A write's records commit with its unit of work when the trail shares the clinical
    database; otherwise (and for reads) they go the sink's own way (``record``)."""

    _in_transaction: bool

    def record(self, records: Sequence[AuditRecord]) -> None:
        raise NotImplementedError

    def record_in(self, uow: UnitOfWork, records: Sequence[AuditRecord]) -> None:
        if self._in_transaction:
            uow.append_audit(records)
        else:
            self.record(records)


class GroupCommitAuditSink(_ChainingSink):
    """Batches concurrent requests' records into one chained append per flush.

    Leader and followers, no writer thread: the first waiting request that finds no flush
    running appends everything queued so far, the others wait for it. A handoff to a
    writer thread would wait for the GIL behind busy request threads; the leader holds it.

    ``in_transaction``: the trail shares the clinical database, so ``record_in`` adds to
    the write's own transaction; otherwise it waits for a flush before the write commits
    (a record may then outlive a write that fails to commit, never the reverse).
    """

    def __init__(self, log: AuditLog, *, in_transaction: bool, max_batch: int = 512) -> None:
        self._log = log
        self._in_transaction = in_transaction
        self._max_batch = max_batch
        self._queue: list[_Pending] = []
        self._flushing = False
        self._changed = threading.Condition()

    def record(self, records: Sequence[AuditRecord]) -> None:
        pending = _Pending(records)
        changed = self._changed
        with changed:
            self._queue.append(pending)
            while True:
                if pending.done:
                    break
                if not self._flushing:
                    # Lead: take the queue (this request's record is in it) and flush it.
                    self._flushing = True
                    batch = self._queue[: self._max_batch]
                    del self._queue[: self._max_batch]
                    changed.release()
                    try:
                        self._flush(batch)
                    finally:
                        changed.acquire()
                        self._flushing = False
                        changed.notify_all()
                    continue
                changed.wait()
        if pending.error is not None:
            raise Unavailable(_REFUSED) from pending.error

    def _flush(self, batch: list[_Pending]) -> None:
        error: BaseException | None = None
        try:
            self._log.append([r for p in batch for r in p.records])
        except Exception as exc:
            error = exc
        for pending in batch:
            pending.error = error
            pending.done = True

    def drain(self) -> None:
        return None

    def close(self) -> None:
        return None


class JournalAuditSink(_ChainingSink):
    """Each request's records go to its process's journal (one write, no commit waited
    for); a worker thread drains the host's journals into the chain in large batches.

    Fail-closed: a record that cannot be journalled refuses its access, and so does every
    access once draining has failed for ``stale_after`` seconds: journals do not grow
    unseen. A passing failure refuses nothing.
    """

    def __init__(
        self,
        journal: Journal,
        worker: JournalWorker,
        *,
        in_transaction: bool,
        stale_after: float = 2.0,
    ) -> None:
        self._journal = journal
        self._worker = worker
        self._in_transaction = in_transaction
        self._stale_after = stale_after

    def record(self, records: Sequence[AuditRecord]) -> None:
        worker = self._worker
        failing = worker.failing_since
        if failing is not None and time.monotonic() - failing > self._stale_after:
            raise Unavailable(_REFUSED) from worker.error
        try:
            self._journal.write(records)
        except OSError as exc:
            raise Unavailable(_REFUSED) from exc
        if worker.due():
            # This request drains for the host's processes; its own record is journalled,
            # so a failure here is the worker's to remember, not this access's.
            with suppress(Exception):
                worker.try_drain()

    def drain(self) -> None:
        try:
            self._worker.drain()
        except Exception as exc:
            raise Unavailable("the audit trail cannot be brought up to date") from exc

    def close(self) -> None:
        self._worker.stop()
        self._journal.close()
        # This process's journal, closed now, is chained and deleted (or, if that fails,
        # left to the next process that drains).
        with suppress(Exception):
            self._worker.drain()


class SynchronousAuditSink(_ChainingSink):
    """Appends each request's records in a transaction of their own (tools, tests)."""

    def __init__(self, log: AuditLog, *, in_transaction: bool) -> None:
        self._log = log
        self._in_transaction = in_transaction

    def record(self, records: Sequence[AuditRecord]) -> None:
        try:
            self._log.append(records)
        except Exception as exc:
            raise Unavailable(_REFUSED) from exc

    def drain(self) -> None:
        return None

    def close(self) -> None:
        return None


class NoAudit:
    """Records nothing: only for measuring what audit costs (``audit.enabled = false``)."""

    def record_in(self, uow: UnitOfWork, records: Sequence[AuditRecord]) -> None:
        return None

    def record(self, records: Sequence[AuditRecord]) -> None:
        return None

    def drain(self) -> None:
        return None

    def close(self) -> None:
        return None
