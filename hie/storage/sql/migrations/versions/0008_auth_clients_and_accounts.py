"""Authentication: OAuth2 clients, used assertion ids, clinician accounts, sessions, login attempts

Revision ID: 0008
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('auth_assertion',
    sa.Column('client', sa.String(length=64), nullable=False),
    sa.Column('jti', sa.String(length=255), nullable=False),
    sa.Column('expires_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('client', 'jti', name=op.f('pk_auth_assertion'))
    )
    with op.batch_alter_table('auth_assertion', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_auth_assertion_expires_at'), ['expires_at'], unique=False)

    op.create_table('auth_client',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('organization', sa.String(length=128), nullable=False),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('jwks', sa.Text(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_auth_client'))
    )
    op.create_table('auth_login_attempt',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('login', sa.String(length=64), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=False),
    sa.Column('at', sa.BigInteger(), nullable=False),
    sa.Column('success', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_auth_login_attempt'))
    )
    with op.batch_alter_table('auth_login_attempt', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_auth_login_attempt_address_at'), ['address', 'at'], unique=False)
        batch_op.create_index(batch_op.f('ix_auth_login_attempt_login_at'), ['login', 'at'], unique=False)

    op.create_table('auth_user',
    sa.Column('login', sa.String(length=64), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('practitioner', sa.String(length=128), nullable=False),
    sa.Column('role', sa.String(length=128), nullable=False),
    sa.Column('organization', sa.String(length=128), nullable=False),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('totp_secret', sa.Text(), nullable=True),
    sa.Column('totp_last_step', sa.BigInteger(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('login', name=op.f('pk_auth_user'))
    )
    op.create_table('auth_session',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('login', sa.String(length=64), nullable=False),
    sa.Column('csrf', sa.String(length=64), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('last_seen', sa.BigInteger(), nullable=False),
    sa.Column('expires_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['login'], ['auth_user.login'], name=op.f('fk_auth_session_login_auth_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('token_hash', name=op.f('pk_auth_session'))
    )
    with op.batch_alter_table('auth_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_auth_session_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_auth_session_login'), ['login'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('auth_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_auth_session_login'))
        batch_op.drop_index(batch_op.f('ix_auth_session_expires_at'))

    op.drop_table('auth_session')
    op.drop_table('auth_user')
    with op.batch_alter_table('auth_login_attempt', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_auth_login_attempt_login_at'))
        batch_op.drop_index(batch_op.f('ix_auth_login_attempt_address_at'))

    op.drop_table('auth_login_attempt')
    op.drop_table('auth_client')
    with op.batch_alter_table('auth_assertion', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_auth_assertion_expires_at'))

    op.drop_table('auth_assertion')
