"""operations: named operators, the audit log, webhook secret rotation, channel auto-disable,
a team's own task list

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "operators",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("entity", sa.String(40), nullable=False),
        sa.Column("entity_id", sa.String(120), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
    )
    op.create_index("ix_audit_at", "audit_log", ["at"])
    op.create_index("ix_audit_entity", "audit_log", ["entity", "entity_id", "at"])
    op.create_index("ix_audit_actor", "audit_log", ["actor", "at"])
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("previous_webhook_secret", sa.String(80), nullable=True))
        batch_op.add_column(sa.Column("webhook_secret_rotated_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("disabled_reason", sa.String(300), nullable=True))
        batch_op.add_column(sa.Column("credential_failures", sa.Integer(), nullable=False, server_default="0"))
    op.create_index("ix_tasks_account_created", "tasks", ["account_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_tasks_account_created", table_name="tasks")
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.drop_column("credential_failures")
        batch_op.drop_column("disabled_reason")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("webhook_secret_rotated_at")
        batch_op.drop_column("previous_webhook_secret")
    op.drop_index("ix_audit_actor", table_name="audit_log")
    op.drop_index("ix_audit_entity", table_name="audit_log")
    op.drop_index("ix_audit_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("operators")
