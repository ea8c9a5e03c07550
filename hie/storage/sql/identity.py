"""The master patient index's tables: links, blocking keys and the review queue.

No resident ID number or phone number is stored here in plain text: the matcher's view of
a record is one AES-GCM envelope (``sealed``), resident ID numbers are found by their blind
index (``rid_index``) and blocking keys carry blind-index values for identifier parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection

from hie.storage.ports import IdentityLink, ReviewItem
from hie.storage.sql.models import Base, Key

__all__ = ["BLOCK", "LINK", "REVIEW", "SqlIdentityTables"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

LINK = Table(
    "mpi_link",
    Base.metadata,
    Column("source_id", String(64), primary_key=True),
    Column("enterprise_id", String(64), nullable=False, index=True),
    Column("source", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("score", Float, nullable=False, default=0.0),
    Column("reason", String(64), nullable=False, default=""),
    Column("rid_index", String(64), index=True),
    Column("rid_valid", Boolean),
    Column("card_no", String(32), index=True),
    Column("merged_from", String(64), index=True),
    Column("updated_us", BigInteger, nullable=False),
    Column("sealed", Text, nullable=False),
)

BLOCK = Table(
    "mpi_block",
    Base.metadata,
    Column("key", String(200), primary_key=True),
    Column("source_id", String(64), primary_key=True),
    Index("ix_mpi_block_source_id", "source_id"),
)

REVIEW = Table(
    "mpi_review",
    Base.metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("source_id", String(64), nullable=False, index=True),
    Column("enterprise_id", String(64), nullable=False),
    Column("score", Float, nullable=False),
    Column("reason", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("decided_by", String(128)),
    Column("created_us", BigInteger, nullable=False),
    Index("ix_mpi_review_status_id", "status", "id"),
)


def _us(moment: datetime | None) -> int:
    if moment is None:
        return 0
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _when(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


_LINK_COLS = (
    LINK.c.source_id,
    LINK.c.enterprise_id,
    LINK.c.source,
    LINK.c.sealed,
    LINK.c.status,
    LINK.c.score,
    LINK.c.reason,
    LINK.c.rid_index,
    LINK.c.card_no,
    LINK.c.merged_from,
    LINK.c.updated_us,
    LINK.c.rid_valid,
)


_NEW_COLUMNS = (
    "source_id",
    "enterprise_id",
    "source",
    "status",
    "score",
    "reason",
    "rid_index",
    "rid_valid",
    "card_no",
    "merged_from",
    "updated_us",
    "sealed",
)


# Bulk enrolment asks for thousands of keys at once: one array parameter, not thousands.
_PG_KEY_HOLDERS = (
    "SELECT b.key, l.source_id, l.enterprise_id, l.source, l.status, l.score, l.reason, "
    "l.rid_index, l.card_no, l.merged_from, l.updated_us, l.rid_valid "
    "FROM unnest(%s::text[]) AS k(key) JOIN mpi_block b ON b.key = k.key "
    "JOIN mpi_link l ON l.source_id = b.source_id"
)


def _link(row: Sequence[Any]) -> IdentityLink:
    return IdentityLink(
        source_id=row[0],
        enterprise_id=row[1],
        source=row[2],
        sealed=row[3],
        status=row[4],
        score=row[5],
        reason=row[6],
        rid_index=row[7],
        card_no=row[8],
        merged_from=row[9],
        updated=_when(row[10]),
        rid_valid=row[11],
    )


def _review(row: Sequence[Any]) -> ReviewItem:
    return ReviewItem(
        id=row[0],
        source_id=row[1],
        enterprise_id=row[2],
        score=row[3],
        reason=row[4],
        created=_when(row[5]),
        status=row[6],
        decided_by=row[7],
    )


_REVIEW_COLS = (
    REVIEW.c.id,
    REVIEW.c.source_id,
    REVIEW.c.enterprise_id,
    REVIEW.c.score,
    REVIEW.c.reason,
    REVIEW.c.created_us,
    REVIEW.c.status,
    REVIEW.c.decided_by,
)


class SqlIdentityTables:
    """``hie.storage.ports.IdentityTables`` on one connection (the unit of work's)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def get(self, source_id: str) -> IdentityLink | None:
        row = self._conn.execute(select(*_LINK_COLS).where(LINK.c.source_id == source_id)).first()
        return _link(row) if row else None

    def put(self, link: IdentityLink, *, expected_sealed: str | None = None) -> bool:
        values = {
            "enterprise_id": link.enterprise_id,
            "source": link.source,
            "sealed": link.sealed,
            "status": link.status,
            "score": link.score,
            "reason": link.reason,
            "rid_index": link.rid_index,
            "card_no": link.card_no,
            "merged_from": link.merged_from,
            "updated_us": _us(link.updated),
            "rid_valid": link.rid_valid,
        }
        where = LINK.c.source_id == link.source_id
        if expected_sealed is not None:
            where = where & (LINK.c.sealed == expected_sealed)
        done = self._conn.execute(update(LINK).where(where).values(**values))
        if not done.rowcount:
            if expected_sealed is not None:
                return False  # changed meanwhile: its writer sealed it under the new key
            self._conn.execute(insert(LINK).values(source_id=link.source_id, **values))
        old = {
            r[0]
            for r in self._conn.execute(
                select(BLOCK.c.key).where(BLOCK.c.source_id == link.source_id)
            )
        }
        new = set(link.keys)
        if old - new:
            self._conn.execute(
                delete(BLOCK).where(
                    BLOCK.c.source_id == link.source_id, BLOCK.c.key.in_(sorted(old - new))
                )
            )
        if new - old:
            self._conn.execute(
                insert(BLOCK), [{"key": k, "source_id": link.source_id} for k in sorted(new - old)]
            )
        return True

    def remove(self, source_id: str) -> None:
        self._conn.execute(delete(BLOCK).where(BLOCK.c.source_id == source_id))
        self._conn.execute(delete(LINK).where(LINK.c.source_id == source_id))

    def add_new(self, links: Sequence[IdentityLink]) -> None:
        if not links:
            return
        rows = [
            (
                x.source_id,
                x.enterprise_id,
                x.source,
                x.status,
                x.score,
                x.reason,
                x.rid_index,
                x.rid_valid,
                x.card_no,
                x.merged_from,
                _us(x.updated),
                x.sealed,
            )
            for x in links
        ]
        blocks = [(k, x.source_id) for x in links for k in sorted(set(x.keys))]
        if self._conn.dialect.name != "postgresql":
            self._conn.execute(
                insert(LINK), [dict(zip(_NEW_COLUMNS, r, strict=True)) for r in rows]
            )
            if blocks:
                self._conn.execute(insert(BLOCK), [{"key": k, "source_id": s} for k, s in blocks])
            return
        # COPY: a batch of thousands in one round trip each, inside this transaction.
        cursor = self._conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            with cursor.copy(f"COPY mpi_link ({', '.join(_NEW_COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            with cursor.copy("COPY mpi_block (key, source_id) FROM STDIN") as copy:
                for block in blocks:
                    copy.write_row(block)
        finally:
            cursor.close()

    def key_holders(self, keys: Sequence[str]) -> list[tuple[str, IdentityLink]]:
        if not keys:
            return []
        wanted = sorted(set(keys))
        if self._conn.dialect.name == "postgresql":
            rows = self._conn.exec_driver_sql(_PG_KEY_HOLDERS, (wanted,))
        else:
            rows = self._conn.execute(
                select(BLOCK.c.key, *(c for c in _LINK_COLS if c is not LINK.c.sealed))
                .join(LINK, LINK.c.source_id == BLOCK.c.source_id)
                .where(BLOCK.c.key.in_(wanted))
            )
        return [(r[0], _link((*r[1:4], "", *r[4:]))) for r in rows]

    def members(self, enterprise_ids: Sequence[str]) -> list[IdentityLink]:
        if not enterprise_ids:
            return []
        rows = self._conn.execute(
            select(*_LINK_COLS)
            .where(LINK.c.enterprise_id.in_(list(enterprise_ids)))
            .order_by(LINK.c.source_id)
        )
        return [_link(r) for r in rows]

    def candidates(self, keys: Sequence[str], limit: int) -> list[str]:
        if not keys:
            return []
        rows = self._conn.execute(
            select(LINK.c.enterprise_id)
            .join(BLOCK, BLOCK.c.source_id == LINK.c.source_id)
            .where(BLOCK.c.key.in_(list(keys)))
            .distinct()
            .limit(limit)
        )
        return [r[0] for r in rows]

    def candidate_members(self, keys: Sequence[str], limit: int) -> list[IdentityLink]:
        if not keys:
            return []
        found = (
            select(LINK.c.enterprise_id)
            .join(BLOCK, BLOCK.c.source_id == LINK.c.source_id)
            .where(BLOCK.c.key.in_(list(keys)))
            .distinct()
            .limit(limit)
            .subquery()
        )
        rows = self._conn.execute(
            select(*_LINK_COLS)
            .where(LINK.c.enterprise_id.in_(select(found.c.enterprise_id)))
            .order_by(LINK.c.source_id)
        )
        return [_link(r) for r in rows]

    def by_resident_index(self, values: Sequence[str]) -> list[IdentityLink]:
        if not values:
            return []
        rows = self._conn.execute(select(*_LINK_COLS).where(LINK.c.rid_index.in_(list(values))))
        return [_link(r) for r in rows]

    def by_card(self, card_no: str) -> list[IdentityLink]:
        rows = self._conn.execute(select(*_LINK_COLS).where(LINK.c.card_no == card_no))
        return [_link(r) for r in rows]

    def merged_into(self, enterprise_id: str, merged_from: str) -> list[IdentityLink]:
        rows = self._conn.execute(
            select(*_LINK_COLS).where(
                LINK.c.enterprise_id == enterprise_id, LINK.c.merged_from == merged_from
            )
        )
        return [_link(r) for r in rows]

    def add_review(self, item: ReviewItem) -> int:
        result = self._conn.execute(
            insert(REVIEW)
            .values(
                source_id=item.source_id,
                enterprise_id=item.enterprise_id,
                score=item.score,
                reason=item.reason,
                status=item.status,
                decided_by=item.decided_by,
                created_us=_us(item.created),
            )
            .returning(REVIEW.c.id)
        )
        return int(result.scalar_one())

    def reviews(self, status: str, limit: int, source_id: str | None = None) -> list[ReviewItem]:
        query = select(*_REVIEW_COLS).where(REVIEW.c.status == status)
        if source_id is not None:
            query = query.where(REVIEW.c.source_id == source_id)
        rows = self._conn.execute(query.order_by(REVIEW.c.id).limit(limit))
        return [_review(r) for r in rows]

    def set_review(self, review_id: int, status: str, decided_by: str | None) -> None:
        self._conn.execute(
            update(REVIEW)
            .where(REVIEW.c.id == review_id)
            .values(status=status, decided_by=decided_by)
        )

    def scan(self, after: str | None, limit: int) -> list[IdentityLink]:
        query = select(*_LINK_COLS)
        if after is not None:
            query = query.where(LINK.c.source_id > after)
        rows = self._conn.execute(query.order_by(LINK.c.source_id).limit(limit))
        out = []
        for r in rows:
            keys = self._conn.execute(select(BLOCK.c.key).where(BLOCK.c.source_id == r[0]))
            out.append(_with_keys(_link(r), tuple(k[0] for k in keys)))
        return out

    def count(self) -> int:
        return int(self._conn.execute(select(func.count()).select_from(LINK)).scalar_one())


def _with_keys(link: IdentityLink, keys: tuple[str, ...]) -> IdentityLink:
    return replace(link, keys=keys)
