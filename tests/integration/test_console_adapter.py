"""The console channel in-process: what a person typing in the terminal sees."""

from __future__ import annotations

import io

from adapters.console_adapter import ConsoleAdapter
from bot.app import App
from bot.domain import ChannelRef

REF = ChannelRef.parse("console:general")


async def run_console(app: App, script: str) -> tuple[str, str]:
    stdin, stdout, stderr = io.StringIO(script), io.StringIO(), io.StringIO()
    adapter = ConsoleAdapter(app.core, REF, stdin=stdin, stdout=stdout, stderr=stderr)
    await adapter.run()  # returns at end of input
    return stdout.getvalue(), stderr.getvalue()


async def test_lines_are_history_mentions_get_replies_and_errors_go_to_stderr(
    local_app: App,
) -> None:
    out, err = await run_console(
        local_app,
        "おはよう\n\nhello @everyone\n@tsuzuki, what next?\n/settings set seed x\n/help\n",
    )
    texts = [m.text for m in await local_app.messages.recent(REF, 10)]
    assert texts == ["おはよう", "hello @everyone", "what next?"]
    lines = out.splitlines()
    assert lines[0]  # the mention's reply
    # /help: every command here, the admin's too (the console user is the admin).
    help_ = out[out.index("What you can do here:") :]
    assert "/settings set KEY VALUE" in help_ and "/continue TEXT" in help_
    assert "Continue this message" not in help_  # no message actions in a terminal
    assert lines[-1] == "Anything else you type is kept as channel history."
    assert "seed must be an integer" in err


async def test_the_local_user_is_admin(local_app: App) -> None:
    out, err = await run_console(local_app, "/settings set top_k 3\n")
    assert "top_k is now 3" in out and err == ""
    assert (await local_app.commands.settings.effective(REF)).top_k == 3


async def test_generated_terminal_escapes_are_not_printed(local_app: App) -> None:
    from bot.domain import Reply

    adapter = ConsoleAdapter(local_app.core, REF, stdout=(out := io.StringIO()))
    await adapter.send(REF, Reply(("safe\x1b]0;pwned\x07 text\x1b[2J",), generated=True))
    assert "\x1b" not in out.getvalue() and "safe" in out.getvalue()
