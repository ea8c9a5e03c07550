from __future__ import annotations

from pathlib import Path

import pytest

from adapters.dicom.files import InstanceFiles


def test_write_is_atomic_and_named_freshly(tmp_path: Path) -> None:
    files = InstanceFiles(tmp_path)
    files.prepare()
    first = files.write("1.2", "1.2.3", (b"head", b"body"))
    second = files.write("1.2", "1.2.3", (b"other",))
    assert first != second
    assert files.read(first) == b"headbody"
    assert first.startswith("dicom/1.2/1.2.3.")
    assert list(files.incoming.iterdir()) == []


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    files = InstanceFiles(tmp_path)
    files.prepare()
    (files.root / "1.2").write_text("not a directory")
    with pytest.raises(OSError):
        files.write("1.2", "1.2.3", (b"data",))
    assert list(files.incoming.iterdir()) == []


def test_prepare_drops_leftovers_of_a_crash(tmp_path: Path) -> None:
    files = InstanceFiles(tmp_path)
    files.prepare()
    (files.incoming / "half.tmp").write_bytes(b"half")
    files.prepare()
    assert list(files.incoming.iterdir()) == []
