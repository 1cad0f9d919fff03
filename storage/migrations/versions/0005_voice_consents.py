"""voice_consents: the members who turned `/voice on` in a channel, so that its model
learns their voice and `/continue … as:@them` may write in it

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "voice_consents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name=op.f("fk_voice_consents_channel_id_channels"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_voice_consents_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voice_consents")),
        sa.UniqueConstraint(
            "channel_id", "user_id", name=op.f("uq_voice_consents_channel_id_user_id")
        ),
    )
    op.create_index(
        op.f("ix_voice_consents_user_id"), "voice_consents", ["user_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_voice_consents_user_id"), table_name="voice_consents")
    op.drop_table("voice_consents")
