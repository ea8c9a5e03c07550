"""Instance files in the data dir, written exactly as received.

Each file is the Part 10 preamble and file meta information built from the C-STORE
request, followed by the data set bytes the sender transferred, untouched (no
transcoding). A file is written under ``dicom/.incoming/``, fsync'd, then renamed into
place, so a reader never sees a half-written file; ``.incoming`` is emptied at start-up.
Every write gets a fresh name, so a concurrent re-send of the same SOP Instance UID never
overwrites a file the index already points to.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID

IMPLEMENTATION_VERSION = "HIE_DICOM_1"
PREAMBLE = b"\x00" * 128 + b"DICM"


def file_meta_bytes(
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str, source_ae: str
) -> bytes:
    """Preamble, ``DICM`` and the encoded (0002,eeee) group for one received instance."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = UID(transfer_syntax_uid)
    meta.ImplementationClassUID = PYNETDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    if source_ae.strip():
        meta.SourceApplicationEntityTitle = source_ae.strip()
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = False
    write_file_meta_info(buffer, meta, enforce_standard=True)
    return PREAMBLE + buffer.getvalue()


class InstanceFiles:
    """The ``dicom/`` directory of the data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / "dicom"
        self.incoming = self.root / ".incoming"

    def prepare(self) -> None:
        """Create the directories and drop files a crash left in ``.incoming``."""
        if self.incoming.exists():
            shutil.rmtree(self.incoming)
        self.incoming.mkdir(parents=True, exist_ok=True)

    def write(self, study_uid: str, sop_uid: str, parts: tuple[bytes, ...]) -> str:
        """Write ``parts`` to a new file atomically; return its path relative to the data dir.

        Raises OSError (disk full, permissions, ...) with nothing left behind.
        """
        token = secrets.token_hex(4)
        relative = f"dicom/{study_uid}/{sop_uid}.{token}.dcm"
        final = self.data_dir / relative
        temp = self.incoming / f"{sop_uid}.{token}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            try:
                for part in parts:
                    view = memoryview(part)
                    while view:
                        written = os.write(fd, view)
                        view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return relative

    def path(self, relative: str) -> Path:
        return self.data_dir / relative

    def read(self, relative: str) -> bytes:
        return (self.data_dir / relative).read_bytes()

    def remove(self, relative: str) -> None:
        (self.data_dir / relative).unlink(missing_ok=True)
