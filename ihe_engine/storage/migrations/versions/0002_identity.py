"""patient identity store: patient, patient_identifier, identity_event

Revision ID: 0002_identity
Revises: 0001
Create Date: 2026-11-21 22:38:05.235613
"""
from alembic import op
import sqlalchemy as sa
import ihe_engine.storage.base


revision = '0002_identity'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('patient',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('merged_into_id', sa.Integer(), nullable=True),
    sa.Column('created_at', ihe_engine.storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', ihe_engine.storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('family_name', sa.String(length=200), nullable=True),
    sa.Column('family_name_key', sa.String(length=200), nullable=True),
    sa.Column('given_name', sa.String(length=200), nullable=True),
    sa.Column('given_names', sa.String(length=400), nullable=True),
    sa.Column('birth_name', sa.String(length=200), nullable=True),
    sa.Column('birth_name_key', sa.String(length=200), nullable=True),
    sa.Column('birth_date', sa.String(length=8), nullable=True),
    sa.Column('sex', sa.String(length=1), nullable=True),
    sa.Column('birthplace', sa.String(length=200), nullable=True),
    sa.Column('city', sa.String(length=200), nullable=True),
    sa.Column('postal_code', sa.String(length=20), nullable=True),
    sa.Column('phone', sa.String(length=100), nullable=True),
    sa.Column('identity_reliability', sa.String(length=20), nullable=True),
    sa.ForeignKeyConstraint(['merged_into_id'], ['patient.id'], name=op.f('fk_patient_merged_into_id_patient')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patient'))
    )
    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_patient_birth_date'), ['birth_date'], unique=False)
        batch_op.create_index(batch_op.f('ix_patient_birth_name_key'), ['birth_name_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_patient_family_name_key'), ['family_name_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_patient_merged_into_id'), ['merged_into_id'], unique=False)

    op.create_table('identity_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('occurred_at', ihe_engine.storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('other_patient_id', sa.Integer(), nullable=True),
    sa.Column('sending_application', sa.String(length=227), nullable=False),
    sa.Column('sending_facility', sa.String(length=227), nullable=False),
    sa.Column('control_id', sa.String(length=199), nullable=False),
    sa.Column('details', sa.Text(), nullable=False),
    sa.Column('raw_message', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['other_patient_id'], ['patient.id'], name=op.f('fk_identity_event_other_patient_id_patient')),
    sa.ForeignKeyConstraint(['patient_id'], ['patient.id'], name=op.f('fk_identity_event_patient_id_patient')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_identity_event'))
    )
    with op.batch_alter_table('identity_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_identity_event_other_patient_id'), ['other_patient_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_identity_event_patient_id'), ['patient_id'], unique=False)

    op.create_table('patient_identifier',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('value', sa.String(length=200), nullable=False),
    sa.Column('authority_key', sa.String(length=200), nullable=False),
    sa.Column('namespace_id', sa.String(length=200), nullable=False),
    sa.Column('universal_id', sa.String(length=200), nullable=False),
    sa.Column('universal_id_type', sa.String(length=20), nullable=False),
    sa.Column('type_code', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', ihe_engine.storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', ihe_engine.storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['patient_id'], ['patient.id'], name=op.f('fk_patient_identifier_patient_id_patient')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patient_identifier')),
    sa.UniqueConstraint('authority_key', 'value', name=op.f('uq_patient_identifier_authority_key_value'))
    )
    with op.batch_alter_table('patient_identifier', schema=None) as batch_op:
        batch_op.create_index('ix_patient_identifier_patient_id_status', ['patient_id', 'status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('patient_identifier', schema=None) as batch_op:
        batch_op.drop_index('ix_patient_identifier_patient_id_status')

    op.drop_table('patient_identifier')
    with op.batch_alter_table('identity_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_identity_event_patient_id'))
        batch_op.drop_index(batch_op.f('ix_identity_event_other_patient_id'))

    op.drop_table('identity_event')
    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_patient_merged_into_id'))
        batch_op.drop_index(batch_op.f('ix_patient_family_name_key'))
        batch_op.drop_index(batch_op.f('ix_patient_birth_name_key'))
        batch_op.drop_index(batch_op.f('ix_patient_birth_date'))

    op.drop_table('patient')