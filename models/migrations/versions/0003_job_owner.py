"""jobs: the replica that runs each job, and the key that makes it exclusive

Several replicas share one database: a job is interrupted only when the replica that owns it
is gone, and "one reindex at a time" holds across replicas.

Revision ID: 0003_job_owner
Revises: 0002
Create Date: 2026-12-07 06:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003_job_owner'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('owner', sa.String(length=128), nullable=True))
        batch.add_column(sa.Column('exclusive_key', sa.String(length=64), nullable=True))
    op.create_index('ix_jobs_exclusive_key', 'jobs', ['exclusive_key'])


def downgrade() -> None:
    op.drop_index('ix_jobs_exclusive_key', table_name='jobs')
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('exclusive_key')
        batch.drop_column('owner')
