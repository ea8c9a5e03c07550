"""Rewriting stored resource bytes in place, batch by batch (key rotation).

Only the sealed values inside change (``hie.exchange.protection``): versions, times and
ids stay, so history is not churned. A current row is rewritten only if its version is
still the one read, so a concurrent write is never lost; its writer sealed under the
current key anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from sqlalchemy import Engine, Table, func, select, update

from hie.storage.sql.models import ResourceRow, VersionRow

__all__ = ["count_rows", "rewrite_contents"]

R = cast(Table, ResourceRow.__table__)
V = cast(Table, VersionRow.__table__)

Transform = Callable[[bytes], bytes | None]  # None: leave the row as it is


def count_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(R)).scalar_one()) + int(
            conn.execute(select(func.count()).select_from(V)).scalar_one()
        )


def rewrite_contents(
    engine: Engine,
    transform: Transform,
    *,
    batch: int = 500,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Apply ``transform`` to every current and historical content; returns rows changed."""
    changed = 0
    for table, key in ((R, R.c.pk), (V, V.c.seq)):
        after = -1
        while True:
            with engine.begin() as conn:
                rows = conn.execute(
                    select(key, table.c.version, table.c.content)
                    .where(key > after)
                    .order_by(key)
                    .limit(batch)
                ).all()
                for pk, version, content in rows:
                    new = transform(bytes(content)) if content else None
                    if new is None:
                        continue
                    changed += conn.execute(
                        update(table)
                        .where(key == pk, table.c.version == version)
                        .values(content=new)
                    ).rowcount
            if not rows:
                break
            after = rows[-1][0]
            if progress is not None:
                progress(len(rows))
    return changed
