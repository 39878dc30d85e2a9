"""scenarios: the third list (场景清单) with evaluation scores and outcomes

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07 10:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('scenarios',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('domains', sa.JSON(), nullable=False),
    sa.Column('domain_predicted', sa.Boolean(), nullable=False),
    sa.Column('domain_scores', sa.JSON(), nullable=True),
    sa.Column('region', sa.String(length=64), nullable=True),
    sa.Column('lead_org', sa.String(length=200), nullable=True),
    sa.Column('need_id', sa.String(length=64), nullable=True),
    sa.Column('capability_ids', sa.JSON(), nullable=False),
    sa.Column('stage', sa.String(length=16), nullable=False),
    sa.Column('year', sa.Integer(), nullable=True),
    sa.Column('tech_advancement', sa.Float(), nullable=True),
    sa.Column('economic_benefit', sa.Float(), nullable=True),
    sa.Column('social_benefit', sa.Float(), nullable=True),
    sa.Column('promotion_value', sa.Float(), nullable=True),
    sa.Column('contract_wan', sa.Float(), nullable=True),
    sa.Column('first_purchase', sa.Boolean(), nullable=True),
    sa.Column('signed_at', sa.Date(), nullable=True),
    sa.Column('benchmark_case', sa.Boolean(), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('visibility', sa.String(length=16), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('scenarios', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_scenarios_region'), ['region'], unique=False)
        batch_op.create_index(batch_op.f('ix_scenarios_need_id'), ['need_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_scenarios_stage'), ['stage'], unique=False)
        batch_op.create_index(batch_op.f('ix_scenarios_year'), ['year'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('scenarios', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_scenarios_year'))
        batch_op.drop_index(batch_op.f('ix_scenarios_stage'))
        batch_op.drop_index(batch_op.f('ix_scenarios_need_id'))
        batch_op.drop_index(batch_op.f('ix_scenarios_region'))
    op.drop_table('scenarios')
