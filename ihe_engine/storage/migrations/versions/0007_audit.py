"""ATNA Audit Record Repository: audit_record (raw message, indexed columns, hash chain, idempotency key),
audit_index (patient, user, object and event-type keys with the event time), audit_chain (the chain head)

Revision ID: 0007_audit
Revises: 0001
Create Date: 2026-11-22 01:00:00
"""
from alembic import op
import sqlalchemy as sa
import ihe_engine.storage.base


revision = '0007_audit'
down_revision = '0001'
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
_TIME = ihe_engine.storage.base.UTCDateTime(timezone=True)
GENESIS_HASH = '0' * 64


def upgrade() -> None:
    op.create_table('audit_record',
    sa.Column('id', _BIGINT, autoincrement=False, nullable=False),
    sa.Column('idempotency_key', sa.String(length=64), nullable=True),
    sa.Column('received_at', _TIME, nullable=False),
    sa.Column('event_time', _TIME, nullable=False),
    sa.Column('event_code', sa.String(length=64), nullable=True),
    sa.Column('event_system', sa.String(length=64), nullable=True),
    sa.Column('event_text', sa.String(length=128), nullable=True),
    sa.Column('action', sa.String(length=1), nullable=True),
    sa.Column('outcome', sa.SmallInteger(), nullable=True),
    sa.Column('source_id', sa.String(length=255), nullable=True),
    sa.Column('valid', sa.Boolean(), nullable=False),
    sa.Column('problems', sa.Text(), nullable=True),
    sa.Column('transport', sa.String(length=8), nullable=False),
    sa.Column('peer', sa.String(length=255), nullable=True),
    sa.Column('hostname', sa.String(length=255), nullable=True),
    sa.Column('app_name', sa.String(length=48), nullable=True),
    sa.Column('msgid', sa.String(length=32), nullable=True),
    sa.Column('raw_kind', sa.String(length=8), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('record_hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_record')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_audit_record_idempotency_key'))
    )
    with op.batch_alter_table('audit_record', schema=None) as batch_op:
        batch_op.create_index('ix_audit_record_event_time', ['event_time'], unique=False)
        batch_op.create_index('ix_audit_record_event_code_time', ['event_code', 'event_time'], unique=False)
        batch_op.create_index('ix_audit_record_outcome_time', ['outcome', 'event_time'], unique=False)
        batch_op.create_index('ix_audit_record_source_time', ['source_id', 'event_time'], unique=False)
        batch_op.create_index('ix_audit_record_received_at', ['received_at'], unique=False)

    op.create_table('audit_index',
    sa.Column('id', _BIGINT, nullable=False),
    sa.Column('record_id', _BIGINT, nullable=False),
    sa.Column('kind', sa.String(length=1), nullable=False),
    sa.Column('value', sa.String(length=512), nullable=False),
    sa.Column('event_time', _TIME, nullable=False),
    sa.ForeignKeyConstraint(['record_id'], ['audit_record.id'], name=op.f('fk_audit_index_record_id_audit_record')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_index'))
    )
    with op.batch_alter_table('audit_index', schema=None) as batch_op:
        batch_op.create_index('ix_audit_index_lookup', ['kind', 'value', 'event_time', 'record_id'], unique=False)
        batch_op.create_index('ix_audit_index_record_id', ['record_id'], unique=False)

    chain = op.create_table('audit_chain',
    sa.Column('id', sa.SmallInteger(), autoincrement=False, nullable=False),
    sa.Column('last_id', _BIGINT, nullable=False),
    sa.Column('last_hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_chain'))
    )
    op.bulk_insert(chain, [{'id': 1, 'last_id': 0, 'last_hash': GENESIS_HASH}])


def downgrade() -> None:
    with op.batch_alter_table('audit_index', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_index_record_id')
        batch_op.drop_index('ix_audit_index_lookup')
    op.drop_table('audit_index')
    with op.batch_alter_table('audit_record', schema=None) as batch_op:
        for name in ('ix_audit_record_received_at', 'ix_audit_record_source_time', 'ix_audit_record_outcome_time',
                     'ix_audit_record_event_code_time', 'ix_audit_record_event_time'):
            batch_op.drop_index(name)
    op.drop_table('audit_record')
    op.drop_table('audit_chain')
