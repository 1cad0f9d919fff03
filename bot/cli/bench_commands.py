"""`tsuzuki bench …`: figures measured on this machine, each against a baseline run side
by side."""

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from bot.cli.shared import (
    bench_cli,
    err,
    execute,
    out,
    safe_url,
)
from bot.config import Settings


@bench_cli.command("import")
def bench_import_cmd(
    messages: Annotated[int, typer.Option(help="Messages in each file to import.")] = 100_000,
    baseline: Annotated[int, typer.Option(help="Messages stored one by one.")] = 2_000,
    database_url: Annotated[
        str | None, typer.Option(help="Database to measure (default: a new SQLite file).")
    ] = None,
    discord: Annotated[
        bool, typer.Option(help="Also import a DiscordChatExporter export of as many messages.")
    ] = True,
) -> None:
    """Import speed (messages/s) against storing messages one at a time."""
    import tempfile

    from bot.bench import ImportRun, bench_import

    def line(run: ImportRun, what: str) -> None:
        out.print(
            f"import {run.messages} {what}: parse {run.parse_s:.2f}s + store {run.store_s:.2f}s"
            f" = {run.rate:,.0f} messages/s",
            markup=False,
        )

    async def work(settings: Settings) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            url = database_url or f"sqlite+aiosqlite:///{tmp}/bench.db"
            with err.status("importing…"):
                r = await bench_import(url, messages, baseline, discord)
        out.print(f"database: {safe_url(url).split('@')[-1]}", markup=False)
        line(r.jsonl, "messages")
        if r.discord is not None:
            line(r.discord, "messages from a DiscordChatExporter export")
        out.print(
            f"baseline, one message per transaction: {r.baseline_rate:,.0f} messages/s"
            f" → import is {r.jsonl.rate / r.baseline_rate:.1f}x",
            markup=False,
        )

    execute(work)


@bench_cli.command("ingest")
def bench_ingest_cmd(
    messages: Annotated[
        int, typer.Option(help="Messages through group commit (idle; half while training).")
    ] = 20_000,
    baseline: Annotated[
        int, typer.Option(help="Messages through one transaction each (idle; half while training).")
    ] = 1_000,
    database_url: Annotated[
        str | None, typer.Option(help="Database to measure (default: a new SQLite file).")
    ] = None,
) -> None:
    """Live ingest (messages/s through Core.on_message, 20 channels, 50 in flight) with
    group commit against one transaction per message, idle and while training; and a
    10,000-event burst checked for loss and order."""
    from bot.benchmarks import live_ingest as ingest

    async def work(settings: Settings) -> None:
        threads = settings.effective_torch_threads
        with err.status("ingesting both ways, idle and while training…"):
            result = await asyncio.to_thread(
                ingest.run,
                settings.data_dir / "bench",
                threads,
                database_url,
                (messages, messages // 2),
                (baseline, baseline // 2),
            )
        for line in ingest.report(result):
            out.print(line, markup=False)

    execute(work)


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

    execute(work)


@bench_cli.command("serve")
def bench_serve_cmd(
    engine: Annotated[
        str,
        typer.Option(help="ray: the same requests on the Ray engine (a local Ray) vs local."),
    ] = "local",
) -> None:
    """16 concurrent requests from 8 LoRA channels: Tsuzuki's engine vs one
    transformers pipeline per channel, one request after another; then 64 requests
    from 32 channels arriving over 2 s. With --engine ray: the Ray engine against the
    local one on the first scenario."""
    from bot.benchmarks import arrivals, serve

    if engine not in ("local", "ray"):
        raise typer.BadParameter("local or ray", param_hint="--engine")

    async def work(settings: Settings) -> None:
        workdir = settings.data_dir / "bench"
        threads = settings.effective_torch_threads
        with err.status("building the 124M base and 8 adapters (cached for later runs)…"):
            await asyncio.to_thread(serve.prepare, workdir)
        if engine == "ray":
            with err.status("local engine…"):
                local = await asyncio.to_thread(serve.run_side, "tsuzuki", workdir, threads)
            with err.status("ray engine (starting a local Ray)…"):
                ray = await asyncio.to_thread(serve.run_side, "ray", workdir, threads)
            out.print(
                f"16 requests, 8 channels, 64 new tokens each, torch threads {threads}",
                markup=False,
            )
            for line in serve.report_ray(local, ray):
                out.print(line, markup=False)
            return
        with err.status("baseline: transformers pipeline, one request at a time…"):
            baseline = await asyncio.to_thread(serve.run_side, "baseline", workdir, threads)
        with err.status("tsuzuki: batched engine…"):
            ours = await asyncio.to_thread(serve.run_side, "tsuzuki", workdir, threads)
        out.print(
            f"16 requests, 8 channels, 64 new tokens each, torch threads {threads}", markup=False
        )
        for line in serve.report(baseline, ours):
            out.print(line, markup=False)
        with err.status("building 32 adapters (cached for later runs)…"):
            await asyncio.to_thread(arrivals.prepare, workdir)
        with err.status("arrivals over 2 s: baseline, one request at a time…"):
            baseline2 = await asyncio.to_thread(arrivals.run_side, "baseline", workdir, threads)
        with err.status("arrivals over 2 s: tsuzuki, continuous batching…"):
            ours2 = await asyncio.to_thread(arrivals.run_side, "tsuzuki", workdir, threads)
        for line in arrivals.report(baseline2, ours2):
            out.print(line, markup=False)

    execute(work)


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

    execute(work)


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

    execute(work)


@bench_cli.command("mixed")
def bench_mixed_cmd() -> None:
    """/continue latency while a training job runs, against idle; training throughput
    alone, against while serving."""
    from bot.benchmarks import mixed

    async def work(settings: Settings) -> None:
        threads = settings.effective_torch_threads
        with err.status("measuring idle, then during a LoRA training run…"):
            result = await asyncio.to_thread(mixed.run, settings.data_dir / "bench", threads)
        out.print(
            f"{mixed.REQUESTS} requests one after another ({mixed.PAUSE_S:g}s apart),"
            f" {mixed.NEW_TOKENS} new tokens, 124M GPT-2, torch threads {threads}",
            markup=False,
        )
        for line in mixed.report(result):
            out.print(line, markup=False)

    execute(work)
