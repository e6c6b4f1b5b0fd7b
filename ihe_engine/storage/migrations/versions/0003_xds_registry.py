"""XDS Document Registry: xds_object, xds_document_entry, xds_code, xds_author_person, xds_reference_id,
xds_submission_set, xds_folder, xds_association (ihe_engine/xds/registry/tables.py)

Revision ID: 0003_xds_registry
Revises: 0001
Create Date: 2026-11-21 22:46:48.272372
"""
from alembic import op
import sqlalchemy as sa
import ihe_engine.storage.base


revision = '0003_xds_registry'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('xds_object',
    sa.Column('uuid', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('lid', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=80), nullable=False),
    sa.Column('patient_key', sa.String(length=256), nullable=True),
    sa.Column('unique_id', sa.String(length=256), nullable=True),
    sa.Column('home', sa.String(length=256), nullable=True),
    sa.Column('object_type', sa.String(length=128), nullable=True),
    sa.Column('created_at', ihe_engine.storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', ihe_engine.storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('leaf_class', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_xds_object'))
    )
    with op.batch_alter_table('xds_object', schema=None) as batch_op:
        batch_op.create_index('ix_xds_object_lid_version', ['lid', 'version'], unique=False)
        batch_op.create_index('ix_xds_object_patient_kind_status', ['patient_key', 'kind', 'status'], unique=False)
        batch_op.create_index('ix_xds_object_unique_id', ['unique_id'], unique=False)

    op.create_table('xds_association',
    sa.Column('uuid', sa.String(length=64), nullable=False),
    sa.Column('type', sa.String(length=80), nullable=False),
    sa.Column('source_uuid', sa.String(length=64), nullable=False),
    sa.Column('target_uuid', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=80), nullable=False),
    sa.Column('submission_set_status', sa.String(length=20), nullable=True),
    sa.Column('previous_version', sa.String(length=20), nullable=True),
    sa.Column('original_status', sa.String(length=80), nullable=True),
    sa.Column('new_status', sa.String(length=80), nullable=True),
    sa.Column('association_propagation', sa.String(length=8), nullable=True),
    sa.ForeignKeyConstraint(['uuid'], ['xds_object.uuid'], name=op.f('fk_xds_association_uuid_xds_object'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_xds_association'))
    )
    with op.batch_alter_table('xds_association', schema=None) as batch_op:
        batch_op.create_index('ix_xds_association_source_type', ['source_uuid', 'type'], unique=False)
        batch_op.create_index('ix_xds_association_target_type', ['target_uuid', 'type'], unique=False)

    op.create_table('xds_author_person',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('object_uuid', sa.String(length=64), nullable=False),
    sa.Column('value', sa.String(length=512), nullable=False),
    sa.ForeignKeyConstraint(['object_uuid'], ['xds_object.uuid'], name=op.f('fk_xds_author_person_object_uuid_xds_object'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_xds_author_person'))
    )
    with op.batch_alter_table('xds_author_person', schema=None) as batch_op:
        batch_op.create_index('ix_xds_author_person_object', ['object_uuid'], unique=False)
        batch_op.create_index('ix_xds_author_person_value', ['value'], unique=False)

    op.create_table('xds_code',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('object_uuid', sa.String(length=64), nullable=False),
    sa.Column('attribute', sa.String(length=40), nullable=False),
    sa.Column('code', sa.String(length=256), nullable=False),
    sa.Column('scheme', sa.String(length=256), nullable=False),
    sa.ForeignKeyConstraint(['object_uuid'], ['xds_object.uuid'], name=op.f('fk_xds_code_object_uuid_xds_object'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_xds_code'))
    )
    with op.batch_alter_table('xds_code', schema=None) as batch_op:
        batch_op.create_index('ix_xds_code_attribute_code', ['attribute', 'code', 'scheme', 'object_uuid'], unique=False)
        batch_op.create_index('ix_xds_code_object_attribute', ['object_uuid', 'attribute'], unique=False)

    op.create_table('xds_document_entry',
    sa.Column('uuid', sa.String(length=64), nullable=False),
    sa.Column('patient_key', sa.String(length=256), nullable=False),
    sa.Column('status', sa.String(length=80), nullable=False),
    sa.Column('object_type', sa.String(length=128), nullable=False),
    sa.Column('class_code', sa.String(length=256), nullable=True),
    sa.Column('class_scheme', sa.String(length=256), nullable=True),
    sa.Column('type_code', sa.String(length=256), nullable=True),
    sa.Column('type_scheme', sa.String(length=256), nullable=True),
    sa.Column('format_code', sa.String(length=256), nullable=True),
    sa.Column('format_scheme', sa.String(length=256), nullable=True),
    sa.Column('hcft_code', sa.String(length=256), nullable=True),
    sa.Column('hcft_scheme', sa.String(length=256), nullable=True),
    sa.Column('practice_code', sa.String(length=256), nullable=True),
    sa.Column('practice_scheme', sa.String(length=256), nullable=True),
    sa.Column('creation_time_key', sa.String(length=14), nullable=True),
    sa.Column('service_start_key', sa.String(length=14), nullable=True),
    sa.Column('service_stop_key', sa.String(length=14), nullable=True),
    sa.Column('repository_unique_id', sa.String(length=256), nullable=True),
    sa.Column('hash', sa.String(length=40), nullable=True),
    sa.Column('size', sa.BigInteger(), nullable=True),
    sa.Column('mime_type', sa.String(length=256), nullable=True),
    sa.Column('availability', sa.String(length=80), nullable=True),
    sa.Column('language_code', sa.String(length=80), nullable=True),
    sa.ForeignKeyConstraint(['uuid'], ['xds_object.uuid'], name=op.f('fk_xds_document_entry_uuid_xds_object'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_xds_document_entry'))
    )
    with op.batch_alter_table('xds_document_entry', schema=None) as batch_op:
        batch_op.create_index('ix_xds_de_patient_class', ['patient_key', 'class_code', 'class_scheme'], unique=False)
        batch_op.create_index('ix_xds_de_patient_format', ['patient_key', 'format_code', 'format_scheme'], unique=False)
        batch_op.create_index('ix_xds_de_patient_service_start', ['patient_key', 'service_start_key'], unique=False)
        batch_op.create_index('ix_xds_de_patient_status_created', ['patient_key', 'status', 'object_type', 'creation_time_key'], unique=False)
        batch_op.create_index('ix_xds_de_patient_type', ['patient_key', 'type_code', 'type_scheme'], unique=False)

    op.create_table('xds_folder',
    sa.Column('uuid', sa.String(length=64), nullable=False),
    sa.Column('last_update_time', sa.String(length=14), nullable=False),
    sa.Column('last_update_time_key', sa.String(length=14), nullable=False),
    sa.ForeignKeyConstraint(['uuid'], ['xds_object.uuid'], name=op.f('fk_xds_folder_uuid_xds_object'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_xds_folder'))
    )
    op.create_table('xds_reference_id',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('object_uuid', sa.String(length=64), nullable=False),
    sa.Column('value', sa.String(length=512), nullable=False),
    sa.ForeignKeyConstraint(['object_uuid'], ['xds_object.uuid'], name=op.f('fk_xds_reference_id_object_uuid_xds_object'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_xds_reference_id'))
    )
    with op.batch_alter_table('xds_reference_id', schema=None) as batch_op:
        batch_op.create_index('ix_xds_reference_id_object', ['object_uuid'], unique=False)
        batch_op.create_index('ix_xds_reference_id_value', ['value', 'object_uuid'], unique=False)

    op.create_table('xds_submission_set',
    sa.Column('uuid', sa.String(length=64), nullable=False),
    sa.Column('source_id', sa.String(length=256), nullable=True),
    sa.Column('submission_time_key', sa.String(length=14), nullable=True),
    sa.Column('content_type_code', sa.String(length=256), nullable=True),
    sa.Column('content_type_scheme', sa.String(length=256), nullable=True),
    sa.ForeignKeyConstraint(['uuid'], ['xds_object.uuid'], name=op.f('fk_xds_submission_set_uuid_xds_object'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_xds_submission_set'))
    )
    with op.batch_alter_table('xds_submission_set', schema=None) as batch_op:
        batch_op.create_index('ix_xds_submission_set_source_id', ['source_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('xds_submission_set', schema=None) as batch_op:
        batch_op.drop_index('ix_xds_submission_set_source_id')

    op.drop_table('xds_submission_set')
    with op.batch_alter_table('xds_reference_id', schema=None) as batch_op:
        batch_op.drop_index('ix_xds_reference_id_value')
        batch_op.drop_index('ix_xds_reference_id_object')

    op.drop_table('xds_reference_id')
    op.drop_table('xds_folder')
    with op.batch_alter_table('xds_document_entry', schema=None) as batch_op:
        batch_op.drop_index('ix_xds_de_patient_type')
        batch_op.drop_index('ix_xds_de_patient_status_created')
        batch_op.drop_index('ix_xds_de_patient_service_start')
        batch_op.drop_index('ix_xds_de_patient_format')
        batch_op.drop_index('ix_xds_de_patient_class')

    op.drop_table('xds_document_entry')
    with op.batch_alter_table('xds_code', schema=None) as batch_op:
        batch_op.drop_index('ix_xds_code_object_attribute')
        batch_op.drop_index('ix_xds_code_attribute_code')

    op.drop_table('xds_code')
    with op.batch_alter_table('xds_author_person', schema=None) as batch_op:
        batch_op.drop_index('ix_xds_author_person_value')
        batch_op.drop_index('ix_xds_author_person_object')

    op.drop_table('xds_author_person')
    with op.batch_alter_table('xds_association', schema=None) as batch_op:
        batch_op.drop_index('ix_xds_association_target_type')
        batch_op.drop_index('ix_xds_association_source_type')

    op.drop_table('xds_association')
    with op.batch_alter_table('xds_object', schema=None) as batch_op:
        batch_op.drop_index('ix_xds_object_unique_id')
        batch_op.drop_index('ix_xds_object_patient_kind_status')
        batch_op.drop_index('ix_xds_object_lid_version')

    op.drop_table('xds_object')
