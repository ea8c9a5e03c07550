"""Instance files in the data dir, written exactly as received.

Each file is the Part 10 preamble and file meta information built from the C-STORE
request, followed by the data set bytes the sender transferred, untouched (no
transcoding). The life of a file::

    dicom/.incoming/<token>.tmp        being written (emptied at start-up: never trusted)
    dicom/.pending/<study>_<sop>_<token>.dcm
                                       complete and fsync'd: the C-STORE is answered now
    dicom/<study>/<sop>.<token>.dcm    indexed (renamed once the index row is committed)
    dicom/.rejected/...                could not be indexed (kept for an operator)

Every write gets a fresh token, so a re-sent SOP Instance UID never overwrites a file the
index points to; a reader never sees a half-written file.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import struct
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


class InstanceFiles:
    """The ``dicom/`` directory of the data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / "dicom"
        self.incoming = self.root / ".incoming"
        self.pending_dir = self.root / ".pending"
        self.rejected_dir = self.root / ".rejected"

    def prepare(self) -> None:
        """Create the directories and drop half-written files a crash left behind."""
        if self.incoming.exists():
            shutil.rmtree(self.incoming)
        for directory in (self.incoming, self.pending_dir, self.rejected_dir):
            directory.mkdir(parents=True, exist_ok=True)

    def write(self, study_uid: str, sop_uid: str, parts: tuple[bytes, ...]) -> PendingFile:
        """Write ``parts`` durably into ``.pending``. Raises OSError with nothing left behind."""
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
                os.fdatasync(fd)  # data, not metadata: the rename follows
            finally:
                os.close(fd)
            os.replace(temp, pending.path)
        except BaseException:
            temp.unlink(missing_ok=True)
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
        for path in sorted(self.pending_dir.glob("*.dcm")):
            match = _PENDING_NAME.match(path.name)
            if match:
                yield PendingFile(path, match.group(1), match.group(2), match.group(3))

    def path(self, relative: str) -> Path:
        return self.data_dir / relative

    def read(self, relative: str) -> bytes:
        return (self.data_dir / relative).read_bytes()

    def remove(self, relative: str) -> None:
        (self.data_dir / relative).unlink(missing_ok=True)
