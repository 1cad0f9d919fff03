"""Discord, on discord.py 2.x: gateway events and slash commands in, replies out.

A translator only: it turns discord.py objects into ChatMessages and command calls on
the core, and the core's Replies into Discord messages. Every send carries
`AllowedMentions.none()` and text already neutralised by render.py, so generated text
never pings. Interactions are deferred before any work starts (Discord wants an answer
within 3 seconds; generation may take longer) and completed with a followup.

Generated text is shown as it is written (adapters/streaming.py): a /continue edits its
deferred answer, a reply to a mention is posted with the first words and edited as the
text grows, at most once a second per message (Discord's limit on edits is per channel,
about five in five seconds, and discord.py waits out a 429 by itself), and always ends
with the complete text. A reply that comes too fast to stream is posted as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import discord
import yarl
from discord import app_commands

from adapters.discord_commands import JapaneseCommands, register_commands
from adapters.discord_voice import VoicePoster
from adapters.render import partial_discord, render_discord
from adapters.streaming import LiveMessage
from bot import messages as M
from bot.core import command_values as cmd
from bot.core.command_values import Command
from bot.core.context import CommandContext
from bot.core.entry import Core
from bot.domain import Author, ChannelRef, ChatMessage, Notice, Reply

log = logging.getLogger(__name__)

NO_PINGS = discord.AllowedMentions.none()
# An interaction token lives 15 minutes; finish (or say it took too long) before that.
INTERACTION_BUDGET_S = 14 * 60
# One edit a second per streamed message: a user sees the text grow, and two replies
# streaming in one channel stay within its bucket of five edits in five seconds.
EDIT_INTERVAL_S = 1.0


def point_discord_py_at(api_url: str | None, gateway_url: str | None) -> None:
    """Another REST base and gateway (a fake in tests, a proxy in production). These
    are class attributes in discord.py, so this holds for the whole process."""
    if api_url:
        discord.http.Route.BASE = api_url.rstrip("/")
    if gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


def channel_ref(guild_id: int | None, channel_id: int) -> ChannelRef:
    # Direct messages have no guild; they share the "@me" workspace.
    return ChannelRef("discord", str(guild_id) if guild_id else "me", str(channel_id))


def is_admin(
    user: discord.abc.User | discord.Member, permissions: discord.Permissions | None
) -> bool:
    """`permissions` are the user's resolved permissions in the channel, when known;
    the guild-wide ones stand in only when they are not. An empty set in the channel
    counts as it is: `Permissions(0)` is falsy, so it is compared with None."""
    perms = permissions if permissions is not None else getattr(user, "guild_permissions", None)
    return perms is not None and (perms.manage_channels or perms.administrator)


class DiscordAdapter:
    name = "discord"

    def __init__(
        self,
        core: Core,
        token: str,
        *,
        sync_guild: int | None = None,
        api_url: str | None = None,
        gateway_url: str | None = None,
        edit_interval_s: float = EDIT_INTERVAL_S,
        shard_count: int | None = None,
        shard_ids: list[int] | None = None,
    ) -> None:
        self.core = core
        self.edit_interval_s = edit_interval_s
        self._token = token
        self.sync_guild = sync_guild  # commands sync to this guild at once (development)
        point_discord_py_at(api_url, gateway_url)
        intents = discord.Intents.default()
        intents.guilds = True
        intents.guild_messages = True
        intents.message_content = True  # privileged: enable it in the developer portal
        # Sharded always (one shard is a shard too): several processes, each with its
        # own shard ids, split the guilds between them; discord.py sends each shard's
        # IDENTIFY with (id, count), and Discord routes a guild's events to one shard.
        shards: dict[str, Any] = {"shard_count": shard_count}
        if shard_ids is not None:
            shards["shard_ids"] = shard_ids
        self.client = discord.AutoShardedClient(
            intents=intents, allowed_mentions=NO_PINGS, **shards
        )
        # Slash commands are the application's, not a shard's: one process syncs them.
        self.syncs_commands = shard_ids is None or 0 in shard_ids
        self.tree = app_commands.CommandTree(self.client)
        self.voices = VoicePoster(self.client)
        self._told_no_webhooks: set[ChannelRef] = set()
        register_commands(self.tree, self._respond, self._continue_message)
        self.client.event(self.on_ready)
        self.client.event(self.on_message)
        self.client.event(self.on_raw_message_edit)
        self.client.event(self.on_raw_message_delete)
        self.client.event(self.on_raw_bulk_message_delete)
        self.ready = asyncio.Event()

    # --- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        async with self.client:
            await self.client.start(self._token)

    async def close(self) -> None:
        await self.client.close()

    async def on_ready(self) -> None:
        if self.syncs_commands:
            await self._sync_commands()
        log.info("discord: connected as %s", self.client.user)
        self.ready.set()

    async def _sync_commands(self) -> None:
        await self.tree.set_translator(JapaneseCommands())
        if self.sync_guild:
            guild = discord.Object(id=self.sync_guild)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
        else:
            await self.tree.sync()

    # --- history (backfill) ------------------------------------------------------------

    async def fetch_history(
        self, ref: ChannelRef, before: str | None, limit: int
    ) -> list[ChatMessage]:
        """Up to `limit` messages older than `before`, newest first (discord.py waits
        out rate limits on its own)."""
        await self.ready.wait()
        channel = self.client.get_channel(int(ref.channel)) or await self.client.fetch_channel(
            int(ref.channel)
        )
        assert isinstance(channel, discord.abc.Messageable)
        marker = discord.Object(id=int(before)) if before else None
        return [
            self._chat_message(m, ref)
            async for m in channel.history(limit=limit, before=marker, oldest_first=False)
        ]

    def _chat_message(self, message: discord.Message, ref: ChannelRef) -> ChatMessage:
        me = self.client.user
        text = self._bot_mention().sub("", message.content).strip() if me else message.content
        return ChatMessage(
            channel=ref,
            external_id=str(message.id),
            author=Author(
                id=str(message.author.id),
                name=message.author.display_name,
                is_admin=is_admin(message.author, None),
                # The bot's own messages count as a bot's: never stored.
                is_bot=message.author.bot or (me is not None and message.author.id == me.id),
            ),
            text=text,
            created_at=message.created_at,
            edited_at=message.edited_at,
            reply_to=_referenced(message),
        )

    # --- gateway events ----------------------------------------------------------------

    def _bot_mention(self) -> re.Pattern[str]:
        assert self.client.user is not None
        return re.compile(rf"<@!?{self.client.user.id}>\s*")

    async def on_message(self, message: discord.Message) -> None:
        me = self.client.user
        if me is None or message.author.id == me.id:
            return
        mentioned = me in message.mentions
        ref = channel_ref(message.guild.id if message.guild else None, message.channel.id)
        chat = self._chat_message(message, ref)
        if not mentioned and chat.reply_to is None:
            # Stored; and now and then the channel's next message follows, unasked.
            said = await self.core.on_message(chat)
            if said is not None and said.unprompted:
                await self._post_unprompted(message.channel, ref, said)
            return
        # A mention, or a reply (the core answers one to the bot's own posts).
        answer: discord.Message | None = None

        async def show(text: str) -> None:
            nonlocal answer
            if answer is None:
                answer = await message.reply(text, allowed_mentions=NO_PINGS, mention_author=False)
            else:
                await answer.edit(content=text, allowed_mentions=NO_PINGS)

        resolved = message.reference.resolved if message.reference else None
        to_me = isinstance(resolved, discord.Message) and resolved.author.id == me.id
        async with self._live(show, "discord: reply") as live:
            async with message.channel.typing() if mentioned or to_me else _quiet():
                reply = await self.core.on_message(chat, mentions_bot=mentioned, stream=live)
            if reply is None:
                return
            if reply.unprompted:  # not an answer: the channel's next message
                await self._post_unprompted(message.channel, ref, reply)
                return
            pieces = [piece for text_ in reply.texts for piece in render_discord(text_)]
            posted: list[tuple[str, str]] = []
            if await live.finish(pieces[0]) and answer is not None:
                posted.append((str(answer.id), pieces[0]))
                pieces = pieces[1:]  # the streamed message shows the first
        for piece in pieces:
            sent = await message.reply(piece, allowed_mentions=NO_PINGS, mention_author=False)
            posted.append((str(sent.id), piece))
        await self.core.on_posted(ref, reply, posted)

    async def _post_unprompted(
        self, channel: discord.abc.Messageable, ref: ChannelRef, said: Reply
    ) -> None:
        posted = []
        for piece in (p for text in said.texts for p in render_discord(text)):
            sent = await channel.send(piece, allowed_mentions=NO_PINGS)
            posted.append((str(sent.id), piece))
        await self.core.on_posted(ref, said, posted)

    def _live(self, show: Callable[[str], Awaitable[None]], what: str) -> LiveMessage:
        return LiveMessage(show, partial_discord, interval_s=self.edit_interval_s, what=what)

    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        content = payload.data.get("content")
        if content is None:  # an embed or flag update, not an edit of the text
            return
        me = self.client.user
        if me is not None and str(payload.data.get("author", {}).get("id")) == str(me.id):
            return  # the bot's own text (a streamed reply growing) is never history
        ref = channel_ref(payload.guild_id, payload.channel_id)
        edited = payload.data.get("edited_timestamp")
        at = datetime.fromisoformat(edited) if edited else datetime.now(UTC)
        if self.client.user is not None:
            # Stored as a new message is: without the mention of the bot.
            content = self._bot_mention().sub("", content).strip()
        await self.core.on_edit(ref, str(payload.message_id), content, at)

    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        ref = channel_ref(payload.guild_id, payload.channel_id)
        await self.core.on_delete(ref, [str(payload.message_id)])

    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        ref = channel_ref(payload.guild_id, payload.channel_id)
        await self.core.on_delete(ref, [str(i) for i in payload.message_ids])

    # --- slash commands ----------------------------------------------------------------

    def _context(self, interaction: discord.Interaction[Any]) -> CommandContext:
        channel_id = interaction.channel_id or 0
        return CommandContext(
            channel_ref(interaction.guild_id, channel_id),
            Author(
                id=str(interaction.user.id),
                name=interaction.user.display_name,
                # Checked on the server side too: a guild can override the command's
                # default_member_permissions for anyone.
                is_admin=is_admin(interaction.user, interaction.permissions),
            ),
            # A Japanese Discord client is answered in Japanese, whatever TSUZUKI_LOCALE.
            locale="ja" if interaction.locale is discord.Locale.japanese else None,
        )

    async def _respond(
        self,
        interaction: discord.Interaction[Any],
        command: Command,
        *,
        ephemeral: bool,
    ) -> None:
        """Defer at once, run the command, then answer with followups; a generation
        shows in the deferred answer as it is written."""
        await interaction.response.defer(ephemeral=ephemeral, thinking=True)

        async def show(text: str) -> None:
            await interaction.edit_original_response(content=text, allowed_mentions=NO_PINGS)

        # A member's voice is posted under their name once written, never streamed.
        in_voice = isinstance(command, cmd.Continue) and command.voice is not None
        async with self._live(show, "discord: /continue") as live:
            # Only a /continue for one text streams; other commands ignore `stream`.
            ctx = dataclasses.replace(self._context(interaction), stream=None if in_voice else live)
            try:
                reply = await asyncio.wait_for(
                    self.core.on_command(ctx, command), INTERACTION_BUDGET_S
                )
            except TimeoutError:
                reply = Reply.error(M.t("too_slow"))
            if (
                reply.voice is not None
                and not reply.is_error
                and await self._in_voice(interaction, ctx, reply)
            ):
                return
            pieces = [piece for text in reply.texts for piece in render_discord(text)]
            posted: list[tuple[str, str]] = []
            if reply.is_error and not ephemeral:
                # The public "thinking…" message (or the text it showed so far) goes;
                # the error is for the asker only.
                await live.stop()
                await interaction.delete_original_response()
            elif await live.finish(pieces[0]):
                if reply.generated:
                    original = await interaction.original_response()
                    posted.append((str(original.id), pieces[0]))
                pieces = pieces[1:]  # the deferred answer shows the first
        for i, piece in enumerate(pieces):
            sent = await interaction.followup.send(
                piece,
                ephemeral=ephemeral or reply.is_error,
                allowed_mentions=NO_PINGS,
                wait=True,
                **_image(reply.image if i == len(pieces) - 1 else None),
            )
            posted.append((str(sent.id), piece))
        if reply.generated and not ephemeral:
            await self.core.on_posted(ctx.channel, reply, posted)
        if reply.voice is not None and ctx.actor.is_admin:
            # Posted as the bot, not under the member's name: the admin hears why, once.
            if ctx.channel not in self._told_no_webhooks:
                self._told_no_webhooks.add(ctx.channel)
                await interaction.followup.send(
                    M.t("voice_no_webhooks"), ephemeral=True, allowed_mentions=NO_PINGS
                )

    async def _in_voice(
        self, interaction: discord.Interaction[Any], ctx: CommandContext, reply: Reply
    ) -> bool:
        """Posts a reply written in a member's voice under their name (VoicePoster); the
        "thinking…" answer goes. False when it cannot be (no Manage Webhooks, or not a
        guild text channel): then it is posted as the bot's (`_respond`)."""
        assert reply.voice is not None
        channel = interaction.channel
        guild = interaction.guild
        posted = None
        if guild is not None and isinstance(channel, discord.abc.GuildChannel):
            member = guild.get_member(int(reply.voice)) or await guild.fetch_member(
                int(reply.voice)
            )
            posted = await self.voices.post(channel, member, reply.texts)
        if posted is None:
            return False
        await interaction.delete_original_response()
        await self.core.on_posted(ctx.channel, reply, posted)
        return True

    async def _continue_message(
        self, interaction: discord.Interaction[Any], message: discord.Message
    ) -> None:
        """ "Continue this message": the new text is posted in reply to the message; the
        asker's deferred answer goes again (or says what went wrong, to them alone)."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        text = self._bot_mention().sub("", message.content).strip()
        command = cmd.ContinueMessage(str(message.id), text, str(message.author.id))
        try:
            reply = await asyncio.wait_for(
                self.core.on_command(self._context(interaction), command), INTERACTION_BUDGET_S
            )
        except TimeoutError:
            reply = Reply.error(M.t("too_slow"))
        if reply.ephemeral:
            await interaction.edit_original_response(
                content=render_discord(reply.texts[0])[0], allowed_mentions=NO_PINGS
            )
            return
        posted = []
        for piece in (p for text_ in reply.texts for p in render_discord(text_)):
            sent = await message.reply(piece, allowed_mentions=NO_PINGS, mention_author=False)
            posted.append((str(sent.id), piece))
        await interaction.delete_original_response()
        ref = channel_ref(interaction.guild_id, interaction.channel_id or 0)
        await self.core.on_posted(ref, reply, posted)

    # --- notices ------------------------------------------------------------------------

    async def post_notice(self, notice: Notice) -> None:
        """In the channel, with the loss curve attached; one for an admin only goes to
        them as a direct message (a channel has no message only admins see)."""
        await self.ready.wait()
        target: discord.abc.Messageable
        if notice.to_user is not None:
            uid = int(notice.to_user)
            target = self.client.get_user(uid) or await self.client.fetch_user(uid)
        else:
            cid = int(notice.channel.channel)
            found = self.client.get_channel(cid) or await self.client.fetch_channel(cid)
            assert isinstance(found, discord.abc.Messageable)
            target = found
        pieces = render_discord(notice.text)
        for i, piece in enumerate(pieces):
            image = notice.image if i == len(pieces) - 1 else None
            await target.send(piece, allowed_mentions=NO_PINGS, **_image(image))


def _referenced(message: discord.Message) -> str | None:
    """The id of the message this one replies to (a reply's message reference; a
    forward or a pin notice references one too, but is no reply)."""
    reference = message.reference
    if reference is None or reference.message_id is None:
        return None
    if message.type is not discord.MessageType.reply:
        return None
    return str(reference.message_id)


@contextlib.asynccontextmanager
async def _quiet() -> AsyncIterator[None]:
    """No typing indicator: a reply to a member may well get no answer."""
    yield


def _image(path: str | None) -> dict[str, Any]:
    """The `file=` of a send, when there is a PNG to attach."""
    if path is None:
        return {}
    return {"file": discord.File(path, filename=Path(path).name)}
