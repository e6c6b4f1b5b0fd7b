"""identity: patient_visit (the visits ITI-22 PDVQ answers with)

Revision ID: 0009_patient_visit
Revises: 0005_pdq_search
Create Date: 2026-11-22 04:10:00.000000
"""
from alembic import op
import sqlalchemy as sa
import ihe_engine.storage.base


revision = '0009_patient_visit'
down_revision = '0005_pdq_search'
branch_labels = None
depends_on = None

_INDEXED = ('visit_number', 'patient_class', 'facility', 'attending_id', 'attending_family_key', 'hospital_service')


def upgrade() -> None:
    op.create_table('patient_visit',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('visit_key', sa.String(length=250), nullable=False),
    sa.Column('visit_number', sa.String(length=200), nullable=False),
    sa.Column('patient_class', sa.String(length=20), nullable=False),
    sa.Column('point_of_care', sa.String(length=80), nullable=False),
    sa.Column('room', sa.String(length=80), nullable=False),
    sa.Column('bed', sa.String(length=80), nullable=False),
    sa.Column('facility', sa.String(length=200), nullable=False),
    sa.Column('attending_id', sa.String(length=200), nullable=False),
    sa.Column('attending_family_key', sa.String(length=200), nullable=False),
    sa.Column('hospital_service', sa.String(length=80), nullable=False),
    sa.Column('admitted_at', sa.String(length=26), nullable=False),
    sa.Column('discharged_at', sa.String(length=26), nullable=False),
    sa.Column('pv1', sa.Text(), nullable=False),
    sa.Column('pv2', sa.Text(), nullable=True),
    sa.Column('updated_at', ihe_engine.storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['patient_id'], ['patient.id'], name=op.f('fk_patient_visit_patient_id_patient')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patient_visit')),
    sa.UniqueConstraint('patient_id', 'visit_key', name=op.f('uq_patient_visit_patient_id_visit_key'))
    )
    with op.batch_alter_table('patient_visit', schema=None) as batch_op:
        batch_op.create_index('ix_patient_visit_location', ['point_of_care', 'room', 'bed'], unique=False)
        for column in _INDEXED:
            batch_op.create_index(batch_op.f(f'ix_patient_visit_{column}'), [column], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('patient_visit', schema=None) as batch_op:
        for column in reversed(_INDEXED):
            batch_op.drop_index(batch_op.f(f'ix_patient_visit_{column}'))
        batch_op.drop_index('ix_patient_visit_location')
    op.drop_table('patient_visit')
