"""`tsuzuki db …`: database maintenance."""

from bot.cli.shared import db_cli, execute, out, safe_url
from bot.config import Settings


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Apply database migrations (the bot also does this on start)."""
    from storage.db import open_database

    async def work(settings: Settings) -> None:
        db = await open_database(settings.resolved_database_url)
        await db.dispose()
        out.print(
            f"database is up to date: {safe_url(settings.resolved_database_url)}", markup=False
        )

    execute(work)
