"""What every `tsuzuki` command shares: the consoles, the command groups, settings and
logging, the error policy (one line on stderr, a non-zero exit; the traceback of an
unexpected error goes to the log file only) and the operator's command context."""

import asyncio
import getpass
import logging
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

from adapters.render import escape_terminal_control
from bot import messages as M
from bot.config import Settings, load_settings
from bot.core.context import CommandContext
from bot.domain import Author, ChannelRef, Reply
from bot.errors import UserError
from bot.logs import configure_logging
from bot.outages import explained

T = TypeVar("T")
log = logging.getLogger("tsuzuki.cli")


class TerminalConsole(Console):
    """rich's Console that shows control characters in text escaped, never obeyed: a
    channel id, prompt or message with ANSI escapes cannot recolour, move or clear the
    operator's terminal."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        safe = [escape_terminal_control(o) if isinstance(o, str) else o for o in objects]
        super().print(*safe, **kwargs)


out = TerminalConsole(highlight=False, soft_wrap=True)
err = TerminalConsole(stderr=True, highlight=False, soft_wrap=True)

cli = typer.Typer(
    help="Tsuzuki (続き): a chat bot that writes in the voice of a channel.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_cli = typer.Typer(help="Database maintenance.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
bench_cli = typer.Typer(help="Benchmarks: figures measured on this machine.", no_args_is_help=True)
cli.add_typer(bench_cli, name="bench")


def load_cli_settings() -> Settings:
    settings = load_settings()
    secrets = [
        s.get_secret_value()
        for s in (
            settings.discord_token,
            settings.slack_bot_token,
            settings.slack_app_token,
            settings.slack_signing_secret,
        )
        if s is not None
    ]
    configure_logging(settings.log_level, settings.data_dir / "logs" / "tsuzuki.log", secrets)
    M.set_locale(settings.locale)
    return settings


def execute(work: Callable[[Settings], Coroutine[Any, Any, T]]) -> T:
    """Runs one command: settings, logging, the event loop and the error policy."""
    try:
        settings = load_cli_settings()
    except UserError as e:
        err.print(f"error: {escape_terminal_control(e.reason)}", markup=False)
        raise typer.Exit(2) from None
    try:
        return asyncio.run(work(settings))
    except UserError as e:
        err.print(f"error: {escape_terminal_control(e.reason)}", markup=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except Exception as e:
        log.exception("command failed")
        logfile = settings.data_dir / "logs" / "tsuzuki.log"
        err.print(f"error: {explained(e)} ({logfile})", markup=False)
        raise typer.Exit(1) from None


def operator(channel: ChannelRef) -> CommandContext:
    """The person at the terminal: an admin of every channel they can reach the
    database of, recorded in the audit log as cli:<os user>."""
    user = getpass.getuser()
    return CommandContext(channel, Author(id=user, name=user, is_admin=True), "", f"cli:{user}")


def print_reply(reply: Reply) -> None:
    if reply.is_error:
        raise UserError(reply.texts[0])
    for i, text in enumerate(reply.texts, start=1):
        prefix = M.t("variant", i=i, n=len(reply.texts)) + " " if len(reply.texts) > 1 else ""
        out.print(prefix + escape_terminal_control(text), markup=False)
    if reply.image is not None:
        out.print(M.t("console_image", path=reply.image), markup=False)


def usage(text: str) -> NoReturn:
    err.print(f"error: {escape_terminal_control(text)}", markup=False)
    raise typer.Exit(2)


def safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
