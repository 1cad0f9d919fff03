"""Training and background jobs: `tsuzuki train`, `jobs`, `status`."""

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from bot import messages as M
from bot.cli.shared import (
    cli,
    err,
    execute,
    out,
)
from bot.config import Settings
from bot.core.presentation import quality_fields
from bot.domain import ChannelRef
from bot.errors import UserError
from bot.statuses import ACTIVE_JOBS, JobStatus
from bot.training.plot import LOSS_CURVE


@cli.command()
def train(
    channel: Annotated[
        str | None, typer.Argument(help="e.g. console:general (or use --all-due)")
    ] = None,
    all_due: Annotated[
        bool, typer.Option("--all-due", help="Train every channel the nightly job would.")
    ] = False,
    base: Annotated[
        str | None, typer.Option(help="Base model (default: TSUZUKI_BASE_MODEL).")
    ] = None,
    method: Annotated[
        str | None,
        typer.Option(help="lora | full (default: lora for pretrained, full for scratch)."),
    ] = None,
    max_steps: Annotated[
        int | None, typer.Option(min=1, help="Optimizer steps at most (default: no cap).")
    ] = None,
    max_minutes: Annotated[
        float | None,
        typer.Option(min=0.01, help="Time budget in minutes (default: TSUZUKI_TRAIN_MAX_MINUTES)."),
    ] = None,
    learning_rate: Annotated[
        float | None, typer.Option(min=0.0, help="Peak learning rate.")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Blocks per step (default: 8).")
    ] = None,
    block_size: Annotated[
        int | None, typer.Option(min=8, help="Tokens per block (default: 128).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (default: 0).")] = None,
    resume: Annotated[
        bool,
        typer.Option(help="Continue an interrupted run of the same settings from its checkpoint."),
    ] = True,
) -> None:
    """Fine-tune a channel's model now; prints the new version and whether it is active."""
    from bot.app import running_app

    if (channel is None) == (not all_due):
        err.print("error: name a CHANNEL or pass --all-due (not both)", markup=False)
        raise typer.Exit(2)
    if method not in (None, "lora", "full"):
        err.print("error: --method must be lora or full", markup=False)
        raise typer.Exit(2)
    from bot.training.outcome import TrainOptions

    # Only what was given: the rest keeps TrainConfig's defaults.
    given = {
        "method": method,
        "max_steps": max_steps,
        "max_minutes": max_minutes,
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "block_size": block_size,
        "seed": seed,
    }
    options = TrainOptions.of(base, resume, **{k: v for k, v in given.items() if v is not None})
    payload = options.to_payload()

    async def work(settings: Settings) -> None:
        async with running_app(settings) as app:
            if all_due:
                queued = await app.runner.queue_due_training()
                if not queued:
                    out.print("no channel is due for training", markup=False)
                results = [await run_job(app, job) for job in queued]
            else:
                ref = ChannelRef.parse(channel or "")
                claimed = await app.runner.claim_now(ref, payload, priority=10)
                if claimed is None:
                    raise UserError(M.t("training_busy", channel=ref))
                results = [await run_job(app, claimed)]
        failed = [r for r in results if r.status != JobStatus.SUCCEEDED]
        if failed:
            raise UserError("; ".join(f"{r.job.channel}: {r.error}" for r in failed))

    execute(work)


async def run_job(app: Any, job: Any) -> Any:
    """Runs one training job with a progress bar and prints what came of it."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    # A run ends on its time budget (or earlier, once it has seen the data enough), so
    # the bar shows time trained against the budget, not steps against a step cap.
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[clock]}"),
        TextColumn("step {task.fields[step]}"),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TextColumn("{task.fields[tps]:,.0f} tokens/s"),
    )
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task(
            f"training {job.channel}", total=1.0, loss=float("nan"), tps=0.0, step=0, clock=""
        )

        def on_step(result: Any, total: int) -> None:
            bar.update(
                task,
                completed=result.done,
                step=result.step,
                loss=result.loss,
                tps=result.tokens / max(result.seconds, 1e-9),
                clock=_clock(result.elapsed, result.budget),
            )

        result = await app.runner.run(job, progress=lambda _job: on_step)
    outcome = result.outcome
    if outcome is not None:
        v = outcome.version
        if outcome.resumed_at_step:
            out.print(
                f"resumed from the checkpoint at step {outcome.resumed_at_step}", markup=False
            )
        out.print(
            f"{job.channel}: v{v.version} ({v.method}, base {v.base_model}) — eval loss "
            f"{outcome.eval.loss:.3f}, perplexity {outcome.eval.perplexity:.1f} "
            f"(before: {outcome.start_eval.loss:.3f}); {outcome.tokens_per_second:,.0f} tokens/s",
            markup=False,
        )
        out.print(M.t("quality_line", **quality_fields(v)), markup=False)
        if outcome.promoted:
            out.print(f"promoted: v{v.version} now answers in {job.channel}", markup=False)
        else:
            out.print(f"not promoted: {outcome.reason}", markup=False)
        out.print(f"loss curve: {Path(v.path) / LOSS_CURVE}", markup=False)
    return result


def _clock(elapsed: float, budget: float | None) -> str:
    def mmss(seconds: float) -> str:
        return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"

    return f"{mmss(elapsed)} of {mmss(budget)}" if budget else mmss(elapsed)


@cli.command()
def status() -> None:
    """What the running bot is doing: queue, batches, tokens/s, latency, training."""
    import urllib.request

    from bot.app import running_app
    from bot.engine.metrics import summarise

    async def work(settings: Settings) -> None:
        if not settings.metrics_port:
            out.print(
                "metrics are off: set TSUZUKI_METRICS_PORT for the bot to publish them",
                markup=False,
            )
        else:
            # Listening on every address includes this machine's loopback.
            host = settings.metrics_host
            host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
            url = f"http://{host}:{settings.metrics_port}/metrics"

            def fetch() -> str:
                with urllib.request.urlopen(url, timeout=3) as response:
                    return str(response.read().decode())

            try:
                text = await asyncio.to_thread(fetch)
            except OSError:
                out.print(f"no bot is publishing metrics at {url}", markup=False)
            else:
                for line in summarise(text):
                    out.print(line, markup=False)
        async with running_app(settings) as app:
            jobs = await app.jobs.recent(200)
        active = [j for j in jobs if j.status in ACTIVE_JOBS]
        for j in active:
            out.print(f"job {j.id}: {j.kind} {j.channel} {j.status} {j.progress:.0%}", markup=False)
        if not active:
            out.print("no queued or running jobs", markup=False)

    execute(work)


@cli.command()
def jobs(limit: Annotated[int, typer.Option(min=1, help="How many recent jobs.")] = 20) -> None:
    """Recent background jobs (training, …) with their progress."""
    from rich.table import Table

    from bot.app import running_app

    async def work(settings: Settings) -> None:
        async with running_app(settings) as app:
            rows = await app.jobs.recent(limit)
        if not rows:
            out.print(M.t("jobs_none"), markup=False)
            return
        header = ("id", "kind", "channel", "status", "progress", "attempts", "created", "error")
        lines = [
            (
                str(j.id),
                j.kind,
                str(j.channel or "—"),
                j.status,
                f"{j.progress:.0%}",
                str(j.attempts),
                j.created_at.strftime("%Y-%m-%d %H:%M"),
                j.error or "",
            )
            for j in rows
        ]
        if not out.is_terminal:
            # Piped: one tab-separated line per job, for scripts.
            for line in (header, *lines):
                out.print("\t".join(line), markup=False)
            return
        table = Table(*header)
        for line in lines:
            table.add_row(*line)
        out.print(table)

    execute(work)
