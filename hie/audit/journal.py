"""A per-process journal of audit records: a read's record made durable for one write.

A request appends its records to its process's journal file (one ``write`` to a file
opened with O_APPEND) and is answered: the kernel holds the bytes, so a crash of the
process loses none of them. Draining moves journalled records into the hash chain in
large batches. One process at a time drains a host's journals (an flock on the
directory's ``.drain`` file), and each journal's drained offset commits in the same
transaction as its records, so a record is chained exactly once whoever drains it and
whenever a drainer dies.

Each journal file is locked (flock) by the process writing it; a file whose lock is
free belongs to a process that has exited, and is deleted once drained.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import socket
import struct
import threading
import time
import weakref
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hie.audit.event import record_of
from hie.storage.ports import AuditLog, AuditRecord

log = logging.getLogger(__name__)

SUFFIX = ".journal"
# Each frame: payload length, CRC-32 of the payload, recorded (µs since the epoch).
_FRAME = struct.Struct(">IIq")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_READ = 4 << 20
_FALLBACK = 0.5  # seconds between a process's own drains when a drainer process runs


def _frame(record: AuditRecord) -> bytes:
    content = record.content
    us = (record.recorded - _EPOCH) // _US
    return _FRAME.pack(len(content), zlib.crc32(content), us) + content


class Journal:
    """This process's append-only file of records not yet chained (thread-safe)."""

    def __init__(self, directory: Path, *, roll_bytes: int = 64 << 20) -> None:
        self.directory = directory
        self._roll = roll_bytes
        self._lock = threading.Lock()
        self._fd = -1
        self._written = 0
        directory.mkdir(parents=True, exist_ok=True)

    def write(self, records: Sequence[AuditRecord]) -> None:
        """Durable against a crash of this process once this returns; raises OSError."""
        data = b"".join(_frame(r) for r in records)
        with self._lock:
            fd = self._fd
            # A new file when this one is large, or was deleted under us (its records
            # would reach no drainer).
            if fd < 0 or self._written >= self._roll or os.fstat(fd).st_nlink == 0:
                fd = self._open()
            try:
                written = os.write(fd, data)
            except OSError:
                self._close()  # whatever part reached the file is a torn tail: start anew
                raise
            if written != len(data):
                self._close()
                raise OSError(f"the audit journal took {written} of {len(data)} bytes")
            self._written += written

    def _open(self) -> int:
        self._close()
        name = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}{SUFFIX}"
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        fd = os.open(self.directory / name, flags, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # held while this process lives: not to be deleted
        self._fd, self._written = fd, 0
        return fd

    def _close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # releases the lock: the file is a drainer's to delete
            self._fd = -1

    def close(self) -> None:
        with self._lock:
            self._close()


class JournalDrain:
    """Chains every journal in a directory (the host's), exactly once."""

    def __init__(self, log: AuditLog, directory: Path, *, batch: int = 5_000) -> None:
        self._log = log
        self.directory = directory
        self._batch = batch

    def drain(self, *, wait: bool = True) -> None:
        """Chain everything journalled on this host. ``wait``: for a drainer at work
        (else leave it to that one)."""
        if not self.directory.is_dir():
            return
        with self._exclusive(wait) as held:
            if not held:
                return
            paths = sorted(self.directory.glob("*" + SUFFIX))
            if paths:
                marks = self._log.drained([p.name for p in paths])
                finished: list[str] = []
                try:
                    for path in paths:
                        if self._drain_file(path, marks.get(path.name, 0)):
                            finished.append(path.name)
                finally:
                    # Their offsets are needed no more: the files are gone. Forgotten after
                    # the files are deleted: a crash in between leaves an offset behind,
                    # never a file without one (which would be chained again from its start).
                    self._log.forget(finished)

    @contextmanager
    def _exclusive(self, wait: bool) -> Iterator[bool]:
        fd = os.open(self.directory / ".drain", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def _drain_file(self, path: Path, offset: int) -> bool:
        """Chain what ``path`` holds past ``offset``; whether it ended and was deleted."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                ended = True  # its writer has exited: nothing more will come
            except BlockingIOError:
                ended = False
            while True:
                data = os.pread(fd, _READ, offset)
                records, used = _parse(data, self._batch)
                if records:
                    offset += used
                    self._log.append(records, drained={path.name: offset})
                if not records or (used == len(data) and len(data) < _READ):
                    break
            if ended:
                rest = os.fstat(fd).st_size - offset
                if rest:
                    # Torn by a failed write: that access was refused, or never answered.
                    log.warning("audit journal %s: %d bytes of a torn record left", path, rest)
                path.unlink(missing_ok=True)
            return ended
        finally:
            os.close(fd)


def _parse(data: bytes, limit: int) -> tuple[list[AuditRecord], int]:
    """Whole frames from the start of ``data`` (at most ``limit``), and the bytes they use."""
    out: list[AuditRecord] = []
    pos, size, head = 0, len(data), _FRAME.size
    while len(out) < limit and pos + head <= size:
        length, crc, us = _FRAME.unpack_from(data, pos)
        end = pos + head + length
        if end > size:
            break
        content = data[pos + head : end]
        if zlib.crc32(content) != crc:
            break  # a torn frame: only ever the last one of a file
        out.append(record_of(_EPOCH + us * _US, content))
        pos = end
    return out, pos


class JournalWorker:
    """Drains this host's journals: every ``interval`` seconds from a request of this
    process (``due``/``try_drain``), and from a thread of its own when requests are few.

    Requests do most of it because a background thread starves for the GIL behind busy
    request threads under load. The thread holds the worker weakly: services dropped
    without being closed leave no thread draining behind them.
    """

    def __init__(self, drain: JournalDrain, *, interval: float, in_requests: bool = True) -> None:
        self._drain = drain
        self._interval = interval
        self._in_requests = in_requests
        self._busy = threading.Lock()
        self._next = time.monotonic() + interval
        self.error: BaseException | None = None
        self.failing_since: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=_run,
            # With a drainer process the thread is the fallback (and notices failures).
            args=(weakref.ref(self), self._stop, interval if in_requests else _FALLBACK),
            name="audit-drain",
            daemon=True,
        )
        self._thread.start()

    def due(self) -> bool:
        return self._in_requests and time.monotonic() >= self._next

    def try_drain(self) -> None:
        """Drain unless this process or another of this host is at it (never waits)."""
        if not self._busy.acquire(blocking=False):
            return
        try:
            self._next = time.monotonic() + self._interval
            self._attempt(wait=False)
        finally:
            self._busy.release()

    def drain(self) -> None:
        """Drain everything journalled so far (waiting for a drainer at work)."""
        with self._busy:
            self._attempt(wait=True)

    def _attempt(self, *, wait: bool) -> None:
        try:
            self._drain.drain(wait=wait)
        except BaseException as exc:
            if self.failing_since is None:
                # Once per failure, without a traceback (formatting one parses source).
                log.error("draining the audit journal failed: %s", exc)
                self.failing_since = time.monotonic()
            self.error = exc
            raise
        if self.failing_since is not None:
            log.warning("draining the audit journal works again")
        self.error, self.failing_since = None, None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _run(ref: weakref.ref[JournalWorker], stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        worker = ref()
        if worker is None:
            return
        with suppress(Exception):  # remembered in worker.error: accesses are refused
            worker.try_drain()
        del worker
