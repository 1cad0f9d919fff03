"""Which model versions a forget-me withdraws, and which earlier version answers then:
the policy over a channel's version lineage, on plain values (the store reads the rows,
holds the channel's lock and applies the plan in its transaction)."""

from __future__ import annotations

from collections.abc import Sequence

from bot.records import ForgetPlan, VersionRecord
from bot.statuses import GONE_VERSIONS, VersionStatus


def plan_forget(versions: Sequence[VersionRecord], first_id: int) -> ForgetPlan:
    """Marks forgotten every version that may have learnt from message `first_id` or a
    later one: those whose data reached it, and every later version (which may have
    started from such a one's weights); and every LoRA version over the channel's
    scratch base, whose tokenizer is fitted again without the forgotten messages
    (ModelResolver.scratch_base). If the active version is among them, the earlier
    version that was active most recently answers instead; with none left, the base
    does, and the channel's next run starts from the base. `versions` are the channel's
    versions in version order."""
    first = min(
        (v.version for v in versions if v.last_message_id is None or v.last_message_id >= first_id),
        default=None,
    )
    forgotten = frozenset(
        v.version for v in versions if _on_scratch(v) or (first is not None and v.version >= first)
    )
    was_active = next((v for v in versions if v.status == VersionStatus.ACTIVE), None)
    if was_active is None or was_active.version not in forgotten:
        return ForgetPlan(forgotten)
    # Versions that were active once and may answer again: not forgotten, now or
    # before, and not retired for good by a reset.
    earlier = [
        (v.activated_at, v.version)
        for v in versions
        if v.activated_at is not None
        and v.version not in forgotten
        and v.status not in GONE_VERSIONS
    ]
    if not earlier:
        return ForgetPlan(forgotten)
    # max keeps the first of equal times: the lower version, as versions come in order.
    _, fallback = max(earlier, key=lambda pair: pair[0])
    return ForgetPlan(forgotten, reactivate=fallback, replaces=was_active.version)


def _on_scratch(version: VersionRecord) -> bool:
    return version.method == "lora" and version.base_model.startswith("scratch")
