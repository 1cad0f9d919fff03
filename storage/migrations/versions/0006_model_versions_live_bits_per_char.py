"""model_versions.live_bits_per_char and live_markov_bits_per_char: a version's held-out
quality as users meet it (the channel's counts learning every message at once), next to
the channel's Markov chain learning the same way

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("live_bits_per_char", sa.Float(), nullable=True))
        batch.add_column(sa.Column("live_markov_bits_per_char", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("live_markov_bits_per_char")
        batch.drop_column("live_bits_per_char")
