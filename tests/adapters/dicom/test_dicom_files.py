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
    files.prepare()  # a new spool (as a restarted process): the old one is an orphan
    assert list(files.incoming.iterdir()) == []
    assert [p.path.name for p in files.pending_files()] == [pending.path.name]
    assert [p.read_bytes() for p in files.pending_dir.iterdir()] == [b"whole"]
    assert [d.name for d in files.incoming_root.iterdir()] == [files.owner]


def test_a_live_spool_is_left_alone_and_a_dead_one_is_adopted(tmp_path: Path) -> None:
    # Two processes share the data dir: starting one never touches the other's files.
    first, second = InstanceFiles(tmp_path), InstanceFiles(tmp_path)
    first.prepare()
    (first.incoming / "writing.tmp").write_bytes(b"half")
    pending = first.write("1.2", "1.2.3", (b"acknowledged",))
    second.prepare()
    assert (first.incoming / "writing.tmp").exists()
    assert list(second.pending_files()) == []
    assert second.others_pending() == {pending.path}
    assert first.others_pending() == set()
    first.close()  # the first process ends (or dies): its lock is released
    assert second.others_pending() == set()
    third = InstanceFiles(tmp_path)
    third.prepare()
    assert [p.path.read_bytes() for p in third.pending_files()] == [b"acknowledged"]
    assert not first.incoming.exists()
    assert not first.pending_dir.exists()
    assert list(second.pending_files()) == []


def test_files_of_the_single_spool_layout_are_adopted(tmp_path: Path) -> None:
    files = InstanceFiles(tmp_path)
    files.pending_root.mkdir(parents=True)
    files.incoming_root.mkdir(parents=True)
    (files.pending_root / "1.2_1.2.3_00aa.dcm").write_bytes(b"old layout")
    (files.incoming_root / "00bb.tmp").write_bytes(b"half")
    files.prepare()
    assert [p.sop_uid for p in files.pending_files()] == ["1.2.3"]
    assert [d.name for d in files.incoming_root.iterdir()] == [files.owner]
