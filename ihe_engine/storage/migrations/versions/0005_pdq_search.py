"""PDQ search storage: patient traits PDQ queries (street, state, country, account number, mother's maiden name),
their search keys, patient_name_key (name keys and French Soundex codes), identifier indexes for domain lookups

Revision ID: 0005_pdq_search
Revises: 0002_identity
Create Date: 2026-11-22 00:50:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0005_pdq_search'
down_revision = '0002_identity'
branch_labels = None
depends_on = None

_PATIENT_COLUMNS = (('street', 200), ('state', 100), ('country', 20), ('account_number', 200),
                    ('mothers_maiden_name', 200), ('city_key', 200), ('street_key', 200), ('postal_code_key', 20),
                    ('phone_key', 100))
_PATIENT_INDEXES = ('account_number', 'city_key', 'postal_code_key', 'phone_key')


def upgrade() -> None:
    with op.batch_alter_table('patient', schema=None) as batch_op:
        for name, length in _PATIENT_COLUMNS:
            batch_op.add_column(sa.Column(name, sa.String(length=length), nullable=True))
        for name in _PATIENT_INDEXES:
            batch_op.create_index(f'ix_patient_{name}', [name], unique=False)
    with op.batch_alter_table('patient_identifier', schema=None) as batch_op:
        batch_op.create_index('ix_patient_identifier_value', ['value'], unique=False)
        batch_op.create_index('ix_patient_identifier_namespace_id_authority_key', ['namespace_id', 'authority_key'],
                              unique=False)
    op.create_table('patient_name_key',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=1), nullable=False),
    sa.Column('key', sa.String(length=200).with_variant(sa.String(length=200, collation='C'), 'postgresql'),
              nullable=False),
    sa.Column('phonetic', sa.String(length=8), nullable=False),
    sa.ForeignKeyConstraint(['patient_id'], ['patient.id'], name=op.f('fk_patient_name_key_patient_id_patient')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patient_name_key'))
    )
    with op.batch_alter_table('patient_name_key', schema=None) as batch_op:
        batch_op.create_index('ix_patient_name_key_kind_key', ['kind', 'key', 'patient_id'], unique=False)
        batch_op.create_index('ix_patient_name_key_kind_phonetic', ['kind', 'phonetic', 'patient_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_patient_name_key_patient_id'), ['patient_id'], unique=False)
    _backfill()


def _backfill() -> None:
    """Keys for patients fed before this revision (the same functions the store uses when it writes)."""
    from ihe_engine.identity.names import compact, name_key_rows, normalise

    bind = op.get_bind()
    patient = sa.table('patient', sa.column('id'), sa.column('family_name'), sa.column('birth_name'),
                       sa.column('given_name'), sa.column('city'), sa.column('postal_code'), sa.column('phone'),
                       sa.column('city_key'), sa.column('postal_code_key'), sa.column('phone_key'))
    name_key = sa.table('patient_name_key', sa.column('patient_id'), sa.column('kind'), sa.column('key'),
                        sa.column('phonetic'))
    rows = bind.execute(sa.select(patient.c.id, patient.c.family_name, patient.c.birth_name, patient.c.given_name,
                                  patient.c.city, patient.c.postal_code, patient.c.phone)).all()
    for row in rows:
        keys = name_key_rows(row.id, {"family_name": row.family_name, "birth_name": row.birth_name,
                                      "given_name": row.given_name})
        if keys:
            bind.execute(sa.insert(name_key), keys)
        bind.execute(sa.update(patient).where(patient.c.id == row.id).values(
            city_key=normalise(row.city) or None, postal_code_key=compact(row.postal_code) or None,
            phone_key="".join(filter(str.isdigit, row.phone or "")) or None))


def downgrade() -> None:
    op.drop_table('patient_name_key')
    with op.batch_alter_table('patient_identifier', schema=None) as batch_op:
        batch_op.drop_index('ix_patient_identifier_namespace_id_authority_key')
        batch_op.drop_index('ix_patient_identifier_value')
    with op.batch_alter_table('patient', schema=None) as batch_op:
        for name in _PATIENT_INDEXES:
            batch_op.drop_index(f'ix_patient_{name}')
        for name, _length in _PATIENT_COLUMNS:
            batch_op.drop_column(name)
