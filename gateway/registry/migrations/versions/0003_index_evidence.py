"""index evidence: what the index shows for projects uploaded over SSH

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-10
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('index_projects',
    sa.Column('project', sa.String(length=255), nullable=False),
    sa.Column('first_read_at', sa.DateTime(), nullable=False),
    sa.Column('last_read_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('project', name=op.f('pk_index_projects'))
    )
    op.create_table('index_files',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project', sa.String(length=255), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('via_gateway', sa.Boolean(), nullable=False),
    sa.Column('upload_time', sa.DateTime(), nullable=True),
    sa.Column('first_seen_at', sa.DateTime(), nullable=False),
    sa.Column('absent_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_index_files')),
    sa.UniqueConstraint('project', 'filename', name='uq_index_files_project_filename')
    )
    with op.batch_alter_table('upload_events', schema=None) as batch_op:
        batch_op.create_index('ix_upload_events_project_uploads', ['project', 'outcome', 'account_id', 'at'],
                              unique=False)
        batch_op.create_index('ix_upload_events_account_uploads', ['account_id', 'project', 'outcome', 'at'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('upload_events', schema=None) as batch_op:
        batch_op.drop_index('ix_upload_events_account_uploads')
        batch_op.drop_index('ix_upload_events_project_uploads')
    op.drop_table('index_files')
    op.drop_table('index_projects')
