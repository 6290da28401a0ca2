"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-28 11:39:57.016707
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('executions',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('team_id', sa.Text(), nullable=False),
    sa.Column('workflow_id', sa.Text(), nullable=False),
    sa.Column('installation_id', sa.Text(), nullable=False),
    sa.Column('user_id', sa.Text(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('mode', sa.Text(), nullable=False),
    sa.Column('trigger', sa.LargeBinary(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('started_at', sa.BigInteger(), nullable=True),
    sa.Column('stopped_at', sa.BigInteger(), nullable=True),
    sa.Column('output', sa.LargeBinary(), nullable=True),
    sa.Column('response_status', sa.Integer(), nullable=True),
    sa.Column('error', sa.LargeBinary(), nullable=True),
    sa.Column('rerun_of', sa.Text(), nullable=True),
    sa.Column('lease_owner', sa.Text(), nullable=True),
    sa.Column('lease_expires', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('executions', schema=None) as batch_op:
        batch_op.create_index('ix_executions_installation', ['installation_id', 'id'], unique=False)
        batch_op.create_index('ix_executions_rerun_of', ['rerun_of'], unique=False, sqlite_where=sa.text('rerun_of IS NOT NULL'), postgresql_where=sa.text('rerun_of IS NOT NULL'))
        batch_op.create_index('ix_executions_stopped', ['stopped_at'], unique=False)
        batch_op.create_index('ix_executions_unfinished', ['status', 'lease_expires'], unique=False, sqlite_where=sa.text("status IN ('queued', 'running', 'waiting')"), postgresql_where=sa.text("status IN ('queued', 'running', 'waiting')"))
        batch_op.create_index('ix_executions_user', ['user_id'], unique=False)
        batch_op.create_index('ix_executions_workflow', ['workflow_id', 'id'], unique=False)

    op.create_table('steps',
    sa.Column('execution_id', sa.Text(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('block_id', sa.Text(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.BigInteger(), nullable=False),
    sa.Column('stopped_at', sa.BigInteger(), nullable=False),
    sa.Column('input', sa.LargeBinary(), nullable=False),
    sa.Column('output', sa.LargeBinary(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('reused', sa.Boolean(), nullable=False),
    sa.Column('truncated', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('execution_id', 'seq'),
    sqlite_with_rowid=False
    )
    op.create_table('teams',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('log_retention_s', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('api_keys',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('team_id', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('prefix', sa.Text(), nullable=False),
    sa.Column('hash', sa.Text(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('revoked_at', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('hash')
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index('ix_api_keys_team', ['team_id'], unique=False)

    op.create_table('users',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('team_id', sa.Text(), nullable=False),
    sa.Column('username', sa.Text(), nullable=False),
    sa.Column('full_name', sa.Text(), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('team_id', 'username', name='uq_users_team_username')
    )
    op.create_table('workflows',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('team_id', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('integration', sa.Text(), nullable=True),
    sa.Column('latest_version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('team_id', 'name', name='uq_workflows_team_name')
    )
    op.create_table('installations',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('team_id', sa.Text(), nullable=False),
    sa.Column('workflow_id', sa.Text(), nullable=False),
    sa.Column('user_id', sa.Text(), nullable=False),
    sa.Column('installed_version', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('installed_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.ForeignKeyConstraint(['workflow_id'], ['workflows.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('workflow_id', 'user_id', name='uq_installations_workflow_user')
    )
    op.create_table('workflow_versions',
    sa.Column('workflow_id', sa.Text(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('definition', sa.LargeBinary(), nullable=False),
    sa.Column('digest', sa.Text(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['workflow_id'], ['workflows.id'], ),
    sa.PrimaryKeyConstraint('workflow_id', 'version')
    )


def downgrade() -> None:
    op.drop_table('workflow_versions')
    op.drop_table('installations')
    op.drop_table('workflows')
    op.drop_table('users')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index('ix_api_keys_team')

    op.drop_table('api_keys')
    op.drop_table('teams')
    op.drop_table('steps')
    with op.batch_alter_table('executions', schema=None) as batch_op:
        batch_op.drop_index('ix_executions_workflow')
        batch_op.drop_index('ix_executions_user')
        batch_op.drop_index('ix_executions_unfinished', sqlite_where=sa.text("status IN ('queued', 'running', 'waiting')"), postgresql_where=sa.text("status IN ('queued', 'running', 'waiting')"))
        batch_op.drop_index('ix_executions_stopped')
        batch_op.drop_index('ix_executions_rerun_of', sqlite_where=sa.text('rerun_of IS NOT NULL'), postgresql_where=sa.text('rerun_of IS NOT NULL'))
        batch_op.drop_index('ix_executions_installation')

    op.drop_table('executions')
