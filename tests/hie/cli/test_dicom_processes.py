"""``hie dicom`` with several processes on one port (SO_REUSEPORT): real dcmtk storescu
peers in parallel, the real exchange behind, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pydicom
import pytest
import sqlalchemy as sa
from pydicom.uid import generate_uid

from hie.app import build_services
from hie.context import RequestContext
from hie.settings import Settings
from tests.support import server_env

CT = Path(__file__).parents[2] / "fixtures" / "dicom" / "valid" / "CT_small.dcm"
ORG = "Organization/hosp-a"


def _hie(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "hie", *args], env=env, check=True, capture_output=True, text=True
    )
    return done.stdout


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False, env=env)


def _listeners(port: int) -> int:
    """Sockets listening on ``port`` (state 0A in /proc/net/tcp)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":
            count += 1
    return count


def _copies(out: Path, count: int) -> tuple[str, list[Path]]:
    ds = pydicom.dcmread(CT)
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    out.mkdir()
    paths = []
    for n in range(count):
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = n + 1
        path = out / f"{n:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return str(ds.StudyInstanceUID), paths


@contextlib.contextmanager
def _dicom(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hie", "dicom"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        port = env["HIE_DICOM_PORT"]
        deadline = time.monotonic() + 60
        while _listeners(int(port)) < int(env["HIE_DICOM_PROCESSES"]):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.mark.parametrize("policy", ["keep-first", "overwrite"])
def test_several_processes_share_the_port_and_the_record(
    db_url: str, tmp_path: Path, policy: str
) -> None:
    if shutil.which("storescu") is None:
        pytest.fail("dcmtk is not installed (apt-get install dcmtk)")
    env = server_env(
        db_url,
        tmp_path / "var",
        HIE_DICOM_PROCESSES="2",
        HIE_DICOM_DUPLICATE_POLICY=policy,
    )
    _hie(env, "dicom", "ae", "add", "STORESCU", "--org", ORG)
    study_uid, files = _copies(tmp_path / "files", 40)
    # Every association sends its own share and re-sends a few of the others' instances.
    chunks = [files[i::4] + files[(i + 1) % 4 :: 4][:3] for i in range(4)]
    with _dicom(env, tmp_path / "dicom.log"):
        assert _listeners(int(env["HIE_DICOM_PORT"])) == 2
        send_env = {**env, "TCP_NODELAY": "1"}
        # Several rounds: the kernel spreads connections by a hash of the peer's port.
        for _ in range(2):
            with ThreadPoolExecutor(4) as pool:
                done = list(
                    pool.map(
                        lambda chunk: _run(
                            [
                                "storescu",
                                "-aet",
                                "STORESCU",
                                "-aec",
                                "HIE",
                                "127.0.0.1",
                                env["HIE_DICOM_PORT"],
                                *map(str, chunk),
                            ],
                            send_env,
                        ),
                        chunks,
                    )
                )
            assert all(d.returncode == 0 for d in done), [d.stderr[-500:] for d in done]
        study = _wait_for_study(env, study_uid, 40)
        # Both processes took associations: each has a spool of its own.
        spools = list((tmp_path / "var" / "dicom" / "dicom" / ".owners").glob("*.lock"))
        assert len(spools) == 2
        # A C-FIND on any association sees everything acknowledged on the others.
        found = _run(
            [
                "findscu",
                "-S",
                "-aet",
                "STORESCU",
                "-aec",
                "HIE",
                "-k",
                "QueryRetrieveLevel=STUDY",
                "-k",
                f"StudyInstanceUID={study_uid}",
                "-k",
                "NumberOfStudyRelatedInstances",
                "127.0.0.1",
                env["HIE_DICOM_PORT"],
            ]
        )
        assert "[40]" in found.stdout + found.stderr
    assert study["numberOfInstances"] == 40
    assert len(study["series"][0]["instance"]) == 40
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT count(*) FROM dicom_instance")) == 40
            paths = conn.scalars(sa.text("SELECT path FROM dicom_instance")).all()
    finally:
        engine.dispose()
    data = tmp_path / "var" / "dicom"
    # No duplicate rows or files; every row points at a file; nothing left pending.
    stored = sorted(p.relative_to(data).as_posix() for p in (data / "dicom").glob("1*/*.dcm"))
    assert stored == sorted(paths)
    assert list((data / "dicom" / ".pending").rglob("*.dcm")) == []


def _wait_for_study(env: dict[str, str], study_uid: str, instances: int) -> dict[str, Any]:
    settings = Settings().replace(
        database__url=env["HIE_DATABASE_URL"], data__dir=env["HIE_DATA_DIR"]
    )
    services = build_services(settings)
    try:
        deadline = time.monotonic() + 10
        while True:
            found = services.exchange.search_resources(
                RequestContext.system(actor="test"),
                "ImagingStudy",
                [("identifier", f"urn:dicom:uid|urn:oid:{study_uid}")],
            )
            assert len(found) <= 1  # never a duplicate ImagingStudy
            if found and found[0].get("numberOfInstances") == instances:
                return found[0]
            assert time.monotonic() < deadline, found
            time.sleep(0.1)
    finally:
        services.close()
