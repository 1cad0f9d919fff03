"""A channel's commands at the terminal: import, continue, settings, models, consent, eval.

Each builds a command value (bot/core/command_values.py) and runs it through the core, as a
platform would; the operator at the terminal is an admin."""

import difflib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bot import messages as M
from bot.cli.shared import cli, err, execute, operator, out, print_reply, usage
from bot.config import Settings
from bot.core.command_values import Command, Continue
from bot.core.presentation import quality_fields
from bot.core.text_commands import parse_models, parse_settings, parse_training
from bot.domain import ChannelRef
from bot.errors import UserError
from bot.ports import ChannelStore
from bot.setting_specs import SETTING_SPECS

if TYPE_CHECKING:
    from bot.importing.importer import ImportProgress


@cli.command("import")
def import_(
    path: Annotated[
        Path,
        typer.Argument(
            help="A .jsonl, .txt, DiscordChatExporter .json, or a "
            "Slack export (.zip or its folder)."
        ),
    ],
    channel: Annotated[
        str | None,
        typer.Option(
            help="Channel for formats that do not name one (jsonl, text), e.g. console:general."
        ),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="jsonl | text | discord | slack (default: from the file)."),
    ] = None,
) -> None:
    """Import existing history. Re-importing the same file adds nothing."""
    from bot.app import running_app
    from bot.importing.importer import import_history

    async def work(settings: Settings) -> None:
        ref = ChannelRef.parse(channel) if channel else None
        async with running_app(settings) as app:
            with _import_progress(path) as progress:
                report = await import_history(
                    app.messages, path, fmt, ref, settings.import_max_mb * 2**20, progress
                )
        out.print(
            M.t(
                "import_done",
                path=path,
                imported=report.imported,
                duplicates=report.duplicates,
                skipped=sum(report.skipped.values()),
            ),
            markup=False,
        )
        for ref_, counts in sorted(report.per_channel.items()):
            out.print(
                f"  {ref_}: imported {counts.imported}, duplicates {counts.duplicates}",
                markup=False,
            )
        for why, n in report.skipped.most_common():
            out.print(f"  skipped {n}: {why}", markup=False)

    execute(work)


@contextmanager
def _import_progress(path: Path) -> Iterator["ImportProgress | None"]:
    """Two bars on stderr: reading the file, then storing its messages. Transient, so
    that only the result stays on the screen; none at all when stderr is no terminal,
    where rich would still leave a blank line before an error."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    from bot.importing.importer import ImportProgress

    if not err.is_interactive:
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[count]}"),
    )
    with Progress(*columns, console=err, transient=True) as bars:
        # Without a total the bar pulses: a format that does not report as it reads.
        reading = bars.add_task(f"reading {path.name}", total=None, count="")
        storing = bars.add_task("storing", total=None, count="", visible=False)

        def on_parse(done: int, total: int) -> None:
            bars.update(reading, completed=done, total=total)

        def on_store(done: int, total: int) -> None:
            count = f"{done:,}/{total:,} messages"
            bars.update(storing, completed=done, total=total, count=count, visible=True)

        yield ImportProgress(parse=on_parse, store=on_store)


CREATE = typer.Option(
    "--create", help="Also for a channel the bot has not seen yet (no message or event)."
)


def _setting_option(name: str) -> str:
    spec = SETTING_SPECS[name]
    return f"{spec.help} ({spec.describe_range()})"


@cli.command("continue")
def continue_(
    channel: Annotated[str, typer.Argument(help="e.g. console:general")],
    prompt: Annotated[str, typer.Argument(help="The start of the text to continue.")],
    temperature: Annotated[str | None, typer.Option(help=_setting_option("temperature"))] = None,
    top_k: Annotated[str | None, typer.Option(help=_setting_option("top_k"))] = None,
    top_p: Annotated[str | None, typer.Option(help=_setting_option("top_p"))] = None,
    max_new_tokens: Annotated[
        str | None, typer.Option(help=_setting_option("max_new_tokens"))
    ] = None,
    repetition_penalty: Annotated[
        str | None, typer.Option(help=_setting_option("repetition_penalty"))
    ] = None,
    no_repeat_ngram_size: Annotated[
        str | None, typer.Option(help=_setting_option("no_repeat_ngram_size"))
    ] = None,
    n: Annotated[
        str | None,
        typer.Option("-n", "--num-return-sequences", help=_setting_option("num_return_sequences")),
    ] = None,
    seed: Annotated[str | None, typer.Option(help=_setting_option("seed"))] = None,
    as_: Annotated[
        str | None,
        typer.Option(
            "--as",
            help="Write as this member (their user id), if they lent the channel their "
            "voice with /voice on.",
        ),
    ] = None,
) -> None:
    """Continue PROMPT in CHANNEL's voice (the output starts with the prompt)."""

    given = {
        "temperature": temperature,
        "top_k": top_k,
        "top_p": top_p,
        "max_new_tokens": max_new_tokens,
        "repetition_penalty": repetition_penalty,
        "no_repeat_ngram_size": no_repeat_ngram_size,
        "num_return_sequences": n,
        "seed": seed,
    }
    overrides = {k: v for k, v in given.items() if v is not None}
    _run(channel, Continue(prompt, overrides, as_))


