"""consent: a shape index row on every active patient-privacy Consent

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 04:00:00

Searches by organisations other than the custodian find consented patients through a
token row ``_consent-shape`` on each active patient-privacy Consent (docs/consent.md).
Consents stored before this revision get theirs here; no table changes.
"""

from collections.abc import Sequence

import orjson
import sqlalchemy as sa
from alembic import op


revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _shape(content: bytes) -> str | None:
    # The running code's own definitions: the rows must match what it looks for.
    from hie.consent.shapes import shape_of

    return shape_of(orjson.loads(content))


def _key() -> int:
    from hie.consent.shapes import SHAPE_PARAM
    from hie.storage.sql.index_tables import param_key

    return param_key('Consent', SHAPE_PARAM)


def upgrade() -> None:
    conn = op.get_bind()
    key = _key()
    rows = conn.execute(
        sa.text("SELECT pk, content FROM resource WHERE type = 'Consent' AND deleted = :no"),
        {'no': False},
    ).all()
    conn.execute(sa.text('DELETE FROM idx_token WHERE param = :k'), {'k': key})
    marks = []
    for pk, content in rows:
        shape = _shape(bytes(content))
        if shape is not None:
            marks.append({'pk': pk, 'k': key, 'code': shape})
    if marks:
        conn.execute(
            sa.text(
                'INSERT INTO idx_token (res_pk, param, system, code) VALUES (:pk, :k, NULL, :code)'
            ),
            marks,
        )


def downgrade() -> None:
    op.get_bind().execute(
        sa.text('DELETE FROM idx_token WHERE param = :k'), {'k': _key()}
    )
