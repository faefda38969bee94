"""finance: channel costs, budgets, alerts, the ledger export's index

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 00:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FIXED4 = sa.BigInteger  # Fixed4: credits as whole 1/10,000s


def upgrade() -> None:
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("costs", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("budget_credits", FIXED4(), nullable=True))
        batch_op.add_column(sa.Column("budget_period", sa.String(10), nullable=True))
        batch_op.add_column(sa.Column("alert_below", FIXED4(), nullable=True))
        batch_op.add_column(sa.Column("low_balance_alerted", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("budget_credits", FIXED4(), nullable=True))
        batch_op.add_column(sa.Column("budget_period", sa.String(10), nullable=True))
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("account_budget_window", sa.String(24), nullable=True))
        batch_op.add_column(sa.Column("key_budget_window", sa.String(24), nullable=True))
    op.create_index("ix_ledger_created", "ledger_entries", ["created_at"])
    op.create_table(
        "budget_spend",
        sa.Column("scope", sa.String(40), primary_key=True),
        sa.Column("window", sa.String(24), primary_key=True),
        sa.Column("spent", FIXED4(), nullable=False),
        sa.Column("alerted", sa.Integer(), nullable=False),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("dedupe_key", sa.String(200), nullable=False, unique=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(300), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_alerts_status_next", "alerts", ["status", "next_at"])


def downgrade() -> None:
    op.drop_index("ix_alerts_status_next", table_name="alerts")
    op.drop_table("alerts")
    op.drop_table("budget_spend")
    op.drop_index("ix_ledger_created", table_name="ledger_entries")
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_column("key_budget_window")
        batch_op.drop_column("account_budget_window")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("budget_period")
        batch_op.drop_column("budget_credits")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("low_balance_alerted")
        batch_op.drop_column("alert_below")
        batch_op.drop_column("budget_period")
        batch_op.drop_column("budget_credits")
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.drop_column("costs")
