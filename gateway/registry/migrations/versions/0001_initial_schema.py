"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-24
"""

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('accounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('disabled', sa.Boolean(), nullable=False),
    sa.Column('exempt', sa.Boolean(), nullable=False),
    sa.Column('token_ciphertext', sa.Text(), nullable=True),
    sa.Column('token_set_at', sa.DateTime(), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_accounts')),
    sa.UniqueConstraint('name', name=op.f('uq_accounts_name'))
    )
    op.create_table('schedule_windows',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('starts_at', sa.DateTime(), nullable=False),
    sa.Column('ends_at', sa.DateTime(), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('cancelled_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_schedule_windows'))
    )
    with op.batch_alter_table('schedule_windows', schema=None) as batch_op:
        batch_op.create_index('ix_schedule_windows_kind', ['kind'], unique=False)

    op.create_table('notification_sends',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign', sa.String(length=100), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.Column('message_id', sa.String(length=255), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_notification_sends_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_sends'))
    )
    with op.batch_alter_table('notification_sends', schema=None) as batch_op:
        batch_op.create_index('ix_notification_sends_campaign_account', ['campaign', 'account_id'], unique=False)

    op.create_table('ssh_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('fingerprint', sa.String(length=100), nullable=False),
    sa.Column('algorithm', sa.String(length=64), nullable=False),
    sa.Column('bits', sa.Integer(), nullable=True),
    sa.Column('public_key', sa.Text(), nullable=False),
    sa.Column('comment', sa.String(length=255), nullable=True),
    sa.Column('weak', sa.Boolean(), nullable=False),
    sa.Column('allowed_projects', sa.Text(), nullable=True),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.Column('last_used_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_ssh_keys_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ssh_keys')),
    sa.UniqueConstraint('fingerprint', name=op.f('uq_ssh_keys_fingerprint'))
    )
    with op.batch_alter_table('ssh_keys', schema=None) as batch_op:
        batch_op.create_index('ix_ssh_keys_account_id', ['account_id'], unique=False)

    op.create_table('upload_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('account_name', sa.String(length=100), nullable=True),
    sa.Column('key_fingerprint', sa.String(length=100), nullable=True),
    sa.Column('client_addr', sa.String(length=64), nullable=True),
    sa.Column('ssh_client_version', sa.String(length=255), nullable=True),
    sa.Column('user_agent', sa.String(length=255), nullable=True),
    sa.Column('action', sa.String(length=32), nullable=True),
    sa.Column('project', sa.String(length=255), nullable=True),
    sa.Column('version', sa.String(length=100), nullable=True),
    sa.Column('filename', sa.String(length=255), nullable=True),
    sa.Column('size', sa.BigInteger(), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('upstream_status', sa.Integer(), nullable=True),
    sa.Column('outcome', sa.String(length=32), nullable=False),
    sa.Column('duration_ms', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('legacy_crypto', sa.Boolean(), nullable=False),
    sa.Column('replica', sa.String(length=100), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_upload_events_account_id_accounts'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_upload_events'))
    )
    with op.batch_alter_table('upload_events', schema=None) as batch_op:
        batch_op.create_index('ix_upload_events_account_at', ['account_id', 'at'], unique=False)
        batch_op.create_index('ix_upload_events_at', ['at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('upload_events', schema=None) as batch_op:
        batch_op.drop_index('ix_upload_events_at')
        batch_op.drop_index('ix_upload_events_account_at')

    op.drop_table('upload_events')
    with op.batch_alter_table('ssh_keys', schema=None) as batch_op:
        batch_op.drop_index('ix_ssh_keys_account_id')

    op.drop_table('ssh_keys')
    with op.batch_alter_table('notification_sends', schema=None) as batch_op:
        batch_op.drop_index('ix_notification_sends_campaign_account')

    op.drop_table('notification_sends')
    with op.batch_alter_table('schedule_windows', schema=None) as batch_op:
        batch_op.drop_index('ix_schedule_windows_kind')

    op.drop_table('schedule_windows')
    op.drop_table('accounts')
