"""`tsuzuki train` killed half-way (kill -9) or stopped (Ctrl-C): the next `tsuzuki
train` resumes the run from its checkpoint; while the first process lives, nobody else
takes its job. Real processes, real files, no network."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.test_cli import TSUZUKI, tsuzuki
from tests.exports import write_jsonl

CHANNEL = "console:club"
# A checkpoint every 25 steps: the first run is caught after the one at step 25 and
# well before its end (no checkpoint is written at the last step).
TRAIN = ["train", CHANNEL, "--max-steps", "50", "--block-size", "32"]


def start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [TSUZUKI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def job_row(data: Path) -> tuple[str, int | None, int] | None:
    """(status, owner pid, attempts) of the channel's training job, from the database."""
    db = data / "tsuzuki.db"
    if not db.is_file():
        return None
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        try:
            row = conn.execute(
                "SELECT status, owner_pid, attempts FROM jobs WHERE kind = 'train' "
                "ORDER BY id DESC LIMIT 1"
            ).fetchone()
        except sqlite3.OperationalError:  # not migrated yet
            return None
    return None if row is None else (row[0], row[1], row[2])


def wait_for(what: str, proc: subprocess.Popen[str], done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 120
    while not done():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the process ended before {what}: {out}\n{err}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_killed_or_stopped_training_run_resumes_from_its_checkpoint(
    env: dict[str, str], tmp_path: Path
) -> None:
    lines = ["織田信長は尾張の大名。", "ramen is great", "桶狭間で勝った。", "see you friday"]
    path = write_jsonl(
        tmp_path / "club.jsonl",
        [
            {"author": "a", "text": f"{lines[i % 4]} {i % 7}", "ts": 1_700_000_000 + i, "id": i}
            for i in range(200)
        ],
    )
    tsuzuki(env, "import", str(path), "--channel", CHANNEL)
    tsuzuki(env, "channels", CHANNEL, "training", "on")
    data = Path(env["TSUZUKI_DATA_DIR"])
    checkpoint = data / "models" / "console+local+club" / "run" / "checkpoint.pt"

    # 1. A run that has written its first checkpoint, frozen there (alive, silent).
    first = start(env, *TRAIN)
    try:
        wait_for("the checkpoint", first, checkpoint.is_file)
        first.send_signal(signal.SIGSTOP)
        assert job_row(data) == ("running", first.pid, 1)

        # 2. Its owner is alive: another `tsuzuki train` leaves the job alone.
        busy = tsuzuki(env, *TRAIN, check=False)
        assert busy.returncode == 1
        assert f"A training run for {CHANNEL} is already in progress" in busy.stderr
        assert job_row(data) == ("running", first.pid, 1)

        # 3. kill -9: the job stays "running", its owner gone.
        first.kill()
        first.wait(timeout=30)
    finally:
        first.kill()
        first.wait(timeout=30)
    assert job_row(data) == ("running", first.pid, 1)
    assert [p.name for p in checkpoint.parent.glob("*.tmp")] == []  # none half-written

    # 4. The next run takes the job over; Ctrl-C puts it back in the queue at once.
    second = start(env, *TRAIN)
    try:
        wait_for("the take-over", second, lambda: job_row(data) == ("running", second.pid, 2))
        time.sleep(0.5)  # well inside the run
        second.send_signal(signal.SIGINT)
        second.wait(timeout=60)
    finally:
        second.kill()
        second.wait(timeout=30)
    assert second.returncode == 130, second.stderr.read() if second.stderr else ""
    assert job_row(data) == ("queued", None, 2)
    assert checkpoint.is_file()

    # 5. And the run after that resumes from the checkpoint and finishes.
    resumed = tsuzuki(env, *TRAIN)
    assert "resumed from the checkpoint at step 25" in resumed.stdout
    assert "v1 (full, base scratch:tiny)" in resumed.stdout
    assert "promoted: v1 now answers in console:club" in resumed.stdout
    row = job_row(data)
    assert row is not None and (row[0], row[2]) == ("succeeded", 3)
    assert not checkpoint.parent.exists()  # the run is over: its directory is gone
