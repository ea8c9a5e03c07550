"""The attribute index, the registry and matching, on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import Engine, func, select

from adapters.dicom.files import InstanceFiles
from adapters.dicom.index import DicomIndex, DuplicatePolicy, Source, session_factory
from adapters.dicom.ingest import Ingest
from adapters.dicom.models import DicomInstance, DicomPatient, DicomStudy
from adapters.dicom.query import InvalidQuery, Level, QueryEngine, query_from_params
from adapters.dicom.registry import AeRegistry
from tests.adapters.dicom.dicom_support import FIXTURES, VALID, file_info

SOURCE = Source("PACS1", "Organization/hosp-a")


def make_ingest(
    db: Engine, tmp_path: Path, policy: DuplicatePolicy = DuplicatePolicy.KEEP_FIRST
) -> Ingest:
    files = InstanceFiles(tmp_path / "data")
    files.prepare()
    return Ingest(files, DicomIndex(session_factory(db)), policy=policy)


def store(ingest: Ingest, path: Path, source: Source = SOURCE, sop_uid: str | None = None) -> int:
    sop_class, sop, ts, _, body = file_info(path)
    return ingest.store(
        sop_class_uid=sop_class,
        sop_instance_uid=sop_uid or sop,
        transfer_syntax_uid=ts,
        dataset=body,
        source=source,
    ).status


def count(db: Engine, model: type) -> int:
    with session_factory(db)() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_duplicate_policies(db: Engine, tmp_path: Path) -> None:
    keep = make_ingest(db, tmp_path)
    assert store(keep, FIXTURES / "valid" / "MR_small.dcm") == 0
    assert store(keep, FIXTURES / "valid" / "MR_small_RLE.dcm") == 0
    with session_factory(db)() as session:
        assert session.scalars(select(DicomInstance.transfer_syntax_uid)).all() == [
            "1.2.840.10008.1.2.1"
        ]
    overwrite = make_ingest(db, tmp_path, DuplicatePolicy.OVERWRITE)
    assert store(overwrite, FIXTURES / "valid" / "MR_small_RLE.dcm") == 0
    with session_factory(db)() as session:
        assert session.scalars(select(DicomInstance.transfer_syntax_uid)).all() == [
            "1.2.840.10008.1.2.5"
        ]
    assert len(list((tmp_path / "data" / "dicom").rglob("*.dcm"))) == 1


def test_same_mrn_from_two_organisations_is_two_patients(db: Engine, tmp_path: Path) -> None:
    ingest = make_ingest(db, tmp_path)
    store(ingest, FIXTURES / "valid" / "MR_small.dcm")
    copy = tmp_path / "copy.dcm"
    ds = pydicom.dcmread(FIXTURES / "valid" / "MR_small.dcm")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.3.4.5.7", "1.2.3.4.5.8"
    ds.save_as(copy, enforce_file_format=True)
    store(ingest, copy, Source("PACS2", "Organization/hosp-b"))
    store(ingest, FIXTURES / "valid" / "MR_small_RLE.dcm", Source("PACS3", "Organization/hosp-c"))
    store(ingest, FIXTURES / "valid" / "CT_small.dcm", Source("ROGUE", None))
    with session_factory(db)() as session:
        rows = {
            tuple(r) for r in session.execute(select(DicomPatient.issuer, DicomPatient.patient_id))
        }
    # hosp-c re-sent an instance hosp-a had sent: kept, and no patient row for it
    assert rows == {
        ("Organization/hosp-a", "4MR1"),
        ("Organization/hosp-b", "4MR1"),
        ("ae:ROGUE", "1CT1"),
    }


def test_concurrent_instances_of_one_study(db: Engine, tmp_path: Path) -> None:
    ingest = make_ingest(db, tmp_path)
    errors: list[BaseException] = []

    # 24 distinct instances of one study from 6 threads at once
    import pydicom
    from pydicom.uid import generate_uid

    src = pydicom.dcmread(FIXTURES / "valid" / "CT_small.dcm")
    bodies = []
    for _ in range(24):
        src.SOPInstanceUID = generate_uid()
        from io import BytesIO

        buffer = BytesIO()
        src.save_as(buffer, enforce_file_format=True)
        bodies.append((str(src.SOPInstanceUID), buffer.getvalue()))
    from tests.adapters.dicom.dicom_support import split_part10

    def send(chunk: list[tuple[str, bytes]]) -> None:
        try:
            for sop, data in chunk:
                status = ingest.store(
                    sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                    sop_instance_uid=sop,
                    transfer_syntax_uid="1.2.840.10008.1.2.1",
                    dataset=split_part10(data)[1],
                    source=SOURCE,
                ).status
                assert status == 0
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(bodies[i::6],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert count(db, DicomInstance) == 24
    assert count(db, DicomStudy) == 1
    assert count(db, DicomPatient) == 1


def test_instance_uid_must_match_the_request(db: Engine, tmp_path: Path) -> None:
    ingest = make_ingest(db, tmp_path)
    assert store(ingest, FIXTURES / "valid" / "CT_small.dcm", sop_uid="1.2.3.4") == 0xA900
    assert count(db, DicomInstance) == 0


def test_sync_bookkeeping(db: Engine, tmp_path: Path) -> None:
    now = [1000.0]
    index = DicomIndex(session_factory(db), clock=lambda: now[0])
    files = InstanceFiles(tmp_path / "data")
    files.prepare()
    ingest = Ingest(files, index)
    store(ingest, FIXTURES / "valid" / "CT_small.dcm")
    study = file_info(FIXTURES / "valid" / "CT_small.dcm")[3]
    assert index.due_studies(quiet_since=999.0, waiting_since=999.0) == []
    assert index.due_studies(quiet_since=1000.0, waiting_since=0.0) == [study]
    tree = index.study_tree(study)
    assert tree is not None
    revision = tree.study.revision
    now[0] = 1001.0
    store(ingest, FIXTURES / "valid" / "CT_small.dcm", sop_uid=None)  # kept: no new revision
    assert index.mark_synced(study, revision)
    assert index.stale_count() == 0


def test_registry(db: Engine) -> None:
    registry = AeRegistry(session_factory(db))
    registry.add("PACS1", "Organization/hosp-a")
    registry.add("VIEWER", "Organization/hosp-b", "10.0.0.5", 104)
    registry.add("PACS1", "Organization/hosp-c", "10.0.0.6", 11112)  # re-register
    assert registry.get("PACS1") is not None
    assert registry.get("PACS1").organization == "Organization/hosp-c"  # type: ignore[union-attr]
    assert registry.get("VIEWER").is_move_destination  # type: ignore[union-attr]
    assert [a.ae_title for a in registry.all()] == ["PACS1", "VIEWER"]
    assert registry.remove("PACS1")
    assert registry.get("PACS1") is None
    for bad in [
        ("", "Organization/x"),
        ("A\\B", "Organization/x"),
        ("TOO-LONG-AE-TITLE-X", "Organization/x"),
        ("OK", "Patient/1"),
    ]:
        with pytest.raises(ValueError):
            registry.add(*bad)
    with pytest.raises(ValueError):
        registry.add("HALF", "Organization/x", host="h")


@pytest.fixture
def engine(db: Engine, tmp_path: Path) -> QueryEngine:
    ingest = make_ingest(db, tmp_path)
    for path in VALID:
        assert store(ingest, path) == 0
    return QueryEngine(session_factory(db))


def everyone(uids: object) -> set[str]:
    return set(uids)  # type: ignore[call-overload]


def found(engine: QueryEngine, level: Level, **params: str) -> list[str]:
    query = query_from_params(level, list(params.items()))
    out = []
    for match in engine.find(query, everyone):
        row = {Level.STUDY: match.study, Level.SERIES: match.series, Level.IMAGE: match.instance}[
            level
        ]
        out.append(
            getattr(row, {"STUDY": "study_uid", "SERIES": "series_uid", "IMAGE": "sop_uid"}[level])
        )
    return out


def test_matching_is_the_same_on_every_database(engine: QueryEngine) -> None:
    assert len(found(engine, Level.STUDY, PatientName="compressedsamples*")) == 5
    assert len(found(engine, Level.STUDY, PatientName="COMPRESSEDSAMPLES^?R1")) == 1
    assert len(found(engine, Level.STUDY, PatientName="*")) == len(found(engine, Level.STUDY))
    assert found(engine, Level.STUDY, PatientID="1CT1") == [
        "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
    ]
    assert found(engine, Level.STUDY, PatientID="1ct1") == []  # exact match is case-sensitive
    assert len(found(engine, Level.STUDY, StudyDate="20040826")) == 4
    assert len(found(engine, Level.STUDY, StudyDate="20040826", StudyTime="185059")) == 4
    assert len(found(engine, Level.STUDY, StudyTime="1850-1851")) == 4
    assert len(found(engine, Level.STUDY, StudyTime="-0800")) >= 1
    assert len(found(engine, Level.SERIES, Modality="MR\\CT")) == 3
    assert len(found(engine, Level.STUDY, ModalitiesInStudy="US")) == 3
    assert len(found(engine, Level.IMAGE, InstanceNumber="3")) == 2
    assert found(engine, Level.STUDY, AccessionNumber="FUJI*") == [
        file_info(FIXTURES / "valid" / "RG3_J2KI.dcm")[3]
    ]
    assert found(engine, Level.STUDY, PatientName="100%") == []  # % and _ are literal
    assert len(found(engine, Level.STUDY, PatientName="王^小?")) == 2
    with pytest.raises(InvalidQuery):
        found(engine, Level.STUDY, SOPInstanceUID="1.2")
    with pytest.raises(InvalidQuery):
        found(engine, Level.STUDY, StudyDate="2004-13")


def test_paging_after_consent(engine: QueryEngine) -> None:
    everything = found(engine, Level.STUDY)
    hidden = set(everything[:3])
    query = query_from_params(Level.STUDY, [])
    query.limit, query.offset = 5, 0
    page = engine.find(query, lambda uids: {u for u in uids if u not in hidden})
    assert [m.study.study_uid for m in page if m.study] == everything[3:8]
