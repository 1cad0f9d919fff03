"""The statuses a model version and a job go through, defined once.

StrEnum members are their stored strings ("active" == VersionStatus.ACTIVE), so the
database column, JSON and the CLI's output stay as they were."""

from __future__ import annotations

from enum import StrEnum


class VersionStatus(StrEnum):
    # Trained and kept, not answering (a run that did not beat the active one).
    CANDIDATE = "candidate"
    # The one version that answers for its channel.
    ACTIVE = "active"
    # Answered before; an admin may activate it again.
    RETIRED = "retired"
    # Learnt from messages a member had forgotten: never answers again, files deleted.
    FORGOTTEN = "forgotten"
    # Retired for good by `/models reset`: never answers again, the base does.
    RESET = "reset"


# Versions that answer or could be made to (activate, rollback, reset act on these).
LIVE_VERSIONS = frozenset({VersionStatus.ACTIVE, VersionStatus.CANDIDATE, VersionStatus.RETIRED})
# Versions that never answer again.
GONE_VERSIONS = frozenset({VersionStatus.FORGOTTEN, VersionStatus.RESET})


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


# A job in one of these is not done: asking for the same kind and channel joins it.
ACTIVE_JOBS = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})
