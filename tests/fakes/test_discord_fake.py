"""The Discord fake, driven by a real discord.py client."""

# The fixture is imported by name; pytest injects it into the test parameters of that name.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import discord
import pytest
from discord import app_commands

from tests.fakes.discord_server import (
    ADMIN_USER_ID,
    DEFAULT_CHANNEL_ID,
    DEFAULT_GUILD_ID,
    MEMBER_USER_ID,
    FakeDiscord,
    fake_discord,  # noqa: F401
)

TOKEN = "test-token"


def make_client(**options: Any) -> discord.Client:
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.message_content = True
    # discord.py waits guild_ready_timeout (2 s by default) after the last GUILD_CREATE
    # before it fires on_ready; keep tests quick.
    options.setdefault("guild_ready_timeout", 0.05)
    return discord.Client(intents=intents, **options)


@contextlib.asynccontextmanager
async def running(
    client: discord.Client, *, ready_within: float = 5.0
) -> AsyncIterator[discord.Client]:
    task = asyncio.create_task(client.start(TOKEN))
    try:
        ready = asyncio.create_task(client.wait_until_ready())
        done, _ = await asyncio.wait(
            {ready, task}, timeout=ready_within, return_when="FIRST_COMPLETED"
        )
        if task in done:
            task.result()  # the client died: raise its error
        if ready not in done:
            ready.cancel()
            raise TimeoutError("client did not become ready")
        yield client
    finally:
        await client.close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)


def text_channel(
    client: discord.Client, channel_id: str = DEFAULT_CHANNEL_ID
) -> discord.TextChannel:
    channel = client.get_channel(int(channel_id))
    assert isinstance(channel, discord.TextChannel)
    return channel


async def test_connects_identifies_and_gets_ready(fake_discord: FakeDiscord) -> None:
    client = make_client()
    async with running(client):
        assert client.user is not None
        assert client.user.id == int(fake_discord.bot_id)
        assert client.application_id == int(fake_discord.app_id)
        guild = client.get_guild(int(DEFAULT_GUILD_ID))
        assert guild is not None and guild.name == "Test Guild"
        assert text_channel(client).name == "general"
        assert guild.me is not None and guild.me.id == int(fake_discord.bot_id)
        # Without the members intent discord.py caches no other member; messages carry them.
        assert guild.get_member(int(ADMIN_USER_ID)) is None
        assert fake_discord.identify_count == 1
        assert fake_discord.gateway_queries == [
            {"v": "10", "encoding": "json", "compress": "zlib-stream"}
        ]
        assert fake_discord.heartbeat_count >= 1
    assert "Bot test-token" in fake_discord.tokens_seen
    identify = next(p for p in fake_discord.gateway_received if p["op"] == 2)
    assert identify["d"]["token"] == TOKEN
    assert fake_discord.unknown_routes == []
    assert all("Authorization" not in r.headers for r in fake_discord.requests)


async def test_gateway_events_reach_the_client(fake_discord: FakeDiscord) -> None:
    client = make_client()
    got: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    @client.event
    async def on_message(message: discord.Message) -> None:
        await got.put(("message", message))

    @client.event
    async def on_raw_message_edit(payload: discord.RawMessageUpdateEvent) -> None:
        await got.put(("edit", payload))

    @client.event
    async def on_raw_message_delete(payload: discord.RawMessageDeleteEvent) -> None:
        await got.put(("delete", payload))

    @client.event
    async def on_raw_bulk_message_delete(payload: discord.RawBulkMessageDeleteEvent) -> None:
        await got.put(("bulk", payload))

    async with running(client):
        sent = await fake_discord.send_message(DEFAULT_CHANNEL_ID, ADMIN_USER_ID, "hello there")
        kind, message = await asyncio.wait_for(got.get(), 5)
        assert kind == "message"
        assert message.content == "hello there"
        assert message.id == int(sent["id"])
        assert message.author.id == int(ADMIN_USER_ID)
        assert message.author.name == "alice"
        assert isinstance(message.author, discord.Member)
        assert message.author.guild_permissions.administrator
        assert message.guild is not None and message.guild.id == int(DEFAULT_GUILD_ID)
        assert isinstance(message.channel, discord.TextChannel)
        assert message.channel.name == "general"
        assert client.user not in message.mentions

        await fake_discord.send_message(DEFAULT_CHANNEL_ID, MEMBER_USER_ID, "hi", mentions_bot=True)
        _, mention = await asyncio.wait_for(got.get(), 5)
        assert client.user in mention.mentions
        assert mention.content == f"<@{fake_discord.bot_id}> hi"

        await fake_discord.edit_message(DEFAULT_CHANNEL_ID, sent["id"], "hello, edited")
        kind, edit = await asyncio.wait_for(got.get(), 5)
        assert kind == "edit"
        assert edit.message_id == int(sent["id"])
        assert edit.data["content"] == "hello, edited"
        assert edit.data["edited_timestamp"] is not None
        assert edit.guild_id == int(DEFAULT_GUILD_ID)

        await fake_discord.delete_message(DEFAULT_CHANNEL_ID, sent["id"])
        kind, deleted = await asyncio.wait_for(got.get(), 5)
        assert kind == "delete"
        assert deleted.message_id == int(sent["id"])
        assert deleted.channel_id == int(DEFAULT_CHANNEL_ID)

        await fake_discord.bulk_delete(DEFAULT_CHANNEL_ID, ["5", "6"])
        kind, bulk = await asyncio.wait_for(got.get(), 5)
        assert kind == "bulk"
        assert bulk.message_ids == {5, 6}


