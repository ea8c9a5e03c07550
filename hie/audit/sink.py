"""Audit sinks: every access the exchange performs is handed to one.

Writes record their audit in the same unit of work as the data, so both commit or
neither does. Reads are recorded by a group-commit writer: each request waits until
its record is durable, and if it cannot be written the access fails (fail-closed).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from hie.errors import Unavailable
from hie.storage.ports import AuditRecord, Store, UnitOfWork


class AuditSink(Protocol):
    def record_in(self, uow: UnitOfWork, records: Sequence[AuditRecord]) -> None:
        """Record as part of a write's unit of work."""

    def record(self, records: Sequence[AuditRecord]) -> None:
        """Record durably before returning; raise ``hie.errors.Unavailable`` if that fails."""

    def close(self) -> None: ...


@dataclass
class _Pending:
    records: Sequence[AuditRecord]
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class GroupCommitAuditSink:
    """Batches concurrent readers' records into one transaction per flush."""

    def __init__(self, store: Store, *, max_batch: int = 512) -> None:
        self._store = store
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._max_batch = max_batch
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def record_in(self, uow: UnitOfWork, records: Sequence[AuditRecord]) -> None:
        uow.append_audit(records)

    def record(self, records: Sequence[AuditRecord]) -> None:
        self._ensure_started()
        pending = _Pending(records)
        self._queue.put(pending)
        pending.done.wait()
        if pending.error is not None:
            raise Unavailable(
                "the access could not be audited, so it was refused"
            ) from pending.error

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
            with self._store.unit_of_work(write=True) as uow:
                uow.append_audit([r for p in batch for r in p.records])
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
    """Writes each read's record in its own transaction (tests, tools)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def record_in(self, uow: UnitOfWork, records: Sequence[AuditRecord]) -> None:
        uow.append_audit(records)

    def record(self, records: Sequence[AuditRecord]) -> None:
        try:
            with self._store.unit_of_work(write=True) as uow:
                uow.append_audit(records)
        except Exception as exc:
            raise Unavailable("the access could not be audited, so it was refused") from exc

    def close(self) -> None:
        return None
