"""Which versions a forget-me withdraws, and which one answers then (the policy the
user store applies in its transaction)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.records import VersionRecord
from bot.statuses import VersionStatus
from bot.training.lineage import plan_forget

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def version(
    n: int, status: VersionStatus, last_message_id: int, activated_days: int | None = None
) -> VersionRecord:
    activated = None if activated_days is None else T0 + timedelta(days=activated_days)
    return VersionRecord(n, status, "full", "scratch:tiny", last_message_id, activated)


def test_versions_that_learnt_the_message_go_and_the_last_earlier_active_one_answers() -> None:
    versions = [
        version(1, VersionStatus.RETIRED, 10, activated_days=1),
        version(2, VersionStatus.RETIRED, 20, activated_days=2),
        version(3, VersionStatus.ACTIVE, 30, activated_days=3),
    ]
    plan = plan_forget(versions, first_id=25)
    assert plan.forgotten == {3}
    assert (plan.reactivate, plan.replaces) == (2, 3)


def test_a_version_retired_by_a_reset_never_answers_again_after_a_forget() -> None:
    # v1 and v2 were reset; v3, trained afterwards from the base, is active.
    versions = [
        version(1, VersionStatus.RESET, 10, activated_days=1),
        version(2, VersionStatus.RESET, 20, activated_days=2),
        version(3, VersionStatus.ACTIVE, 30, activated_days=3),
    ]
    plan = plan_forget(versions, first_id=25)
    assert plan.forgotten == {3}
    assert plan.reactivate is None  # the base answers


def test_a_lora_version_over_the_channels_scratch_base_always_goes() -> None:
    lora = VersionRecord(1, VersionStatus.ACTIVE, "lora", "scratch:tiny", 10, T0)
    assert plan_forget([lora], first_id=99).forgotten == {1}