async def test_message_content_intent_blanks_other_peoples_messages(
    fake_discord: FakeDiscord,
) -> None:
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    client = discord.Client(intents=intents, guild_ready_timeout=0.05)
    got: asyncio.Queue[discord.Message] = asyncio.Queue()

    @client.event
    async def on_message(message: discord.Message) -> None:
        await got.put(message)

    async with running(client):
        await fake_discord.send_message(DEFAULT_CHANNEL_ID, ADMIN_USER_ID, "secret")
        assert (await asyncio.wait_for(got.get(), 5)).content == ""
        await fake_discord.send_message(DEFAULT_CHANNEL_ID, ADMIN_USER_ID, "hey", mentions_bot=True)
        assert (await asyncio.wait_for(got.get(), 5)).content.endswith("hey")


async def test_slash_command_defer_and_followup(fake_discord: FakeDiscord) -> None:
    client = make_client()
    tree = app_commands.CommandTree(client)
    calls: asyncio.Queue[tuple[str, bool, str]] = asyncio.Queue()

    @tree.command(name="continue", description="Continue the text")
    async def continue_(interaction: discord.Interaction[Any], prompt: str) -> None:
        await interaction.response.defer()
        assert interaction.guild is not None
        await interaction.followup.send("hi", allowed_mentions=discord.AllowedMentions.none())
        await calls.put((prompt, interaction.permissions.manage_channels, interaction.user.name))

    guild = discord.Object(id=int(DEFAULT_GUILD_ID))
    tree.copy_global_to(guild=guild)
    async with running(client):
        synced = await tree.sync(guild=guild)
        assert [c.name for c in synced] == ["continue"]
        stored = fake_discord.commands[DEFAULT_GUILD_ID]
        assert stored[0]["options"][0]["name"] == "prompt"
        assert synced[0].id == int(stored[0]["id"])

        start = len(fake_discord.requests)
        payload = await fake_discord.slash_command(
            DEFAULT_CHANNEL_ID, ADMIN_USER_ID, "continue", {"prompt": "once upon"}
        )
        assert payload["data"]["id"] == stored[0]["id"]
        prompt, manage_channels, name = await asyncio.wait_for(calls.get(), 5)
        assert (prompt, manage_channels, name) == ("once upon", True, "alice")

        callback = await fake_discord.wait_for_request(path="/callback", start=start)
        assert callback.method == "POST"
        assert callback.path == f"/interactions/{payload['id']}/{payload['token']}/callback"
        assert callback.json["type"] == 5
        assert callback.status == 200
        followup = await fake_discord.wait_for_request(
            method="POST", path=f"/webhooks/{fake_discord.app_id}/{payload['token']}", start=start
        )
        assert followup.json["content"] == "hi"
        assert followup.json["allowed_mentions"] == {"parse": []}
        assert followup.time >= callback.time
        record = fake_discord.interaction(payload["token"])
        assert record.callback_type == 5
        assert record.original is not None and record.original["content"] == "hi"

        await fake_discord.slash_command(
            DEFAULT_CHANNEL_ID, MEMBER_USER_ID, "continue", {"prompt": "x"}
        )
        _, manage_channels, name = await asyncio.wait_for(calls.get(), 5)
        assert (manage_channels, name) == (False, "bob")
    assert fake_discord.unknown_routes == []


