"""SQLAlchemy 2.x declarative models: the tables of DESIGN.md's data model.

Schema changes go through Alembic (storage/migrations); these classes are what the
migrations are generated from and what the repositories query.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bot.statuses import JobStatus, VersionStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


# Named constraints, so Alembic migrations (and SQLite batch mode) can refer to them.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class Workspace(Base):
    """A Discord guild, a Slack team, or the console's single local workspace."""

    __tablename__ = "workspaces"
    __table_args__ = (UniqueConstraint("platform", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Channel(Base):
    __tablename__ = "channels"
    __table_args__ = (UniqueConstraint("workspace_id", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200), default="")
    # Message content is personal data: no training until an admin opts the channel in.
    training_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Only the sampling settings an admin set for this channel; the rest come from the
    # configured defaults, so changing a default reaches every channel that kept it.
    sampling: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # When a stored message was last deleted or edited (the nightly run is due after).
    history_changed_at: Mapped[datetime | None]


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("workspace_id", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(100))
    display_name: Mapped[str] = mapped_column(String(200), default="")
    is_bot: Mapped[bool] = mapped_column(Boolean, default=False)
    opted_out: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class VoiceConsent(Base):
    """A member's own consent to `/continue … as:@them` in one channel: their messages
    there train with their voice tag, and only that channel's model may write as them."""

    __tablename__ = "voice_consents"
    __table_args__ = (UniqueConstraint("channel_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Message(Base):
    __tablename__ = "messages"
    # The same platform event stored twice is one row.
    __table_args__ = (
        UniqueConstraint("channel_id", "external_id"),
        Index("ix_messages_channel_created", "channel_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(100))
    author_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    edited_at: Mapped[datetime | None]
    is_bot: Mapped[bool] = mapped_column(Boolean, default=False)


class BotPost(Base):
    """A message the bot posted (a reply, a continuation), kept so that a member's reply
    to it continues the conversation: its text, and the conversation it was written
    after (`chain`: the external ids of the messages, oldest first, its own answer's
    question last). Never trained on, never counted: it is not in `messages`."""

    __tablename__ = "bot_posts"
    __table_args__ = (
        UniqueConstraint("channel_id", "external_id"),
        Index("ix_bot_posts_channel_thread", "channel_id", "thread"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(100))
    # Slack: the thread it was posted in (its root's ts); None elsewhere.
    thread: Mapped[str | None] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(Text)
    chain: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UnlearnedMessage(Base):
    """A message taken out of the history at a member's or an admin's word ("Don't learn
    from this"): it is never stored again, whoever brings it back (a platform's
    re-delivery, a backfill, an import)."""

    __tablename__ = "unlearned_messages"
    __table_args__ = (UniqueConstraint("channel_id", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("channel_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    base_model: Mapped[str] = mapped_column(String(300))
    method: Mapped[str] = mapped_column(String(16))  # lora | full
    path: Mapped[str] = mapped_column(String(1000))
    train_loss: Mapped[float | None] = mapped_column(Float)
    eval_loss: Mapped[float | None] = mapped_column(Float)
    eval_perplexity: Mapped[float | None] = mapped_column(Float)
    tokens_seen: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default=VersionStatus.CANDIDATE)
    # Why a version was not promoted, or anything else worth showing next to it.
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When it last became active: rollback returns to the previously active version.
    activated_at: Mapped[datetime | None]
    # The newest message the version was trained on: the nightly job counts what is new.
    last_message_id: Mapped[int | None] = mapped_column(BigInteger)
    # Held-out bits per character of this version, and of the channel's own character
    # Markov chain on the same messages (the bots Tsuzuki replaces): lower is better.
    eval_bits_per_char: Mapped[float | None] = mapped_column(Float)
    markov_bits_per_char: Mapped[float | None] = mapped_column(Float)
    live_bits_per_char: Mapped[float | None] = mapped_column(Float)
    live_markov_bits_per_char: Mapped[float | None] = mapped_column(Float)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_priority", "status", "priority"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # train | backfill | …
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)  # JobStatus
    priority: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # The process running the job (host name, process id) and when it last said it is
    # alive: a running job whose owner is gone is taken over and resumed by the next
    # process; a live one never is. NULL when nobody holds it.
    owner_host: Mapped[str | None] = mapped_column(String(255))
    owner_pid: Mapped[int | None] = mapped_column(Integer)
    heartbeat_at: Mapped[datetime | None]


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # Who did it, as "<platform>:<user id>" (or "cli:<os user>").
    actor: Mapped[str] = mapped_column(String(200))
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("channels.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(64))  # settings.set, settings.reset, consent…
    key: Mapped[str | None] = mapped_column(String(64))
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)


class Secret(Base):
    """Keys this installation made for itself (never a platform token): the voice-tag
    key, so no one who can read the code can compute a member's tag."""

    __tablename__ = "secrets"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
