"""The parts every process that runs models builds the same way: the stores over one
database, the model resolver and the training runs. bot/app.py's build_app and a Ray
training task (ray_training.py) both build them here, so neither wires them by hand."""

from __future__ import annotations

from dataclasses import dataclass

from bot.config import Settings
from bot.device import Device
from bot.engine.live import LiveCounts
from bot.engine.resolver import ModelResolver
from bot.engine.training_runs import TrainingService
from bot.generation.spec import ModelSpec
from bot.training.lineage import plan_forget
from storage.db import Database
from storage.stores import (
    SqlBotPostStore,
    SqlChannelStore,
    SqlJobStore,
    SqlMessageStore,
    SqlModelRegistry,
    SqlUserStore,
)


@dataclass(frozen=True)
class SqlStores:
    """Every store over one database (bot/ports.py Stores)."""

    channels: SqlChannelStore
    messages: SqlMessageStore
    registry: SqlModelRegistry
    users: SqlUserStore
    jobs: SqlJobStore
    posts: SqlBotPostStore

    @classmethod
    def over(cls, db: Database, settings: Settings | None = None) -> SqlStores:
        """The stores; live ingest's writes as `settings` say (group commit by default)."""
        messages = (
            SqlMessageStore(
                db,
                group_commit=settings.ingest_group_commit,
                max_queued=settings.ingest_queue_max,
            )
            if settings is not None
            else SqlMessageStore(db)
        )
        return cls(
            SqlChannelStore(db),
            messages,
            SqlModelRegistry(db),
            SqlUserStore(db, plan_forget),
            SqlJobStore(db),
            SqlBotPostStore(db),
        )


@dataclass(frozen=True)
class ModelParts:
    resolver: ModelResolver
    training: TrainingService


def model_parts(settings: Settings, stores: SqlStores, device: Device) -> ModelParts:
    """The resolver of the configured base and the training runs, on `device`."""
    base = ModelSpec.parse(settings.base_model)
    resolver = ModelResolver(
        base, settings.models_dir, stores.registry, stores.messages, device, stores.channels
    )
    training = TrainingService(
        settings, stores.channels, stores.messages, stores.registry, resolver, device
    )
    return ModelParts(resolver, training)


def live_counts(settings: Settings, stores: SqlStores) -> LiveCounts:
    """The live counts of every channel this process serves, over the database."""
    return LiveCounts(
        stores.messages,
        stores.channels,
        stores.registry,
        author_prefix=settings.train_author_prefix,
    )
