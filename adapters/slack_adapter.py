"""Slack, on slack-bolt's async app: events and slash commands in, replies out.

A translator only, like the Discord adapter. Slack wants an acknowledgement within 3
seconds, so every command is acknowledged first and worked on later (bolt's lazy
listeners); the answer goes to the command's response_url, or chat.postMessage for
mentions. Text is escaped (render.py) so generated text can never form `<!channel>`,
`<@U…>` or a link. Slack retries deliveries it thinks were missed: a seen event id (or
message ts) is answered once, while a first delivery that happens to carry a retry
header is still handled.

Generated text is shown as it is written (adapters/streaming.py): the first words are
posted (chat.postMessage) and the message updated (chat.update) as the text grows, at
most every 1.2 s per message and about 40 times a minute in all (chat.update is Tier 3,
some 50 calls a minute per workspace), always ending with the complete text. A /continue
is answered in the channel this way when the bot may post there; where it may not (a
private channel or a conversation it is not in), and when the text comes too fast to
stream, it is answered through the command's response_url as before.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from adapters.render import SLACK_LIMIT, partial_slack, render_slack
from adapters.slack_home import OPT_IN, OPT_OUT, VOICE_OFF, home_view
from adapters.streaming import EditBudget, LiveMessage, describe
from bot import messages as M
from bot.core import command_values as cmd
from bot.core.context import CommandContext
from bot.core.entry import Core
from bot.core.text_commands import split_options
from bot.domain import Author, ChannelRef, ChatMessage, Notice, Reply
from bot.importing.slack_export import member_words
from bot.messages import Locale

log = logging.getLogger(__name__)

# The callback ids of the app's message shortcuts (README: the manifest).
CONTINUE_MESSAGE = "continue_message"
UNLEARN = "dont_learn"
SEEN_EVENTS = 5000  # event ids remembered for deduplicating Slack's retries
ADMIN_CACHE_S = 300.0
# Per streamed message, seconds between updates; and the budget all streams share:
# Tier 3 allows about 50 chat.update calls a minute, 40 leave room for the final ones.
UPDATE_INTERVAL_S = 1.2
UPDATES_PER_MINUTE = 40
UPDATE_BURST = 10


def ts_time(ts: str) -> datetime:
    return datetime.fromtimestamp(float(ts), UTC)


class SlackAdapter:
    name = "slack"

    def __init__(
        self,
        core: Core,
        bot_token: str,
        *,
        signing_secret: str | None = None,
        app_token: str | None = None,
        http_port: int = 3000,
        api_url: str | None = None,
        admin_ids: frozenset[str] = frozenset(),
        update_interval_s: float = UPDATE_INTERVAL_S,
    ) -> None:
        self.core = core
        self.update_interval_s = update_interval_s
        self._updates = EditBudget(UPDATES_PER_MINUTE, UPDATE_BURST)
        self.app_token = app_token
        self.http_port = http_port
        self.admin_ids = admin_ids
        kwargs: dict[str, Any] = {"token": bot_token}
        if api_url:
            kwargs["base_url"] = api_url
        self.client = AsyncWebClient(**kwargs)
        # Rate-limited Web API calls wait out Retry-After and try again.
        self.client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=3))
        self.app = AsyncApp(
            client=self.client,
            signing_secret=signing_secret or "socket-mode-needs-no-secret",
            # HTTP mode verifies signatures; Socket Mode is authenticated by its token.
            request_verification_enabled=signing_secret is not None,
        )
        self.bot_user_id = ""
        self.team_id = ""
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._admins: dict[str, tuple[float, bool, Locale | None]] = {}
        self._told_no_customize: set[ChannelRef] = set()
        self._runner: web.AppRunner | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self.ready = asyncio.Event()
        self._register()

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        auth = await self.client.auth_test()
        self.bot_user_id, self.team_id = auth["user_id"], auth["team_id"]
        if self.app_token:
            self._socket = AsyncSocketModeHandler(self.app, self.app_token, web_client=self.client)
            await self._socket.connect_async()  # type: ignore[no-untyped-call]
        else:
            self._runner = web.AppRunner(self.app.web_app(path="/slack/events"))
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.http_port).start()
        self.ready.set()

    async def run(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()  # until cancelled
        finally:
            await self.close()

    async def close(self) -> None:
        if self._socket is not None:
            await self._socket.close_async()  # type: ignore[no-untyped-call]
        if self._runner is not None:
            await self._runner.cleanup()

    # --- translation -------------------------------------------------------------------

    def _first_time(self, key: str) -> bool:
        if key in self._seen:
            return False
        self._seen[key] = None
        while len(self._seen) > SEEN_EVENTS:
            self._seen.popitem(last=False)
        return True

    async def _member(self, user_id: str) -> tuple[bool, Locale | None]:
        """Whether the user is an admin here, and their language when it is Japanese
        (users.info, kept ADMIN_CACHE_S)."""
        cached = self._admins.get(user_id)
        if cached and time.monotonic() - cached[0] < ADMIN_CACHE_S:
            return cached[1], cached[2]
        try:
            info = await self.client.users_info(user=user_id, include_locale=True)
            user = info["user"]
        except SlackApiError:
            if user_id not in self.admin_ids:
                raise
            user = {}  # a configured admin, whoever Slack says they are
        admin = user_id in self.admin_ids or bool(user.get("is_admin") or user.get("is_owner"))
        locale: Locale | None = "ja" if str(user.get("locale", "")).startswith("ja") else None
        self._admins[user_id] = (time.monotonic(), admin, locale)
        return admin, locale

    async def _author(self, user_id: str, name: str) -> tuple[Author, Locale | None]:
        admin, locale = await self._member(user_id)
        return Author(id=user_id, name=name, is_admin=admin), locale

    def _ref(self, team_id: str | None, channel_id: str) -> ChannelRef:
        return ChannelRef("slack", team_id or self.team_id, channel_id)

    def _strip_mention(self, text: str) -> str:
        return re.sub(rf"<@{re.escape(self.bot_user_id)}(\|[^>]*)?>\s*", "", text).strip()

    def _words(self, event: dict[str, Any]) -> tuple[str, str] | None:
        """(user, text) a member wrote in a message event, the bot's mention taken out;
        None for Slack's own notices (joins, renames, topics, pins, "<@U…> uploaded a
        file: …", see `member_words`)."""
        words = member_words(event)
        if words is None:
            return None
        user, text = words
        return (
            user if isinstance(user, str) else "",
            self._strip_mention(text) if isinstance(text, str) else "",
        )

    def _message(self, event: dict[str, Any], team_id: str | None) -> ChatMessage:
        """The event as a ChatMessage. Slack's own notices come out as a bot's, with no
        text: never stored, though the backfill cursor still moves past them."""
        words = self._words(event)
        user, text = words or (event.get("user") or "", "")
        return ChatMessage(
            channel=self._ref(event.get("team") or team_id, event["channel"]),
            external_id=event["ts"],
            author=Author(
                id=user,
                name=user,
                is_bot=words is None or bool(event.get("bot_id")) or user == self.bot_user_id,
            ),
            text=text,
            created_at=ts_time(event["ts"]),
            edited_at=ts_time(event["edited"]["ts"]) if event.get("edited") else None,
            thread=thread if (thread := event.get("thread_ts")) != event["ts"] else None,
        )

    async def _post(
        self, channel: str, pieces: list[str], thread_ts: str | None
    ) -> list[tuple[str, str]]:
        """Posts each piece; (ts, text) of each."""
        posted = []
        for piece in pieces:
            sent = await self.client.chat_postMessage(
                channel=channel,
                text=piece,
                thread_ts=thread_ts,
                unfurl_links=False,
                unfurl_media=False,
            )
            posted.append((str(sent["ts"]), piece))
        return posted

    def _live(self, post: _StreamedPost, what: str) -> LiveMessage:
        return LiveMessage(
            post.show,
            partial_slack,
            interval_s=self.update_interval_s,
            budget=self._updates,
            what=what,
        )

    # --- listeners -----------------------------------------------------------------------

    def _register(self) -> None:
        app = self.app

        @app.event("message")
        async def on_message(body: dict[str, Any], event: dict[str, Any]) -> None:
            team = body.get("team_id")
            subtype = event.get("subtype")
            if subtype == "message_changed":
                changed = event["message"]
                if changed.get("bot_id") or changed.get("user") == self.bot_user_id:
                    return  # a bot's text (ours growing as it streams) is never history
                words = self._words(changed)
                if words is None:
                    return  # Slack's own text changed: none of it is stored
                ref = self._ref(team, event["channel"])
                edited = changed.get("edited", {}).get("ts") or event["ts"]
                await self.core.on_edit(ref, changed["ts"], words[1], ts_time(edited))
                return
            if subtype == "message_deleted":
                await self.core.on_delete(self._ref(team, event["channel"]), [event["deleted_ts"]])
                return
            if self._words(event) is None:
                return  # Slack's own notice, not a member writing
            # Stored by ts: a retried delivery stores nothing twice, and is never
            # answered unprompted (only a message stored just now may be).
            message = self._message(event, team)
            if message.thread is not None and f"<@{self.bot_user_id}" in event.get("text", ""):
                # A mention in a thread: answered once, for its app_mention event.
                message = dataclasses.replace(message, thread=None)
            if message.thread is None:
                said = await self.core.on_message(message)
                if said is not None and said.unprompted:
                    await self._answer_with(
                        said, message.channel, event["channel"], event.get("thread_ts")
                    )
                return
            # In a thread: answered when the bot started it or answered in it.
            await self._answer(message, event["channel"], message.thread, mentions_bot=False)

        async def ack_mention(ack: Any) -> None:
            await ack()

        async def reply_to_mention(body: dict[str, Any], event: dict[str, Any]) -> None:
            if not self._first_time(body.get("event_id") or event["ts"]):
                return  # Slack delivered it again: answered already
            message = self._message(event, body.get("team_id"))
            await self._answer(message, event["channel"], event.get("thread_ts"), mentions_bot=True)

        app.event("app_mention")(ack=ack_mention, lazy=[reply_to_mention])

        async def ack_command(ack: Any) -> None:
            await ack()

        async def run_continue(body: dict[str, Any], respond: Any) -> None:
            ctx = await self._context(body)
            post = _StreamedPost(self.client, body["channel_id"], None)
            text = body.get("text", "")
            # A member's voice is posted under their name once written, never streamed.
            in_voice = split_options(text)[2] is not None
            async with self._live(post, "slack: /continue") as live:
                reply = await self.core.on_command(
                    dataclasses.replace(ctx, stream=None if in_voice else live),
                    text,
                    named="continue",
                )
                if reply.voice is not None and not reply.ephemeral:
                    await self._in_voice(ctx, body["channel_id"], reply, respond)
                    return
                pieces = _pieces(reply)
                if reply.ephemeral:
                    # An error is for the asker only: the text shown so far goes.
                    if await live.stop() is not None:
                        await post.delete()
                elif await live.finish(pieces[0]):
                    posted = [(post.ts or "", pieces[0])]
                    posted += await self._post(post.channel, pieces[1:], None)
                    await self.core.on_posted(ctx.channel, reply, posted)
                    return
            await self._respond(respond, reply)

        async def run_tsuzuki(body: dict[str, Any], respond: Any) -> None:
            ctx = await self._context(body)
            reply = await self.core.on_command(ctx, body.get("text", "").strip() or "help")
            await self._respond(respond, reply)

        app.command("/continue")(ack=ack_command, lazy=[run_continue])
        app.command("/tsuzuki")(ack=ack_command, lazy=[run_tsuzuki])

        # Message shortcuts (the manifest's `shortcuts`, type message).
        async def continue_message(body: dict[str, Any], respond: Any) -> None:
            ctx = await self._shortcut_context(body)
            message = body["message"]
            text = self._strip_mention(str(message.get("text") or ""))
            command = cmd.ContinueMessage(message["ts"], text, str(message.get("user") or ""))
            reply = await self.core.on_command(ctx, command)
            if reply.ephemeral:
                await self._respond(respond, reply)
                return
            # In reply to it: in its thread (the thread it is in, or a new one on it).
            thread = message.get("thread_ts") or message["ts"]
            posted = await self._post(body["channel"]["id"], _pieces(reply), thread)
            await self.core.on_posted(ctx.channel, reply, posted, thread=thread)

        async def unlearn(body: dict[str, Any], respond: Any) -> None:
            ctx = await self._shortcut_context(body)
            reply = await self.core.on_command(ctx, cmd.Unlearn(body["message"]["ts"]))
            await self._respond(respond, reply)

        app.shortcut(CONTINUE_MESSAGE)(ack=ack_command, lazy=[continue_message])
        app.shortcut(UNLEARN)(ack=ack_command, lazy=[unlearn])

        # The App Home tab, and its buttons.
        @app.event("app_home_opened")
        async def home_opened(body: dict[str, Any], event: dict[str, Any]) -> None:
            if event.get("tab", "home") == "home":
                await self._publish_home(event["user"], body.get("team_id"))

        async def home_command(body: dict[str, Any], command: cmd.Command) -> None:
            user, team = body["user"]["id"], body.get("team", {}).get("id") or self.team_id
            author, locale = await self._author(user, body["user"].get("name", user))
            # Opting out is the workspace's; a voice is lent in the button's channel.
            where = body["actions"][0].get("value") or user
            await self.core.on_command(
                CommandContext(self._ref(team, where), author, locale=locale), command
            )
            await self._publish_home(user, team)

        async def voice_off(body: dict[str, Any]) -> None:
            await home_command(body, cmd.SetVoice(False))

        async def opt_out(body: dict[str, Any]) -> None:
            await home_command(body, cmd.SetOptOut(True))

        async def opt_in(body: dict[str, Any]) -> None:
            await home_command(body, cmd.SetOptOut(False))

        app.action(VOICE_OFF)(ack=ack_command, lazy=[voice_off])
        app.action(OPT_OUT)(ack=ack_command, lazy=[opt_out])
        app.action(OPT_IN)(ack=ack_command, lazy=[opt_in])

    async def _in_voice(
        self, ctx: CommandContext, channel: str, reply: Reply, respond: Any
    ) -> None:
        """A reply written in a member's voice, posted under their name and picture
        (chat:write.customize), each message marked as generated. Without the scope it
        is answered as the bot's, and an admin who asks hears why, once a channel."""
        assert reply.voice is not None
        profile = (await self.client.users_info(user=reply.voice))["user"].get("profile", {})
        name = str(profile.get("display_name") or profile.get("real_name") or reply.voice)
        mark = "\n_" + M.t("voice_generated_mark") + "_"
        posted = []
        try:
            for text in reply.texts:
                for piece in render_slack(text, limit=SLACK_LIMIT - len(mark)):
                    sent = await self.client.chat_postMessage(
                        channel=channel,
                        text=piece + mark,
                        username=f"{name[:60]} (Tsuzuki)",
                        icon_url=profile.get("image_72"),
                        unfurl_links=False,
                        unfurl_media=False,
                    )
                    posted.append((str(sent["ts"]), piece))
        except SlackApiError as e:
            if e.response.get("error") != "missing_scope" or posted:
                raise
            await self._respond(respond, reply)
            if ctx.actor.is_admin and ctx.channel not in self._told_no_customize:
                self._told_no_customize.add(ctx.channel)
                await respond(text=M.t("voice_no_customize"), response_type="ephemeral")
            return
        await self.core.on_posted(ctx.channel, reply, posted)

    async def _answer(
        self, message: ChatMessage, channel: str, thread_ts: str | None, *, mentions_bot: bool
    ) -> None:
        """The core's answer to a mention or a reply, streamed where it is asked (in
        the thread, if it was asked in one); the posts kept for reply chains."""
        post = _StreamedPost(self.client, channel, thread_ts)
        async with self._live(post, "slack: reply") as live:
            reply = await self.core.on_message(message, mentions_bot=mentions_bot, stream=live)
            if reply is None:
                return
            pieces = _pieces(reply)
            posted: list[tuple[str, str]] = []
            if await live.finish(pieces[0]) and post.ts is not None:
                posted.append((post.ts, pieces[0]))
                pieces = pieces[1:]  # the streamed message shows the first
        posted += await self._post(channel, pieces, thread_ts)
        await self.core.on_posted(message.channel, reply, posted, thread=thread_ts)

    async def _answer_with(
        self, said: Reply, ref: ChannelRef, channel: str, thread_ts: str | None
    ) -> None:
        posted = await self._post(channel, _pieces(said), thread_ts)
        await self.core.on_posted(ref, said, posted, thread=thread_ts)

    async def _publish_home(self, user: str, team: str | None) -> None:
        """The member's Home tab: the channels the bot keeps that they can see (their
        conversations, users.conversations), and where they stand."""
        team = team or self.team_id
        visible: list[ChannelRef] = []
        cursor = None
        while True:
            page = await self.client.users_conversations(
                user=user,
                types="public_channel,private_channel",
                exclude_archived=True,
                limit=200,
                cursor=cursor,
            )
            channels: list[dict[str, Any]] = page.get("channels", [])
            visible += [self._ref(team, c["id"]) for c in channels]
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        _, locale = await self._member(user)
        with M.speaking(locale):
            state = await self.core.home(("slack", team), visible, user)
            view = home_view(state)
        await self.client.views_publish(user_id=user, view=view)

    async def _shortcut_context(self, body: dict[str, Any]) -> CommandContext:
        user = body["user"]["id"]
        author, locale = await self._author(user, body["user"].get("name", user))
        ref = self._ref(body.get("team", {}).get("id"), body["channel"]["id"])
        return CommandContext(ref, author, locale=locale)

    async def _context(self, body: dict[str, Any]) -> CommandContext:
        user = body["user_id"]
        author, locale = await self._author(user, body.get("user_name", user))
        return CommandContext(
            self._ref(body.get("team_id"), body["channel_id"]), author, locale=locale
        )

    async def _respond(self, respond: Any, reply: Reply) -> None:
        # Generated text is for the channel; settings and errors for the asker only.
        kind = "ephemeral" if reply.ephemeral else "in_channel"
        pieces = _pieces(reply)
        for piece in pieces[:-1]:
            await respond(text=piece, response_type=kind)
        if reply.image is None:
            await respond(text=pieces[-1], response_type=kind)
            return
        # An ephemeral answer cannot carry a file: the image is uploaded to no channel
        # (the bot's own, private file) and shown in an image block, which the asker
        # alone sees.
        file_id = await self._upload(reply.image)
        blocks = [
            {"type": "section", "text": {"type": "plain_text", "text": pieces[-1]}},
            {"type": "image", "slack_file": {"id": file_id}, "alt_text": Path(reply.image).name},
        ]
        await respond(text=pieces[-1], blocks=blocks, response_type=kind)

    async def _upload(
        self, path: str, *, channel: str | None = None, comment: str | None = None
    ) -> str:
        """Uploads a PNG (files_upload_v2: an upload URL, the bytes, then completion);
        shared in `channel` with `comment` when given. Its file id."""
        kwargs: dict[str, Any] = {"file": path, "filename": Path(path).name}
        if channel is not None:
            kwargs.update(channel=channel, initial_comment=comment or "")
        done = await self.client.files_upload_v2(**kwargs)
        return str(done["files"][0]["id"])

    # --- notices -----------------------------------------------------------------------

    async def post_notice(self, notice: Notice) -> None:
        """In the channel, its loss curve uploaded with it; one for an admin only is an
        ephemeral message that only they see."""
        await self.ready.wait()
        channel = notice.channel.channel
        pieces = render_slack(notice.text)
        if notice.to_user is not None:
            for piece in pieces:
                await self.client.chat_postEphemeral(
                    channel=channel, user=notice.to_user, text=piece
                )
            return
        if notice.image is None:
            await self._post(channel, pieces, None)
            return
        await self._post(channel, pieces[:-1], None)
        await self._upload(notice.image, channel=channel, comment=pieces[-1])

    # --- history (backfill) ------------------------------------------------------------

    async def fetch_history(
        self, ref: ChannelRef, before: str | None, limit: int
    ) -> list[ChatMessage]:
        """Up to `limit` messages older than ts `before`, newest first."""
        kwargs: dict[str, Any] = {"channel": ref.channel, "limit": limit}
        if before:
            kwargs["latest"] = before
            kwargs["inclusive"] = False
        page = await self.client.conversations_history(**kwargs)
        out = []
        messages: list[dict[str, Any]] = page.get("messages", [])
        for raw in messages:
            # Slack's own notices come back as a bot's (see _message): never stored.
            out.append(self._message({**raw, "channel": ref.channel}, ref.workspace))
        return out


def _pieces(reply: Reply) -> list[str]:
    return [piece for text in reply.texts for piece in render_slack(text)]


class _StreamedPost:
    """The message a streamed text is shown in: posted with the first text, updated
    with each later one (LiveMessage never calls `show` twice at once)."""

    def __init__(self, client: AsyncWebClient, channel: str, thread_ts: str | None) -> None:
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts
        self.ts: str | None = None

    async def show(self, text: str) -> None:
        if self.ts is None:
            posted = await self.client.chat_postMessage(
                channel=self.channel,
                text=text,
                thread_ts=self.thread_ts,
                unfurl_links=False,
                unfurl_media=False,
            )
            # Updates name the channel by id, which a post to a user id opens.
            self.channel, self.ts = posted["channel"], posted["ts"]
        else:
            await self.client.chat_update(channel=self.channel, ts=self.ts, text=text)

    async def delete(self) -> None:
        if self.ts is None:
            return
        try:
            await self.client.chat_delete(channel=self.channel, ts=self.ts)
        except Exception as exc:
            log.warning("slack: a streamed message could not be deleted (%s)", describe(exc))
