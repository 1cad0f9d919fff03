"""Processes that run jobs, as the operating system knows them: who owns a job (host,
process id) and whether that process still runs. A leaf module: it imports nothing
from the rest of the bot."""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class JobOwner:
    """A process that runs jobs: the host it runs on and its process id."""

    host: str
    pid: int

    @classmethod
    def this_process(cls) -> JobOwner:
        return cls(socket.gethostname(), os.getpid())

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}"


def process_alive(pid: int) -> bool | None:
    """Whether a process with this id runs on this host; None where that cannot be told
    (on Windows os.kill would end the process instead). A killed process its parent has
    not reaped yet (a zombie) does not count: it runs nothing."""
    if sys.platform == "win32":
        return None
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it runs, as another user
    except OSError:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True  # no /proc (macOS): os.kill is all there is
    # "pid (name) state …": the name may hold spaces and parentheses.
    fields = stat.rsplit(")", 1)[-1].split()
    return not fields or fields[0] not in ("Z", "X")
