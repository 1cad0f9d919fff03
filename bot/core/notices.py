"""Training notices: what a channel hears when a run of its model ends.

With the channel's `notices` setting on, a promoted version is announced in the channel
with its figures and its loss curve; a run that failed or was not used is explained to
the admin who turned notices on, privately. Each platform delivers a Notice its own way
(a Discord attachment or DM, a Slack file upload or ephemeral message, a console line
with the PNG's path); the job runner never waits for a platform.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from bot import messages as M
from bot.core.background import Background
from bot.core.jobs import JobResult
from bot.core.presentation import figure, loss_curve, quality_fields
from bot.core.settings_commands import NOTICES_TO
from bot.domain import ChannelRef, Notice
from bot.ports import ChannelStore
from bot.setting_specs import ChannelOptions
from bot.statuses import JobStatus

log = logging.getLogger(__name__)

# A platform's way of delivering a notice (adapters' `post_notice`, through the
# platform's supervisor).
NoticeSink = Callable[[Notice], Awaitable[None]]


class Notifier:
    def __init__(self, channels: ChannelStore) -> None:
        self.channels = channels
        # platform name → where its notices go; a platform not connected has none.
        self.sinks: dict[str, NoticeSink] = {}
        self._delivering = Background()

    def on_result(self, result: JobResult) -> None:
        """A job runner listener: delivers the run's notices in the background."""
        if result.job.kind != "train" or result.job.channel is None:
            return
        if result.status not in (JobStatus.SUCCEEDED, JobStatus.FAILED):
            return  # requeued: the run goes on elsewhere and ends there
        self._delivering.start(self._deliver(result))

    async def drain(self) -> None:
        """Waits for the notices on their way (tests, shutdown)."""
        await self._delivering.drain()

    async def notices_for(self, result: JobResult) -> list[Notice]:
        """What the run's end tells the channel: nothing unless its notices are on."""
        ref = result.job.channel
        assert ref is not None
        channel = await self.channels.get(ref)
        stored = channel.sampling if channel else {}
        if not ChannelOptions.from_stored(stored).notices:
            return []
        admin = stored.get(NOTICES_TO)
        outcome = result.outcome
        if outcome is not None and outcome.promoted:
            return [promoted_notice(ref, result)]
        if not isinstance(admin, str) or not admin:
            return []
        if outcome is not None:
            line = M.t("quality_line", **quality_fields(outcome.version))
            text = M.t("notice_kept", channel=ref, line=line, reason=outcome.reason)
        else:
            text = M.t("notice_failed", channel=ref, error=result.error or M.t("internal_error"))
        return [Notice(ref, text, to_user=admin)]

    async def _deliver(self, result: JobResult) -> None:
        try:
            for notice in await self.notices_for(result):
                sink = self.sinks.get(notice.channel.platform)
                if sink is None:
                    log.info("%s: its platform is not connected; notice dropped", notice.channel)
                    continue
                await sink(notice)
        except Exception:
            # A notice that cannot be delivered must not disturb the jobs; the version
            # answers all the same.
            log.warning("a training notice could not be delivered", exc_info=True)


def promoted_notice(ref: ChannelRef, result: JobResult) -> Notice:
    """The channel's announcement: the version, its bits per character on the newest
    messages against the channel's Markov chain and the version it replaces, and its
    loss curve."""
    outcome = result.outcome
    assert outcome is not None
    v = outcome.version
    fields = quality_fields(v)
    if outcome.previous_version is not None:
        previous = M.t(
            "notice_previous",
            version=outcome.previous_version,
            bits=figure(outcome.previous_bits_per_char),
        )
    else:
        previous = M.t("notice_first")
    text = M.t(
        "notice_promoted",
        version=v.version,
        bits=fields["bits"],
        markov=fields["markov"],
        previous=previous,
        live=fields["live"],
        live_markov=fields["live_markov"],
    )
    return Notice(ref, text, image=loss_curve(v))
