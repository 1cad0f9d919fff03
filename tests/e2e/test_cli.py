"""The `tsuzuki` command as a person runs it: a real process, real files, no network."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.exports import write_jsonl

TSUZUKI = str(Path(sys.executable).parent / "tsuzuki")
PROMPT = "織田信長は、"


def tsuzuki(
    env: dict[str, str], *args: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [TSUZUKI, *args], input=stdin, capture_output=True, text=True, env=env, timeout=180
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_piped_console_channel_continues_the_prompt(env: dict[str, str]) -> None:
    script = f"hello everyone\n/continue {PROMPT}\n/settings set temperature 9\n"
    # Seeded so the untrained model's output is the same on every run.
    proc = tsuzuki(env | {"TSUZUKI_SEED": "1"}, "run", stdin=script)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(PROMPT) and len(lines[0]) > len(PROMPT)
    assert "temperature must be a number in the range 0–5" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_continue_command_starts_with_the_prompt_and_honours_seed(env: dict[str, str]) -> None:
    a = tsuzuki(env, "continue", "console:general", PROMPT, "--seed", "7", "-n", "2")
    b = tsuzuki(env, "continue", "console:general", PROMPT, "--seed", "7", "-n", "2")
    assert a.stdout == b.stdout
    lines = [line for line in a.stdout.splitlines() if line.startswith("[")]
    assert len(lines) == 2
    assert all(line.split(" ", 1)[1].startswith(PROMPT) for line in lines)


def test_import_prints_counts_and_reimport_adds_nothing(
    env: dict[str, str], tmp_path: Path
) -> None:
    path = write_jsonl(
        tmp_path / "h.jsonl",
        [{"author": "a", "text": f"msg {i}", "ts": 1_700_000_000 + i, "id": i} for i in range(30)],
    )
    first = tsuzuki(env, "import", str(path), "--channel", "console:general")
    assert "imported 30, duplicates 0, skipped 0" in first.stdout
    again = tsuzuki(env, "import", str(path), "--channel", "console:general")
    assert "imported 0, duplicates 30" in again.stdout


def test_broken_import_is_one_clear_line(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"guild": {"id": "1"}, "channel": {"id": "2"}, "messages": []})[:-7])
    proc = tsuzuki(env, "import", str(path), check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and "bad.json" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_settings_set_show_reset_and_invalid_values(env: dict[str, str]) -> None:
    tsuzuki(env, "settings", "console:general", "set", "top_k", "12", "--create")
    shown = tsuzuki(env, "settings", "console:general", "show").stdout
    assert "top_k = 12 (set for this channel" in shown
    bad = tsuzuki(env, "settings", "console:general", "set", "top_p", "inf", check=False)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        "error: top_p must be a number in the range 0.01–1 (got 'inf'). Nothing was changed."
    ]
    tsuzuki(env, "settings", "console:general", "reset", "top_k")
    assert "top_k = 50 (default" in tsuzuki(env, "settings", "console:general", "show").stdout
    assert "No trained versions" in tsuzuki(env, "models", "console:general").stdout


def test_bad_configuration_names_the_variable(env: dict[str, str]) -> None:
    proc = tsuzuki(env | {"TSUZUKI_TOP_P": "nan"}, "continue", "console:general", "x", check=False)
    assert proc.returncode == 2
    assert "TSUZUKI_TOP_P" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "command",
    [[], ["run"], ["import"], ["continue"], ["settings"], ["models"], ["eval"], ["db", "upgrade"]],
)
def test_every_command_has_help(env: dict[str, str], command: list[str]) -> None:
    proc = tsuzuki(env, *command, "--help")
    assert "Usage: tsuzuki" in proc.stdout


def test_training_from_the_command_line(env: dict[str, str], tmp_path: Path) -> None:
    lines = ["織田信長は尾張の大名。", "ramen is great", "桶狭間で勝った。", "see you friday"]
    path = write_jsonl(
        tmp_path / "club.jsonl",
        [
            {"author": "a", "text": f"{lines[i % 4]} {i % 7}", "ts": 1_700_000_000 + i, "id": i}
            for i in range(200)
        ],
    )
    tsuzuki(env, "import", str(path), "--channel", "console:club")
    refused = tsuzuki(env, "train", "console:club", "--max-steps", "5", check=False)
    assert refused.returncode == 1 and "Training is off" in refused.stderr
    assert (
        "training is now on"
        in tsuzuki(env, "channels", "console:club", "training", "on").stdout.lower()
    )

    trained = tsuzuki(env, "train", "console:club", "--max-steps", "20", "--block-size", "32")
    assert "v1 (full, base scratch:tiny)" in trained.stdout
    assert "promoted: v1 now answers in console:club" in trained.stdout
    assert (
        Path(env["TSUZUKI_DATA_DIR"]) / "models" / "console+local+club" / "v1" / "loss.png"
    ).is_file()
    assert "100%" in trained.stderr  # the progress bar reached the end
    # Its quality, next to the channel's Markov chain on the same held-out messages.
    quality = re.search(
        r"v1: (\d+\.\d\d) bits/char — the channel's Markov chain: (\d+\.\d\d) \((\d+\.\d\d)×",
        trained.stdout,
    )
    assert quality, trained.stdout
    bits, markov, ratio = (float(g) for g in quality.groups())
    assert ratio == pytest.approx(bits / markov, rel=0.05)  # of figures rounded to 0.01

    listed = tsuzuki(env, "models", "console:club").stdout
    assert "v1 active" in listed
    assert f"{bits:.2f} bits/char (the channel's Markov chain: {markov:.2f}; live " in listed
    # Measured again without training: the same messages, the same figures.
    again = tsuzuki(env, "eval", "console:club").stdout
    assert f"v1: {bits:.2f} bits/char — the channel's Markov chain: {markov:.2f}" in again
    assert "has no active model version" in tsuzuki(env, "eval", "console:x", check=False).stderr
    jobs = tsuzuki(env, "jobs").stdout
    assert "succeeded" in jobs and "console:club" in jobs
    assert "no channel is due" in tsuzuki(env, "train", "--all-due").stdout
    answer = tsuzuki(env, "continue", "console:club", "織田信長は", "--seed", "1").stdout
    assert answer.startswith("織田信長は")


def test_status_reads_the_running_bots_metrics(env: dict[str, str]) -> None:
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    env = env | {"TSUZUKI_METRICS_PORT": port, "TSUZUKI_SEED": "1"}
    bot = subprocess.Popen(
        [TSUZUKI, "run"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert bot.stdin is not None and bot.stdout is not None
        bot.stdin.write("/continue 織田信長は、\n")
        bot.stdin.flush()
        assert bot.stdout.readline().startswith("織田信長は、")  # answered: metrics recorded
        deadline = time.monotonic() + 30
        while True:
            status = tsuzuki(env, "status").stdout
            if "requests 1:" in status or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert "requests 1: latency p50" in status
        assert "mean rows 1.0" in status  # one request: every decode step had one row
    finally:
        bot.stdin.close()  # type: ignore[union-attr]
        bot.wait(timeout=60)
    assert bot.returncode == 0


def test_first_run_says_how_good_its_model_is_and_improves_it_in_the_background(
    env: dict[str, str],
) -> None:
    """`make run` on a fresh machine: a first model, its quality, the console at once,
    and a better version taking over without a restart, announced in the console."""
    proc = subprocess.Popen(
        [TSUZUKI, "run", "--demo"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Seconds, not minutes, for both runs; the flow is the same.
        env=env | {"TSUZUKI_TRAIN_MAX_MINUTES": "0.05", "TSUZUKI_BASE_MODEL": "scratch:tiny"},
    )
    assert proc.stdin is not None and proc.stderr is not None and proc.stdout is not None
    announced = ""
    try:
        for line in proc.stderr:
            if "A better model now answers" in line or "was trained but not used" in line:
                announced = line
                break
        proc.stdin.write("/models\n/continue 織田信長は、\n")
        proc.stdin.close()
        out = proc.stdout.read()
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert re.search(r"v2: \d+\.\d\d bits/char — the channel's Markov chain: \d+\.\d\d", announced)
    # The first version's quality was printed before the console opened.
    assert re.search(r"v1: \d+\.\d\d bits/char — the channel's Markov chain", out)
    assert "keeps training in the background" in out
    assert "v1 " in out and "v2 " in out  # /models lists both
    assert "織田信長は、" in out.splitlines()[-1]
