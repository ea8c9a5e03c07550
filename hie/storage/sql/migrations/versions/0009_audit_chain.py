"""audit: chained AuditEvents, their search keys and signed checkpoints

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 03:50:00

The plain ``audit_log`` of the core issue gives way to ``audit_event`` (one row per
AuditEvent, hash-chained), ``audit_ref`` (the patients and entities each is about) and
``audit_checkpoint`` (Ed25519 signatures over the chain's head). When
``audit.database_url`` names another database, ``hie db upgrade`` creates these tables
there instead (hie.storage.sql.audit.metadata).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index('ix_audit_log_recorded_us', table_name='audit_log')
    op.drop_table('audit_log')
    op.create_table(
        'audit_event',
        sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('recorded_us', sa.BigInteger(), nullable=False),
        sa.Column('type', sa.String(length=32), nullable=False),
        sa.Column('subtype', sa.String(length=64), nullable=False),
        sa.Column('action', sa.String(length=1), nullable=False),
        sa.Column('outcome', sa.String(length=2), nullable=False),
        sa.Column('agent', sa.String(length=256), nullable=False),
        sa.Column('organization', sa.String(length=128), nullable=True),
        sa.Column('purpose', sa.String(length=64), nullable=True),
        sa.Column('break_glass', sa.Boolean(), nullable=False),
        sa.Column('content', sa.LargeBinary(), nullable=False),
        sa.Column('prev_hash', sa.LargeBinary(), nullable=False),
        sa.Column('hash', sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint('seq', name=op.f('pk_audit_event')),
    )
    op.create_index('ix_audit_event_recorded_us', 'audit_event', ['recorded_us'])
    op.create_index('ix_audit_event_agent_seq', 'audit_event', ['agent', 'seq'])
    op.create_index(
        'ix_audit_event_break_glass_seq',
        'audit_event',
        ['break_glass', 'seq'],
        sqlite_where=sa.text('break_glass'),
        postgresql_where=sa.text('break_glass'),
    )
    op.create_table(
        'audit_ref',
        sa.Column('seq', sa.BigInteger(), nullable=False),
        sa.Column('kind', sa.String(length=1), nullable=False),
        sa.Column('ref', sa.String(length=200), nullable=False),
    )
    op.create_index('ix_audit_ref_kind_ref_seq', 'audit_ref', ['kind', 'ref', 'seq'])
    op.create_table(
        'audit_checkpoint',
        sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('hash', sa.LargeBinary(), nullable=False),
        sa.Column('signed_us', sa.BigInteger(), nullable=False),
        sa.Column('key_id', sa.String(length=128), nullable=False),
        sa.Column('signature', sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint('seq', name=op.f('pk_audit_checkpoint')),
    )


def downgrade() -> None:
    op.drop_table('audit_checkpoint')
    op.drop_index('ix_audit_ref_kind_ref_seq', table_name='audit_ref')
    op.drop_table('audit_ref')
    op.drop_index('ix_audit_event_break_glass_seq', table_name='audit_event')
    op.drop_index('ix_audit_event_agent_seq', table_name='audit_event')
    op.drop_index('ix_audit_event_recorded_us', table_name='audit_event')
    op.drop_table('audit_event')
    op.create_table(
        'audit_log',
        sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('recorded_us', sa.BigInteger(), nullable=False),
        sa.Column('actor', sa.String(length=256), nullable=False),
        sa.Column('organization', sa.String(length=128), nullable=True),
        sa.Column('purpose', sa.String(length=64), nullable=True),
        sa.Column('action', sa.String(length=32), nullable=False),
        sa.Column('outcome', sa.String(length=16), nullable=False),
        sa.Column('resource_type', sa.String(length=64), nullable=True),
        sa.Column('resource_id', sa.String(length=64), nullable=True),
        sa.Column('query', sa.Text(), nullable=True),
        sa.Column('source', sa.String(length=128), nullable=True),
        sa.Column('detail', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('seq', name=op.f('pk_audit_log')),
    )
    op.create_index('ix_audit_log_recorded_us', 'audit_log', ['recorded_us'])
