"""XUA replay cache: xua_replay (SHA-256 of issuer and assertion ID, expiry)

Revision ID: 0008_xua_replay
Revises: 0001
Create Date: 2026-11-22 01:10:00
"""
from alembic import op
import sqlalchemy as sa
import ihe_engine.storage.base


revision = '0008_xua_replay'
down_revision = '0001'
branch_labels = None
depends_on = None

_TIME = ihe_engine.storage.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table('xua_replay',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('expires_at', _TIME, nullable=False),
    sa.Column('seen_at', _TIME, nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_xua_replay'))
    )
    with op.batch_alter_table('xua_replay', schema=None) as batch_op:
        batch_op.create_index('ix_xua_replay_expires_at', ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('xua_replay', schema=None) as batch_op:
        batch_op.drop_index('ix_xua_replay_expires_at')
    op.drop_table('xua_replay')
