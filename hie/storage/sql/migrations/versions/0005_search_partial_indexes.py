"""search: indexes shaped by the planner, and PostgreSQL statistics it needs

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 02:20:00

- Optional reference and quantity columns (URL, identifier, target id, canonical code)
  are indexed only where they are set: most rows have none of them.
- Date rows spanning a day or more get a small partial index: date searches read the
  shorter rows by a range on (param, low) and these apart.
- A token condition is checked per resource on (res_pk, param, code) when another
  condition is more selective.
- On PostgreSQL, extended statistics give the planner the frequency of each
  (param, code, system) and of date spans, so it picks which condition drives a query.
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
LONG = 'high - low >= 86400000000'
STATISTICS = [
    ('st_idx_token_param_code', '(mcv, dependencies) ON param, code, system FROM idx_token'),
    ('st_idx_date_span', 'ON (high - low) FROM idx_date'),
]


def _postgresql_14() -> bool:
    bind = op.get_bind()
    version = bind.dialect.server_version_info or ()
    return bind.dialect.name == 'postgresql' and version >= (14,)


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
    with op.batch_alter_table('idx_date', schema=None) as batch_op:
        batch_op.create_index(
            'ix_idx_date_long',
            ['param', 'low'],
            unique=False,
            postgresql_include=['res_pk', 'high'],
            postgresql_where=sa.text(LONG),
            sqlite_where=sa.text(LONG),
        )
    with op.batch_alter_table('idx_token', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_token_res_pk')
        batch_op.create_index('ix_idx_token_res_pk', ['res_pk', 'param', 'code'], unique=False)
    if _postgresql_14():
        for name, definition in STATISTICS:
            op.execute(f'CREATE STATISTICS {name} {definition}')


def downgrade() -> None:
    if _postgresql_14():
        for name, _ in STATISTICS:
            op.execute(f'DROP STATISTICS IF EXISTS {name}')
    with op.batch_alter_table('idx_token', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_token_res_pk')
        batch_op.create_index('ix_idx_token_res_pk', ['res_pk', 'param'], unique=False)
    with op.batch_alter_table('idx_date', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_date_long', postgresql_include=['res_pk', 'high'])
    for table, name, columns, _ in PARTIAL:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(name, postgresql_include=['res_pk'])
            batch_op.create_index(name, columns, unique=False, postgresql_include=['res_pk'])
