"""test attempts: an upstream attempt may belong to no request (a channel test)

`POST /admin/channels/{id}/test` makes one real upstream call that the provider bills like any
other, so reconciliation must see it; it has no usage record, hence no request id.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("upstream_attempts", schema=None) as batch_op:
        batch_op.alter_column("request_id", existing_type=sa.String(40), nullable=True)


def downgrade() -> None:
    # Test attempts have no request to belong to: they go before the column may refuse them.
    op.execute("DELETE FROM upstream_attempts WHERE request_id IS NULL")
    with op.batch_alter_table("upstream_attempts", schema=None) as batch_op:
        batch_op.alter_column("request_id", existing_type=sa.String(40), nullable=False)
