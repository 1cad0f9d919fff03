"""Every text the bot writes: `/continue`, the answer to a mention, and the channel's
next message unprompted. Prompt limits, rate limits and voice consent are checked here,
before any device time is spent."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from bot import messages as M
from bot.core.context import CommandContext
from bot.core.conversations import Conversations
from bot.core.ratelimit import RateLimiter
from bot.core.settings_commands import ChannelSettings
from bot.domain import ChannelRef, GenerationRequest, Reply, strip_voice_tag, voice_tag
from bot.errors import BusyError, UserError
from bot.generation.banned import BannedWords
from bot.ports import Stores, TextGenerator, TextListener
from bot.setting_specs import ChannelOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplyLimits:
    max_prompt_chars: int
    # How many of the channel's newest messages a reply is written after.
    reply_context_messages: int
    per_user: RateLimiter
    per_channel: RateLimiter


def _untagged(stream: TextListener | None) -> TextListener | None:
    """A listener that never sees the voice tag a text may start with."""
    if stream is None:
        return None
    listener = stream

    def hear(text: str) -> None:
        if text.startswith("«") and "»" not in text[:8]:
            return  # a tag still being written: shown once it is whole, and gone
        listener(strip_voice_tag(text))

    return hear


class Replies:
    def __init__(
        self,
        stores: Stores,
        settings: ChannelSettings,
        generator: TextGenerator,
        limits: ReplyLimits,
        *,
        busy: Callable[[], bool],
        random_source: Callable[[], float],
        clock: Callable[[], float],
    ) -> None:
        self.stores = stores
        self.conversations = Conversations(stores)
        self.settings = settings
        self.generator = generator
        self.limits = limits
        # Whether the device has work waiting (the engine's queue); an unprompted reply
        # waits for a quiet moment.
        self.busy = busy
        self.random = random_source
        self.clock = clock
        self._in_flight = 0
        self._last_unprompted: dict[ChannelRef, float] = {}

    def _check_rate(self, ctx: CommandContext) -> None:
        if not self.limits.per_user.allow(ctx.actor_id):
            raise BusyError(M.t("rate_limited", who=ctx.actor.name or ctx.actor.id))
        if not self.limits.per_channel.allow(str(ctx.channel)):
            raise BusyError(M.t("rate_limited", who=str(ctx.channel)))

    @contextlib.asynccontextmanager
    async def _generating(self) -> AsyncIterator[None]:
        """Counts the generations this process waits for: an unprompted reply never
        adds to a queue that people are waiting in."""
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1

    async def continue_text(
        self,
        ctx: CommandContext,
        prompt: str,
        overrides: Mapping[str, object] | None = None,
        voice: str | None = None,
    ) -> Reply:
        if not prompt.strip():
            raise UserError(M.t("prompt_empty"))
        limit = self.limits.max_prompt_chars
        if len(prompt) > limit:
            raise UserError(M.t("prompt_too_long", length=len(prompt), limit=limit))
        # Validate overrides before any work, so a typo costs no generation.
        settings = await self.settings.effective(ctx.channel, overrides)
        tag = await self._voice_tag(ctx, voice) if voice else ""
        guard = await self._guard(ctx)
        banned = BannedWords(guard.banned_words)
        if banned.first(prompt) is not None:
            # The reply starts with the prompt: it would post the word itself.
            raise UserError(M.t("prompt_banned_word"))
        self._check_rate(ctx)
        await self.stores.channels.ensure(ctx.channel, ctx.channel_name)
        stream = ctx.stream if settings.num_return_sequences == 1 else None
        async with self._generating():
            result = await self.generator.generate(
                GenerationRequest(
                    channel=ctx.channel,
                    settings=settings,
                    mode="continue",
                    prompt=prompt,
                    voice=tag,
                    verbatim_whole=guard.verbatim_whole,
                    verbatim_run=guard.verbatim_run,
                    banned_words=guard.banned_words,
                ),
                stream,
            )
        # The texts start with the prompt as typed: the voice tag went to the model only.
        # The engine resamples around banned words; whatever engine it was, none is posted.
        return Reply(tuple(banned.cut(t) for t in result.texts), generated=True, voice=voice)

    async def _guard(self, ctx: CommandContext) -> ChannelOptions:
        """The channel's options, for its leak-guard thresholds."""
        return await self.settings.options(ctx.channel)

    async def _voice_tag(self, ctx: CommandContext, voice: str) -> str:
        """The member's tag in this channel's model, if they lent the channel their
        voice; a clear refusal otherwise (whoever asks, the member included)."""
        if not await self.stores.users.has_voice(ctx.channel, voice):
            raise UserError(M.t("voice_not_lent"))
        return voice_tag(ctx.channel, voice, await self.stores.messages.voice_key())

    async def reply(self, ctx: CommandContext, chain: Sequence[str] = ()) -> Reply:
        """The channel's next message, written after its recent history and then the
        conversation `chain` (message ids, oldest first; conversations.py) it answers."""
        self._check_rate(ctx)
        return replace(await self._next_message(ctx, chain), chain=tuple(chain))

    async def _next_message(self, ctx: CommandContext, chain: Sequence[str] = ()) -> Reply:
        settings = await self.settings.effective(ctx.channel)
        history = await self.stores.messages.recent(ctx.channel, self.limits.reply_context_messages)
        # The conversation comes last, nearest the reply: when the context is too long
        # for the model, the channel's older history is cut first (prompt.py).
        in_chain = set(chain)
        context = [m.text for m in history if m.external_id not in in_chain]
        context += await self.conversations.texts(ctx.channel, chain) if chain else []
        guard = await self._guard(ctx)
        async with self._generating():
            result = await self.generator.generate(
                GenerationRequest(
                    channel=ctx.channel,
                    settings=settings,
                    mode="reply",
                    context=tuple(context),
                    verbatim_whole=guard.verbatim_whole,
                    verbatim_run=guard.verbatim_run,
                    banned_words=guard.banned_words,
                ),
                _untagged(ctx.stream),
            )
        # A message may open with a voice tag, as the members' messages it learnt from
        # do: never shown. Nor is a banned word, whatever engine wrote it.
        banned = BannedWords(guard.banned_words)
        texts = tuple(s for t in result.texts if (s := banned.cut(strip_voice_tag(t)).strip()))
        return Reply((texts or (M.t("reply_empty"),))[:1], generated=True)

    async def unprompted(self, ctx: CommandContext) -> Reply | None:
        """After a member's message (`ctx`), sometimes the channel's next message, by
        the channel's `reply_chance`: never sooner than `reply_cooldown` after the last
        one, and never while anyone waits for a generation. Nobody asked, so a failure
        is logged and nothing is said."""
        options = await self.settings.options(ctx.channel)
        if options.reply_chance <= 0 or self._in_flight or self.busy():
            return None
        now = self.clock()
        last = self._last_unprompted.get(ctx.channel)
        if last is not None and now - last < options.reply_cooldown:
            return None
        if self.random() >= options.reply_chance:
            return None
        # Taken before the generation: messages arriving meanwhile find it cooling down.
        self._last_unprompted[ctx.channel] = now
        try:
            reply = await self._next_message(ctx)
        except Exception as e:
            log.warning("%s: no unprompted reply (%s)", ctx.channel, type(e).__name__)
            return None
        if reply.texts == (M.t("reply_empty"),):
            return None
        return replace(reply, unprompted=True)
