"""Platform-neutral commands: continue, reply to a mention, settings, models.

Adapters call these with a CommandContext (who, where); every check that matters (admin
rights, valid values, prompt limits) happens here so all platforms behave the same.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bot import messages as M
from bot.command_values import (
    ActivateModel,
    Command,
    Continue,
    Help,
    ListModels,
    QueueTraining,
    ResetModels,
    ResetSetting,
    RollbackModel,
    SetOptOut,
    SetSetting,
    SetTraining,
    SetVoice,
    ShowSettings,
)
from bot.domain import (
    SETTING_SPECS,
    Author,
    ChannelOptions,
    ChannelRef,
    GenerationRequest,
    ModelVersionInfo,
    Reply,
    SamplingSettings,
    scoped,
    spec_for,
    strip_voice_tag,
    voice_tag,
)
from bot.engine.ratelimit import RateLimiter
from bot.errors import BusyError, UserError
from bot.ports import (
    ChannelStore,
    JobStore,
    MessageStore,
    ModelRegistry,
    TextGenerator,
    TextListener,
    UserStore,
)
from bot.training.plot import LOSS_CURVE
from bot.training.voices import figure_of as voice_figure

log = logging.getLogger(__name__)

# The stored channel value naming the admin who turned notices on (not a setting).
NOTICES_TO = "notices_to"

# How long a channel's options are read from memory (see Commands.options).
OPTIONS_TTL_S = 10.0

# Versions a reset retires: the ones that answer or could be made to.
LIVE = ("active", "candidate", "retired")


def _figure(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def quality_fields(v: ModelVersionInfo) -> dict[str, object]:
    """A version's quality line: its held-out bits per character, the channel's Markov
    chain's on the same messages, and their ratio (below 1: better than the chain)."""
    ratio = ""
    if v.eval_bits_per_char is not None and v.markov_bits_per_char:
        ratio = M.t("quality_ratio", ratio=v.eval_bits_per_char / v.markov_bits_per_char)
    return {
        "version": v.version,
        "bits": _figure(v.eval_bits_per_char),
        "markov": _figure(v.markov_bits_per_char),
        "ratio": ratio,
    }


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


def loss_curve(v: ModelVersionInfo) -> str | None:
    """The PNG of the version's training run, written next to its weights; None when its
    files are gone (pruned, forgotten)."""
    path = Path(v.path) / LOSS_CURVE
    return str(path) if path.is_file() else None


def version_banner(v: ModelVersionInfo) -> str:
    """ "v2 (2.41 bits/char; Markov chain: 2.19)", as the console's welcome names it."""
    fields = quality_fields(v)
    return f"v{v.version} ({fields['bits']} bits/char; Markov chain: {fields['markov']})"


@dataclass(frozen=True)
class CommandContext:
    channel: ChannelRef
    actor: Author
    channel_name: str = ""
    # Who the audit log names; by default the platform user. The CLI says "cli:<user>",
    # since an operator at the terminal is not a user of the channel's platform.
    audit_actor: str = ""
    # Where the platform shows a generation as it is written (bot/ports.py TextListener);
    # None: the reply alone. Only a request for one text streams.
    stream: TextListener | None = None

    @property
    def actor_id(self) -> str:
        return self.audit_actor or f"{self.channel.platform}:{self.actor.id}"


