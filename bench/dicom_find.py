"""STUDY-level C-FIND latency at 100,000 indexed instances.

    .venv/bin/python bench/dicom_find.py [--instances 100000] [--queries 500]
                                         [--database-url postgresql+psycopg://...]
                                         [--client-poll 0.0002]

Generates index rows directly (patients, studies, series, instances; no files), starts the
DICOM services on an ephemeral port and sends Study Root C-FIND queries over one
pynetdicom association: by PatientID, PatientName prefix wildcard, StudyDate (one day),
AccessionNumber, and a one-week StudyDate range with ModalitiesInStudy. Each asks for
the usual return keys including ModalitiesInStudy and NumberOfStudyRelatedInstances.
Prints p50/p99 per query kind and overall (time from request to final response).
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import random
import socket
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.dsutils import encode
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind  # type: ignore[attr-defined]
from sqlalchemy import Engine, create_engine, insert

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _harness import env_for, hie, services_for  # noqa: E402

from adapters.dicom.handlers import context_for  # noqa: E402
from adapters.dicom.index import session_factory  # noqa: E402
from adapters.dicom.models import (  # noqa: E402
    DicomInstance,
    DicomPatient,
    DicomSeries,
    DicomStudy,
)
from adapters.dicom.query import Root, from_identifier, to_identifier  # noqa: E402
from adapters.dicom.service import DicomConfig, DicomService  # noqa: E402

FAMILY = ["WANG", "LI", "ZHANG", "LIU", "CHEN", "YANG", "HUANG", "ZHAO", "WU", "ZHOU"]
SYLLABLES = [
    "WEI",
    "FANG",
    "NA",
    "XIU",
    "YING",
    "MIN",
    "JING",
    "LI",
    "QIANG",
    "LEI",
    "JUN",
    "YANG",
    "HUA",
    "PING",
    "GANG",
    "HONG",
    "MEI",
    "LAN",
    "JIE",
    "TAO",
    "BO",
    "HUI",
    "YUN",
    "XIA",
    "KAI",
    "LING",
    "FENG",
    "CHAO",
    "DAN",
    "XIN",
]
GIVEN = [a + b.lower() for a in SYLLABLES for b in SYLLABLES]
HANZI = {"WANG": "王", "LI": "李", "ZHANG": "张", "LIU": "刘", "CHEN": "陈", "YANG": "杨"}
MODALITIES = ["CT", "MR", "CR", "DX", "US"]
START = date(2015, 1, 1)


def generate(engine: Engine, instances: int, rng: random.Random) -> dict[str, list[str]]:
    per_series, per_study, per_patient = 5, 2, 5
    n_series = instances // per_series
    n_studies = n_series // per_study
    n_patients = max(1, n_studies // per_patient)
    patients, studies, series, rows = [], [], [], []
    for p in range(1, n_patients + 1):
        family, given = rng.choice(FAMILY), rng.choice(GIVEN)
        patients.append(
            {
                "id": p,
                "issuer": "Organization/bench",
                "patient_id": f"MRN{p:07d}",
                "name": f"{family}^{given}",
                "name_alphabetic": f"{family}^{given}",
                "name_ideographic": HANZI.get(family, ""),
                "name_phonetic": "",
                "birth_date": "19700101",
                "sex": rng.choice("MF"),
            }
        )
    for s in range(1, n_studies + 1):
        day = START + timedelta(days=rng.randrange(3650))
        studies.append(
            {
                "id": s,
                "patient_pk": rng.randrange(1, n_patients + 1),
                "study_uid": f"1.2.826.0.1.3680043.10.1.{s}",
                "study_date": day.strftime("%Y%m%d"),
                "study_time": f"{rng.randrange(24):02d}{rng.randrange(60):02d}00",
                "accession_number": f"A{s:08d}",
                "study_id": str(s),
                "description": "",
                "referring_physician": "",
                "organization": "Organization/bench",
                "calling_ae": "PACS",
                "revision": 1,
                "record_stale": False,
                "changed_at": 0.0,
                "stale_since": 0.0,
            }
        )
    for e in range(1, n_series + 1):
        series.append(
            {
                "id": e,
                "study_pk": (e - 1) // per_study + 1,
                "series_uid": f"1.2.826.0.1.3680043.10.2.{e}",
                "modality": rng.choice(MODALITIES),
                "series_number": (e - 1) % per_study + 1,
                "description": "",
                "body_part": "CHEST",
            }
        )
    for i in range(1, n_series * per_series + 1):
        series_pk = (i - 1) // per_series + 1
        rows.append(
            {
                "id": i,
                "series_pk": series_pk,
                "study_pk": (series_pk - 1) // per_study + 1,
                "sop_uid": f"1.2.826.0.1.3680043.10.3.{i}",
                "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
                "transfer_syntax_uid": "1.2.840.10008.1.2.1",
                "instance_number": (i - 1) % per_series + 1,
                "path": f"dicom/none/{i}.dcm",
                "size": 40000,
                "received_at": 0.0,
            }
        )
    with engine.begin() as conn:
        for model, values in (
            (DicomPatient, patients),
            (DicomStudy, studies),
            (DicomSeries, series),
            (DicomInstance, rows),
        ):
            for start in range(0, len(values), 10_000):
                conn.execute(insert(model), values[start : start + 10_000])
    return {
        "patient_ids": [p["patient_id"] for p in patients],
        "names": [p["name"] for p in patients],
        "dates": [s["study_date"] for s in studies],
        "accessions": [s["accession_number"] for s in studies],
    }


def query(kind: str, data: dict[str, list[str]], rng: random.Random) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    for keyword in (
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "PatientName",
        "PatientID",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedInstances",
    ):
        setattr(ds, keyword, "")
    if kind == "PatientID":
        ds.PatientID = rng.choice(data["patient_ids"])
    elif kind == "PatientName*":
        # a family name and the first syllable of the given name, as a clerk types it
        family, given = rng.choice(data["names"]).split("^")
        ds.PatientName = f"{family}^{given[:3]}*"
    elif kind == "StudyDate":
        ds.StudyDate = rng.choice(data["dates"])
    elif kind == "AccessionNumber":
        ds.AccessionNumber = rng.choice(data["accessions"])
    else:
        first = date.fromisoformat(
            (d := rng.choice(data["dates"]))[:4] + "-" + d[4:6] + "-" + d[6:]
        )
        last = first + timedelta(days=6)
        ds.StudyDate = f"{first:%Y%m%d}-{last:%Y%m%d}"
        ds.ModalitiesInStudy = "CT"
    return ds


KINDS = ["PatientID", "PatientName*", "StudyDate", "AccessionNumber", "week+CT"]


def _client(
    address: tuple[str, int], plan: list[tuple[str, Dataset]], poll: float | None
) -> tuple[dict[str, list[float]], dict[str, int]]:
    ae = AE(ae_title="FINDSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate(*address, ae_title="HIE")
    if poll is not None:
        # pynetdicom's reader sleeps 1 ms whenever its socket is idle, so a client built
        # on it waits up to 1 ms for every pending response (findscu blocks in read()).
        assoc.dul._run_loop_delay = poll
    # Without TCP_NODELAY each request waits ~40 ms for a delayed ACK before its data set
    # goes out (what findscu gets from TCP_NODELAY=1).
    assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    timings: dict[str, list[float]] = {k: [] for k in KINDS}
    matches: dict[str, int] = dict.fromkeys(KINDS, 0)
    try:
        for kind, identifier in plan:
            start = time.perf_counter()
            for status, _ in assoc.send_c_find(
                identifier, StudyRootQueryRetrieveInformationModelFind
            ):
                if status.Status == 0xFF00:
                    matches[kind] += 1
                elif status.Status != 0x0000:
                    raise RuntimeError(f"C-FIND failed: 0x{status.Status:04X}")
            timings[kind].append((time.perf_counter() - start) * 1000)
    finally:
        assoc.release()
    return timings, matches


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--database-url", default="")
    parser.add_argument(
        "--client-poll",
        type=float,
        default=0.0002,
        help="the pynetdicom client's idle socket poll in seconds (its default: 0.001)",
    )
    args = parser.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="dicom-find-") as tmp:
        # The exchange's own database and migrations; the consent filter asks the real
        # exchange which studies the caller may see.
        url = args.database_url or f"sqlite:///{tmp}/hie.db"
        env = env_for(url, Path(tmp) / "data")
        if args.database_url:
            reset = create_engine(url)
            with reset.begin() as conn:
                conn.exec_driver_sql("DROP SCHEMA IF EXISTS public CASCADE")
                conn.exec_driver_sql("CREATE SCHEMA public")
            reset.dispose()
        hie(env, "db", "upgrade")
        services = services_for(env)
        engine = services.engine
        started = time.perf_counter()
        data = generate(engine, args.instances, rng)
        print(
            f"{args.instances} instances indexed in {time.perf_counter() - started:.1f} s "
            f"({engine.dialect.name})"
        )
        service = DicomService(
            DicomConfig(data_dir=Path(tmp) / "data", port=0),
            services.exchange,
            session_factory(engine),
        )
        service.registry.add("FINDSCU", "Organization/bench")
        service.start()
        # The server's own work first: parse, match, consent filter, derive, build.
        plan = [(KINDS[n % len(KINDS)], query(KINDS[n % len(KINDS)], data, rng))
                for n in range(args.queries)]  # fmt: skip
        server: dict[str, list[float]] = {k: [] for k in KINDS}
        ctx = context_for("FINDSCU", service.registry)
        for kind, identifier in plan:
            start = time.perf_counter()
            parsed = from_identifier(identifier, Root.STUDY)
            visible = functools.partial(services.exchange.visible_study_uids, ctx)
            for match in service.engine.find(parsed, visible):
                encode(to_identifier(match, parsed, implicit_vr=True), True, True)
            server[kind].append((time.perf_counter() - start) * 1000)
        # Then over the network, from a client in another process (as findscu would be):
        # in this process the client's decoding would compete with the server for the GIL.
        # One association per kind, so that this process's CPU time (its threads are the
        # server's alone meanwhile) can be told per kind: on a busy machine the latency
        # swings with the other load, the CPU a query costs much less.
        timings: dict[str, list[float]] = {}
        matches: dict[str, int] = {}
        cpu: dict[str, float] = {}
        try:
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                for kind in KINDS:
                    mine = [(k, q) for k, q in plan if k == kind]
                    before = time.process_time()
                    got, found = pool.apply(_client, (service.address, mine, args.client_poll))
                    cpu[kind] = (time.process_time() - before) * 1000 / max(len(mine), 1)
                    timings[kind], matches[kind] = got[kind], found[kind]
        finally:
            service.stop()
            services.close()
        print(
            "end to end over pynetdicom (request to final response); server = query work only;"
            " server CPU/q = the serving process's CPU time per query over the network"
        )
        print(
            f"{'query':<18}{'n':>5}{'matches/q':>11}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'server p50':>12}{'server p99':>12}{'server CPU/q':>14}"
        )
        everything, work = [], []
        for kind in KINDS:
            values, own = timings[kind], server[kind]
            everything += values
            work += own
            print(
                f"{kind:<18}{len(values):>5}{matches[kind] / max(len(values), 1):>11.1f}"
                f"{statistics.median(values):>9.1f}{percentile(values, 99):>9.1f}"
                f"{statistics.median(own):>12.1f}{percentile(own, 99):>12.1f}{cpu[kind]:>14.1f}"
            )
        print(
            f"{'all':<18}{len(everything):>5}{'':>11}"
            f"{statistics.median(everything):>9.1f}{percentile(everything, 99):>9.1f}"
            f"{statistics.median(work):>12.1f}{percentile(work, 99):>12.1f}"
        )


if __name__ == "__main__":
    main()
