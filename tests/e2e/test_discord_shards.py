"""Discord sharding: two bot processes (two apps here, each with its own database), each
running one of two shards, split the guilds between them. Each guild's messages reach
exactly one of them, and a mention is answered exactly once, by the one that holds it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import App
from bot.config import Settings
from bot.domain import ChannelRef
from tests.e2e.serving import serving, until, with_discord
from tests.fakes.discord_server import MEMBER_USER_ID, FakeDiscord

pytestmark = pytest.mark.usefixtures("ml_libraries")

# Discord puts a guild on shard (guild_id >> 22) % shard_count.
GUILD_A, GUILD_B = str(10 << 22), str(11 << 22)  # shards 0 and 1 of 2
CHANNEL_A, CHANNEL_B = "5001", "5002"


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    guilds: dict[int | str, dict[str, Any]] = {
        GUILD_A: {"name": "A", "channels": {CHANNEL_A: "general"}},
        GUILD_B: {"name": "B", "channels": {CHANNEL_B: "general"}},
    }
    async with FakeDiscord(guilds=guilds) as server:
        with server.patched_discord_py():
            yield server


def shard(settings: Settings, fake: FakeDiscord, tmp: Path, ids: list[int]) -> Settings:
    own = tmp / f"shard{ids[0]}"
    return with_discord(settings, fake).model_copy(
        update={
            "data_dir": own,
            "database_url": f"sqlite+aiosqlite:///{own}.db",
            "discord_sync_guild": None,
            "discord_shard_count": 2,
            "discord_shard_ids": ids,
        }
    )


async def texts(app: App, guild: str, channel: str) -> list[str]:
    return [m.text for m in await app.messages.recent(ChannelRef("discord", guild, channel), 10)]


async def test_two_processes_split_the_guilds_and_answer_each_mention_once(
    local_settings: Settings, fake: FakeDiscord, tmp_path: Path
) -> None:
    async with (
        serving(shard(local_settings, fake, tmp_path, [0])) as first,
        serving(shard(local_settings, fake, tmp_path, [1])) as second,
    ):
        await fake.send_message(CHANNEL_A, MEMBER_USER_ID, "in guild A", mentions_bot=True)
        await fake.send_message(CHANNEL_B, MEMBER_USER_ID, "in guild B", mentions_bot=True)

        def replies(channel: str) -> int:
            return sum(
                1
                for r in fake.requests
                if r.method == "POST" and r.path == f"/channels/{channel}/messages"
            )

        await until(lambda: replies(CHANNEL_A) >= 1 and replies(CHANNEL_B) >= 1, 60)
        await asyncio.sleep(0.5)  # a second answer, were there one, would be on its way
        assert (replies(CHANNEL_A), replies(CHANNEL_B)) == (1, 1)
        assert await texts(first, GUILD_A, CHANNEL_A) == ["in guild A"]
        assert await texts(first, GUILD_B, CHANNEL_B) == []
        assert await texts(second, GUILD_B, CHANNEL_B) == ["in guild B"]
        assert await texts(second, GUILD_A, CHANNEL_A) == []
    shards = sorted(tuple(s.shard) for s in fake._sessions.values())
    assert shards == [(0, 2), (1, 2)]


def test_shard_ids_must_lie_within_the_count() -> None:
    from bot.config import load_settings
    from bot.errors import ConfigError

    with pytest.raises(ConfigError, match=r"DISCORD_SHARD_IDS.*shard ids from 0 to 1"):
        load_settings(discord_shard_count=2, discord_shard_ids=[2])
    with pytest.raises(ConfigError, match="needs TSUZUKI_DISCORD_SHARD_COUNT"):
        load_settings(discord_shard_ids=[0])
