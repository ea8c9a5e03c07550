"""master patient index: links, blocking keys, review queue

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 03:50:00

No resident ID number or phone number is stored in plain text: ``mpi_link.sealed`` is an
AES-GCM envelope, ``rid_index`` and identifier parts of ``mpi_block.key`` are HMAC blind
indexes (hie.crypto).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'mpi_link',
        sa.Column('source_id', sa.String(length=64), nullable=False),
        sa.Column('enterprise_id', sa.String(length=64), nullable=False),
        sa.Column('source', sa.String(length=64), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('score', sa.Float(), nullable=False),
        sa.Column('reason', sa.String(length=64), nullable=False),
        sa.Column('rid_index', sa.String(length=64), nullable=True),
        sa.Column('card_no', sa.String(length=32), nullable=True),
        sa.Column('merged_from', sa.String(length=64), nullable=True),
        sa.Column('updated_us', sa.BigInteger(), nullable=False),
        sa.Column('sealed', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('source_id', name=op.f('pk_mpi_link')),
    )
    op.create_index(op.f('ix_mpi_link_enterprise_id'), 'mpi_link', ['enterprise_id'])
    op.create_index(op.f('ix_mpi_link_rid_index'), 'mpi_link', ['rid_index'])
    op.create_index(op.f('ix_mpi_link_card_no'), 'mpi_link', ['card_no'])
    op.create_index(op.f('ix_mpi_link_merged_from'), 'mpi_link', ['merged_from'])
    op.create_table(
        'mpi_block',
        sa.Column('key', sa.String(length=200), nullable=False),
        sa.Column('source_id', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('key', 'source_id', name=op.f('pk_mpi_block')),
    )
    op.create_index('ix_mpi_block_source_id', 'mpi_block', ['source_id'])
    op.create_table(
        'mpi_review',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('source_id', sa.String(length=64), nullable=False),
        sa.Column('enterprise_id', sa.String(length=64), nullable=False),
        sa.Column('score', sa.Float(), nullable=False),
        sa.Column('reason', sa.String(length=64), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('decided_by', sa.String(length=128), nullable=True),
        sa.Column('created_us', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_mpi_review')),
    )
    op.create_index(op.f('ix_mpi_review_source_id'), 'mpi_review', ['source_id'])
    op.create_index('ix_mpi_review_status_id', 'mpi_review', ['status', 'id'])


def downgrade() -> None:
    op.drop_table('mpi_review')
    op.drop_table('mpi_block')
    op.drop_table('mpi_link')
