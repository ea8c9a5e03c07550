"""search: index optional reference and quantity columns only where they are set

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 02:20:00

Most reference rows have a target id but no URL and no identifier, and most quantity
rows with a unit outside UCUM's simple forms have no canonical code: indexing those
NULLs cost space and write time for lookups that never ask for NULL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, index, columns, the column that must be set)
PARTIAL = [
    ('idx_quantity', 'ix_idx_quantity_param_canonical_code_canonical_low', ['param', 'canonical_code', 'canonical_low'], 'canonical_code'),
    ('idx_reference', 'ix_idx_reference_param_identifier_value', ['param', 'identifier_value'], 'identifier_value'),
    ('idx_reference', 'ix_idx_reference_param_url', ['param', 'url'], 'url'),
    ('idx_reference', 'ix_idx_reference_target_id_target_type_param', ['target_id', 'target_type', 'param'], 'target_id'),
]


def upgrade() -> None:
    for table, name, columns, present in PARTIAL:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(name, postgresql_include=['res_pk'])
            batch_op.create_index(
                name,
                columns,
                unique=False,
                postgresql_include=['res_pk'],
                postgresql_where=sa.text(f'{present} IS NOT NULL'),
                sqlite_where=sa.text(f'{present} IS NOT NULL'),
            )


def downgrade() -> None:
    for table, name, columns, _ in PARTIAL:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(name, postgresql_include=['res_pk'])
            batch_op.create_index(name, columns, unique=False, postgresql_include=['res_pk'])
