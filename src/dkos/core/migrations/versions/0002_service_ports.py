"""service ports for TCP apps; events found by deployment

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "service_ports",
        sa.Column("port", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("port_name", sa.String(length=63), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"]),
        sa.PrimaryKeyConstraint("port"),
        sa.UniqueConstraint("app_id", "port_name"),
    )
    op.create_index("ix_events_deployment", "events", ["deployment"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_events_deployment", table_name="events")
    op.drop_table("service_ports")
