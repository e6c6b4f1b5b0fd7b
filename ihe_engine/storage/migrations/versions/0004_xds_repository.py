"""XDS Document Repository: xds_repository_document

Revision ID: 0004_xds_repository
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
import ihe_engine.storage.base


revision = '0004_xds_repository'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'xds_repository_document',
        sa.Column('document_unique_id', sa.String(length=128), nullable=False),
        sa.Column('repository_unique_id', sa.String(length=64), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('sha1', sa.String(length=40), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.Column('mime_type', sa.String(length=255), nullable=False),
        sa.Column('home_community_id', sa.String(length=255), nullable=True),
        sa.Column('created_at', ihe_engine.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column('removed', sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint('document_unique_id', name=op.f('pk_xds_repository_document')),
    )
    op.create_index('ix_xds_repository_document_sha256_removed', 'xds_repository_document',
                    ['sha256', 'removed'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_xds_repository_document_sha256_removed', table_name='xds_repository_document')
    op.drop_table('xds_repository_document')
