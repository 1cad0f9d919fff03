"""The stores the core's ports ask for, on SQLAlchemy (SQLite or PostgreSQL): one store
a module."""

from storage.stores.bot_posts import SqlBotPostStore
from storage.stores.channel_store import SqlChannelStore
from storage.stores.job_store import SqlJobStore
from storage.stores.message_store import SqlMessageStore
from storage.stores.model_registry import SqlModelRegistry
from storage.stores.user_store import SqlUserStore

__all__ = [
    "SqlBotPostStore",
    "SqlChannelStore",
    "SqlJobStore",
    "SqlMessageStore",
    "SqlModelRegistry",
    "SqlUserStore",
]
