"""A bounded soak: 1,000 mixed events over the Discord and Slack fakes while a training
run shares the device, against the bot as `tsuzuki run` builds it (build_app +
App.serve, settings pointing at the fakes) with its real scratch model.

The script (tests/soak.py) mixes new messages from several members, edits and deletes
of earlier ones (Discord bulk deletes too), mentions, /continue with and without
overrides, settings shown and changed by an admin and refused to a member, a member of
each platform opting out part-way, and Slack redelivering events with retry headers.
Up to IN_FLIGHT deliveries are on their way at once, an edit or delete only after the
message it changes was delivered. A platform hands events over without waiting for
the bot to handle them, so the bot gets all 1,000 within seconds and works through the
backlog beside the training run: it does not handle them in the order they came.
Every generated text ends with a ping in each platform's syntax. Once the bot is quiet
the soak prints, and asserts to be 0: messages lost, rows or replies duplicated,
commands and mentions unanswered, and replies that could ping anyone (run with -s to
see the figures).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from adapters.render import escape_slack, neutralise_discord
from bot.app import App, running_app
from bot.config import Settings
from bot.domain import Author, ChannelRef, ChatMessage, GenerationRequest, GenerationResult
from bot.ports import TextGenerator, TextListener
from bot.records import ImportBatch, JobInfo
from tests.conftest import PG_URL
from tests.e2e.serving import free_port, until
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.slack_server import FakeSlack, event_body, signed_headers, slash_command_body
from tests.soak import (
    ADMINS,
    ANSWERED,
    CHANNELS,
    GUILD,
    HOSTILE,
    MEMBERS,
    TEAM,
    TRAIN_CHANNEL,
    Event,
    Script,
    Tally,
    build_script,
    discord_pings,
    slack_pings,
)

# No time limit here includes the one-off import of the ML libraries.
pytestmark = pytest.mark.usefixtures("ml_libraries")

SEED = 20240607
EVENTS = 1000
IN_FLIGHT = 12
SECRET = "signing-secret-for-tests"
TOKEN = "test-token-abcdefghijklmnop"
SETTLE_S = 60.0  # after the last event, how long the bot may take to catch up
TRAINING_WAIT_S = 20.0  # then how long the training run may take to finish
HISTORY = 240  # messages the training channel has before the soak starts
TRAINING = {"max_minutes": 0.4, "block_size": 64, "batch_size": 8, "checkpoint_every": 1000}


class HostileGenerator:
    """The app's own generator, with a ping in every syntax appended to each text:
    no model says those on cue, and every reply must still arrive without them."""

    def __init__(self, inner: TextGenerator) -> None:
        self.inner = inner

    async def generate(
        self, request: GenerationRequest, on_text: TextListener | None = None
    ) -> GenerationResult:
        # Streamed text carries the pings too: a partial must be as inert as the reply.
        heard = None if on_text is None else (lambda text: on_text(text + HOSTILE))
        result = await self.inner.generate(request, heard)
        return dataclasses.replace(result, texts=tuple(t + HOSTILE for t in result.texts))


def channel_ref(platform: str, channel: str) -> ChannelRef:
    return ChannelRef.parse(f"{platform}:{GUILD if platform == 'discord' else TEAM}/{channel}")


def soak_discord() -> FakeDiscord:
    users: dict[int | str, dict[str, object]] = {
        ADMINS["discord"]: {"name": "alice", "admin": True}
    }
    for n, uid in enumerate(MEMBERS["discord"]):
        users[uid] = {"name": f"member{n}"}
    channels = dict(zip(CHANNELS["discord"], ("general", "random"), strict=True))
    return FakeDiscord(guilds={GUILD: {"name": "Soak", "channels": channels}}, users=users)


def soak_settings(settings: Settings, discord: FakeDiscord, slack: FakeSlack) -> Settings:
    return settings.model_copy(
        update={
            "discord_token": SecretStr(TOKEN),
            "discord_api_url": discord.api_url,
            "discord_gateway_url": discord.gateway_url,
            "discord_sync_guild": int(GUILD),
            "slack_bot_token": SecretStr("xoxb-test"),
            "slack_signing_secret": SecretStr(SECRET),
            "slack_http_port": free_port(),
            "slack_api_url": slack.api_url,
            "platform_retry_first_s": 0.2,
            "platform_retry_max_s": 0.5,
            # The soak measures loss, not rate limiting: no limits (0 turns them off).
            "rate_per_user_per_minute": 0,
            "rate_per_channel_per_minute": 0,
            "max_new_tokens": 24,
        }
    )


class Sender:
    """Plays a script to the fakes, up to `in_flight` events at once, each after the
    events it depends on were sent; remembers what it needs to find the answers."""

    def __init__(self, discord: FakeDiscord, slack: FakeSlack, slack_port: int) -> None:
        self.discord, self.slack = discord, slack
        self.url = f"http://127.0.0.1:{slack_port}/slack/events"
        self.sent: dict[int, asyncio.Event] = {}
        self.tokens: dict[int, str] = {}  # Discord interaction token, by event
        self.bodies: dict[str, bytes] = {}  # Slack deliveries, by event id
        self.refused: list[str] = []  # Slack deliveries not answered 200
        self.errors: list[str] = []
        self.session: aiohttp.ClientSession | None = None

    async def play(self, events: list[Event], in_flight: int) -> None:
        self.sent = {e.index: asyncio.Event() for e in events}
        queue = iter(events)

        async def worker() -> None:
            for e in queue:
                try:
                    for before in e.after:
                        await self.sent[before].wait()
                    await (self._discord(e) if e.platform == "discord" else self._slack(e))
                except Exception as exc:
                    self.errors.append(f"#{e.index} {e.platform} {e.kind}: {exc!r}")
                finally:
                    self.sent[e.index].set()

        async with aiohttp.ClientSession() as self.session:
            await asyncio.gather(*(worker() for _ in range(in_flight)))

    async def _discord(self, e: Event) -> None:
        fake = self.discord
        match e.kind:
            case "message" | "mention":
                await fake.send_message(
                    e.channel,
                    e.user,
                    e.text,
                    message_id=e.message,
                    mentions_bot=e.kind == "mention",
                )
            case "edit":
                await fake.edit_message(e.channel, e.message, e.text)
            case "delete":
                await fake.delete_message(e.channel, e.message)
            case "bulk_delete":
                await fake.bulk_delete(e.channel, e.messages)
            case "continue":
                payload = await fake.slash_command(
                    e.channel, e.user, "continue", {"prompt": e.text, **e.options}
                )
                self.tokens[e.index] = payload["token"]
            case "settings_show":
                payload = await fake.slash_command(e.channel, e.user, "settings show")
                self.tokens[e.index] = payload["token"]
            case "settings_set" | "settings_refused":
                payload = await fake.slash_command(e.channel, e.user, "settings set", e.options)
                self.tokens[e.index] = payload["token"]
            case "optout":
                payload = await fake.slash_command(e.channel, e.user, "optout")
                self.tokens[e.index] = payload["token"]
            case _:
                raise AssertionError(e.kind)

    async def _slack(self, e: Event) -> None:
        fake = self.slack
        match e.kind:
            case "message":
                event = fake.message_event(e.text, user=e.user, channel=e.channel, ts=e.message)
                await self._deliver(event, e.event_ids[0])
            case "mention":
                # Slack sends a mention twice, as a message and as an app_mention.
                words = f"<@{fake.bot_user_id}> {e.text}"
                where = {"user": e.user, "channel": e.channel, "ts": e.message}
                message = fake.message_event(words, **where, thread_ts=e.thread)
                mention = fake.app_mention_event(words, **where, thread_ts=e.thread)
                await asyncio.gather(
                    self._deliver(message, e.event_ids[0]), self._deliver(mention, e.event_ids[1])
                )
            case "edit":
                words = f"<@{fake.bot_user_id}> {e.text}" if e.mention else e.text
                edited = {
                    "type": "message",
                    "subtype": "message_changed",
                    "channel": e.channel,
                    "ts": e.stamp,
                    "message": {
                        "type": "message",
                        "user": e.user,
                        "text": words,
                        "ts": e.message,
                        "edited": {"user": e.user, "ts": e.stamp},
                    },
                }
                await self._deliver(edited, e.event_ids[0])
            case "delete":
                deleted = {
                    "type": "message",
                    "subtype": "message_deleted",
                    "channel": e.channel,
                    "ts": e.stamp,
                    "deleted_ts": e.message,
                }
                await self._deliver(deleted, e.event_ids[0])
            case "retry":
                body = self.bodies[e.event_ids[0]]
                await self._post(body, retry_num=1)
            case "continue":
                overrides = " ".join(f"{k}={v}" for k, v in e.options.items())
                await self._command(e, "/continue", f"{e.text} {overrides}".strip())
            case "settings_show":
                await self._command(e, "/tsuzuki", "settings show")
            case "settings_set" | "settings_refused":
                await self._command(
                    e, "/tsuzuki", f"settings set {e.options['key']} {e.options['value']}"
                )
            case "optout":
                await self._command(e, "/tsuzuki", "optout")
            case _:
                raise AssertionError(e.kind)

    async def _deliver(self, event: Mapping[str, Any], event_id: str) -> None:
        body = event_body(event, event_id)
        self.bodies[event_id] = body
        await self._post(body)

    async def _command(self, e: Event, command: str, text: str) -> None:
        url = self.slack.response_url(f"e{e.index}")
        await self._post(slash_command_body(command, text, e.user, e.channel, url, TEAM))

    async def _post(self, body: bytes, retry_num: int | None = None) -> None:
        assert self.session is not None
        signed = signed_headers(SECRET, body, retry_num=retry_num, retry_reason="http_timeout")
        async with self.session.post(self.url, data=body, headers=signed) as response:
            await response.read()
            if response.status != 200:
                self.refused.append(f"{response.status} {body[:80]!r}")


class Answers:
    """What the platforms showed in answer to each event, as each message finally read
    (answers stream: a message is posted, then edited as the text grows)."""

    def __init__(self, sender: Sender, discord: FakeDiscord, slack: FakeSlack) -> None:
        self.sender = sender
        self.discord = discord
        self.webhooks = f"/webhooks/{discord.app_id}/"
        self.followups: dict[str, list[str]] = {}  # Discord followups, by webhook path
        # Discord interactions whose deferred answer was edited (it shows the first
        # piece; the first followup of an unedited one fills it, counted as a followup),
        # and those whose answer was taken back.
        self.edited: set[str] = set()
        self.deleted: set[str] = set()
        for r in discord.requests:
            if r.status >= 300 or not r.path.startswith(self.webhooks):
                continue
            original = r.path.removesuffix("/messages/@original")
            if r.method == "POST" and isinstance(r.json, dict):
                self.followups.setdefault(r.path, []).append(r.json.get("content", ""))
            elif r.method == "PATCH" and original != r.path:
                self.edited.add(original)
            elif r.method == "DELETE" and original != r.path:
                self.deleted.add(original)
        self.by_reference: dict[str, list[str]] = {}  # Discord replies, by message
        for stored in discord.channel_messages.values():
            for m in stored:
                reference = m.get("message_reference")
                if reference and m["author"].get("bot"):
                    key = str(reference.get("message_id"))
                    self.by_reference.setdefault(key, []).append(m["content"])
        self.by_thread: dict[tuple[str, str | None], list[str]] = {}  # Slack, by thread
        self.in_channel: dict[str, list[str]] = {}  # Slack /continue answers, in order
        for p in slack.posted:
            if p.method != "chat.postMessage":
                continue
            final = slack.versions_of(p.channel, p.ts)[-1]
            if p.thread_ts is None:
                self.in_channel.setdefault(p.channel, []).append(final)
            else:
                self.by_thread.setdefault((p.channel, p.thread_ts), []).append(final)
        self.responses = {
            name: [str(r.json.get("text")) for r in recorded if isinstance(r.json, dict)]
            for name, recorded in slack.responses.items()
        }

    def __call__(self, e: Event) -> list[str]:
        if e.platform == "discord":
            if e.kind == "mention":
                return self.by_reference.get(e.message, [])
            token = self.sender.tokens.get(e.index)
            if not token:
                return []
            path = self.webhooks + token
            record = self.discord.interaction(token)
            shown = path in self.edited and path not in self.deleted and record.original
            first = [record.original["content"]] if shown and record.original else []
            return first + self.followups.get(path, [])
        if e.kind == "mention":
            return self.by_thread.get((e.channel, e.thread), [])
        answers = self.responses.get(f"e{e.index}", [])
        if e.kind != "continue":
            return answers
        # A /continue answer is posted in the channel; it names no command, so it is
        # told by the prompt it starts with (events in order take the posts in order).
        prompt = escape_slack(e.text)
        posts = self.in_channel.get(e.channel, [])
        # Either there or through response_url (busy, an error, no access), not both.
        wanted = 0 if answers else e.expected_answers
        mine = [t for t in posts if t.startswith(prompt)][:wanted]
        for text in mine:
            posts.remove(text)
        return answers + mine


async def tally(
    app: App, script: Script, sender: Sender, discord: FakeDiscord, slack: FakeSlack
) -> Tally:
    t = Tally()
    for (platform, channel), want in script.expected.items():
        ref = channel_ref(platform, channel)
        rows = await app.messages.recent(ref, 100_000)
        total = await app.messages.count(ref)
        t.check_rows(str(ref), [(m.external_id, m.text) for m in rows], total, want)
    render = {"discord": neutralise_discord, "slack": escape_slack}
    answers = Answers(sender, discord, slack)
    for e in script.events:
        if e.kind in ANSWERED:
            t.check_answers(e, answers(e), render[e.platform])
    t.pings += sum(discord_pings(r.json) for r in discord.requests if r.method in ("POST", "PATCH"))
    t.pings += sum(slack_pings(p.text, p.params) for p in slack.posted)
    for recorded in slack.responses.values():
        t.pings += sum(slack_pings(str(r.json.get("text", ""))) for r in recorded if r.json)
    return t


async def seed_training_channel(app: App) -> dict[str, tuple[str, str]]:
    """History for the training run (the soak's messages come on top)."""
    ref = channel_ref(*TRAIN_CHANNEL)
    start = datetime.now(UTC) - timedelta(days=1)
    texts = [f"{s} {v}" for s in ("織田信長は", "the cat", "our club") for v in range(HISTORY // 3)]
    messages = [
        ChatMessage(
            ref,
            f"{int(start.timestamp()) + i}.000100",
            Author("UOLD", "old-timer"),
            f"{text} 番目の話。",
            start + timedelta(seconds=i),
        )
        for i, text in enumerate(texts)
    ]
    await app.messages.add_batch(ImportBatch(messages=messages))
    await app.channels.set_training(ref, True, actor="soak")
    return {m.external_id: ("UOLD", m.text) for m in messages}


@dataclasses.dataclass
class Outcome:
    tally: Tally
    script: Script
    sender: Sender
    job: JobInfo  # the training run, as it ended (or stood when the soak gave up on it)
    sending: tuple[datetime, datetime]  # when the first event went out, and the last
    quiet: datetime  # when all was answered and stored (or the soak stopped waiting)


# Once, to keep the suite's time: on PostgreSQL when TSUZUKI_TEST_POSTGRES_URL is set
# (CI), where transactions really run side by side and reorder what SQLite's single
# writer keeps in order (it found a bug SQLite never showed); on SQLite otherwise.
@pytest.mark.parametrize("db_url", ["postgresql" if PG_URL else "sqlite"], indirect=True)
async def test_a_thousand_mixed_events_lose_nothing_and_never_ping(
    settings: Settings, fake_slack: FakeSlack
) -> None:
    started = time.monotonic()
    for n, uid in enumerate(MEMBERS["slack"][1:]):
        fake_slack.add_user(uid, f"member{n}")
    fake_slack.add_channel(CHANNELS["slack"][1], "random")
    discord = soak_discord()
    await discord.start()
    try:
        with discord.patched_discord_py():  # the adapter points discord.py at it too
            async with running_app(soak_settings(settings, discord, fake_slack)) as app:
                out = await soak(app, discord, fake_slack)
    finally:
        await discord.close()
    wall = time.monotonic() - started

    t, job = out.tally, out.job
    first, last = out.sending
    print(f"\nsoak: {len(out.script.events)} events, {IN_FLIGHT} in flight, {wall:.1f} s in all")
    print("soak: sent " + ", ".join(f"{k}={n}" for k, n in sorted(out.script.kinds().items())))
    for line in t.lines():
        print("soak: " + line)
    print(
        f"soak: training job {job.id} {job.status} (progress {job.progress:.2f}), "
        f"{_at(job.started_at, first)} to {_at(job.finished_at, first)}; "
        f"events sent from +0.0 s to {_at(last, first)}, all handled at {_at(out.quiet, first)}"
    )

    assert not out.sender.errors, out.sender.errors[:5]
    assert not out.sender.refused, out.sender.refused[:5]
    assert (t.lost, t.duplicated, t.unanswered, t.pings) == (0, 0, 0, 0), t.lines()
    assert (t.kept, t.wrong, t.unwrapped) == (0, 0, 0), t.lines()
    # It did generate, through the hostile wrap (a full device queue answers "busy").
    assert t.generated >= 50
    # The training run shared the device with the soak, and finished or got on.
    assert job.started_at is not None and job.started_at < last, job
    assert job.status == "succeeded" or (job.status == "running" and job.progress > 0), job


def _at(moment: datetime | None, origin: datetime) -> str:
    return "—" if moment is None else f"{(moment - origin).total_seconds():+.1f} s"


async def soak(app: App, discord: FakeDiscord, slack: FakeSlack) -> Outcome:
    app.commands.replies.generator = HostileGenerator(app.commands.replies.generator)
    history = await seed_training_channel(app)
    serving = asyncio.create_task(app.serve())
    try:
        await until(lambda: all(p.state == "up" for p in app.platforms))
        await until(lambda: bool(discord.commands.get(GUILD)))
        # The training run shares the device with everything the soak asks for.
        ref = channel_ref(*TRAIN_CHANNEL)
        job = await app.jobs.enqueue("train", ref, dict(TRAINING), priority=5)
        app.runner.wake()

        script = build_script(SEED, EVENTS, int(time.time() * 1000))
        script.expected[TRAIN_CHANNEL].update(history)
        sender = Sender(discord, slack, app.settings.slack_http_port)
        first = datetime.now(UTC)
        await sender.play(script.events, IN_FLIGHT)
        last = datetime.now(UTC)

        # Quiet: everything answered and stored as it should be, or time is up.
        deadline = time.monotonic() + SETTLE_S
        while not (t := await tally(app, script, sender, discord, slack)).clean:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
        quiet = datetime.now(UTC)
        await asyncio.sleep(1.0)  # a late second answer would show now
        t = await tally(app, script, sender, discord, slack)

        # The training run: finished by now, or at least under way.
        deadline = time.monotonic() + TRAINING_WAIT_S
        while (job := _job(await app.jobs.recent(), job.id)).status in ("queued", "running"):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        return Outcome(t, script, sender, job, (first, last), quiet)
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)


def _job(jobs: list[JobInfo], job_id: int) -> JobInfo:
    return next(j for j in jobs if j.id == job_id)
