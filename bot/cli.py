"""`tsuzuki …`: run the bot, import history, continue text, manage settings and models.

Every command turns a failure into one line on stderr and a non-zero exit; the
traceback of an unexpected error goes to the log file only.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from bot import messages as M
from bot.commands import CommandContext, quality_fields
from bot.config import Settings, load_settings
from bot.domain import SETTING_SPECS, Author, ChannelRef, Reply
from bot.errors import UserError
from bot.logs import configure_logging

T = TypeVar("T")
log = logging.getLogger("tsuzuki.cli")
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

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


def _settings() -> Settings:
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


def _execute(work: Callable[[Settings], Coroutine[Any, Any, T]]) -> T:
    """Runs one command: settings, logging, the event loop and the error policy."""
    try:
        settings = _settings()
    except UserError as e:
        err.print(f"error: {e.reason}", markup=False)
        raise typer.Exit(2) from None
    try:
        return asyncio.run(work(settings))
    except UserError as e:
        err.print(f"error: {e.reason}", markup=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except Exception:
        log.exception("command failed")
        logfile = settings.data_dir / "logs" / "tsuzuki.log"
        err.print(f"error: {M.t('internal_error')} ({logfile})", markup=False)
        raise typer.Exit(1) from None


def _operator(channel: ChannelRef) -> CommandContext:
    """The person at the terminal: an admin of every channel they can reach the
    database of, recorded in the audit log as cli:<os user>."""
    user = getpass.getuser()
    return CommandContext(channel, Author(id=user, name=user, is_admin=True), "", f"cli:{user}")


def _print_reply(reply: Reply) -> None:
    if reply.is_error:
        raise UserError(reply.texts[0])
    for i, text in enumerate(reply.texts, start=1):
        prefix = M.t("variant", i=i, n=len(reply.texts)) + " " if len(reply.texts) > 1 else ""
        out.print(prefix + text, markup=False)


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
    """Start the bot: the job runner, the nightly schedule, and (with no platform token
    set) a channel in the terminal."""
    from adapters.console_adapter import ConsoleAdapter
    from bot.app import running_app
    from bot.scheduler import build_scheduler, start_scheduler

    async def work(settings: Settings) -> None:
        ref = ChannelRef.parse(channel or settings.console_channel)
        async with running_app(settings) as app:
            await app.channels.ensure(ref, ref.channel)
            if demo:
                await _prepare_demo(app, ref)
            if settings.metrics_port:
                from prometheus_client import start_http_server

                start_http_server(
                    settings.metrics_port, addr="127.0.0.1", registry=app.worker.metrics.registry
                )
            scheduler = build_scheduler(settings, app.runner)
            start_scheduler(scheduler, settings)
            runner = asyncio.create_task(app.runner.serve(), name="job-runner")
            try:
                platforms = []
                if settings.discord_token is not None:
                    platforms.append(_discord_adapter(app, settings).run())
                if settings.slack_bot_token is not None:
                    platforms.append(_slack_adapter(app, settings).run())
                if platforms:
                    # Every adapter whose token is set, side by side.
                    await asyncio.gather(*platforms)
                else:
                    active = await app.registry.active(ref)
                    model = _model_name(active) if active else settings.base_model
                    app.runner.listeners.append(_announce_versions(ref))
                    await ConsoleAdapter(app.core, ref, model_name=model).run()
            finally:
                runner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await runner
                scheduler.shutdown(wait=False)

    _execute(work)


def _discord_adapter(app: Any, settings: Settings) -> Any:
    from adapters.discord_adapter import DiscordAdapter

    assert settings.discord_token is not None
    adapter = DiscordAdapter(
        app.core,
        settings.discord_token.get_secret_value(),
        sync_guild=settings.discord_sync_guild,
        api_url=settings.discord_api_url,
        gateway_url=settings.discord_gateway_url,
    )
    app.runner.history["discord"] = adapter.fetch_history
    return adapter


def _slack_adapter(app: Any, settings: Settings) -> Any:
    from adapters.slack_adapter import SlackAdapter

    assert settings.slack_bot_token is not None
    if settings.slack_app_token is None and settings.slack_signing_secret is None:
        raise UserError(
            "Slack needs TSUZUKI_SLACK_APP_TOKEN (Socket Mode) or "
            "TSUZUKI_SLACK_SIGNING_SECRET (HTTP mode)."
        )
    adapter = SlackAdapter(
        app.core,
        settings.slack_bot_token.get_secret_value(),
        signing_secret=(
            settings.slack_signing_secret.get_secret_value()
            if settings.slack_signing_secret
            else None
        ),
        app_token=settings.slack_app_token.get_secret_value() if settings.slack_app_token else None,
        http_port=settings.slack_http_port,
        api_url=settings.slack_api_url,
        admin_ids=frozenset(i.strip() for i in settings.slack_admin_ids.split(",") if i.strip()),
    )
    app.runner.history["slack"] = adapter.fetch_history
    return adapter


def _model_name(v: Any) -> str:
    """ "v2 (2.41 bits/char; the channel's Markov chain: 2.19)" for the console banner."""
    fields = quality_fields(v)
    return f"v{v.version} ({fields['bits']} bits/char; Markov chain: {fields['markov']})"


def _announce_versions(ref: ChannelRef) -> Callable[[Any], None]:
    """Tells the console when a training run of its channel ends: a better version
    answers from the next message on, without a restart."""

    def listener(result: Any) -> None:
        if result.job.channel != ref or result.outcome is None:
            return
        outcome = result.outcome
        line = M.t("quality_line", **quality_fields(outcome.version))
        if outcome.promoted:
            err.print(M.t("version_promoted", line=line), markup=False)
        else:
            err.print(M.t("version_kept", line=line, reason=outcome.reason), markup=False)

    return listener


async def _prepare_demo(app: Any, ref: ChannelRef) -> None:
    """Sample history and a short first training run, once per channel; the full
    recipe then runs in the background while the console is open."""
    from bot.demo import DEMO_HISTORY, DEMO_TRAINING
    from bot.importing.service import import_history

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
    job = await app.jobs.enqueue("train", ref, first, priority=10)
    claimed = await app.jobs.claim(job.id)
    if claimed is not None:
        result = await _run_job(app, claimed)
        if result.status != "succeeded":
            raise UserError(result.error or M.t("internal_error"))
    # The default recipe, in the background: the console opens now and says when
    # the better version takes over.
    await app.jobs.enqueue("train", ref, {"base": DEMO_TRAINING["base"]}, priority=5)
    out.print(M.t("demo_improving"), markup=False)


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
    from bot.importing.service import import_history

    async def work(settings: Settings) -> None:
        ref = ChannelRef.parse(channel) if channel else None
        async with running_app(settings) as app:
            with err.status(f"Importing {path}…"):
                report = await import_history(app.messages, path, fmt, ref)
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

    _execute(work)


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
) -> None:
    """Continue PROMPT in CHANNEL's voice (the output starts with the prompt)."""
    from bot.app import running_app

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

    async def work(settings: Settings) -> None:
        ref = ChannelRef.parse(channel)
        async with running_app(settings) as app:
            reply = await app.core.on_command(
                _operator(ref), lambda c, ctx: c.continue_text(ctx, prompt, overrides)
            )
        _print_reply(reply)

    _execute(work)


