"""identity: whether a link's resident ID number is valid

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28 09:40:00

``mpi_link.rid_valid`` lets bulk enrolment (``hie card import``) see, without opening
sealed records, that a candidate holds a different valid resident ID number and so can
never be linked automatically. NULL for links written before: those are opened as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('mpi_link') as batch:
        batch.add_column(sa.Column('rid_valid', sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('mpi_link') as batch:
        batch.drop_column('rid_valid')
