"""The soak test's script and its bookkeeping (tests/e2e/test_soak.py runs it).

`build_script` writes a seeded random script of events for the Discord and Slack fakes
(messages, edits, deletes, mentions, /continue, settings, opt-outs, Slack's retries)
together with the state the database must end in once the bot has handled them all.
`Tally` counts what went wrong: messages lost, rows or replies duplicated, commands
left unanswered, and replies that could ping someone.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bot import messages as M

# What the wrapped generator appends to every text: a ping in each syntax of both
# platforms. Rendered, none may remain one.
HOSTILE = " @everyone <@1> <@&2> @here <!channel> <@U123>"
# How each platform's rendering shows it (proof that the text went through the wrap).
NEUTRALISED = {"discord": "@\u200beveryone", "slack": "&lt;!channel&gt;"}

GUILD = "111"
TEAM = "T0001"
CHANNELS = {"discord": ("222", "333"), "slack": ("C0001", "C0002")}
ADMINS = {"discord": "1001", "slack": "UADMIN"}
MEMBERS = {
    "discord": ("1002", "1003", "1004", "1005"),
    "slack": ("UMEMBER", "UCAROL", "UDAVE", "UERIN"),
}
# One member of each platform opts out part-way. They speak only in their platform's
# first channel: the training run is on Slack's second one, whose data an opt-out
# must not void mid-run (that restarts the run, which is tested elsewhere).
OPT_OUT = {"discord": "1005", "slack": "UERIN"}
# Where in the script (as a share of it) each opts out.
OPT_OUT_AT = {"discord": 0.35, "slack": 0.6}
TRAIN_CHANNEL = ("slack", "C0002")

DISCORD_EPOCH_MS = 1_420_070_400_000

# Relative weights of the kinds of event; a kind that is not possible at that point
# of the script (nothing to edit yet) becomes a new message.
WEIGHTS = {
    "message": 40,
    "mention": 8,
    "edit": 12,
    "delete": 6,
    "bulk_delete": 1,
    "continue": 10,
    "settings_show": 3,
    "settings_set": 3,
    "settings_refused": 2,
    "retry": 8,
}
# The kinds that must be answered, and those whose answer is generated text.
ANSWERED = {
    "mention",
    "continue",
    "settings_show",
    "settings_set",
    "settings_refused",
    "optout",
}
GENERATED = {"mention", "continue"}
# How far back (in events) a Slack retry reaches for the delivery it repeats.
RETRY_WINDOW = 40

SUBJECTS = ["織田信長は", "豊臣秀吉は", "徳川家康は", "the cat", "our club", "ラーメンは"]
VERBS = [
    "尾張の大名だった。",
    "天下を目指した。",
    "ramen が好きだった。",
    "likes onigiri.",
    "meets on friday.",
    "今日も美味しい。",
]
QUESTIONS = ["what next?", "どう思う？", "say something", "続きは？", "any news?"]
PROMPTS = ["織田信長は、", "今日のラーメンは", "The cat", "our club meets", "豊臣秀吉が"]
SETTINGS = {
    "temperature": lambda rng: f"{rng.uniform(0.6, 1.2):.2f}",
    "top_k": lambda rng: str(rng.randint(10, 80)),
    "top_p": lambda rng: f"{rng.uniform(0.8, 0.99):.2f}",
    "repetition_penalty": lambda rng: f"{rng.uniform(1.0, 1.3):.2f}",
}


@dataclass
class Event:
    """One thing a platform sends the bot. `after`: events that must have been sent
    first (a message before its edits, an edit before the next, the original delivery
    before its retry); the bot still handles them concurrently."""

    index: int
    kind: str
    platform: str
    channel: str
    user: str
    text: str = ""  # a message's text, an edit's new text, a prompt, a command line
    message: str = ""  # the id (Discord) or ts (Slack) of the message made or changed
    messages: tuple[str, ...] = ()  # a bulk delete's
    thread: str = ""  # Slack: the thread a mention is posted in (its reply goes there)
    options: dict[str, Any] = field(default_factory=dict)  # /continue overrides, a setting
    stamp: str = ""  # Slack: the ts of an edit or delete event itself
    event_ids: tuple[str, ...] = ()  # Slack: the deliveries (a mention has two)
    mention: bool = False  # an edit of a mention (Slack: the new text keeps it)
    retry_of: int = -1
    after: tuple[int, ...] = ()
    expected_answers: int = 0  # replies it must get; 0: none


@dataclass
class _Live:
    """A message as the platform has it (whether or not the bot may store it)."""

    platform: str
    channel: str
    user: str
    mention: bool
    last: int  # the last event that made or changed it


@dataclass
class Script:
    events: list[Event]
    # (platform, channel) -> message id -> (author, text): the database at the end.
    expected: dict[tuple[str, str], dict[str, tuple[str, str]]]

    def kinds(self) -> Counter[str]:
        return Counter(f"{e.platform}:{e.kind}" for e in self.events)


class _Ids:
    """Discord snowflakes and Slack ts values, in the order of the script."""

    def __init__(self, start_ms: int) -> None:
        self.ms = start_ms
        self.n = 0

    def discord(self) -> str:
        self.ms += 1
        self.n += 1
        return str(((self.ms - DISCORD_EPOCH_MS) << 22) | (self.n & 0xFFF))

    def slack(self) -> str:
        self.ms += 1
        return f"{self.ms // 1000}.{self.ms % 1000:03d}000"


def build_script(seed: int, count: int, start_ms: int) -> Script:
    """`count` events, the same for the same seed (ids and times aside, which start at
    `start_ms`), and the database they must leave behind."""
    rng = random.Random(seed)
    ids = _Ids(start_ms)
    events: list[Event] = []
    live: dict[str, _Live] = {}
    expected: dict[tuple[str, str], dict[str, tuple[str, str]]] = {
        (p, c): {} for p, chans in CHANNELS.items() for c in chans
    }
    opted_out: set[tuple[str, str]] = set()
    parents: dict[str, list[str]] = {c: [] for c in CHANNELS["slack"]}  # thread parents
    opt_out_at = {round(count * share): p for p, share in OPT_OUT_AT.items()}
    kinds, weights = list(WEIGHTS), list(WEIGHTS.values())

    def speaker(platform: str) -> tuple[str, str]:
        user = rng.choice((ADMINS[platform], *MEMBERS[platform]))
        channels = CHANNELS[platform]
        channel = channels[0] if user == OPT_OUT[platform] else rng.choice(channels)
        return user, channel

    def store(e: Event, text: str) -> None:
        if (e.platform, e.user) not in opted_out:
            expected[(e.platform, e.channel)][e.message] = (e.user, text)

    def editable(platform: str) -> list[str]:
        # Discord: a mention is not edited (the adapter stores an edited mention's raw
        # content, the bot's <@id> in it, where a new one is stored without: a gap of
        # the adapter, not what the soak measures), nor deleted (the bot's reply refers
        # to it, and Discord refuses a reply to a deleted message).
        return [
            mid
            for mid, m in live.items()
            if m.platform == platform and not (platform == "discord" and m.mention)
        ]

    for i in range(count):
        if i in opt_out_at:
            platform = opt_out_at[i]
            user = OPT_OUT[platform]
            events.append(
                Event(i, "optout", platform, CHANNELS[platform][0], user, expected_answers=1)
            )
            opted_out.add((platform, user))
            for messages in (v for (p, _), v in expected.items() if p == platform):
                for mid in [mid for mid, (author, _) in messages.items() if author == user]:
                    del messages[mid]
            continue
        platform = rng.choice(("discord", "slack"))
        kind = rng.choices(kinds, weights)[0]
        if kind in ("edit", "delete") and not editable(platform):
            kind = "message"
        if kind == "bulk_delete":
            platform = "discord"
            by_channel = Counter(live[mid].channel for mid in editable(platform))
            if not any(n >= 4 for n in by_channel.values()):
                kind = "message"
        if kind == "retry":
            platform = "slack"
            recent = [
                e
                for e in events[-RETRY_WINDOW:]
                if e.platform == "slack" and e.event_ids and e.retry_of < 0
            ]
            if not recent:
                kind = "message"
        if kind in ("message", "mention"):
            user, channel = speaker(platform)
            if kind == "mention" and platform == "slack" and not parents[channel]:
                kind = "message"
            text = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} [{i}]"
            e = Event(i, kind, platform, channel, user)
            if platform == "discord":
                e.message = ids.discord()
            else:
                e.message = ids.slack()
                e.event_ids = (f"EvS{seed % 1000:03d}M{i:06d}",)
            if kind == "mention":
                text = f"{rng.choice(QUESTIONS)} [{i}]"
                e.expected_answers = 1
                if platform == "slack":
                    # A mention in a thread of its own: the reply goes there, which
                    # ties each reply to its mention.
                    e.thread = parents[channel].pop(rng.randrange(len(parents[channel])))
                    e.event_ids = (*e.event_ids, f"EvS{seed % 1000:03d}A{i:06d}")
            elif platform == "slack":
                parents[channel].append(e.message)
            e.text = text
            store(e, text)
            live[e.message] = _Live(platform, channel, user, kind == "mention", i)
        elif kind == "edit":
            mid = rng.choice(editable(platform))
            m = live[mid]
            text = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} (edited at {i})"
            e = Event(i, kind, platform, m.channel, m.user, text=text, message=mid)
            e.mention, e.after = m.mention, (m.last,)
            m.last = i
            if platform == "slack":
                e.stamp = ids.slack()
                e.event_ids = (f"EvS{seed % 1000:03d}E{i:06d}",)
            if mid in expected[(platform, m.channel)]:
                store(e, text)
        elif kind == "delete":
            mid = rng.choice(editable(platform))
            m = live.pop(mid)
            e = Event(i, kind, platform, m.channel, m.user, message=mid, after=(m.last,))
            if platform == "slack":
                e.stamp = ids.slack()
                e.event_ids = (f"EvS{seed % 1000:03d}D{i:06d}",)
            expected[(platform, m.channel)].pop(mid, None)
        elif kind == "bulk_delete":
            channel = rng.choice([c for c, n in by_channel.items() if n >= 4])
            pool = [mid for mid in editable(platform) if live[mid].channel == channel]
            gone = rng.sample(pool, rng.randint(2, min(5, len(pool))))
            e = Event(i, kind, platform, channel, ADMINS[platform], messages=tuple(gone))
            e.after = tuple(sorted(live[mid].last for mid in gone))
            for mid in gone:
                del live[mid]
                expected[(platform, channel)].pop(mid, None)
        elif kind == "retry":
            # Mentions more often: a retried app_mention must not be answered twice.
            original = rng.choices(recent, [3 if e.kind == "mention" else 1 for e in recent])[0]
            e = Event(
                i,
                kind,
                "slack",
                original.channel,
                original.user,
                event_ids=(
                    original.event_ids[-1] if rng.random() < 0.7 else original.event_ids[0],
                ),
                retry_of=original.index,
                after=(original.index,),
            )
        elif kind == "continue":
            user, channel = speaker(platform)
            options: dict[str, Any] = {}
            roll = rng.random()
            if roll < 0.25:
                options = {"temperature": float(f"{rng.uniform(0.5, 1.2):.2f}"), "n": 2}
            elif roll < 0.45:
                options = {"temperature": float(f"{rng.uniform(0.5, 1.2):.2f}")}
            elif roll < 0.55:
                options = {"n": 2}
            e = Event(i, kind, platform, channel, user, text=rng.choice(PROMPTS))
            e.options = options
            e.expected_answers = int(options.get("n", 1))
        else:  # settings_show | settings_set | settings_refused
            user = ADMINS[platform] if kind != "settings_refused" else rng.choice(MEMBERS[platform])
            channel = rng.choice(CHANNELS[platform])
            e = Event(i, kind, platform, channel, user, expected_answers=1)
            if kind != "settings_show":
                key = rng.choice(list(SETTINGS))
                e.options = {"key": key, "value": SETTINGS[key](rng)}
        events.append(e)
    return Script(events, expected)


# --- what the bot did ---------------------------------------------------------------


_DISCORD_PING = re.compile(r"@(everyone|here)|<@[!&]?\d+>", re.IGNORECASE)


def discord_pings(body: Any) -> int:
    """1 if a Discord request body could ping someone: a ping in its content, or a
    message sent without `allowed_mentions: {parse: []}`."""
    if not isinstance(body, dict):
        return 0
    data = body.get("data") if isinstance(body.get("data"), dict) else body
    assert isinstance(data, dict)
    content = data.get("content")
    if not isinstance(content, str):
        return 0
    allowed = data.get("allowed_mentions")
    safe = isinstance(allowed, dict) and allowed.get("parse") == []
    safe = safe and not (allowed or {}).get("users") and not (allowed or {}).get("roles")
    return int(bool(_DISCORD_PING.search(content)) or not safe)


def slack_pings(text: str, params: dict[str, Any] | None = None) -> int:
    """1 if a Slack text could ping: any unescaped `<`/`>` (`<!channel>`, `<@U…>`,
    `<#C…>`, links), or a post that asks Slack to link bare @names."""
    linking = bool(params) and (
        str((params or {}).get("link_names", "")).lower() in ("1", "true")
        or (params or {}).get("parse") == "full"
    )
    return int("<" in text or ">" in text or linking)


@dataclass
class Tally:
    """The soak's outcome. `lost`, `duplicated`, `unanswered` and `pings` are the four
    figures the soak is about; the rest say why, where one is not 0."""

    lost: int = 0  # messages that should be stored but are not, or not as last edited
    duplicated: int = 0  # rows stored twice, or a command or mention answered twice
    unanswered: int = 0  # commands and mentions without their reply
    pings: int = 0  # replies that could ping someone
    kept: int = 0  # rows that should be gone (deleted, or their author opted out)
    wrong: int = 0  # answers that are not what was asked (another prompt, an error)
    unwrapped: int = 0  # generated replies without the hostile text, neutralised
    busy: int = 0  # generations refused with "busy, try again" (a full device queue)
    replies: int = 0
    generated: int = 0
    rows: int = 0
    notes: dict[str, list[str]] = field(default_factory=dict)  # a few examples of each

    @property
    def clean(self) -> bool:
        return not (
            self.lost
            or self.duplicated
            or self.unanswered
            or self.pings
            or self.kept
            or self.wrong
            or self.unwrapped
        )

    def note(self, kind: str, text: str) -> None:
        examples = self.notes.setdefault(kind, [])
        if len(examples) < 5:
            examples.append(text)

    def check_rows(
        self, where: str, rows: list[tuple[str, str]], total: int, want: dict[str, Any]
    ) -> None:
        """`rows`: (id, text) as the store lists them; `total`: its count (which also
        sees the rows `recent` hides, an opted-out member's)."""
        self.rows += total
        seen: dict[str, str] = {}
        for mid, text in rows:
            if mid in seen:
                self.duplicated += 1
                self.note("duplicated", f"{where}: row {mid} stored twice")
            seen[mid] = text
        for mid, (_, text) in want.items():
            if mid not in seen:
                self.lost += 1
                self.note("lost", f"{where}: message {mid} ({text!r}) not stored")
            elif seen[mid] != text:
                self.lost += 1
                self.note(
                    "lost", f"{where}: message {mid} is {seen[mid]!r}, last edited to {text!r}"
                )
        extra = [mid for mid in seen if mid not in want]
        self.kept += len(extra) + max(0, total - len(rows))
        for mid in extra:
            self.note("kept", f"{where}: message {mid} ({seen[mid]!r}) should be gone")
        if total > len(rows):
            self.note("kept", f"{where}: {total - len(rows)} rows of an opted-out member")

    def check_answers(self, e: Event, answers: list[str], render: Any) -> None:
        """`answers`: the texts posted for event `e`, as the platform got them;
        `render`: the platform's rendering of a plain text (to find the prompt)."""
        self.replies += len(answers)
        if not answers:
            self.unanswered += 1
            self.note("unanswered", f"#{e.index} {e.platform} {e.kind} by {e.user}: no answer")
            return
        if e.kind in GENERATED:
            extra = len(answers) - e.expected_answers
        else:
            extra = len(answers) - len(set(answers))
        if extra > 0:
            self.duplicated += extra
            self.note(
                "duplicated", f"#{e.index} {e.platform} {e.kind}: answered {len(answers)} times"
            )
        for text in answers:
            ok = True
            if e.kind in GENERATED and text == render(M.t("busy")):
                self.busy += 1  # an answer, the one the design asks for when full
            elif e.kind in GENERATED:
                self.generated += 1
                if NEUTRALISED[e.platform] not in text:
                    self.unwrapped += 1
                    ok = False
                if e.kind == "continue" and not text.startswith(render(e.text)):
                    ok = False
            elif e.kind == "settings_refused":
                ok = "Only channel admins" in text
            elif e.kind == "settings_set":
                ok = f"{e.options['key']} is now" in text
            elif e.kind == "settings_show":
                ok = text.startswith("Sampling settings for")
            elif e.kind == "optout":
                ok = text.startswith("You are opted out")
            if not ok:
                self.wrong += 1
                self.note("wrong", f"#{e.index} {e.platform} {e.kind}: answered {text[:160]!r}")

    def lines(self) -> list[str]:
        return [
            f"lost={self.lost} duplicated={self.duplicated} unanswered={self.unanswered} "
            f"pings={self.pings}",
            f"(kept-but-gone={self.kept} wrong-answers={self.wrong} "
            f"unwrapped={self.unwrapped}; {self.replies} replies, {self.generated} generated, "
            f"{self.busy} busy; "
            f"{self.rows} rows stored)",
            *(
                f"{kind}: {example}"
                for kind, examples in self.notes.items()
                for example in examples
            ),
        ]