@cli.command()
def settings(
    channel: Annotated[str, typer.Argument(help="e.g. console:general")],
    action: Annotated[str, typer.Argument(help="show | set | reset")] = "show",
    key: Annotated[str | None, typer.Argument(help="Setting name, for set and reset.")] = None,
    value: Annotated[str | None, typer.Argument(help="New value, for set.")] = None,
    create: Annotated[bool, CREATE] = False,
) -> None:
    """Show or change a channel's sampling settings (changes go to the audit log)."""
    _run(channel, _parsed(parse_settings, action, key, value), known_only=not create)


@cli.command()
def models(
    channel: Annotated[str, typer.Argument(help="e.g. console:general")],
    action: Annotated[str, typer.Argument(help="list | activate | rollback | reset")] = "list",
    version: Annotated[
        str | None, typer.Argument(help="Version, for activate; `confirm`, for reset.")
    ] = None,
) -> None:
    """List a channel's model versions, activate one, roll back to the previous, or
    reset (retire them all: the base answers, the next training starts from it)."""
    _run(channel, _parsed(parse_models, action, version))


@cli.command()
def channels(
    channel: Annotated[str, typer.Argument(help="e.g. console:general")],
    setting: Annotated[str, typer.Argument(help="training")],
    value: Annotated[str, typer.Argument(help="on | off")],
    create: Annotated[bool, CREATE] = False,
) -> None:
    """Turn training on or off for a channel (consent; audited)."""
    if setting != "training" or value not in ("on", "off"):
        usage("usage: tsuzuki channels CHANNEL training on|off [--create]")
    _run(channel, parse_training([value]), known_only=not create)


@cli.command("eval")
def eval_(
    channel: Annotated[str, typer.Argument(help="e.g. console:general")],
) -> None:
    """The active version's held-out bits per character next to the channel's Markov
    chain, measured now on the channel's newest messages (no training)."""
    from bot.app import running_app

    async def work(settings: Settings) -> None:
        ref = ChannelRef.parse(channel)
        async with running_app(settings) as app:
            with err.status(f"evaluating {ref}…"):
                v = await app.training.evaluate_active(ref)
        out.print(M.t("quality_line", **quality_fields(v)), markup=False)

    execute(work)


async def _known(channels: ChannelStore, ref: ChannelRef) -> None:
    known = [str(k) for k in await channels.known()]
    if str(ref) in known:
        return
    close = difflib.get_close_matches(str(ref), known, n=5, cutoff=0.6)
    raise UserError(
        M.t(
            "channel_never_seen",
            channel=ref,
            close=", ".join(close) if close else M.t("channel_none_close"),
        )
    )


def _parsed(parse: Callable[[list[str]], Command], *words: str | None) -> Command:
    """The arguments as words, read by the one parser (bot/core/text_commands.py) as
    the same command typed in a channel would be; its usage when they are not one."""
    try:
        return parse([w for w in words if w is not None])
    except UserError as e:
        usage(e.reason)


def _run(channel: str, command: Command, *, known_only: bool = False) -> None:
    """Runs one command value in CHANNEL through the core, as the operator, and prints
    the reply (an error reply exits non-zero). `known_only`: refused for a channel the
    bot has never seen, so a typo records no consent or setting for a channel that
    does not exist."""
    from bot.app import running_app

    async def work(settings: Settings) -> None:
        ref = ChannelRef.parse(channel)
        async with running_app(settings) as app:
            if known_only:
                await _known(app.channels, ref)
            reply = await app.core.on_command(operator(ref), command)
        print_reply(reply)

    execute(work)
