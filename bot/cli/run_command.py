"""`tsuzuki run`: the bot itself, and the first run's demo."""

from typing import Annotated, Any

import typer

from bot import messages as M
from bot.cli.shared import cli, execute, out
from bot.config import Settings
from bot.domain import ChannelRef
from bot.errors import UserError
from bot.statuses import JobStatus


@cli.command()
def run(
    channel: Annotated[
        str | None, typer.Option(help="Console channel to open (default: TSUZUKI_CONSOLE_CHANNEL).")
    ] = None,
    demo: Annotated[
        bool,
        typer.Option(help="First give the channel a sample history and train its model on it."),
    ] = False,
) -> None:
    """Start the bot: the job runner, the nightly schedule, every platform whose token is
    set (each on its own: one that is down is retried), or else a channel in the terminal."""
    from bot.app import running_app

    async def work(settings: Settings) -> None:
        ref = ChannelRef.parse(channel or settings.console_channel)
        async with running_app(settings) as app:
            if demo:
                await app.channels.ensure(ref, ref.channel)
                await _prepare_demo(app, ref)
            await app.serve(console=ref)

    execute(work)


async def _prepare_demo(app: Any, ref: ChannelRef) -> None:
    """Sample history and a short first training run, once per channel; the full
    recipe then runs in the background while the console is open."""
    from bot.cli.training_commands import run_job
    from bot.demo import DEMO_HISTORY, DEMO_TRAINING
    from bot.importing.importer import import_history

    if await app.registry.active(ref) is not None:
        return
    report = await import_history(app.messages, DEMO_HISTORY, "jsonl", ref)
    out.print(f"demo: {report.imported} sample messages in {ref}", markup=False)
    await app.channels.set_training(ref, True, actor="demo")
    # A short first run: never longer than a whole run would be.
    first = {
        **DEMO_TRAINING,
        "max_minutes": min(DEMO_TRAINING["max_minutes"], app.settings.train_max_minutes),
    }
    claimed = await app.runner.claim_now(ref, first, priority=10)
    if claimed is not None:
        result = await run_job(app, claimed)
        if result.status != JobStatus.SUCCEEDED:
            raise UserError(result.error or M.t("internal_error"))
    # The default recipe, in the background: the console opens now and says when
    # the better version takes over.
    await app.jobs.enqueue("train", ref, {"base": DEMO_TRAINING["base"]}, priority=5)
    out.print(M.t("demo_improving"), markup=False)
