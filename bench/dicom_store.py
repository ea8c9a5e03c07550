"""C-STORE throughput: dcmtk storescu -> hie and -> Orthanc, in the same run.

    .venv/bin/python bench/dicom_store.py [--instances 500] [--source FILE]

Makes N distinct copies of a CT instance (new SOP Instance UIDs, one study), then for each
receiver and for 1 and 4 parallel associations starts a fresh receiver (empty SQLite
index and storage dir), sends every file with ``storescu`` (``TCP_NODELAY=1``) and prints
instances/s. For hie it also reports whether the ImagingStudy in the (in-memory) shared
record was current within 2 s after the last instance. Orthanc (Debian package
``orthanc``) runs from its own config on loopback with its SQLite index.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pydicom
from pydicom.uid import generate_uid
from sqlalchemy import Engine, create_engine, event

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.dicom.index import session_factory  # noqa: E402
from adapters.dicom.models import metadata  # noqa: E402
from adapters.dicom.service import DicomConfig, DicomService  # noqa: E402
from hie.context import RequestContext  # noqa: E402


class MemoryRecords:
    """Just enough of the exchange for the adapter: conditional writes, identifier search."""

    def __init__(self) -> None:
        self.resources: dict[tuple[str, str], dict[str, Any]] = {}
        self.versions: dict[tuple[str, str], int] = {}
        self.lock = threading.Lock()
        self.next_id = 0

    def _find(self, rtype: str, query: str) -> list[dict[str, Any]]:
        params = parse_qsl(query)
        out = []
        for (t, _), r in self.resources.items():
            if t != rtype:
                continue
            ok = True
            for _name, value in params:
                system, _, val = value.rpartition("|")
                ok = ok and any(
                    i.get("value") == val and (not system or i.get("system") == system)
                    for i in r.get("identifier", [])
                )
            if ok:
                out.append(r)
        return out

    def transaction(self, ctx: RequestContext, bundle: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            refs: dict[str, str] = {}
            for entry in bundle["entry"]:
                resource, request = dict(entry["resource"]), entry["request"]
                rtype = resource["resourceType"]
                if request["method"] == "POST":
                    found = self._find(rtype, request.get("ifNoneExist", ""))
                else:
                    found = self._find(rtype, request["url"].split("?", 1)[1])
                if found and request["method"] == "POST":
                    refs[entry["fullUrl"]] = f"{rtype}/{found[0]['id']}"
                    continue
                if found:
                    rid = found[0]["id"]
                else:
                    self.next_id += 1
                    rid = str(self.next_id)
                resource["id"] = rid
                refs[entry["fullUrl"]] = f"{rtype}/{rid}"
                text = json.dumps(resource)
                for old, new in refs.items():
                    text = text.replace(old, new)
                self.resources[(rtype, rid)] = json.loads(text)
                self.versions[(rtype, rid)] = self.versions.get((rtype, rid), 0) + 1
            return {"resourceType": "Bundle", "type": "transaction-response"}

    def search_resources(
        self, ctx: RequestContext, resource_type: str, params: list[tuple[str, str]]
    ) -> list[dict[str, Any]]:
        return self._find(resource_type, "&".join(f"{k}={v}" for k, v in params))

    def visible_study_uids(self, ctx: RequestContext, study_uids: Collection[str]) -> set[str]:
        return set(study_uids)


def sqlite_engine(path: Path) -> Engine:
    engine = create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _pragmas(conn: Any, _record: Any) -> None:
        cursor = conn.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=10000"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    metadata.create_all(engine)
    return engine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_copies(source: Path, count: int, out: Path) -> tuple[str, list[Path]]:
    ds = pydicom.dcmread(source)
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = n + 1
        path = out / f"{n:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return str(ds.StudyInstanceUID), paths


def send(port: int, aec: str, files: list[Path], parallel: int) -> float:
    env = {**os.environ, "TCP_NODELAY": "1"}
    chunks = [files[i::parallel] for i in range(parallel)]
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            ["storescu", "-aet", "STORESCU", "-aec", aec, "127.0.0.1", str(port), *map(str, c)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for c in chunks
    ]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"storescu failed: {err.decode()[-500:]}")
    return time.perf_counter() - start


def wait_echo(port: int, aec: str, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        probe = subprocess.run(
            ["echoscu", "-aet", "STORESCU", "-aec", aec, "127.0.0.1", str(port)],
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"no C-ECHO answer on port {port}")


def run_hie(files: list[Path], study_uid: str, parallel: int, work: Path) -> tuple[float, str]:
    work.mkdir(parents=True)
    records = MemoryRecords()
    engine = sqlite_engine(work / "hie.db")
    service = DicomService(
        DicomConfig(data_dir=work / "data", port=0, ae_title="HIE"),
        records,
        session_factory(engine),
    )
    service.registry.add("STORESCU", "Organization/bench")
    service.start()
    try:
        elapsed = send(service.address[1], "HIE", files, parallel)
        done_at = time.perf_counter()
        current = "no"
        while time.perf_counter() - done_at < 2.0:
            studies = [r for (t, _), r in records.resources.items() if t == "ImagingStudy"]
            if studies and studies[0]["numberOfInstances"] == len(files):
                current = f"yes, {time.perf_counter() - done_at:.2f} s after the last instance"
                current += f" ({records.versions[('ImagingStudy', studies[0]['id'])]} versions)"
                break
            time.sleep(0.02)
        assert studies
        assert studies[0]["identifier"][0]["value"].endswith(study_uid)
        return elapsed, current
    finally:
        service.stop()
        engine.dispose()


def run_orthanc(files: list[Path], parallel: int, work: Path, nodelay: bool) -> float:
    binary = shutil.which("Orthanc")
    if binary is None:
        raise RuntimeError("Orthanc is not installed (apt-get install orthanc)")
    work.mkdir(parents=True)
    port, http = free_port(), free_port()
    config = {
        "Name": "bench",
        "StorageDirectory": str(work / "storage"),
        "IndexDirectory": str(work / "index"),
        "StorageCompression": False,
        "DicomServerEnabled": True,
        "DicomAet": "ORTHANC",
        "DicomPort": port,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowEcho": True,
        "HttpPort": http,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [],
    }
    (work / "orthanc.json").write_text(json.dumps(config))
    proc = subprocess.Popen(
        [binary, str(work / "orthanc.json")],
        # Orthanc's DICOM layer is dcmtk, which reads TCP_NODELAY from the environment too.
        env={**os.environ, "TCP_NODELAY": "1" if nodelay else "0"},
        stdout=subprocess.DEVNULL,
        stderr=(work / "orthanc.log").open("w"),
    )
    try:
        wait_echo(port, "ORTHANC")
        return send(port, "ORTHANC", files, parallel)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument(
        "--source", type=Path, default=ROOT / "tests/fixtures/dicom/valid/CT_small.dcm"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dicom-bench-") as tmp:
        work = Path(tmp)
        study_uid, files = make_copies(args.source, args.instances, work / "files")
        size = files[0].stat().st_size
        print(f"{len(files)} distinct instances of {size / 1024:.0f} KB ({args.source.name})")
        print(f"{'receiver':<10}{'associations':>14}{'instances/s':>14}  ImagingStudy current")
        results: dict[tuple[str, int], float] = {}
        for parallel in (1, 4):
            for nodelay, label in ((False, "Orthanc"), (True, "Orthanc+")):
                seconds = run_orthanc(files, parallel, work / f"{label}-{parallel}", nodelay)
                results[(label, parallel)] = len(files) / seconds
                print(f"{label:<10}{parallel:>14}{len(files) / seconds:>14.1f}  -")
            seconds, current = run_hie(files, study_uid, parallel, work / f"hie-{parallel}")
            results[("hie", parallel)] = len(files) / seconds
            print(f"{'hie':<10}{parallel:>14}{len(files) / seconds:>14.1f}  {current}")
        print("Orthanc: as packaged; Orthanc+: with TCP_NODELAY=1 in its environment as well")
        for parallel in (1, 4):
            for label in ("Orthanc", "Orthanc+"):
                ratio = results[("hie", parallel)] / results[(label, parallel)]
                print(f"hie/{label} with {parallel} association(s): {ratio:.2f}x")


if __name__ == "__main__":
    main()
