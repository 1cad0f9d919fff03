"""Platform-neutral commands: continue, reply to a mention, settings, models.

Adapters call these with a CommandContext (who, where); every check that matters (admin
rights, valid values, prompt limits) happens here so all platforms behave the same.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

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
    ShowSettings,
)
from bot.domain import (
    SETTING_SPECS,
    Author,
    ChannelRef,
    GenerationRequest,
    ModelVersionInfo,
    Reply,
    SamplingSettings,
    spec_for,
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
        settings = self.defaults.merged(channel.sampling if channel else {})
        return settings.merged(overrides or {})

    async def continue_text(
        self, ctx: CommandContext, prompt: str, overrides: Mapping[str, object] | None = None
    ) -> Reply:
        if not prompt.strip():
            raise UserError(M.t("prompt_empty"))
        if len(prompt) > self.max_prompt_chars:
            raise UserError(M.t("prompt_too_long", length=len(prompt), limit=self.max_prompt_chars))
        # Validate overrides before any work, so a typo costs no generation.
        settings = await self.effective_settings(ctx.channel, overrides)
        self._check_rate(ctx)
        await self.channels.ensure(ctx.channel, ctx.channel_name)
        result = await self.generator.generate(
            GenerationRequest(
                channel=ctx.channel, settings=settings, mode="continue", prompt=prompt
            ),
            ctx.stream if settings.num_return_sequences == 1 else None,
        )
        return Reply(result.texts, generated=True)

    async def reply(self, ctx: CommandContext) -> Reply:
        """The channel's next message, written after its recent history."""
        settings = await self.effective_settings(ctx.channel)
        self._check_rate(ctx)
        history = await self.messages.recent(ctx.channel, self.reply_context_messages)
        result = await self.generator.generate(
            GenerationRequest(
                channel=ctx.channel,
                settings=settings,
                mode="reply",
                context=tuple(m.text for m in history),
            ),
            ctx.stream,
        )
        texts = tuple(t for t in result.texts if t) or (M.t("reply_empty"),)
        return Reply(texts[:1], generated=True)

    # --- settings --------------------------------------------------------------------

    async def settings_show(self, ctx: CommandContext) -> Reply:
        channel = await self.channels.get(ctx.channel)
        own = channel.sampling if channel else {}
        effective = self.defaults.merged(own).as_dict()
        lines = [M.t("settings_header", channel=ctx.channel)]
        for name, spec in SETTING_SPECS.items():
            source = M.t("source_channel") if name in own else M.t("source_default")
            value = "none" if effective[name] is None else effective[name]
            lines.append(
                M.t(
                    "settings_line",
                    key=name,
                    value=value,
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
        old_effective = (await self.effective_settings(ctx.channel)).as_dict()[spec.name]
        await self.channels.set_sampling(ctx.channel, spec.name, value, actor=ctx.actor_id)
        shown = "none" if value is None else value
        return Reply.info(M.t("setting_set", key=spec.name, value=shown, old=old_effective))

    async def settings_reset(self, ctx: CommandContext, key: str) -> Reply:
        self._require_admin(ctx)
        spec = spec_for(key)
        await self.channels.set_sampling(ctx.channel, spec.name, None, actor=ctx.actor_id)
        default = self.defaults.as_dict()[spec.name]
        return Reply.info(M.t("setting_reset", key=spec.name, value=default))

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
        return Reply.info("\n".join(lines))

    # --- one entry point -------------------------------------------------------------

    async def execute(self, ctx: CommandContext, command: Command) -> Reply:
        """Runs one command value (bot/command_values.py) for `ctx`."""
        match command:
            case Continue(prompt, overrides):
                return await self.continue_text(ctx, prompt, overrides)
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
            case Help():
                return Reply.info(M.t("help"))
        raise AssertionError(f"unhandled command {command!r}")
