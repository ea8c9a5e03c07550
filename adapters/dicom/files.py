"""Instance files in the data dir, written exactly as received.

Each file is the Part 10 preamble and file meta information built from the C-STORE
request, followed by the data set bytes the sender transferred, untouched (no
transcoding). Several processes write into one data dir (``hie dicom`` workers, the
DICOMweb workers); each owns a spool of its own, named by a token and held by an
``flock`` on ``.owners/<owner>.lock`` while it lives. The life of a file::

    dicom/.incoming/<owner>/<token>.tmp  being written (dropped once its owner is gone)
    dicom/.pending/<owner>/<study>_<sop>_<token>.dcm
                                         complete, fdatasync'd, renamed, directory
                                         fsync'd: the C-STORE is answered now
    dicom/<study>/<sop>.<token>.dcm      indexed (renamed once the index row is committed)
    dicom/.rejected/...                  could not be indexed (kept for an operator)

A process that starts adopts the pending files of owners that are gone (their lock is
free) and indexes them. Every write gets a fresh token, so a re-sent SOP Instance UID
never overwrites a file the index points to; a reader never sees a half-written file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID

IMPLEMENTATION_VERSION = "HIE_DICOM_1"
PREAMBLE = b"\x00" * 128 + b"DICM"
_PENDING_NAME = re.compile(r"^([0-9.]+)_([0-9.]+)_([0-9a-f]+)\.dcm$")


def _element(element: int, vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\x00" if vr == b"UI" else b" "
    if vr == b"OB":
        return struct.pack("<HH2sHL", 0x0002, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def file_meta_bytes(
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str, source_ae: str
) -> bytes:
    """Preamble, ``DICM`` and the (0002,eeee) group (explicit VR little endian, PS3.10
    7.1) for one received instance. Encoded by hand: this runs once per instance."""
    elements = [
        _element(0x0001, b"OB", b"\x00\x01"),
        _element(0x0002, b"UI", sop_class_uid.encode("ascii")),
        _element(0x0003, b"UI", sop_instance_uid.encode("ascii")),
        _element(0x0010, b"UI", transfer_syntax_uid.encode("ascii")),
        _element(0x0012, b"UI", PYNETDICOM_IMPLEMENTATION_UID.encode("ascii")),
        _element(0x0013, b"SH", IMPLEMENTATION_VERSION.encode("ascii")),
    ]
    if source_ae.strip():
        elements.append(_element(0x0016, b"AE", source_ae.strip().encode("ascii", "replace")))
    body = b"".join(elements)
    group_length = struct.pack("<HH2sHL", 0x0002, 0x0000, b"UL", 4, len(body))
    return PREAMBLE + group_length + body


@dataclass(frozen=True, slots=True)
class PendingFile:
    """A complete, durable file waiting for its index row."""

    path: Path
    study_uid: str
    sop_uid: str
    token: str

    @property
    def final(self) -> str:
        """Where it goes once indexed, relative to the data dir."""
        return f"dicom/{self.study_uid}/{self.sop_uid}.{self.token}.dcm"


class DirectorySync:
    """``fsync`` of one directory, shared by concurrent callers (group commit): a caller
    returns once an fsync that *started after its call* has finished, so renames made
    by many associations at once cost one fsync, not one each."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cond = threading.Condition()
        self._requested = 0  # tickets handed out
        self._covered = 0  # every ticket up to this one is durable
        self._running = False

    def sync(self) -> None:
        with self._cond:
            self._requested += 1
            ticket = self._requested
            while self._covered < ticket:
                if self._running:
                    self._cond.wait()
                    continue
                self._running = True
                target = self._requested
                self._cond.release()
                try:
                    fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                finally:
                    self._cond.acquire()
                    self._running = False
                    self._cond.notify_all()
                self._covered = max(self._covered, target)


def _lock_free(lock_path: Path, *, create: bool = False) -> int | None:
    """An fd holding ``lock_path``'s flock if nobody else held it (its owner is gone)."""
    try:
        fd = os.open(lock_path, os.O_RDWR | (os.O_CREAT if create else 0), 0o640)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


