"""messages on PostgreSQL: channel and author references checked once per batch by the
stores, not row by row by foreign-key triggers

The two triggers cost about two fifths of an import's time on PostgreSQL (37k
messages/s with them, 60k without, the same statement). Every message row is written
by SqlMessageStore (import and live ingest), which takes its channel and author ids
from rows it creates or finds in the same transaction and checks them once per batch
under FOR KEY SHARE, the lock the triggers took row by row; channels and users are
never deleted. SQLite keeps its constraints (they cost it little).

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_REFERENCES = (
    ("fk_messages_author_id_users", "users", "author_id", "SET NULL"),
    ("fk_messages_channel_id_channels", "channels", "channel_id", "CASCADE"),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, _, _, _ in _REFERENCES:
        op.drop_constraint(name, "messages", type_="foreignkey")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, table, column, ondelete in _REFERENCES:
        op.create_foreign_key(name, "messages", table, [column], ["id"], ondelete=ondelete)
