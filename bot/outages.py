"""Failures of the machine rather than of the code: a full disk, a read-only or failing
one, a database file that is damaged. They are named (what failed, where, and while
doing what) instead of "something went wrong", so an operator knows what to fix.

`named(exc)` reads an exception (and what caused it) for such a failure; `doing(what,
where)` wraps a step so that one becomes an Outage, a UserError whose reason says it.
Torch's own writer reports a full disk as "unexpected pos …": a failed write into a
folder whose filesystem has almost no room left is taken as a full disk.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bot import messages as M
from bot.errors import UserError

# Less room than this left after a failed write: the write failed for want of room.
NEARLY_FULL_BYTES = 16 * 2**20
_DISK_FULL_TEXT = (
    "no space left on device",
    "os error 28",
    "disk is full",
    "database or disk is full",
)
_BROKEN_DB_TEXT = (
    "database disk image is malformed",
    "file is not a database",
    "disk i/o error",
)
# PostgreSQL's SQLSTATEs for the same: disk full, I/O error, data or index corrupted.
_PG_STATES = {
    "53100": "disk_full",
    "58030": "io_error",
    "XX001": "db_corrupt",
    "XX002": "db_corrupt",
}


class Outage(UserError):
    """The machine failed a step: the reason names what, where and while doing what."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def named(exc: BaseException, where: Path | None = None) -> str | None:
    """What failed, if it was the machine (the disk, the database file); else None."""
    for e in _chain(exc):
        code = getattr(e, "errno", None)
        path = getattr(e, "filename", None) or where or ""
        if code in (errno.ENOSPC, errno.EDQUOT):
            return M.t("outage_disk_full", path=path)
        if code == errno.EROFS:
            return M.t("outage_read_only", path=path)
        if code == errno.EIO:
            return M.t("outage_io_error", path=path)
        text = str(e).lower()
        if any(s in text for s in _DISK_FULL_TEXT):
            return M.t("outage_disk_full", path=path or M.t("outage_the_database"))
        if any(s in text for s in _BROKEN_DB_TEXT):
            return M.t("outage_db_broken", cause=str(e).splitlines()[0][:200])
        state = getattr(e, "sqlstate", None) or getattr(e, "pgcode", None)
        if state in _PG_STATES:
            kind = _PG_STATES[state]
            if kind == "db_corrupt":
                return M.t("outage_db_broken", cause=state)
            return M.t(f"outage_{kind}", path=M.t("outage_the_database"))
    if where is not None and _nearly_full(where):
        return M.t("outage_disk_full", path=where)
    return None


def _nearly_full(where: Path) -> bool:
    for folder in (where, *where.parents):
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free < NEARLY_FULL_BYTES
            except OSError:
                return False
    return False


@contextmanager
def doing(what: str, where: Path | None = None) -> Iterator[None]:
    """Runs a step; a failure of the machine comes out as an Outage naming the step."""
    try:
        yield
    except UserError:
        raise
    except Exception as e:
        cause = named(e, where)
        if cause is None:
            raise
        raise Outage(M.t("outage_while", cause=cause, doing=what)) from e


def explained(exc: BaseException, doing_what: str | None = None) -> str:
    """What to tell the user of an unexpected failure: the machine's fault named, or the
    generic apology (the traceback is in the log either way)."""
    cause = named(exc)
    if cause is None:
        return M.t("internal_error")
    return M.t("outage_while", cause=cause, doing=doing_what or M.t("doing_command"))