async def test_subcommands_and_late_answers(fake_discord: FakeDiscord) -> None:
    client = make_client()
    tree = app_commands.CommandTree(client)
    seen: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    errors: asyncio.Queue[BaseException] = asyncio.Queue()
    settings = app_commands.Group(name="settings", description="Settings")

    @settings.command(name="set", description="Change a setting")
    async def settings_set(interaction: discord.Interaction[Any], key: str, value: str) -> None:
        await seen.put((key, value))
        if key == "slow":
            await asyncio.sleep(0.5)
        try:
            await interaction.response.send_message("ok", ephemeral=True)
        except discord.HTTPException as exc:
            await errors.put(exc)

    tree.add_command(settings)
    async with running(client):
        await tree.sync()
        assert fake_discord.commands[None][0]["options"][0]["type"] == 1
        await fake_discord.slash_command(
            DEFAULT_CHANNEL_ID, ADMIN_USER_ID, "settings set", {"key": "top_k", "value": "5"}
        )
        assert await asyncio.wait_for(seen.get(), 5) == ("top_k", "5")
        answer = await fake_discord.wait_for_request(path="/callback")
        assert answer.json["type"] == 4
        assert answer.json["data"]["flags"] == 64
        assert answer.status == 200

        fake_discord.interaction_ack_timeout = 0.2

        await fake_discord.slash_command(
            DEFAULT_CHANNEL_ID,
            ADMIN_USER_ID,
            "settings",
            {"key": "slow", "value": "1"},
            subcommand="set",
        )
        assert await asyncio.wait_for(seen.get(), 5) == ("slow", "1")
        error = await asyncio.wait_for(errors.get(), 5)
        assert isinstance(error, discord.NotFound) and error.code == 10062


async def test_channel_send_records_body_and_echoes(fake_discord: FakeDiscord) -> None:
    client = make_client()
    echoed: asyncio.Queue[discord.Message] = asyncio.Queue()

    @client.event
    async def on_message(message: discord.Message) -> None:
        await echoed.put(message)

    async with running(client):
        channel = text_channel(client)
        sent = await channel.send(
            f"hi <@{ADMIN_USER_ID}>", allowed_mentions=discord.AllowedMentions.none()
        )
        request = await fake_discord.wait_for_request(
            method="POST", path=f"/channels/{DEFAULT_CHANNEL_ID}/messages"
        )
        assert request.json["content"] == f"hi <@{ADMIN_USER_ID}>"
        assert request.json["allowed_mentions"] == {"parse": []}
        assert sent.author.id == int(fake_discord.bot_id)
        assert sent.mentions == []
        assert (await asyncio.wait_for(echoed.get(), 5)).id == sent.id

        original = await fake_discord.send_message(DEFAULT_CHANNEL_ID, MEMBER_USER_ID, "q")
        incoming = await asyncio.wait_for(echoed.get(), 5)
        reply = await incoming.reply("a", mention_author=False)
        body = fake_discord.requests[-1].json
        assert body["message_reference"]["message_id"] == int(original["id"])
        assert body["allowed_mentions"]["replied_user"] is False
        assert reply.reference is not None and reply.reference.message_id == int(original["id"])

        with pytest.raises(discord.HTTPException) as too_long:
            await channel.send("x" * 2001)
        assert too_long.value.code == 50035


async def test_rate_limit_is_honoured(fake_discord: FakeDiscord) -> None:
    client = make_client()
    async with running(client):
        fake_discord.rate_limit_next(
            f"/channels/{DEFAULT_CHANNEL_ID}/messages", retry_after=0.5, method="POST"
        )
        start = len(fake_discord.requests)
        await text_channel(client).send("after the wait")
        posts = [r for r in fake_discord.requests[start:] if r.matches("POST", "/messages")]
        assert [r.status for r in posts] == [429, 200]
        assert posts[0].response == {
            "message": "You are being rate limited.",
            "retry_after": 0.5,
            "global": False,
        }
        assert posts[1].time - posts[0].time >= 0.45


async def test_history_pages_through_stored_messages(fake_discord: FakeDiscord) -> None:
    base = datetime.now(UTC) - timedelta(days=3)
    stored = [
        fake_discord.add_history(
            DEFAULT_CHANNEL_ID,
            ADMIN_USER_ID if i % 2 else MEMBER_USER_ID,
            f"message {i}",
            timestamp=base + timedelta(minutes=i),
        )
        for i in range(250)
    ]
    client = make_client()
    async with running(client):
        channel = text_channel(client)
        start = len(fake_discord.requests)
        newest = [m async for m in channel.history(limit=230)]
        assert [m.content for m in newest] == [f"message {i}" for i in range(249, 19, -1)]
        pages = [r for r in fake_discord.requests[start:] if r.matches("GET", "/messages")]
        assert [r.query["limit"] for r in pages] == ["100", "100", "30"]
        assert "before" not in pages[0].query
        assert pages[1].query["before"] == stored[150]["id"]

        after = datetime.fromisoformat(stored[239]["timestamp"])
        oldest_first = [m.content async for m in channel.history(limit=None, after=after)]
        assert oldest_first == [f"message {i}" for i in range(240, 250)]
        assert newest[0].created_at == datetime.fromisoformat(stored[249]["timestamp"])


