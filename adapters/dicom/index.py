"""Writing the attribute index, and the bookkeeping of the debounced ImagingStudy sync.

One transaction per batch of instances (the indexer's). Rows are found first and inserted
only when missing (``INSERT .. ON CONFLICT DO NOTHING``), so concurrent associations and
processes sending the same study never fail on a duplicate key; a lost race re-reads the
winner's row.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, cast

from sqlalchemy import Engine, Table, case, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from adapters.dicom.header import InstanceHeader
from adapters.dicom.models import DicomInstance, DicomPatient, DicomSeries, DicomStudy


class DuplicatePolicy(StrEnum):
    """What a re-sent SOP Instance UID does. Either way the sender gets success."""

    KEEP_FIRST = "keep-first"
    OVERWRITE = "overwrite"


@dataclass(frozen=True, slots=True)
class Recorded:
    outcome: Literal["created", "replaced", "kept"]
    old_path: str | None = None


@dataclass(frozen=True, slots=True)
class Source:
    """Who sent an instance: the calling AE and the organisation it is registered to."""

    calling_ae: str
    organization: str | None

    @property
    def issuer(self) -> str:
        """Whose MRN the PatientID is: the organisation, else the unregistered AE."""
        return self.organization or f"ae:{self.calling_ae.strip()}"


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored file to index."""

    header: InstanceHeader
    source: Source
    transfer_syntax_uid: str
    path: str
    size: int


@dataclass
class StudyTree:
    """One study with everything under it, as the ImagingStudy sync needs it."""

    patient: DicomPatient
    study: DicomStudy
    series: list[tuple[DicomSeries, list[DicomInstance]]] = field(default_factory=list)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def _insert(session: Session, model: type[Any] | Table) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model)
    if dialect == "sqlite":
        return sqlite.insert(model)
    raise NotImplementedError(f"database {dialect!r} is not supported")


_RETRIES = 5
_I = cast(Table, DicomInstance.__table__)  # Core: no ORM bookkeeping per row


@dataclass(frozen=True, slots=True)
class _Row:
    id: int
    path: str
    study_pk: int


_PK_CACHE_SIZE = 100_000


