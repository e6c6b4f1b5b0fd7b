"""foundation tables

Revision ID: 0001
Revises: 
Create Date: 2026-11-21 22:14:55.945517
"""
from alembic import op
import sqlalchemy as sa
import ihe_engine.storage.base


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('continuation',
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('state', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', ihe_engine.storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', ihe_engine.storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('token', name=op.f('pk_continuation'))
    )
    with op.batch_alter_table('continuation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_continuation_expires_at'), ['expires_at'], unique=False)

    op.create_table('hl7_exchange',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sending_application', sa.String(length=227), nullable=False),
    sa.Column('sending_facility', sa.String(length=227), nullable=False),
    sa.Column('control_id', sa.String(length=199), nullable=False),
    sa.Column('message_type', sa.String(length=40), nullable=False),
    sa.Column('message_sha256', sa.String(length=64), nullable=False),
    sa.Column('response', sa.LargeBinary(), nullable=False),
    sa.Column('received_at', ihe_engine.storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_hl7_exchange')),
    sa.UniqueConstraint('sending_application', 'sending_facility', 'control_id', name=op.f('uq_hl7_exchange_sending_application_sending_facility_control_id'))
    )
    with op.batch_alter_table('hl7_exchange', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_hl7_exchange_received_at'), ['received_at'], unique=False)

    op.create_table('queue_item',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('queue', sa.String(length=64), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', ihe_engine.storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('available_at', ihe_engine.storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('claimed_by', sa.String(length=128), nullable=True),
    sa.Column('claimed_until', ihe_engine.storage.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('done_at', ihe_engine.storage.base.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_queue_item'))
    )
    with op.batch_alter_table('queue_item', schema=None) as batch_op:
        batch_op.create_index('ix_queue_item_ready', ['queue', 'done_at', 'available_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('queue_item', schema=None) as batch_op:
        batch_op.drop_index('ix_queue_item_ready')

    op.drop_table('queue_item')
    with op.batch_alter_table('hl7_exchange', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_hl7_exchange_received_at'))

    op.drop_table('hl7_exchange')
    with op.batch_alter_table('continuation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_continuation_expires_at'))

    op.drop_table('continuation')
