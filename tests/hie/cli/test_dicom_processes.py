"""``hie dicom`` with several processes on one port (SO_REUSEPORT): real dcmtk storescu
peers in parallel, the real exchange behind, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pydicom
import pytest
import sqlalchemy as sa
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from hie.app import build_services
from hie.context import RequestContext
from hie.settings import Settings
from tests.support import running_server, server_env

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


# -- supervision: a listener process that dies is started again ---------------------------


def _children(pid: int, marker: str) -> list[int]:
    """Live child processes of ``pid`` whose command line holds ``marker``."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z" and marker in cmdline:
            out.append(int(stat.parent.name))
    return out


def _wait_for(condition: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return value


def _peer_ports(pid: int) -> set[int]:
    """The remote ports of the established TCP connections process ``pid`` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "01" and fields[9] in inodes:
            ports.add(int(fields[2].split(":")[1], 16))
    return ports


class _Sender:
    """A pynetdicom storage SCU: copies of the CT instance with fresh UIDs, one study."""

    def __init__(self, study_uid: str) -> None:
        self.template = pydicom.dcmread(CT)
        self.template.StudyInstanceUID = study_uid
        self.template.SeriesInstanceUID = generate_uid()
        self.ae = AE(ae_title="STORESCU")
        self.ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
        self.acknowledged: list[str] = []

    def associate(self, port: int) -> Association:
        assoc = self.ae.associate("127.0.0.1", port, ae_title="HIE")
        assert assoc.is_established
        return assoc

    def on(self, port: int, pid: int, opened: list[Association]) -> Association:
        """An association served by process ``pid`` (the kernel picks the process by a
        hash of the client's port: open more until one lands there)."""
        for _ in range(64):
            assoc = self.associate(port)
            opened.append(assoc)
            transport = assoc.dul.socket
            assert transport is not None
            assert transport.socket is not None
            if transport.socket.getsockname()[1] in _peer_ports(pid):
                return assoc
        raise AssertionError(f"no association landed on process {pid}")

    def send(self, assoc: Association) -> bool:
        """Store one new instance; True once acknowledged with success."""
        ds = self.template.copy()
        ds.SOPInstanceUID = generate_uid()
        status = assoc.send_c_store(ds)
        if status and status.Status == 0x0000:
            self.acknowledged.append(str(ds.SOPInstanceUID))
            return True
        return False


def _close(assoc: Association) -> None:
    # pynetdicom leaves the socket of an association its peer aborted open.
    transport = assoc.dul.socket
    if transport is not None and transport.socket is not None:
        transport.socket.close()


def _indexed(db_url: str) -> set[str]:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return set(conn.scalars(sa.text("SELECT sop_uid FROM dicom_instance")))
    finally:
        engine.dispose()


def test_a_killed_worker_is_restarted_and_loses_nothing(db_url: str, tmp_path: Path) -> None:
    """SIGKILL a worker in the middle of an association: ``hie dicom`` starts a new one
    (new pid, logged), which stores instances again; every instance acknowledged with
    success, also by the dead worker, is indexed and in place; nothing half-written or
    pending is left."""
    env = server_env(db_url, tmp_path / "var", HIE_DICOM_PROCESSES="2")
    _hie(env, "dicom", "ae", "add", "STORESCU", "--org", ORG)
    port = int(env["HIE_DICOM_PORT"])
    data = tmp_path / "var" / "dicom"
    sender = _Sender(generate_uid())
    opened: list[Association] = []
    log = tmp_path / "dicom.log"
    with _dicom(env, log) as main:
        (worker,) = _wait_for(lambda: _children(main.pid, "--worker"))
        try:
            victim = sender.on(port, worker, opened)
            assert all(sender.send(victim) for _ in range(5))
            # Keep it busy, then kill the worker while instances are in flight.
            stop = threading.Event()

            def pump() -> None:
                while not stop.is_set() and sender.send(victim):
                    pass

            pumping = threading.Thread(target=pump)
            pumping.start()
            time.sleep(0.5)
            os.kill(worker, signal.SIGKILL)
            pumping.join(timeout=60)
            stop.set()
            # The association died with the worker (the client notices the reset soon).
            _wait_for(lambda: not victim.is_established, 30)
            new = _wait_for(lambda: [p for p in _children(main.pid, "--worker") if p != worker])
            assert main.poll() is None
            _wait_for(lambda: _listeners(port) == 2)
            # The new worker serves: instances stored on it and on the first process.
            on_new = sender.on(port, new[0], opened)
            assert all(sender.send(on_new) for _ in range(5))
            others = [a for a in opened if a.is_established and a is not on_new]
            assert all(sender.send(a) for a in others)
        finally:
            for assoc in opened:
                if assoc.is_established:
                    assoc.release()
                _close(assoc)
        # Everything acknowledged is indexed, including what the dead worker had
        # acknowledged but not indexed (the new worker adopts its spool).
        _wait_for(lambda: set(sender.acknowledged) <= _indexed(db_url), 30)
    assert len(sender.acknowledged) >= 15
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            paths = conn.scalars(sa.text("SELECT path FROM dicom_instance")).all()
    finally:
        engine.dispose()
    assert all((data / p).is_file() for p in paths)
    assert list((data / "dicom" / ".incoming").rglob("*.tmp")) == []
    assert list((data / "dicom" / ".pending").rglob("*.dcm")) == []
    text = log.read_text()
    assert f"child {worker} (dicom --worker --port {port}) was killed by SIGKILL" in text
    assert f"restarted dicom --worker --port {port} as pid {new[0]}" in text


def test_hie_serve_restarts_a_killed_dicom_listener(db_url: str, tmp_path: Path) -> None:
    env = server_env(db_url, tmp_path / "var", HIE_DICOM_PROCESSES="1")
    _hie(env, "db", "upgrade")
    _hie(env, "dicom", "ae", "add", "STORESCU", "--org", ORG)
    port = int(env["HIE_DICOM_PORT"])
    with running_server(env) as server:
        # hie serve is ready once HTTP answers; its DICOM listener may start later.
        (listener,) = _wait_for(lambda: _children(server.process.pid, "hie dicom"))
        _wait_for(lambda: _listeners(port) == 1, 180)
        os.kill(listener, signal.SIGKILL)
        (new,) = _wait_for(
            lambda: [p for p in _children(server.process.pid, "hie dicom") if p != listener], 180
        )
        _wait_for(lambda: _listeners(port) == 1, 180)
        echo = _run(["echoscu", "-aet", "STORESCU", "-aec", "HIE", "127.0.0.1", str(port)])
        assert echo.returncode == 0, echo.stderr
        sender = _Sender(generate_uid())
        assoc = sender.associate(port)
        try:
            assert sender.send(assoc)
        finally:
            assoc.release()
            _close(assoc)
        assert new != listener
        assert "was killed by SIGKILL" in server.log.read_text()
