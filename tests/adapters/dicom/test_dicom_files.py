from __future__ import annotations

from pathlib import Path

import pytest

from adapters.dicom.files import InstanceFiles


def test_write_is_durable_pending_then_committed(tmp_path: Path) -> None:
    files = InstanceFiles(tmp_path)
    files.prepare()
    first = files.write("1.2", "1.2.3", (b"head", b"body"))
    second = files.write("1.2", "1.2.3", (b"other",))
    assert first.final != second.final  # a re-send never overwrites an indexed file
    assert first.path.read_bytes() == b"headbody"
    assert [p.path for p in files.pending_files()] == sorted([first.path, second.path])
    files.commit(first)
    files.discard(second)
    assert files.read(first.final) == b"headbody"
    assert first.final.startswith("dicom/1.2/1.2.3.")
    assert list(files.pending_files()) == []
    assert list(files.incoming.iterdir()) == []


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    files = InstanceFiles(tmp_path)
    files.prepare()
    files.pending_dir.rmdir()
    files.pending_dir.write_text("not a directory")
    with pytest.raises(OSError):
        files.write("1.2", "1.2.3", (b"data",))
    assert list(files.incoming.iterdir()) == []


def test_prepare_drops_half_written_files_but_keeps_pending_ones(tmp_path: Path) -> None:
    files = InstanceFiles(tmp_path)
    files.prepare()
    (files.incoming / "half.tmp").write_bytes(b"half")
    pending = files.write("1.2", "1.2.3", (b"whole",))
    files.prepare()
    assert list(files.incoming.iterdir()) == []
    assert [p.path for p in files.pending_files()] == [pending.path]
