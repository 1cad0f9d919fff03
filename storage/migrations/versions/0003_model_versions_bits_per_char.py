"""model_versions.eval_bits_per_char and markov_bits_per_char: a version's held-out
quality next to the channel's own character Markov chain on the same messages

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("eval_bits_per_char", sa.Float(), nullable=True))
        batch.add_column(sa.Column("markov_bits_per_char", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("markov_bits_per_char")
        batch.drop_column("eval_bits_per_char")
