"""A broken disk or database, as an operator meets it from the command line: named
(what, where, while doing what), never silently replaced, nothing half-written left."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from adapters.discord_adapter import DiscordAdapter
from bot.config import Settings
from tests.e2e.serving import serving, with_discord
from tests.e2e.test_cli import TSUZUKI, tsuzuki
from tests.exports import write_jsonl
from tests.fakes.discord_server import FakeDiscord

LINES = ["織田信長は尾張の大名。", "ramen is great", "桶狭間で勝った。", "see you friday"]


def club(env: dict[str, str], tmp_path: Path) -> Path:
    """console:club with 200 messages and training on; returns the data dir."""
    path = write_jsonl(
        tmp_path / "club.jsonl",
        [
            {"author": "a", "text": f"{LINES[i % 4]} {i % 7}", "ts": 1_700_000_000 + i, "id": i}
            for i in range(200)
        ],
    )
    tsuzuki(env, "import", str(path), "--channel", "console:club")
    tsuzuki(env, "channels", "console:club", "training", "on")
    return Path(env["TSUZUKI_DATA_DIR"])


def _can_mount() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
        capture_output=True,
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount(), reason="needs unshare and a tmpfs mount (a full disk)")
def test_a_full_disk_is_named_in_the_cli_and_the_jobs_and_leaves_no_temp_folder(
    env: dict[str, str], tmp_path: Path
) -> None:
    data = club(env, tmp_path)
    models = data / "models"
    models.mkdir(exist_ok=True)
    # models/ on a filesystem of its own with room for the scratch base (~0.6 MB) and
    # the run's data, not for the version (~0.6 MB more): a real ENOSPC.
    script = (
        f"mount -t tmpfs -o size=1000k tmpfs '{models}' && "
        f"'{TSUZUKI}' train console:club --max-steps 5 --block-size 32; "
        f"echo rc=$?; ls -a '{models}'/*/"
    )
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    said = f"no space left on the disk of {models / 'console+local+club' / 'v1'}, while saving v1"
    assert said in proc.stderr, proc.stderr
    assert "rc=1" in proc.stdout
    left = proc.stdout.split("rc=1", 1)[1].split()
    assert "scratch-tiny" in left and not any(name.endswith(".tmp") for name in left)
    jobs = tsuzuki(env, "jobs").stdout
    assert "failed" in jobs and said in jobs


def test_an_empty_database_file_is_refused_and_kept(env: dict[str, str], tmp_path: Path) -> None:
    data = club(env, tmp_path)
    db = data / "tsuzuki.db"
    for extra in ("tsuzuki.db-wal", "tsuzuki.db-shm"):
        (data / extra).unlink(missing_ok=True)
    db.write_bytes(b"")
    for command in (["jobs"], ["train", "console:club", "--max-steps", "2"]):
        proc = tsuzuki(env, *command, check=False)
        assert proc.returncode != 0
        assert f"The database file {db} exists but is empty (0 bytes)" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert db.stat().st_size == 0  # not made into a new, empty database


def test_a_damaged_database_file_is_named(env: dict[str, str], tmp_path: Path) -> None:
    data = club(env, tmp_path)
    db = data / "tsuzuki.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    # Not SQLite's at all (its header overwritten).
    original = db.read_bytes()
    db.write_bytes(b"\x00" * 100 + original[100:])
    proc = tsuzuki(env, "jobs", check=False)
    assert proc.returncode != 0
    assert f"The database file {db} cannot be used: it is not a SQLite database" in proc.stderr
    # SQLite's header, damaged pages: named when a command meets them.
    size = len(original)
    db.write_bytes(original[:4096] + b"\xff" * (size - 4096))
    proc = tsuzuki(env, "models", "console:club", check=False)
    assert proc.returncode != 0
    assert "damaged" in proc.stderr or "cannot be used" in proc.stderr, proc.stderr
    assert "something went wrong" not in proc.stderr


def test_a_channel_never_seen_is_refused_unless_created(
    env: dict[str, str], tmp_path: Path
) -> None:
    club(env, tmp_path)
    typo = tsuzuki(env, "channels", "console:clb", "training", "on", check=False)
    assert typo.returncode == 1
    assert "I have never seen console:clb" in typo.stderr
    assert "Known channels like it: console:club." in typo.stderr
    for _ in range(2):  # the refusal recorded nothing: refused again
        refused = tsuzuki(env, "settings", "slack:T9/TYPO", "set", "top_k", "5", check=False)
        assert refused.returncode == 1 and "never seen slack:T9/TYPO" in refused.stderr
        assert "like it: none" in refused.stderr
    made = tsuzuki(env, "channels", "slack:T9/NEW", "training", "on", "--create")
    assert "training is now on" in made.stdout.lower()
    assert "top_k = 50" in tsuzuki(env, "settings", "slack:T9/NEW", "show").stdout


def test_control_characters_reach_the_terminal_escaped(env: dict[str, str]) -> None:
    bad_id = tsuzuki(env, "channels", "console:a\x1b[2J\x07", "training", "on", check=False)
    assert bad_id.returncode == 1
    assert "\x1b" not in bad_id.stderr and "\x07" not in bad_id.stderr
    assert "console:a\\x1b[2J\\x07" in bad_id.stderr
    prompt = "\x1b[31mred\u202e"
    answer = tsuzuki(env, "continue", "console:general", prompt, "--seed", "1").stdout
    assert "\x1b" not in answer and "\u202e" not in answer
    assert answer.startswith("\\x1b[31mred\\u202e")


async def test_stopping_the_bot_closes_each_platform_clients_connections(
    local_settings: Settings, fake_discord: FakeDiscord
) -> None:
    async with serving(with_discord(local_settings, fake_discord)) as app:
        [supervisor] = app.platforms
        adapter = supervisor.current
        assert isinstance(adapter, DiscordAdapter)
        await adapter.ready.wait()
        connector = adapter.client.http.connector
    # Stopping cancels each supervisor once: its clean-up (closing the client) runs
    # to the end instead of being cancelled again half-way ("Unclosed connector").
    assert connector.closed
