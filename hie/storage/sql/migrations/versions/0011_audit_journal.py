"""audit: how far each per-process audit journal has been chained

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28 07:00:00

Reads journal their audit records in a file per process and a drainer chains them in
batches (hie.audit.journal); ``audit_journal`` keeps each journal's drained offset, written
in the same transaction as the records, so none is chained twice. When
``audit.database_url`` names another database, ``hie db upgrade`` creates it there.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'audit_journal',
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('drained', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_audit_journal')),
    )


def downgrade() -> None:
    op.drop_table('audit_journal')
