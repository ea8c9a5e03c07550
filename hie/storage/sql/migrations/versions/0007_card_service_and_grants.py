"""card service tables and consent grants

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 03:50:00

- consent_grant: time-limited grants such as card-presented treatment access
  (hie.consent.grants, hie.storage.sql.grants).
- card_person, card, card_event, card_qr_use: the card service (card.models). A person
  holds at most one live (active, frozen or lost) card: a partial unique index.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
LIVE = sa.text("status IN ('active', 'frozen', 'lost')")


def upgrade() -> None:
    op.create_table('consent_grant',
    sa.Column('id', KEY, autoincrement=True, nullable=False),
    sa.Column('patient', sa.String(length=128), nullable=False),
    sa.Column('organization', sa.String(length=128), nullable=False),
    sa.Column('purpose', sa.String(length=32), nullable=False),
    sa.Column('start_us', sa.BigInteger(), nullable=False),
    sa.Column('end_us', sa.BigInteger(), nullable=False),
    sa.Column('basis', sa.String(length=32), nullable=False),
    sa.Column('evidence', sa.String(length=160), nullable=True),
    sa.Column('recorded_by', sa.String(length=256), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_consent_grant')),
    )
    op.create_index('ix_consent_grant_patient_org_end', 'consent_grant', ['patient', 'organization', 'end_us'])
    op.create_index('ix_consent_grant_org_end', 'consent_grant', ['organization', 'end_us'])

    op.create_table('card_person',
    sa.Column('id', KEY, autoincrement=True, nullable=False),
    sa.Column('resident_id_enc', sa.Text(), nullable=False),
    sa.Column('resident_id_idx', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('gender', sa.String(length=16), nullable=False),
    sa.Column('birth_date', sa.String(length=10), nullable=False),
    sa.Column('phone_enc', sa.Text(), nullable=True),
    sa.Column('phone_idx', sa.String(length=64), nullable=True),
    sa.Column('address', sa.Text(), nullable=True),
    sa.Column('patient', sa.String(length=128), nullable=True),
    sa.Column('created_us', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_card_person')),
    sa.UniqueConstraint('resident_id_idx', name=op.f('uq_card_person_resident_id_idx')),
    )
    op.create_index('ix_card_person_phone_idx', 'card_person', ['phone_idx'])
    op.create_table('card',
    sa.Column('card_no', sa.String(length=16), nullable=False),
    sa.Column('person_id', KEY, nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('issued_us', sa.BigInteger(), nullable=False),
    sa.Column('updated_us', sa.BigInteger(), nullable=False),
    sa.Column('replaces', sa.String(length=16), nullable=True),
    sa.Column('replaced_by', sa.String(length=16), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['person_id'], ['card_person.id'], name=op.f('fk_card_person_id_card_person')),
    sa.PrimaryKeyConstraint('card_no', name=op.f('pk_card')),
    )
    op.create_index('ix_card_person_id', 'card', ['person_id'])
    op.create_index('ux_card_person_live', 'card', ['person_id'], unique=True,
                    sqlite_where=LIVE, postgresql_where=LIVE)
    op.create_table('card_event',
    sa.Column('id', KEY, autoincrement=True, nullable=False),
    sa.Column('card_no', sa.String(length=16), nullable=False),
    sa.Column('at_us', sa.BigInteger(), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('actor', sa.String(length=256), nullable=True),
    sa.Column('organization', sa.String(length=128), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_card_event')),
    )
    op.create_index('ix_card_event_card_no', 'card_event', ['card_no'])
    op.create_table('card_qr_use',
    sa.Column('jti', sa.String(length=64), nullable=False),
    sa.Column('card_no', sa.String(length=16), nullable=False),
    sa.Column('used_us', sa.BigInteger(), nullable=False),
    sa.Column('expires_us', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('jti', name=op.f('pk_card_qr_use')),
    )
    op.create_index('ix_card_qr_use_expires_us', 'card_qr_use', ['expires_us'])


def downgrade() -> None:
    op.drop_table('card_qr_use')
    op.drop_table('card_event')
    op.drop_table('card')
    op.drop_table('card_person')
    op.drop_table('consent_grant')
