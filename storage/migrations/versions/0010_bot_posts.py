"""bot_posts: the bot's own messages, kept so that a reply to one continues the
conversation it was written in (never trained on: not in messages); unlearned_messages:
the messages members took out of the history ("Don't learn from this"), never stored
again

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bot_posts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=100), nullable=False),
        sa.Column("thread", sa.String(length=100), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("chain", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name=op.f("fk_bot_posts_channel_id_channels"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bot_posts")),
        sa.UniqueConstraint(
            "channel_id", "external_id", name=op.f("uq_bot_posts_channel_id_external_id")
        ),
    )
    op.create_index(
        "ix_bot_posts_channel_thread", "bot_posts", ["channel_id", "thread"], unique=False
    )
    op.create_table(
        "unlearned_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name=op.f("fk_unlearned_messages_channel_id_channels"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_unlearned_messages")),
        sa.UniqueConstraint(
            "channel_id",
            "external_id",
            name=op.f("uq_unlearned_messages_channel_id_external_id"),
        ),
    )


def downgrade() -> None:
    op.drop_table("unlearned_messages")
    op.drop_index("ix_bot_posts_channel_thread", table_name="bot_posts")
    op.drop_table("bot_posts")