class Commands:
    def __init__(
        self,
        *,
        channels: ChannelStore,
        messages: MessageStore,
        registry: ModelRegistry,
        generator: TextGenerator,
        defaults: SamplingSettings,
        base_model: str,
        max_prompt_chars: int,
        reply_context_messages: int,
        user_limit: RateLimiter | None = None,
        channel_limit: RateLimiter | None = None,
        users: UserStore | None = None,
        jobs: JobStore | None = None,
        on_job_queued: Callable[[], None] = lambda: None,
        on_forgotten: Callable[[], Awaitable[None]] | None = None,
        busy: Callable[[], bool] = lambda: False,
        random_source: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Deletes the files of the versions an opt-out withdrew (the training service).
        self.on_forgotten = on_forgotten
        self.users = users
        self.jobs = jobs
        self.on_job_queued = on_job_queued
        self.channels = channels
        self.messages = messages
        self.registry = registry
        self.generator = generator
        self.defaults = defaults
        self.base_model = base_model
        self.max_prompt_chars = max_prompt_chars
        self.reply_context_messages = reply_context_messages
        self.user_limit = user_limit or RateLimiter(0)
        self.channel_limit = channel_limit or RateLimiter(0)
        # Whether the device has work waiting (the engine's queue); an unprompted reply
        # waits for a quiet moment.
        self.busy = busy
        self.random = random_source
        self.clock = clock
        self._in_flight = 0
        self._last_unprompted: dict[ChannelRef, float] = {}
        self._options: dict[ChannelRef, tuple[float, ChannelOptions]] = {}

    def _check_rate(self, ctx: CommandContext) -> None:
        if not self.user_limit.allow(ctx.actor_id):
            raise BusyError(M.t("rate_limited", who=ctx.actor.name or ctx.actor.id))
        if not self.channel_limit.allow(str(ctx.channel)):
            raise BusyError(M.t("rate_limited", who=str(ctx.channel)))

    # --- generation ------------------------------------------------------------------

    async def effective_settings(
        self, ref: ChannelRef, overrides: Mapping[str, object] | None = None
    ) -> SamplingSettings:
        """Per-request override > channel setting > configured default."""
        channel = await self.channels.get(ref)
        settings = self.defaults.merged(scoped(channel.sampling, "sampling") if channel else {})
        return settings.merged(overrides or {})

    async def options(self, ref: ChannelRef) -> ChannelOptions:
        """The channel's own behaviour: notices, unprompted replies. Read for every
        message a member writes (is an unprompted reply due?), so kept for a few seconds:
        a change made here applies at once, one made by another process within
        OPTIONS_TTL_S."""
        cached = self._options.get(ref)
        if cached is not None and self.clock() - cached[0] < OPTIONS_TTL_S:
            return cached[1]
        channel = await self.channels.get(ref)
        options = ChannelOptions.from_stored(channel.sampling if channel else {})
        self._options[ref] = (self.clock(), options)
        return options

    def _effective(self, own: Mapping[str, object]) -> dict[str, Any]:
        """Every setting's value for a channel whose own settings are `own`."""
        sampling = self.defaults.merged(scoped(own, "sampling"))
        return {**sampling.as_dict(), **ChannelOptions.from_stored(own).as_dict()}

    async def _own(self, ref: ChannelRef) -> dict[str, Any]:
        channel = await self.channels.get(ref)
        return channel.sampling if channel else {}

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
        if len(prompt) > self.max_prompt_chars:
            raise UserError(M.t("prompt_too_long", length=len(prompt), limit=self.max_prompt_chars))
        # Validate overrides before any work, so a typo costs no generation.
        settings = await self.effective_settings(ctx.channel, overrides)
        tag = await self._voice_tag(ctx, voice) if voice else ""
        self._check_rate(ctx)
        await self.channels.ensure(ctx.channel, ctx.channel_name)
        stream = ctx.stream if settings.num_return_sequences == 1 else None
        async with self._generating():
            result = await self.generator.generate(
                GenerationRequest(
                    channel=ctx.channel, settings=settings, mode="continue", prompt=tag + prompt
                ),
                _untagged(stream),
            )
        return Reply(tuple(strip_voice_tag(t) for t in result.texts), generated=True)

    async def _voice_tag(self, ctx: CommandContext, voice: str) -> str:
        """The member's tag in this channel's model, if they lent the channel their
        voice; a clear refusal otherwise (whoever asks, the member included)."""
        if self.users is None or not await self.users.has_voice(ctx.channel, voice):
            raise UserError(M.t("voice_not_lent"))
        return voice_tag(ctx.channel, voice)

    async def reply(self, ctx: CommandContext) -> Reply:
        """The channel's next message, written after its recent history."""
        self._check_rate(ctx)
        return await self._next_message(ctx)

    async def _next_message(self, ctx: CommandContext) -> Reply:
        settings = await self.effective_settings(ctx.channel)
        history = await self.messages.recent(ctx.channel, self.reply_context_messages)
        async with self._generating():
            result = await self.generator.generate(
                GenerationRequest(
                    channel=ctx.channel,
                    settings=settings,
                    mode="reply",
                    context=tuple(m.text for m in history),
                ),
                _untagged(ctx.stream),
            )
        # A message may open with a voice tag, as the members' messages it learnt from
        # do: never shown.
        texts = tuple(s for t in result.texts if (s := strip_voice_tag(t).strip()))
        return Reply((texts or (M.t("reply_empty"),))[:1], generated=True)

    async def unprompted(self, ctx: CommandContext) -> Reply | None:
        """After a member's message (`ctx`), sometimes the channel's next message, by
        the channel's `reply_chance`: never sooner than `reply_cooldown` after the last
        one, and never while anyone waits for a generation. Nobody asked, so a failure
        is logged and nothing is said."""
        options = await self.options(ctx.channel)
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

    # --- settings --------------------------------------------------------------------

    async def settings_show(self, ctx: CommandContext) -> Reply:
        own = await self._own(ctx.channel)
        effective = self._effective(own)
        lines = [M.t("settings_header", channel=ctx.channel)]
        for name, spec in SETTING_SPECS.items():
            source = M.t("source_channel") if name in own else M.t("source_default")
            lines.append(
                M.t(
                    "settings_line",
                    key=name,
                    value=spec.show(effective[name]),
                    source=source,
                    range=spec.describe_range(),
                    help=spec.help,
                )
            )
        return Reply.info("\n".join(lines))

    async def settings_set(self, ctx: CommandContext, key: str, raw_value: str) -> Reply:
        self._require_admin(ctx)
        spec = spec_for(key)
        value = spec.coerce(raw_value)
        old = self._effective(await self._own(ctx.channel))[spec.name]
        await self.channels.set_sampling(ctx.channel, spec.name, value, actor=ctx.actor_id)
        self._options.pop(ctx.channel, None)
        if spec.name == "notices" and value:
            # Who hears, privately, why a run was not used: the admin who asked for
            # notices (a platform has no "admins only" message in a channel).
            await self.channels.set_sampling(
                ctx.channel, NOTICES_TO, ctx.actor.id, actor=ctx.actor_id
            )
        return Reply.info(
            M.t("setting_set", key=spec.name, value=spec.show(value), old=spec.show(old))
        )

    async def settings_reset(self, ctx: CommandContext, key: str) -> Reply:
        self._require_admin(ctx)
        spec = spec_for(key)
        await self.channels.set_sampling(ctx.channel, spec.name, None, actor=ctx.actor_id)
        self._options.pop(ctx.channel, None)
        default = {**self.defaults.as_dict(), **ChannelOptions().as_dict()}[spec.name]
        return Reply.info(M.t("setting_reset", key=spec.name, value=spec.show(default)))

    @staticmethod
    def _require_admin(ctx: CommandContext) -> None:
        if not ctx.actor.is_admin:
            raise UserError(M.t("admin_only"))

    # --- models ----------------------------------------------------------------------

    async def models_activate(self, ctx: CommandContext, version: str) -> Reply:
        self._require_admin(ctx)
        number = version.lstrip("vV")
        if not number.isdigit():
            raise UserError(M.t("model_version_unknown", channel=ctx.channel, version=version))
        done = await self.registry.activate(ctx.channel, int(number), actor=ctx.actor_id)
        if done is None:
            versions = await self.registry.versions(ctx.channel)
            if any(v.version == int(number) and v.status == "forgotten" for v in versions):
                raise UserError(M.t("model_forgotten", channel=ctx.channel, version=int(number)))
            raise UserError(M.t("model_version_unknown", channel=ctx.channel, version=version))
        return Reply.info(M.t("model_activated", channel=ctx.channel, version=done.version))

    async def models_rollback(self, ctx: CommandContext) -> Reply:
        self._require_admin(ctx)
        previous = await self.registry.previous_active(ctx.channel)
        if previous is None:
            raise UserError(M.t("model_no_rollback", channel=ctx.channel))
        await self.registry.activate(ctx.channel, previous.version, actor=ctx.actor_id)
        return Reply.info(M.t("model_activated", channel=ctx.channel, version=previous.version))

    async def models_reset(self, ctx: CommandContext, confirmed: bool) -> Reply:
        """Retires every version: the base answers, and the next training starts from
        it, on the whole history. Asked twice, so that one stray command costs nothing."""
        self._require_admin(ctx)
        versions = [v for v in await self.registry.versions(ctx.channel) if v.status in LIVE]
        if not versions:
            raise UserError(M.t("models_reset_nothing", channel=ctx.channel))
        if not confirmed:
            return Reply.info(M.t("models_reset_confirm", channel=ctx.channel, count=len(versions)))
        count = await self.registry.reset(ctx.channel, actor=ctx.actor_id)
        return Reply.info(
            M.t("models_reset_done", channel=ctx.channel, count=count, base=self.base_model)
        )

    async def training(self, ctx: CommandContext, enabled: bool) -> Reply:
        """Consent: an admin opts the channel in to (or out of) training."""
        self._require_admin(ctx)
        await self.channels.set_training(ctx.channel, enabled, actor=ctx.actor_id)
        if enabled and self.jobs is not None and ctx.channel.platform != "console":
            # The past matters too: read the channel's history in the background.
            await self.jobs.enqueue("backfill", ctx.channel, {}, priority=3)
            self.on_job_queued()
        return Reply.info(M.t("training_on" if enabled else "training_off", channel=ctx.channel))

    async def opt(self, ctx: CommandContext, out: bool) -> Reply:
        """A user's own consent: opting out forgets their messages in this workspace."""
        assert self.users is not None
        ref = ctx.channel
        count = await self.users.set_opted_out(
            ref.platform, ref.workspace, ctx.actor.id, out, actor=ctx.actor_id
        )
        # The versions that learnt from those messages were withdrawn with them (the
        # channel answers with an earlier version, or its base); now their files go.
        if out and self.on_forgotten is not None:
            await self.on_forgotten()
        return Reply.info(M.t("opted_out", count=count) if out else M.t("opted_in"))

    async def voice(self, ctx: CommandContext, on: bool | None) -> Reply:
        """A member's own consent to being written as, in this channel only. Off takes
        it back at once (nobody may ask for it) and from the next version on."""
        assert self.users is not None
        if on is not None:
            await self.users.set_voice(ctx.channel, ctx.actor.id, on, actor=ctx.actor_id)
            return Reply.info(M.t("voice_on" if on else "voice_off", channel=ctx.channel))
        if not await self.users.has_voice(ctx.channel, ctx.actor.id):
            return Reply.info(M.t("voice_status_off", channel=ctx.channel))
        lines = [M.t("voice_status_on", channel=ctx.channel)]
        active = await self.registry.active(ctx.channel)
        tag = voice_tag(ctx.channel, ctx.actor.id)
        figure = voice_figure(active.path, tag) if active else None
        if active and figure:
            lines.append(
                M.t(
                    "voice_figure",
                    version=active.version,
                    messages=figure.messages,
                    voice=figure.bits_as_voice,
                    channel=figure.bits_as_channel,
                )
            )
        else:
            lines.append(M.t("voice_not_yet"))
        return Reply.info("\n".join(lines))

    async def queue_training(self, ctx: CommandContext) -> Reply:
        """Queues a training run for the channel now (consent is checked when it runs,
        and here, so nobody waits for a job that will refuse)."""
        self._require_admin(ctx)
        assert self.jobs is not None
        channel = await self.channels.get(ctx.channel)
        if channel is None or not channel.training_enabled:
            raise UserError(M.t("training_disabled", channel=ctx.channel))
        job = await self.jobs.enqueue("train", ctx.channel, {}, priority=5)
        self.on_job_queued()
        return Reply.info(M.t("training_queued", channel=ctx.channel, job=job.id))

    async def models(self, ctx: CommandContext) -> Reply:
        versions = await self.registry.versions(ctx.channel)
        if not versions:
            return Reply.info(M.t("models_none", channel=ctx.channel, base=self.base_model))
        lines = [M.t("models_header", channel=ctx.channel)]
        for v in versions:
            lines.append(
                M.t(
                    "models_line",
                    version=v.version,
                    status=v.status,
                    bits=_figure(v.eval_bits_per_char),
                    markov=_figure(v.markov_bits_per_char),
                    base=v.base_model,
                    method=v.method,
                    eval_loss="—" if v.eval_loss is None else f"{v.eval_loss:.3f}",
                    created=v.created_at.strftime("%Y-%m-%d %H:%M"),
                )
                + (f" — {v.note}" if v.note else "")
            )
        shown = next((v for v in versions if v.status == "active"), None) or next(
            (v for v in reversed(versions) if v.status in LIVE), None
        )
        chart = loss_curve(shown) if shown else None
        if shown and chart:
            lines.append(M.t("models_chart", version=shown.version))
        return replace(Reply.info("\n".join(lines)), image=chart)

    # --- one entry point -------------------------------------------------------------

    async def execute(self, ctx: CommandContext, command: Command) -> Reply:
        """Runs one command value (bot/command_values.py) for `ctx`."""
        match command:
            case Continue(prompt, overrides, voice):
                return await self.continue_text(ctx, prompt, overrides, voice)
            case ShowSettings():
                return await self.settings_show(ctx)
            case SetSetting(key, value):
                return await self.settings_set(ctx, key, value)
            case ResetSetting(key):
                return await self.settings_reset(ctx, key)
            case ListModels():
                return await self.models(ctx)
            case ActivateModel(version):
                return await self.models_activate(ctx, version)
            case RollbackModel():
                return await self.models_rollback(ctx)
            case ResetModels(confirmed):
                return await self.models_reset(ctx, confirmed)
            case SetTraining(enabled):
                return await self.training(ctx, enabled)
            case QueueTraining():
                return await self.queue_training(ctx)
            case SetOptOut(out):
                return await self.opt(ctx, out)
            case SetVoice(on):
                return await self.voice(ctx, on)
            case Help():
                return Reply.info(M.t("help"))
        raise AssertionError(f"unhandled command {command!r}")