@cli.command()
def settings(
    channel: Annotated[str, typer.Argument(help="e.g. console:general")],
    action: Annotated[str, typer.Argument(help="show | set | reset")] = "show",
    key: Annotated[str | None, typer.Argument(help="Setting name, for set and reset.")] = None,
    value: Annotated[str | None, typer.Argument(help="New value, for set.")] = None,
) -> None:
    """Show or change a channel's sampling settings (changes go to the audit log)."""
    from bot.app import running_app

    words = [w for w in (action, key, value) if w is not None]

    async def work(settings: Settings) -> None:
        ref = ChannelRef.parse(channel)
        async with running_app(settings) as app:
            reply = await app.core.on_text_command(_operator(ref), "/settings " + _quote(words))
        _print_reply(reply)

    _execute(work)


def _quote(words: list[str]) -> str:
    import shlex

    return " ".join(shlex.quote(w) for w in words)


@cli.command()
def models(
    channel: Annotated[str, typer.Argument(help="e.g. console:general")],
    action: Annotated[str, typer.Argument(help="list | activate | rollback")] = "list",
    version: Annotated[str | None, typer.Argument(help="Version, for activate.")] = None,
) -> None:
    """List a channel's model versions, activate one, or roll back to the previous."""
    from bot.app import running_app

    words = [w for w in (action, version) if w is not None]

    async def work(settings: Settings) -> None:
        ref = ChannelRef.parse(channel)
        async with running_app(settings) as app:
            reply = await app.core.on_text_command(_operator(ref), "/models " + _quote(words))
        _print_reply(reply)

    _execute(work)