async def test_resume_after_reconnect_replays_missed_events(fake_discord: FakeDiscord) -> None:
    client = make_client()
    got: asyncio.Queue[str] = asyncio.Queue()
    resumed = asyncio.Event()

    @client.event
    async def on_message(message: discord.Message) -> None:
        await got.put(message.content)

    @client.event
    async def on_resumed() -> None:
        resumed.set()

    async with running(client):
        await fake_discord.request_reconnect()
        await fake_discord.send_message(DEFAULT_CHANNEL_ID, ADMIN_USER_ID, "while away")
        await asyncio.wait_for(resumed.wait(), 5)
        assert await asyncio.wait_for(got.get(), 5) == "while away"
        assert fake_discord.resume_count == 1
        assert fake_discord.identify_count == 1
        assert len(fake_discord.gateway_queries) == 2


async def test_plain_text_gateway_and_custom_config() -> None:
    base_before = discord.http.Route.BASE
    fake = FakeDiscord(
        guilds={"42": {"name": "Other", "channels": {"43": "random", "44": {"name": "news"}}}},
        users={"7": {"name": "eve", "admin": True}},
        bot_id=70,
        app_id=71,
        token=TOKEN,
        compress_gateway=False,
    )
    async with fake:
        fake.patch_discord_py()
        assert discord.http.Route.BASE == fake.api_url
        client = make_client()
        async with running(client):
            assert client.user is not None and client.user.id == 70
            assert {c.name for c in client.get_all_channels()} == {"random", "news"}
            channel = text_channel(client, "44")
            await channel.send("x")
            await fake.wait_for_request(method="POST", path="/channels/44/messages")
        bad = make_client()
        with pytest.raises(discord.LoginFailure):
            await bad.login("wrong")
        await bad.close()
    assert discord.http.Route.BASE == base_before
    assert "Bot wrong" in fake.tokens_seen


async def test_unknown_routes_are_recorded(fake_discord: FakeDiscord) -> None:
    client = make_client()
    async with running(client):
        with pytest.raises(discord.NotFound):
            await client.fetch_invite("abc")
    assert fake_discord.unknown_routes == ["GET /invites/abc"]


async def test_edits_are_recorded_in_order(fake_discord: FakeDiscord) -> None:
    """What a user saw of a deferred answer and of a message, edit by edit."""
    client = make_client()
    tree = app_commands.CommandTree(client)
    none = discord.AllowedMentions.none()

    @tree.command(name="continue", description="Continue the text")
    async def continue_(interaction: discord.Interaction[Any], prompt: str) -> None:
        await interaction.response.defer(thinking=True)
        for text in ("one", "one two", "one two three"):
            await interaction.edit_original_response(content=text, allowed_mentions=none)
        await interaction.followup.send("four", allowed_mentions=none)

    guild = discord.Object(id=int(DEFAULT_GUILD_ID))
    tree.copy_global_to(guild=guild)
    async with running(client):
        await tree.sync(guild=guild)
        payload = await fake_discord.slash_command(
            DEFAULT_CHANNEL_ID, MEMBER_USER_ID, "continue", {"prompt": "p"}
        )
        await fake_discord.wait_for_request(method="POST", path="/webhooks/")
        assert fake_discord.original_versions(payload["token"]) == [
            "",  # "thinking…"
            "one",
            "one two",
            "one two three",
        ]
        (followup,) = fake_discord.interaction(payload["token"]).followups
        assert fake_discord.versions_of(followup["id"]) == ["four"]

        sent = await text_channel(client).send("a", allowed_mentions=none)
        await sent.edit(content="ab", allowed_mentions=none)
        await sent.edit(content="abc", allowed_mentions=none)
        assert fake_discord.versions_of(sent.id) == ["a", "ab", "abc"]
    edits = [r for r in fake_discord.requests if r.method == "PATCH"]
    assert [r.path.rsplit("/", 1)[-1] for r in edits] == ["@original"] * 3 + [str(sent.id)] * 2
