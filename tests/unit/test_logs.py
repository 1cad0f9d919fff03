from __future__ import annotations

import logging
from pathlib import Path

from bot.logs import configure_logging

SECRET = "xoxb-1234567890-abcdefghijkl"
DISCORD_SHAPED = "MTA5ODc2NTQzMjEwOTg3NjU0.GaBcDe.abcdefghijklmnopqrstuvwxyz012345"


def test_secrets_never_reach_the_log_file_even_in_tracebacks(tmp_path: Path) -> None:
    log_file = tmp_path / "t.log"
    configure_logging("DEBUG", log_file, [SECRET, "my-signing-secret"])
    log = logging.getLogger("test.secrets")
    log.debug("token is %s", SECRET)
    log.info("signing secret my-signing-secret in a message")
    log.warning("someone pasted %s", DISCORD_SHAPED)
    log.debug("POST https://discord.com/api/v10/webhooks/888/aW50ZXJhY3Rpb246MTIz has returned 200")
    log.info("event %s", {"id": "1", "token": "aW50ZXJhY3Rpb246NDU2"})
    log.debug("POST https://hooks.slack.com/commands/T0001/123/SecretPart987 done")
    logging.getLogger("discord.gateway").debug("WebSocket Event: {'content': 'private words'}")
    try:
        raise RuntimeError(f"request failed with Authorization: Bot {SECRET}")
    except RuntimeError:
        log.exception("boom")
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = log_file.read_text(encoding="utf-8")
    assert "boom" in text and "RuntimeError" in text  # the traceback is kept
    assert SECRET not in text
    assert "my-signing-secret" not in text
    assert DISCORD_SHAPED not in text
    assert "aW50ZXJhY3Rpb246MTIz" not in text and "/webhooks/888/[redacted]" in text
    assert "aW50ZXJhY3Rpb246NDU2" not in text
    assert "SecretPart987" not in text
    assert "private words" not in text  # payload dumps stay out even at DEBUG
    assert text.count("[redacted]") >= 4


async def test_message_text_and_authors_stay_out_of_the_log_at_the_default_level(
    tmp_path: Path,
) -> None:
    """SQLAlchemy logs each statement with its parameters at INFO: at the default level
    the log file would hold every stored message and its author."""
    from datetime import UTC, datetime

    from bot.domain import Author, ChannelRef, ChatMessage
    from storage.db import open_database
    from storage.stores import SqlMessageStore

    log_file = tmp_path / "t.log"
    configure_logging("INFO", log_file, [])
    db = await open_database(f"sqlite+aiosqlite:///{tmp_path}/t.db")
    try:
        ref = ChannelRef("console", "local", "general")
        await SqlMessageStore(db).add(
            ChatMessage(
                channel=ref,
                external_id="1",
                author=Author(id="u1", name="Hanako Private"),
                text="my private diary entry",
                created_at=datetime.now(UTC),
            )
        )
        assert [m.text for m in await SqlMessageStore(db).recent(ref, 5)] == [
            "my private diary entry"
        ]
    finally:
        await db.dispose()
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = log_file.read_text(encoding="utf-8")
    assert "my private diary entry" not in text
    assert "Hanako Private" not in text