@cli.command()
def channels(
    channel: Annotated[str, typer.Argument(help="e.g. console:general")],
    setting: Annotated[str, typer.Argument(help="training")],
    value: Annotated[str, typer.Argument(help="on | off")],
) -> None:
    """Turn training on or off for a channel (consent; audited)."""
    from bot.app import running_app

    if setting != "training" or value not in ("on", "off"):
        err.print("error: usage: tsuzuki channels CHANNEL training on|off", markup=False)
        raise typer.Exit(2)

    async def work(settings: Settings) -> None:
        ref = ChannelRef.parse(channel)
        async with running_app(settings) as app:
            reply = await app.core.on_text_command(_operator(ref), f"/training {value}")
        _print_reply(reply)

    _execute(work)


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
    batch_size: Annotated[int, typer.Option(min=1, help="Blocks per step.")] = 8,
    block_size: Annotated[int, typer.Option(min=8, help="Tokens per block.")] = 128,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
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
    payload: dict[str, Any] = {
        "base": base,
        "method": method,
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "block_size": block_size,
        "seed": seed,
        "resume": resume,
    }
    # Only the limits given: the others keep TrainOptions' defaults.
    payload.update({k: v for k, v in (("max_steps", max_steps), ("max_minutes", max_minutes)) if v})

    async def work(settings: Settings) -> None:
        async with running_app(settings) as app:
            if all_due:
                queued = await app.runner.queue_due_training()
                if not queued:
                    out.print("no channel is due for training", markup=False)
                results = [await _run_job(app, job) for job in queued]
            else:
                ref = ChannelRef.parse(channel or "")
                job = await app.jobs.enqueue("train", ref, payload, priority=10)
                claimed = await app.jobs.claim(job.id)
                if claimed is None:
                    raise UserError(M.t("training_busy", channel=ref))
                results = [await _run_job(app, claimed)]
        failed = [r for r in results if r.status != "succeeded"]
        if failed:
            raise UserError("; ".join(f"{r.job.channel}: {r.error}" for r in failed))

    _execute(work)


async def _run_job(app: Any, job: Any) -> Any:
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
        out.print(f"loss curve: {v.path}/loss.png", markup=False)
    return result


