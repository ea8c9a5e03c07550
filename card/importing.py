"""``hie card import``: migrate existing cards from a CSV file, in batches.

Columns: card_no, resident_id, name, gender, birth_date, phone, address, status, issued_at.

* Idempotent: a card number already stored for the same resident is skipped, so a run can
  be repeated or resumed after an interruption.
* Each row is checked like ``POST /cards`` (card number and its check digit, the resident
  ID, birth date and gender agreeing with it, the status, the issue time) and against
  the one-live-card rule, across the file and the database. Rejected rows go to a report
  CSV (line, card_no, reason); they never stop the import.
* Fast path: one transaction per batch, a few set-based queries and multi-row inserts.
* Enrolment in the master patient index (each holder's card-source Patient and enterprise
  Patient, through the exchange's bulk ``Exchange.enroll_patients``) is a second, slower
  pass: two FHIR resources per holder cost about a hundred times a card row. With
  ``enroll=True`` (``hie card import --enroll``) each batch's new holders are enrolled
  right after its cards and any holder still without a Patient at the end of the run;
  otherwise ``hie card enroll`` does it later (resumable, beside live readers: a card
  used before its holder is enrolled gets its Patients at that first use).
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Table, any_, bindparam, insert, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import Integer, String, TypeEngine

from card import card_number
from card.holder import Holder, parse_holder
from card.models import LIVE_STATUSES
from card.problems import CardProblem
from card.registry import C, E, P
from card.service import PHONE_CONTEXT, RID_CONTEXT, CardService, to_us

COLUMNS = (
    "card_no",
    "resident_id",
    "name",
    "gender",
    "birth_date",
    "phone",
    "address",
    "status",
    "issued_at",
)
STATUSES = ("active", "lost", "replaced", "cancelled", "frozen")


@dataclass
class ImportReport:
    read: int = 0
    imported: int = 0
    skipped: int = 0  # already stored (a repeated run)
    rejected: int = 0
    enrolled: int = 0  # card holders given their Patient and enterprise Patient
    rejects: list[tuple[int, str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Row:
    line: int
    card_no: str
    holder: Holder
    status: str
    issued_us: int
    idx: str


def _among(
    conn: Connection, column: Any, values: list[Any], item: TypeEngine[Any] | None = None
) -> ColumnElement[bool]:
    """``column IN values``: one array parameter on PostgreSQL (cheap to send and plan)."""
    if conn.dialect.name == "postgresql":
        array = ARRAY(item if item is not None else String())
        return column == any_(bindparam(None, values, type_=array))  # type: ignore[no-any-return]
    return column.in_(values)  # type: ignore[no-any-return]


def _bulk_insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Many rows at once: COPY on PostgreSQL, executemany elsewhere."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(insert(table), rows)
        return
    names = list(rows[0])
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f"COPY {table.name} ({', '.join(names)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[n] for n in names])


def _issued(value: str) -> int:
    text = value.strip()
    if not text:
        raise ValueError("issued_at is empty")
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"issued_at '{text}' is not an ISO date or time") from None
    if moment.tzinfo is None:  # local registry times are China Standard Time
        moment = moment.replace(tzinfo=dt.timezone(dt.timedelta(hours=8)))
    return to_us(moment)


class CardImporter:
    def __init__(
        self, service: CardService, *, actor: str = "hie-card-import", enroll: bool = False
    ) -> None:
        """``enroll``: enrol new holders in the master patient index as they load."""
        self._service = service
        self._actor = actor
        self._enroll = enroll
        self.report = ImportReport()

    def _check(self, line: int, raw: dict[str, str], today: dt.date) -> _Row:
        missing = [c for c in COLUMNS if c not in raw]
        if missing:
            raise ValueError(f"missing columns: {', '.join(missing)}")
        try:
            card_no = card_number.parse(raw["card_no"] or "")
        except card_number.CardNumberError as exc:
            raise ValueError(f"card_no: {exc.message}") from None
        try:
            holder = parse_holder({k: raw[k] for k in COLUMNS[1:7]}, today)
        except CardProblem as exc:
            raise ValueError(exc.detail) from None
        status = (raw["status"] or "").strip().lower()
        if status not in STATUSES:
            raise ValueError(f"status '{raw['status']}' is not one of {', '.join(STATUSES)}")
        issued = _issued(raw["issued_at"] or "")
        idx = self._service.blind.value("resident_id", holder.resident_id)
        return _Row(line, card_no, holder, status, issued, idx)

    def _reject(self, line: int, card_no: str, reason: str) -> None:
        self.report.rejected += 1
        self.report.rejects.append((line, card_no, reason))

    def load(
        self,
        rows: Iterable[dict[str, str]],
        *,
        batch: int = 2000,
        progress: Callable[[int], None] | None = None,
    ) -> ImportReport:
        today = self._service.clock().date()
        pending: list[_Row] = []
        for line, raw in enumerate(rows, start=2):  # line 1 is the header
            self.report.read += 1
            try:
                pending.append(self._check(line, raw, today))
            except ValueError as exc:
                self._reject(line, (raw.get("card_no") or "").strip(), str(exc))
            if self.report.read % batch == 0:
                self._write(pending)
                pending = []
                if progress is not None:
                    progress(batch)
        self._write(pending)
        if progress is not None and self.report.read % batch:
            progress(self.report.read % batch)
        if self._enroll:
            self.report.enrolled += self._service.enroll_pending(actor=self._actor, batch=batch)
        return self.report

    def _write(self, rows: list[_Row]) -> None:
        if not rows:
            return
        svc = self._service
        now = to_us(svc.clock())
        with svc.registry.transaction(write=True) as tx:
            conn = tx.conn
            stored = {
                r.card_no: r.resident_id_idx
                for r in conn.execute(
                    select(C.c.card_no, P.c.resident_id_idx)
                    .join(P, P.c.id == C.c.person_id)
                    .where(_among(conn, C.c.card_no, [r.card_no for r in rows]))
                )
            }
            people = {
                r.resident_id_idx: int(r.id)
                for r in conn.execute(
                    select(P.c.id, P.c.resident_id_idx).where(
                        _among(conn, P.c.resident_id_idx, sorted({r.idx for r in rows}))
                    )
                )
            }
            live: dict[int, str] = {}
            if people:
                live = {
                    int(r.person_id): r.card_no
                    for r in conn.execute(
                        select(C.c.person_id, C.c.card_no).where(
                            _among(conn, C.c.person_id, list(people.values()), Integer()),
                            C.c.status.in_(LIVE_STATUSES),
                        )
                    )
                }
            live_by_idx = {idx: live[pid] for idx, pid in people.items() if pid in live}
            accepted: list[_Row] = []
            seen: set[str] = set()
            new_people: dict[str, _Row] = {}
            for row in rows:
                if row.card_no in stored:
                    if stored[row.card_no] == row.idx:
                        self.report.skipped += 1
                    else:
                        self._reject(
                            row.line, row.card_no, "card number belongs to another resident"
                        )
                    continue
                if row.card_no in seen:
                    self._reject(row.line, row.card_no, "card number repeated in the file")
                    continue
                if row.status in LIVE_STATUSES:
                    holder_card = live_by_idx.get(row.idx)
                    if holder_card is not None:
                        self._reject(
                            row.line, row.card_no, f"the resident already holds card {holder_card}"
                        )
                        continue
                    live_by_idx[row.idx] = row.card_no
                seen.add(row.card_no)
                accepted.append(row)
                if row.idx not in people and row.idx not in new_people:
                    new_people[row.idx] = row
            if new_people:
                _bulk_insert(conn, P, [self._person(r, now) for r in new_people.values()])
                fresh = conn.execute(
                    select(P.c.id, P.c.resident_id_idx).where(
                        _among(conn, P.c.resident_id_idx, sorted(new_people))
                    )
                )
                people.update({r.resident_id_idx: int(r.id) for r in fresh})
            if accepted:
                _bulk_insert(
                    conn,
                    C,
                    [
                        {
                            "card_no": r.card_no,
                            "person_id": people[r.idx],
                            "status": r.status,
                            "issued_us": r.issued_us,
                            "updated_us": now,
                            "replaces": None,
                            "replaced_by": None,
                            "reason": None,
                        }
                        for r in accepted
                    ],
                )
                _bulk_insert(
                    conn,
                    E,
                    [
                        {
                            "card_no": r.card_no,
                            "at_us": now,
                            "action": "import",
                            "status": r.status,
                            "reason": None,
                            "actor": self._actor,
                            "organization": None,
                        }
                        for r in accepted
                    ],
                )
        self.report.imported += len(accepted)
        if self._enroll and new_people:
            ids = [people[idx] for idx in new_people]
            self.report.enrolled += svc.enroll(ids, actor=self._actor)

    def _person(self, row: _Row, now: int) -> dict[str, Any]:
        svc, h = self._service, row.holder
        return {
            "resident_id_enc": svc.cipher.encrypt(h.resident_id, RID_CONTEXT),
            "resident_id_idx": row.idx,
            "name": h.name,
            "gender": h.gender,
            "birth_date": h.birth_date,
            "phone_enc": svc.cipher.encrypt(h.phone, PHONE_CONTEXT) if h.phone else None,
            "phone_idx": svc.blind.value("phone", h.phone) if h.phone else None,
            "address": h.address,
            "patient": None,
            "created_us": now,
        }


def read_csv(handle: IO[str]) -> Iterator[dict[str, str]]:
    yield from csv.DictReader(handle)


def write_report(path: Path, report: ImportReport) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["line", "card_no", "reason"])
        writer.writerows(report.rejects)
