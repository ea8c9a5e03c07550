"""C-STORE throughput: dcmtk storescu -> hie and -> Orthanc, in the same run.

    .venv/bin/python bench/dicom_store.py [--instances 500] [--source FILE] [--rounds N]
                                          [--processes N] [--baseline CHECKOUT]

Makes N distinct copies of a CT instance (new SOP Instance UIDs, one study), then for each
receiver and for 1 and 4 parallel associations starts a fresh receiver (empty SQLite
index and storage dir), sends every file with ``storescu`` (``TCP_NODELAY=1``) and prints
instances/s. hie is a real ``hie dicom`` process (what ``hie serve`` starts) over a fresh
SQLite database and the real exchange; the bench also reports whether the ImagingStudy in
the shared record was current within 2 s after the last instance. Orthanc (Debian package
``orthanc``) runs from its own config on loopback with its SQLite index.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pydicom
from pydicom.uid import generate_uid

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


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


def wait_echo(port: int, aec: str, timeout: float = 120) -> None:
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


def run_hie(
    files: list[Path],
    study_uid: str,
    parallel: int,
    work: Path,
    processes: int,
    code: Path | None = None,
) -> tuple[float, str]:
    """A real ``hie dicom`` (the process ``hie serve`` starts) on a fresh SQLite database,
    with the shared record behind it; the ImagingStudy is read back through the exchange.
    ``code``: run the ``hie dicom`` of another checkout (an A/B against a baseline)."""
    from _harness import env_for, hie, services_for

    work.mkdir(parents=True)
    env = env_for(
        f"sqlite:///{work}/hie.db",
        work / "data",
        HIE_DICOM_AET="HIE",
        HIE_DICOM_PROCESSES=str(processes),
    )
    hie(env, "db", "upgrade")
    hie(env, "dicom", "ae", "add", "STORESCU", "--org", "Organization/bench")
    port = int(env["HIE_DICOM_PORT"])
    services = services_for(env)
    exchange = services.exchange
    log = (work / "dicom.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hie", "dicom"],
        env=baseline_env(env, code) if code else env,
        cwd=code,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_echo(port, "HIE")
        elapsed = send(port, "HIE", files, parallel)
        done_at = time.perf_counter()
        current = "no"
        while time.perf_counter() - done_at < 5.0:
            study = imaging_study(exchange, study_uid)
            if study is not None and study.get("numberOfInstances") == len(files):
                current = f"yes, {time.perf_counter() - done_at:.2f} s after the last instance"
                current += f" (version {study['meta']['versionId']})"
                break
            time.sleep(0.05)
        return elapsed, current
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
        services.close()


def baseline_env(env: dict[str, str], code: Path) -> dict[str, str]:
    """The baseline's own config (it may not know dicom.processes) and code."""
    out = {k: v for k, v in env.items() if k != "HIE_DICOM_PROCESSES"}
    return {**out, "HIE_CONFIG_DIR": str(code / "config"), "PYTHONPATH": str(code)}


def imaging_study(exchange: Any, study_uid: str) -> dict[str, Any] | None:
    from hie.context import RequestContext

    found: list[dict[str, Any]] = exchange.search_resources(
        RequestContext.system(actor="bench-check"),
        "ImagingStudy",
        [("identifier", f"urn:dicom:uid|urn:oid:{study_uid}")],
    )
    return found[0] if found else None


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
    parser.add_argument(
        "--processes",
        type=int,
        default=0,
        help="hie dicom listener processes (dicom.processes; 0: one per core)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="also run the hie dicom of this checkout (e.g. a `git archive` of main)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="samples of each receiver")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dicom-bench-") as tmp:
        work = Path(tmp)
        study_uid, files = make_copies(args.source, args.instances, work / "files")
        size = files[0].stat().st_size
        print(f"{len(files)} distinct instances of {size / 1024:.0f} KB ({args.source.name})")
        print(f"{'receiver':<10}{'associations':>14}{'instances/s':>14}  ImagingStudy current")
        results: dict[tuple[str, int], list[float]] = {}

        def record(label: str, parallel: int, seconds: float, note: str = "-") -> None:
            results.setdefault((label, parallel), []).append(len(files) / seconds)
            print(f"{label:<10}{parallel:>14}{len(files) / seconds:>14.1f}  {note}", flush=True)

        for n in range(args.rounds):
            for parallel in (1, 4):
                for nodelay, label in ((False, "Orthanc"), (True, "Orthanc+")):
                    where = work / f"{label}-{parallel}-{n}"
                    record(label, parallel, run_orthanc(files, parallel, where, nodelay))
                if args.baseline is not None:
                    seconds, current = run_hie(
                        files,
                        study_uid,
                        parallel,
                        work / f"base-{parallel}-{n}",
                        args.processes,
                        args.baseline.resolve(),
                    )
                    record("baseline", parallel, seconds, current)
                seconds, current = run_hie(
                    files, study_uid, parallel, work / f"hie-{parallel}-{n}", args.processes
                )
                record("hie", parallel, seconds, current)
        print("Orthanc: as packaged; Orthanc+: with TCP_NODELAY=1 in its environment as well")
        print(f"median of {args.rounds} round(s):")
        labels = ["Orthanc", "Orthanc+", *(["baseline"] if args.baseline else []), "hie"]
        for parallel in (1, 4):
            print(
                f"  {parallel} association(s): "
                + ", ".join(
                    f"{k} {statistics.median(results[(k, parallel)]):.1f}/s" for k in labels
                )
            )
            hie_rate = statistics.median(results[("hie", parallel)])
            for label in labels[:-1]:
                ratio = hie_rate / statistics.median(results[(label, parallel)])
                print(f"  hie/{label} with {parallel} association(s): {ratio:.2f}x")


if __name__ == "__main__":
    main()
