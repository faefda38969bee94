"""the request log: upstream attempts as rows, the caller's own request id

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 22:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "upstream_attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("request_id", sa.String(40), sa.ForeignKey("usage_records.id"), nullable=False),
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.String(40), nullable=False),
        sa.Column("channel_name", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(40), nullable=False),
        sa.Column("upstream_model", sa.String(200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error_code", sa.String(60), nullable=True),
        sa.Column("error", sa.String(300), nullable=True),
        sa.Column("images", sa.Integer(), nullable=False),
        sa.Column("possibly_billed", sa.Boolean(), nullable=False),
        sa.Column("upstream_cost", sa.BigInteger(), nullable=True),  # Fixed4: 1/10,000 of a unit
    )
    op.create_index("ix_attempts_request", "upstream_attempts", ["request_id", "n"])
    op.create_index("ix_attempts_started", "upstream_attempts", ["started_at"])
    op.create_index("ix_attempts_channel_started", "upstream_attempts", ["channel_id", "started_at"])
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("client_request_id", sa.String(128), nullable=True))
        # The request log's search: newest first, overall and by the caller's own id.
        batch_op.create_index("ix_usage_created", ["created_at"], unique=False)
        batch_op.create_index("ix_usage_client_request", ["client_request_id"], unique=False)
        # Filters that may match few rows: without these, a full scan of the table.
        batch_op.create_index("ix_usage_channel_created", ["channel_id", "created_at"], unique=False)
        batch_op.create_index("ix_usage_error_created", ["error_code", "created_at"], unique=False)
        batch_op.create_index("ix_usage_user_created", ["user", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_user_created")
        batch_op.drop_index("ix_usage_error_created")
        batch_op.drop_index("ix_usage_channel_created")
        batch_op.drop_index("ix_usage_client_request")
        batch_op.drop_index("ix_usage_created")
        batch_op.drop_column("client_request_id")
    op.drop_index("ix_attempts_channel_started", table_name="upstream_attempts")
    op.drop_index("ix_attempts_started", table_name="upstream_attempts")
    op.drop_index("ix_attempts_request", table_name="upstream_attempts")
    op.drop_table("upstream_attempts")