def _clock(elapsed: float, budget: float | None) -> str:
    def mmss(seconds: float) -> str:
        return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"

    return f"{mmss(elapsed)} of {mmss(budget)}" if budget else mmss(elapsed)


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

    _execute(work)


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
            url = f"http://127.0.0.1:{settings.metrics_port}/metrics"

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
        active = [j for j in jobs if j.status in ("queued", "running")]
        for j in active:
            out.print(f"job {j.id}: {j.kind} {j.channel} {j.status} {j.progress:.0%}", markup=False)
        if not active:
            out.print("no queued or running jobs", markup=False)

    _execute(work)


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

    _execute(work)


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Apply database migrations (the bot also does this on start)."""
    from storage.db import open_database

    async def work(settings: Settings) -> None:
        db = await open_database(settings.resolved_database_url)
        await db.dispose()
        out.print(
            f"database is up to date: {_safe_url(settings.resolved_database_url)}", markup=False
        )

    _execute(work)


@bench_cli.command("import")
def bench_import_cmd(
    messages: Annotated[int, typer.Option(help="JSONL messages to import.")] = 100_000,
    baseline: Annotated[int, typer.Option(help="Messages stored one by one.")] = 2_000,
    database_url: Annotated[
        str | None, typer.Option(help="Database to measure (default: a new SQLite file).")
    ] = None,
) -> None:
    """Import speed (messages/s) against storing messages one at a time."""
    import tempfile

    from bot.bench import bench_import

    async def work(settings: Settings) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            url = database_url or f"sqlite+aiosqlite:///{tmp}/bench.db"
            r = await bench_import(url, messages, baseline)
        out.print(f"database: {_safe_url(url).split('@')[-1]}", markup=False)
        out.print(
            f"import {r.messages} messages: parse {r.parse_s:.2f}s + store {r.store_s:.2f}s"
            f" = {r.rate:,.0f} messages/s",
            markup=False,
        )
        out.print(
            f"baseline, one message per transaction: {r.baseline_rate:,.0f} messages/s"
            f" → import is {r.rate / r.baseline_rate:.1f}x",
            markup=False,
        )

    _execute(work)


@bench_cli.command("continue")
def bench_continue_cmd(
    runs: Annotated[int, typer.Option(help="Timed requests after the first.")] = 5,
    tokens: Annotated[int, typer.Option(help="New tokens per request.")] = 64,
    prompt: Annotated[str, typer.Option(help="The prompt.")] = "織田信長は、",
) -> None:
    """/continue latency on TSUZUKI_BASE_MODEL (e.g. scratch:small)."""
    from statistics import median

    from bot.bench import bench_continue
    from bot.benchmarks.fixtures import percentile

    async def work(settings: Settings) -> None:
        r = await bench_continue(settings, prompt, runs, tokens)
        ms_per_token = [
            s / max(1, n) * 1000 for s, n in zip(r.latencies_s, r.new_tokens, strict=True)
        ]
        out.print(
            f"model {r.model}: {r.parameters / 1e6:.1f}M parameters, "
            f"torch threads {settings.effective_torch_threads}",
            markup=False,
        )
        out.print(f"first request (builds/loads the model): {r.first_s:.2f}s", markup=False)
        out.print(
            f"/continue, {tokens} new tokens max (got {min(r.new_tokens)}–{max(r.new_tokens)}):"
            f" p50 {median(r.latencies_s):.3f}s, p95 {percentile(r.latencies_s, 0.95):.3f}s,"
            f" {median(ms_per_token):.1f} ms/token",
            markup=False,
        )

    _execute(work)


@bench_cli.command("serve")
def bench_serve_cmd() -> None:
    """16 concurrent requests from 8 LoRA channels: Tsuzuki's engine vs one
    transformers pipeline per channel, one request after another."""
    from bot.benchmarks import serve

    async def work(settings: Settings) -> None:
        workdir = settings.data_dir / "bench"
        threads = settings.effective_torch_threads
        with err.status("building the 124M base and 8 adapters (cached for later runs)…"):
            await asyncio.to_thread(serve.prepare, workdir)
        with err.status("baseline: transformers pipeline, one request at a time…"):
            baseline = await asyncio.to_thread(serve.run_side, "baseline", workdir, threads)
        with err.status("tsuzuki: batched engine…"):
            ours = await asyncio.to_thread(serve.run_side, "tsuzuki", workdir, threads)
        out.print(
            f"16 requests, 8 channels, 64 new tokens each, torch threads {threads}", markup=False
        )
        for line in serve.report(baseline, ours):
            out.print(line, markup=False)

    _execute(work)


@bench_cli.command("latency")
def bench_latency_cmd(
    runs: Annotated[int, typer.Option(min=1, help="Timed requests per side.")] = 5,
    quality_model: Annotated[
        Path | None, typer.Option(help="A trained model directory to measure int8's eval loss on.")
    ] = None,
) -> None:
    """One request, 64 new tokens: Tsuzuki (fp32 and int8) vs eager fp32 generate()."""
    from bot.benchmarks import latency

    async def work(settings: Settings) -> None:
        threads = settings.effective_torch_threads
        with err.status("measuring…"):
            result = await asyncio.to_thread(
                latency.run, settings.data_dir / "bench", threads, runs, quality_model
            )
        out.print(f"one request, 64 new tokens, 124M GPT-2, torch threads {threads}", markup=False)
        for line in latency.report(result):
            out.print(line, markup=False)

    _execute(work)


@bench_cli.command("train")
def bench_train_cmd() -> None:
    """Useful tokens/s of Tsuzuki's packed fine-tune vs transformers.Trainer with
    per-message padding, same base, data and token count; held-out loss for both."""
    from bot.benchmarks import train as train_bench

    async def work(settings: Settings) -> None:
        threads = settings.effective_torch_threads
        with err.status("training both ways…"):
            baseline, ours = await asyncio.to_thread(
                train_bench.run, settings.data_dir / "bench", threads
            )
        out.print(
            f"{train_bench.USEFUL_TOKENS} useful tokens, batch {train_bench.BATCH}, "
            f"block {train_bench.BLOCK}, mini-shaped GPT-2, torch threads {threads}",
            markup=False,
        )
        for line in train_bench.report(baseline, ours):
            out.print(line, markup=False)

    _execute(work)


@bench_cli.command("mixed")
def bench_mixed_cmd() -> None:
    """/continue latency while a training job runs, against idle."""
    from bot.benchmarks import mixed

    async def work(settings: Settings) -> None:
        threads = settings.effective_torch_threads
        with err.status("measuring idle, then during a LoRA training run…"):
            result = await asyncio.to_thread(mixed.run, settings.data_dir / "bench", threads)
        out.print(
            f"{mixed.REQUESTS} requests one after another, {mixed.NEW_TOKENS} new tokens,"
            f" 124M GPT-2, torch threads {threads}",
            markup=False,
        )
        for line in mixed.report(result):
            out.print(line, markup=False)

    _execute(work)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def main() -> None:
    cli(prog_name="tsuzuki")


if __name__ == "__main__":
    main()
