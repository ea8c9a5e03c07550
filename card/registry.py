"""The card tables: people, cards, their history and used QR tokens.

One short transaction per operation. Invariants are held by the database, not by
read-then-write checks alone: one person per resident ID (unique blind index), at most one
live card per person (partial unique index), card numbers unique (primary key), a QR token
used once (primary key on its ``jti``). A lost race surfaces as :class:`Conflict`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Engine, Table, any_, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import Integer, String

from card import card_number
from card.models import LIVE_STATUSES, Card, CardEvent, CardPerson, QrUse

C = cast(Table, Card.__table__)
P = cast(Table, CardPerson.__table__)
E = cast(Table, CardEvent.__table__)
Q = cast(Table, QrUse.__table__)

# hie's engines begin a transaction flagged with this option as BEGIN IMMEDIATE on SQLite,
# so concurrent writers queue instead of failing to upgrade a read lock.
_WRITE_OPTION = "hie_write"


def among(conn: Connection, column: Any, values: list[Any]) -> ColumnElement[bool]:
    """``column IN values``: one array parameter on PostgreSQL (cheap to send and plan)."""
    if conn.dialect.name == "postgresql":
        item = Integer() if values and isinstance(values[0], int) else String()
        return column == any_(bindparam(None, values, type_=ARRAY(item)))  # type: ignore[no-any-return]
    return column.in_(values)  # type: ignore[no-any-return]


class Conflict(Exception):
    """A uniqueness rule of the card tables was violated (a concurrent writer won)."""


@dataclass(frozen=True, slots=True)
class PersonRow:
    id: int
    resident_id_enc: str
    name: str
    gender: str
    birth_date: str
    phone_enc: str | None
    address: str | None
    patient: str | None


@dataclass(frozen=True, slots=True)
class CardRow:
    card_no: str
    status: str
    issued_us: int
    updated_us: int
    replaces: str | None
    replaced_by: str | None
    reason: str | None
    person: PersonRow


@dataclass(frozen=True, slots=True)
class EventRow:
    at_us: int
    action: str
    status: str
    reason: str | None
    actor: str | None
    organization: str | None


# In PersonRow's field order.
_PERSON_COLUMNS = (
    P.c.id,
    P.c.resident_id_enc,
    P.c.name,
    P.c.gender,
    P.c.birth_date,
    P.c.phone_enc,
    P.c.address,
    P.c.patient,
)

_CARD_COLUMNS = (
    C.c.card_no,
    C.c.status,
    C.c.issued_us,
    C.c.updated_us,
    C.c.replaces,
    C.c.replaced_by,
    C.c.reason,
    *_PERSON_COLUMNS,
)


def _card(row: Sequence[Any]) -> CardRow:
    return CardRow(
        card_no=row[0],
        status=row[1],
        issued_us=row[2],
        updated_us=row[3],
        replaces=row[4],
        replaced_by=row[5],
        reason=row[6],
        person=PersonRow(*row[7:]),
    )


class Tx:
    """Card-table operations inside one transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # -- people ---------------------------------------------------------------

    def person_by_index(self, index_values: Sequence[str]) -> PersonRow | None:
        row = self.conn.execute(
            select(*_PERSON_COLUMNS).where(P.c.resident_id_idx.in_(list(index_values)))
        ).first()
        return PersonRow(*row) if row else None

    def add_person(self, values: dict[str, Any]) -> int:
        return int(self.conn.execute(insert(P).values(**values).returning(P.c.id)).scalar_one())

    def set_patient(self, person_id: int, patient: str) -> None:
        self.conn.execute(update(P).where(P.c.id == person_id).values(patient=patient))

    def set_patients(self, pairs: Sequence[tuple[int, str]]) -> None:
        """Bulk enrolment: each person's card-source Patient, where none is set yet."""
        if pairs:
            self.conn.execute(
                update(P)
                .where(P.c.id == bindparam("pid"), P.c.patient.is_(None))
                .values(patient=bindparam("ref")),
                [{"pid": pid, "ref": ref} for pid, ref in pairs],
            )

    def unenrolled(self, after: int, limit: int) -> list[int]:
        """Ids of people without a card-source Patient yet (imported, not enrolled)."""
        rows = self.conn.execute(
            select(P.c.id)
            .where(P.c.id > after, P.c.patient.is_(None))
            .order_by(P.c.id)
            .limit(limit)
        )
        return [int(r[0]) for r in rows]

    def enrolment(self, person_ids: Sequence[int]) -> list[tuple[PersonRow, str]]:
        """People without a card-source Patient, each with the card its Patient names: the
        live card, else the latest."""
        if not person_ids:
            return []
        people = {
            int(r[0]): PersonRow(*r)
            for r in self.conn.execute(
                select(*_PERSON_COLUMNS).where(
                    among(self.conn, P.c.id, list(person_ids)), P.c.patient.is_(None)
                )
            )
        }
        best: dict[int, tuple[bool, int, str]] = {}
        for pid, card_no, status, issued in self.conn.execute(
            select(C.c.person_id, C.c.card_no, C.c.status, C.c.issued_us).where(
                among(self.conn, C.c.person_id, list(people))
            )
        ):
            rank = (status in LIVE_STATUSES, int(issued), str(card_no))
            if pid not in best or rank > best[pid]:
                best[pid] = rank
        return [(people[pid], best[pid][2]) for pid in sorted(people) if pid in best]

    # -- cards ----------------------------------------------------------------

    def card(self, card_no: str) -> CardRow | None:
        row = self.conn.execute(
            select(*_CARD_COLUMNS).join(P, P.c.id == C.c.person_id).where(C.c.card_no == card_no)
        ).first()
        return _card(row) if row else None

    def live_card(self, person_id: int) -> CardRow | None:
        row = self.conn.execute(
            select(*_CARD_COLUMNS)
            .join(P, P.c.id == C.c.person_id)
            .where(C.c.person_id == person_id, C.c.status.in_(LIVE_STATUSES))
        ).first()
        return _card(row) if row else None

    def latest_card(self, person_id: int) -> CardRow | None:
        row = self.conn.execute(
            select(*_CARD_COLUMNS)
            .join(P, P.c.id == C.c.person_id)
            .where(C.c.person_id == person_id)
            .order_by(C.c.issued_us.desc(), C.c.card_no.desc())
        ).first()
        return _card(row) if row else None

    def next_card_no(self) -> str:
        """The number after the highest issued (imported numbers included); never reused."""
        low, high = card_number.make(0), card_number.make(10**10 - 1)
        top = self.conn.execute(
            select(func.max(C.c.card_no)).where(C.c.card_no >= low, C.c.card_no <= high)
        ).scalar()
        serial = int(top[5:15]) + 1 if top else 1
        return card_number.make(serial)

    def add_card(
        self, card_no: str, person_id: int, status: str, at_us: int, replaces: str | None = None
    ) -> None:
        self.conn.execute(
            insert(C).values(
                card_no=card_no,
                person_id=person_id,
                status=status,
                issued_us=at_us,
                updated_us=at_us,
                replaces=replaces,
            )
        )

    def set_status(
        self,
        card_no: str,
        status: str,
        at_us: int,
        *,
        reason: str | None = None,
        replaced_by: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"status": status, "updated_us": at_us, "reason": reason}
        if replaced_by is not None:
            values["replaced_by"] = replaced_by
        self.conn.execute(update(C).where(C.c.card_no == card_no).values(**values))

    def add_event(
        self,
        card_no: str,
        at_us: int,
        action: str,
        status: str,
        *,
        reason: str | None = None,
        actor: str | None = None,
        organization: str | None = None,
    ) -> None:
        self.conn.execute(
            insert(E).values(
                card_no=card_no,
                at_us=at_us,
                action=action,
                status=status,
                reason=reason,
                actor=actor,
                organization=organization,
            )
        )

    def history(self, card_no: str) -> list[EventRow]:
        rows = self.conn.execute(
            select(E.c.at_us, E.c.action, E.c.status, E.c.reason, E.c.actor, E.c.organization)
            .where(E.c.card_no == card_no)
            .order_by(E.c.id)
        ).all()
        return [EventRow(*r) for r in rows]

    def people_secrets(
        self, after: int, limit: int
    ) -> list[tuple[int, str, str, str | None, str | None]]:
        """(id, resident_id_enc, resident_id_idx, phone_enc, phone_idx) by id, for rewrapping."""
        rows = self.conn.execute(
            select(P.c.id, P.c.resident_id_enc, P.c.resident_id_idx, P.c.phone_enc, P.c.phone_idx)
            .where(P.c.id > after)
            .order_by(P.c.id)
            .limit(limit)
        ).all()
        return [(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows]

    def set_secrets(self, person_id: int, values: dict[str, str | None]) -> None:
        self.conn.execute(update(P).where(P.c.id == person_id).values(**values))

    def count_people(self) -> int:
        return int(self.conn.execute(select(func.count()).select_from(P)).scalar_one())

    def count_unenrolled(self) -> int:
        query = select(func.count()).select_from(P).where(P.c.patient.is_(None))
        return int(self.conn.execute(query).scalar_one())

    # -- QR tokens --------------------------------------------------------------

    def use_qr(self, jti: str, card_no: str, used_us: int, expires_us: int) -> bool:
        """Mark a token used; False if it was used before."""
        try:
            with self.conn.begin_nested():
                self.conn.execute(
                    insert(Q).values(
                        jti=jti, card_no=card_no, used_us=used_us, expires_us=expires_us
                    )
                )
        except IntegrityError:
            return False
        return True

    def prune_qr(self, before_us: int) -> int:
        """Forget tokens that expired before ``before_us``: an expired token is refused
        before its use is looked up, so its row can never matter again."""
        return int(self.conn.execute(delete(Q).where(Q.c.expires_us < before_us)).rowcount or 0)


class CardRegistry:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[Tx]:
        with self.engine.connect() as conn:
            if write:
                conn = conn.execution_options(**{_WRITE_OPTION: True})
            elif conn.dialect.name == "postgresql":
                # reads need no snapshot: one round trip per statement, no BEGIN/ROLLBACK
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            try:
                with conn.begin():
                    yield Tx(conn)
            except IntegrityError as exc:
                raise Conflict(str(exc.orig)) from exc