class InstanceFiles:
    """The ``dicom/`` directory of the data dir, and this process's spool in it."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / "dicom"
        self.incoming_root = self.root / ".incoming"
        self.pending_root = self.root / ".pending"
        self.owners_dir = self.root / ".owners"
        self.rejected_dir = self.root / ".rejected"
        self.owner = ""
        self.incoming = self.incoming_root
        self.pending_dir = self.pending_root
        self._lock_fd: int | None = None
        self._pending_sync = DirectorySync(self.pending_root)

    def prepare(self) -> None:
        """Create the directories, take a spool of this process's own (locked while the
        process lives), drop half-written files of owners that are gone and adopt their
        pending files (see :meth:`pending_files`)."""
        self.close()
        for directory in (
            self.incoming_root,
            self.pending_root,
            self.owners_dir,
            self.rejected_dir,
        ):
            directory.mkdir(parents=True, exist_ok=True)
        owner = f"{os.getpid()}-{secrets.token_hex(4)}"
        # Locked before it is visible as ``*.lock``: nobody can take it for an orphan.
        fd = _lock_free(self.owners_dir / f"{owner}.new", create=True)
        if fd is None:
            raise OSError(f"cannot lock the DICOM spool {owner}")
        os.replace(self.owners_dir / f"{owner}.new", self.owners_dir / f"{owner}.lock")
        self._lock_fd, self.owner = fd, owner
        self.incoming = self.incoming_root / owner
        self.pending_dir = self.pending_root / owner
        self.incoming.mkdir()
        self.pending_dir.mkdir()
        self._pending_sync = DirectorySync(self.pending_dir)
        self.adopt_orphans()

    def close(self) -> None:
        """Give the spool up (what the end of the process does); pending files stay for
        the next process to adopt."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def adopt_orphans(self) -> int:
        """Move the pending files of owners that are gone into this spool; drop their
        half-written files. Return how many files were adopted."""
        adopted = 0
        for lock_path in sorted(self.owners_dir.glob("*.lock")):
            owner = lock_path.stem
            if owner == self.owner:
                continue
            fd = _lock_free(lock_path)
            if fd is None:
                continue  # alive
            try:
                adopted += self._adopt(self.pending_root / owner)
                shutil.rmtree(self.incoming_root / owner, ignore_errors=True)
                with contextlib.suppress(OSError):
                    (self.pending_root / owner).rmdir()
                lock_path.unlink(missing_ok=True)
            finally:
                os.close(fd)
        # Spools without a lock file (and files of the single-spool layout) are orphans too.
        for directory in self.incoming_root.iterdir():
            if directory.is_dir() and not (self.owners_dir / f"{directory.name}.lock").exists():
                shutil.rmtree(directory, ignore_errors=True)
            elif not directory.is_dir():
                directory.unlink(missing_ok=True)
        adopted += self._adopt(self.pending_root)
        if adopted:
            self._pending_sync.sync()
        return adopted

    def _adopt(self, directory: Path) -> int:
        adopted = 0
        if not directory.is_dir():
            return 0
        for path in directory.glob("*.dcm"):
            if _PENDING_NAME.match(path.name):
                with contextlib.suppress(FileNotFoundError):  # another process took it
                    os.replace(path, self.pending_dir / path.name)
                    adopted += 1
        return adopted

    def write(self, study_uid: str, sop_uid: str, parts: tuple[bytes, ...]) -> PendingFile:
        """Write ``parts`` durably into this spool's ``.pending``: data fdatasync'd, then
        renamed, then the directory fsync'd. Raises OSError with nothing left behind."""
        token = secrets.token_hex(6)
        pending = PendingFile(
            self.pending_dir / f"{study_uid}_{sop_uid}_{token}.dcm", study_uid, sop_uid, token
        )
        temp = self.incoming / f"{token}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            try:
                for part in parts:
                    view = memoryview(part)
                    while view:
                        written = os.write(fd, view)
                        view = view[written:]
                os.fdatasync(fd)  # data and size, not timestamps: the rename follows
            finally:
                os.close(fd)
            os.replace(temp, pending.path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        try:
            self._pending_sync.sync()  # the rename itself is durable
        except BaseException:
            pending.path.unlink(missing_ok=True)
            raise
        return pending

    def commit(self, pending: PendingFile) -> None:
        """Move an indexed file into place (the index already points there)."""
        final = self.data_dir / pending.final
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(pending.path, final)

    def discard(self, pending: PendingFile) -> None:
        pending.path.unlink(missing_ok=True)

    def reject(self, pending: PendingFile) -> None:
        os.replace(pending.path, self.rejected_dir / pending.path.name)

    def pending_files(self) -> Iterator[PendingFile]:
        """This spool's pending files (after :meth:`prepare`, also those adopted)."""
        for path in sorted(self.pending_dir.glob("*.dcm")):
            match = _PENDING_NAME.match(path.name)
            if match:
                yield PendingFile(path, match.group(1), match.group(2), match.group(3))

    def others_pending(self) -> set[Path]:
        """Pending files of the other live spools (processes) right now."""
        out: set[Path] = set()
        for lock_path in self.owners_dir.glob("*.lock"):
            owner = lock_path.stem
            if owner == self.owner:
                continue
            fd = _lock_free(lock_path)
            if fd is not None:  # gone: its files wait for the next start to adopt them
                os.close(fd)
                continue
            with contextlib.suppress(FileNotFoundError):
                out.update((self.pending_root / owner).iterdir())
        return out

    def path(self, relative: str) -> Path:
        return self.data_dir / relative

    def read(self, relative: str) -> bytes:
        return (self.data_dir / relative).read_bytes()

    def remove(self, relative: str) -> None:
        (self.data_dir / relative).unlink(missing_ok=True)
