"""identity cross-referencing: vigilance_item (the identity-vigilance queue)

Revision ID: 0006_identity_xref
Revises: 0002_identity
Create Date: 2026-11-22 00:40:00.000000
"""
from alembic import op
import sqlalchemy as sa
import ihe_engine.storage.base


revision = '0006_identity_xref'
down_revision = '0002_identity'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('vigilance_item',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('other_patient_id', sa.Integer(), nullable=True),
    sa.Column('pair_key', sa.String(length=64), nullable=True),
    sa.Column('reason', sa.String(length=400), nullable=False),
    sa.Column('details', sa.Text(), nullable=False),
    sa.Column('created_at', ihe_engine.storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('decided_at', ihe_engine.storage.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('decided_by', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['other_patient_id'], ['patient.id'], name=op.f('fk_vigilance_item_other_patient_id_patient')),
    sa.ForeignKeyConstraint(['patient_id'], ['patient.id'], name=op.f('fk_vigilance_item_patient_id_patient')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vigilance_item'))
    )
    with op.batch_alter_table('vigilance_item', schema=None) as batch_op:
        batch_op.create_index('ix_vigilance_item_status_id', ['status', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_vigilance_item_patient_id'), ['patient_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_vigilance_item_other_patient_id'), ['other_patient_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_vigilance_item_pair_key'), ['pair_key'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('vigilance_item', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vigilance_item_pair_key'))
        batch_op.drop_index(batch_op.f('ix_vigilance_item_other_patient_id'))
        batch_op.drop_index(batch_op.f('ix_vigilance_item_patient_id'))
        batch_op.drop_index('ix_vigilance_item_status_id')

    op.drop_table('vigilance_item')