class DicomIndex:
    def __init__(
        self, sessions: sessionmaker[Session], clock: Callable[[], float] = time.time
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        # Primary keys of committed patient/study/series rows, which never change: most
        # instances of a study then need no lookups at all.
        self._pks: dict[tuple[str, ...], int] = {}

    def instance_path(self, sop_uid: str) -> str | None:
        with self.sessions() as session:
            return session.scalar(
                select(DicomInstance.path).where(DicomInstance.sop_uid == sop_uid)
            )

    def record(
        self,
        header: InstanceHeader,
        *,
        source: Source,
        transfer_syntax_uid: str,
        path: str,
        size: int,
        policy: DuplicatePolicy,
    ) -> Recorded:
        """Index one stored file (see :meth:`record_many`)."""
        entry = Entry(header, source, transfer_syntax_uid, path, size)
        return self.record_many([entry], policy)[0]

    def record_many(self, entries: list[Entry], policy: DuplicatePolicy) -> list[Recorded]:
        """Index stored files in one transaction, in order. SQLite lock contention is
        retried; other errors propagate and nothing is recorded."""
        for attempt in range(_RETRIES):
            created: dict[tuple[str, ...], int] = {}
            try:
                with self.sessions.begin() as session:
                    out = self._record_batch(session, entries, policy, created)
                if len(self._pks) > _PK_CACHE_SIZE:
                    self._pks.clear()
                self._pks.update(created)
                return out
            except OperationalError as exc:
                if "locked" not in str(exc) or attempt == _RETRIES - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def _existing(self, session: Session, sop_uids: Collection[str]) -> dict[str, _Row]:
        out: dict[str, _Row] = {}
        uids = list(sop_uids)
        for start in range(0, len(uids), 500):
            rows = session.execute(
                select(_I.c.sop_uid, _I.c.id, _I.c.path, _I.c.study_pk).where(
                    _I.c.sop_uid.in_(uids[start : start + 500])
                )
            )
            out.update({r[0]: _Row(int(r[1]), str(r[2]), int(r[3])) for r in rows})
        return out

    def _record_batch(
        self,
        session: Session,
        entries: list[Entry],
        policy: DuplicatePolicy,
        created: dict[tuple[str, ...], int],
    ) -> list[Recorded]:
        """One SELECT for the batch's SOP UIDs, one multi-row INSERT, one UPDATE per
        touched study: the per-instance cost is building a dict, not a round trip."""
        now = self.clock()
        keep_first = policy is DuplicatePolicy.KEEP_FIRST
        existing = self._existing(session, {e.header.sop_instance_uid for e in entries})
        out: list[Recorded] = []
        inserts: dict[str, dict[str, Any]] = {}  # by SOP UID, in arrival order
        updates: list[tuple[int, dict[str, Any]]] = []
        stale: dict[int, Source] = {}
        for e in entries:
            h = e.header
            sop = h.sop_instance_uid
            found = existing.get(sop)
            if keep_first and (found is not None or sop in inserts):
                out.append(Recorded("kept"))
                continue
            study_pk, series_pk = self._parents(session, created, h, e.source)
            values = {
                "series_pk": series_pk,
                "study_pk": study_pk,
                "sop_uid": sop,
                "sop_class_uid": h.sop_class_uid,
                "transfer_syntax_uid": e.transfer_syntax_uid,
                "instance_number": h.instance_number,
                "number_of_frames": h.number_of_frames,
                "rows": h.rows,
                "columns": h.columns,
                "path": e.path,
                "size": e.size,
                "received_at": now,
            }
            stale[study_pk] = e.source
            if sop in inserts:  # overwrite: a re-send within this batch
                out.append(Recorded("replaced", inserts[sop]["path"]))
                inserts[sop] = values
            elif found is None:
                out.append(Recorded("created"))
                inserts[sop] = values
            else:
                out.append(Recorded("replaced", found.path))
                updates.append((found.id, values))
                existing[sop] = _Row(found.id, e.path, study_pk)
                if found.study_pk != study_pk:
                    stale.setdefault(found.study_pk, e.source)
        if inserts:
            session.execute(
                _insert(session, _I).on_conflict_do_nothing(index_elements=["sop_uid"]),
                list(inserts.values()),
            )
            # Another process may have inserted one of these SOP UIDs since the SELECT.
            won = self._existing(session, inserts)
            lost = {sop for sop, row in won.items() if row.path != inserts[sop]["path"]}
            if lost:
                self._settle_lost(session, entries, out, inserts, won, lost, keep_first)
        for row_id, values in updates:
            session.execute(update(_I).where(_I.c.id == row_id).values(**values))
        for study_pk, source in stale.items():
            self._mark_stale(session, study_pk, now, source)
        return out

    def _settle_lost(
        self,
        session: Session,
        entries: list[Entry],
        out: list[Recorded],
        inserts: dict[str, dict[str, Any]],
        won: dict[str, _Row],
        lost: set[str],
        keep_first: bool,
    ) -> None:
        """SOP UIDs another process indexed between our SELECT and INSERT: kept, or
        (overwrite) written over the winner's row."""
        for n, e in enumerate(entries):
            sop = e.header.sop_instance_uid
            if sop not in lost or out[n].outcome == "kept":
                continue
            if inserts[sop]["path"] != e.path:
                continue  # replaced within the batch by a later entry
            if keep_first:
                out[n] = Recorded("kept")
            else:
                winner = won[sop]
                session.execute(update(_I).where(_I.c.id == winner.id).values(**inserts[sop]))
                out[n] = Recorded("replaced", winner.path)
                if winner.study_pk != inserts[sop]["study_pk"]:
                    self._mark_stale(session, winner.study_pk, self.clock(), e.source)

    def _parents(
        self,
        session: Session,
        created: dict[tuple[str, ...], int],
        h: InstanceHeader,
        source: Source,
    ) -> tuple[int, int]:
        patient_pk = self._get_or_insert(
            session,
            created,
            ("patient", source.issuer, h.patient_id),
            DicomPatient,
            lambda: (
                (DicomPatient.issuer == source.issuer) & (DicomPatient.patient_id == h.patient_id)
            ),
            ["issuer", "patient_id"],
            {
                "issuer": source.issuer,
                "patient_id": h.patient_id,
                "name": h.patient_name,
                "name_alphabetic": h.name_alphabetic,
                "name_ideographic": h.name_ideographic,
                "name_phonetic": h.name_phonetic,
                "birth_date": h.birth_date,
                "sex": h.sex,
            },
        )
        study_pk = self._get_or_insert(
            session,
            created,
            ("study", h.study_uid),
            DicomStudy,
            lambda: DicomStudy.study_uid == h.study_uid,
            ["study_uid"],
            {
                "patient_pk": patient_pk,
                "study_uid": h.study_uid,
                "study_date": h.study_date,
                "study_time": h.study_time,
                "accession_number": h.accession_number,
                "study_id": h.study_id,
                "description": h.study_description,
                "referring_physician": h.referring_physician,
                "timezone_offset": h.timezone_offset,
                "organization": source.organization,
                "calling_ae": source.calling_ae.strip(),
            },
        )
        series_pk = self._get_or_insert(
            session,
            created,
            ("series", h.series_uid),
            DicomSeries,
            lambda: DicomSeries.series_uid == h.series_uid,
            ["series_uid"],
            {
                "study_pk": study_pk,
                "series_uid": h.series_uid,
                "modality": h.modality,
                "series_number": h.series_number,
                "description": h.series_description,
                "body_part": h.body_part,
                "series_date": h.series_date,
                "series_time": h.series_time,
            },
        )
        return study_pk, series_pk

    def _get_or_insert(
        self,
        session: Session,
        created: dict[tuple[str, ...], int],
        cache_key: tuple[str, ...],
        model: type[Any],
        where: Callable[[], Any],
        keys: list[str],
        values: dict[str, Any],
    ) -> int:
        cached = created.get(cache_key) or self._pks.get(cache_key)
        if cached is not None:
            return cached  # the usual case: no SQL expression built at all
        pk = session.scalar(select(model.id).where(where()))
        if pk is None:
            session.execute(
                _insert(session, model).values(**values).on_conflict_do_nothing(index_elements=keys)
            )
            pk = session.scalar(select(model.id).where(where()))
        created[cache_key] = int(pk or 0)
        return int(pk or 0)

    @staticmethod
    def _mark_stale(session: Session, study_pk: int, now: float, source: Source) -> None:
        changes: dict[str, Any] = {
            "revision": DicomStudy.revision + 1,
            "record_stale": True,
            "changed_at": now,
            "stale_since": case((DicomStudy.record_stale, DicomStudy.stale_since), else_=now),
            "calling_ae": source.calling_ae.strip(),
        }
        if source.organization:
            changes["organization"] = source.organization
        session.execute(update(DicomStudy).where(DicomStudy.id == study_pk).values(**changes))

    # -- the ImagingStudy sync's bookkeeping -------------------------------------------

    def due_studies(
        self, *, quiet_since: float, waiting_since: float, limit: int = 50
    ) -> list[str]:
        """Stale studies whose last instance came before ``quiet_since``, or that have
        waited since before ``waiting_since`` (a study that never goes quiet)."""
        with self.sessions() as session:
            rows = session.scalars(
                select(DicomStudy.study_uid)
                .where(DicomStudy.record_stale.is_(True))
                .where(
                    (DicomStudy.changed_at <= quiet_since)
                    | (DicomStudy.stale_since <= waiting_since)
                )
                .order_by(DicomStudy.stale_since)
                .limit(limit)
            )
            return list(rows)

    def stale_count(self) -> int:
        with self.sessions() as session:
            return len(
                session.scalars(
                    select(DicomStudy.id).where(DicomStudy.record_stale.is_(True))
                ).all()
            )

    def study_tree(self, study_uid: str) -> StudyTree | None:
        with self.sessions() as session:
            study = session.scalar(select(DicomStudy).where(DicomStudy.study_uid == study_uid))
            if study is None:
                return None
            patient = session.get_one(DicomPatient, study.patient_pk)
            tree = StudyTree(patient=patient, study=study)
            series_rows = session.scalars(
                select(DicomSeries)
                .where(DicomSeries.study_pk == study.id)
                .order_by(DicomSeries.series_number, DicomSeries.id)
            ).all()
            instances = session.scalars(
                select(DicomInstance)
                .where(DicomInstance.study_pk == study.id)
                .order_by(DicomInstance.instance_number, DicomInstance.id)
            ).all()
            by_series: dict[int, list[DicomInstance]] = {}
            for instance in instances:
                by_series.setdefault(instance.series_pk, []).append(instance)
            tree.series = [(s, by_series[s.id]) for s in series_rows if s.id in by_series]
            return tree

    def mark_synced(self, study_uid: str, revision: int) -> bool:
        """Clear the stale flag unless an instance arrived after ``revision`` was read;
        either way the wait for the next write starts now."""
        with self.sessions.begin() as session:
            result = session.execute(
                update(DicomStudy)
                .where(DicomStudy.study_uid == study_uid)
                .values(
                    record_stale=DicomStudy.revision != revision,
                    stale_since=self.clock(),
                )
            )
            return bool(getattr(result, "rowcount", 0))
