"""The engine contract, held by both engines: the local device worker and Ray (a local
Ray cluster: a Ray Serve deployment for generation, Ray tasks for training). The core
and the job runner only see the Engine port, so whatever one engine promises here the
other must keep."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from bot import messages as M
from bot.app import App, running_app
from bot.config import Settings
from bot.core.jobs import JobResult
from bot.domain import ChannelRef, GenerationRequest
from bot.engine.ray_serving import ReplicaConfig
from bot.errors import BusyError
from bot.records import JobInfo
from bot.training.run_config import StepResult
from storage.models import Job
from tests.e2e.serving import until
from tests.integration.test_training import QUICK, ready_channel

A = ChannelRef.parse("console:a")
B = ChannelRef.parse("console:b")
# Checkpoints every 5 steps, so a run stopped early has one to resume from.
RESUMABLE = QUICK.but(max_steps=60, checkpoint_every=5)


@pytest.fixture(params=["local", "ray"])
async def app(request: pytest.FixtureRequest, local_settings: Settings) -> AsyncIterator[App]:
    if request.param == "ray":
        request.getfixturevalue("ray_cluster")
    # Half a core per replica: the tests' two-core Ray also runs a training task and,
    # for a moment, the replica of another test's settings.
    settings = local_settings.model_copy(
        update={"engine": request.param, "ray_replica_cpus": 0.5, "ray_train_cpus": 1}
    )
    async with running_app(settings) as application:
        yield application


def ask(app: App, ref: ChannelRef, prompt: str, **settings: object) -> GenerationRequest:
    merged = app.settings.default_sampling().merged({"max_new_tokens": 16, **settings})
    return GenerationRequest(ref, merged, prompt=prompt)


async def job_status(app: App, job_id: int) -> tuple[str, str | None]:
    async with app.db.read() as session:
        row = (await session.execute(select(Job).where(Job.id == job_id))).scalar_one()
        return row.status, row.owner_host


def steps_seen(into: list[StepResult]) -> Callable[[JobInfo], Callable[[StepResult, int], None]]:
    return lambda job: lambda step, total: into.append(step)


def processes_titled(title: str) -> list[int]:
    """Ray names a worker's process after the task it runs."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue  # ended meanwhile
        if cmdline.startswith(title.encode()):
            found.append(int(pid))
    return found


async def test_each_request_keeps_its_settings_and_seed(app: App) -> None:
    # Alone, a seeded request reads the same each time (in a batch, int8 may round it
    # differently: README "The engine").
    seeded = ask(app, A, "織田信長は、", seed=5, max_new_tokens=24)
    first = await app.generator.generate(seeded)
    again = await app.generator.generate(seeded)
    other, greedy, top1, short = await asyncio.gather(
        app.generator.generate(ask(app, A, "織田信長は、", seed=6, max_new_tokens=24)),
        app.generator.generate(ask(app, B, "hello", temperature=0)),
        app.generator.generate(ask(app, B, "hello", top_k=1, seed=9)),  # greedy too
        app.generator.generate(ask(app, B, "hello", seed=5, max_new_tokens=2)),
    )
    assert first.texts[0].startswith("織田信長は、")
    assert (first.texts, first.seed) == (again.texts, 5)
    assert other.texts != first.texts
    assert greedy.texts == top1.texts
    assert short.new_tokens <= 2


async def test_a_streamed_request_hears_its_text_grow(app: App) -> None:
    heard: list[str] = []
    result = await app.generator.generate(
        ask(app, A, "the cat", seed=3, max_new_tokens=48), heard.append
    )
    assert heard, "no partial text reached the listener"
    assert all(text.startswith("the cat") for text in heard)
    assert heard[-1] == result.texts[0] or result.texts[0].startswith(heard[-1])


async def test_a_full_queue_refuses_at_once_and_loses_nothing_it_took(
    app: App,
) -> None:
    settings = app.settings.model_copy(update={"max_pending_requests": 1, "max_batch": 1})
    async with running_app(settings) as busy:
        outcomes = await asyncio.gather(
            *(
                busy.generator.generate(ask(busy, A, f"prompt {i}", seed=i, max_new_tokens=48))
                for i in range(10)
            ),
            return_exceptions=True,
        )
    if settings.engine == "ray":  # its replica would hold on to a core
        from ray import serve

        serve.delete(ReplicaConfig.of(settings).app_name(settings))
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    answered = [o for o in outcomes if not isinstance(o, BaseException)]
    assert refused and answered
    assert all(isinstance(e, BusyError) and e.reason == M.t("busy") for e in refused)
    assert all(r.texts[0].startswith("prompt") for r in answered)


async def test_training_reports_progress_and_its_version_answers_next(app: App) -> None:
    await ready_channel(app, ref=A)
    job = await app.runner.claim_now(A, QUICK.to_payload())
    assert job is not None
    steps: list[StepResult] = []
    result: JobResult = await app.runner.run(job, steps_seen(steps))
    assert result.status == "succeeded", result.error
    assert result.outcome is not None and result.outcome.promoted
    assert steps and steps[-1].step == 30  # the last step is always reported
    assert [s.step for s in steps] == sorted(s.step for s in steps)
    assert await job_status(app, job.id) == ("succeeded", job.owner.host if job.owner else None)
    answer = await app.generator.generate(ask(app, A, "織田信長は", seed=1))
    assert answer.model == "v1"


async def test_a_chat_request_is_answered_while_training_runs(app: App) -> None:
    await ready_channel(app, ref=A)
    job = await app.runner.claim_now(A, QUICK.but(max_steps=400).to_payload())
    assert job is not None
    steps: list[StepResult] = []
    training = asyncio.create_task(app.runner.run(job, steps_seen(steps)))
    await until(lambda: bool(steps) or training.done(), 120)
    answer = await app.generator.generate(ask(app, B, "hello", seed=2))
    assert answer.texts[0].startswith("hello")
    assert not training.done()  # answered before the run ended, not after it
    training.cancel()
    await asyncio.gather(training, return_exceptions=True)


async def test_a_cancelled_training_job_goes_back_and_resumes_from_its_checkpoint(
    app: App,
) -> None:
    await ready_channel(app, ref=A)
    job = await app.runner.claim_now(A, RESUMABLE.to_payload())
    assert job is not None
    steps: list[StepResult] = []
    training = asyncio.create_task(app.runner.run(job, steps_seen(steps)))
    await until(lambda: any(s.step >= 12 for s in steps) or training.done(), 120)
    training.cancel()  # Ctrl-C, or the bot shutting down
    with pytest.raises(asyncio.CancelledError):
        await training
    assert await job_status(app, job.id) == ("queued", None)

    (result,) = await app.runner.run_pending()
    assert result.status == "succeeded", result.error
    assert result.outcome is not None and result.outcome.resumed_at_step >= 10


async def test_ray_a_training_worker_that_dies_leaves_a_job_that_resumes(
    app: App, tmp_path: Path
) -> None:
    """The job table is the source of truth: the job whose Ray worker was killed goes
    back to the queue and is run again, from its checkpoint."""
    if app.settings.engine != "ray":
        pytest.skip("the local engine's worker is the bot process: tests/e2e/test_cli_resume.py")
    await ready_channel(app, ref=A)
    job = await app.jobs.enqueue("train", A, RESUMABLE.to_payload())
    steps: list[StepResult] = []
    results: list[JobResult] = []
    app.runner.listeners.append(results.append)
    running = asyncio.create_task(app.runner.run_pending(steps_seen(steps)))
    await until(lambda: any(s.step >= 12 for s in steps), 120)
    (worker,) = processes_titled("ray::train_stream")
    os.kill(worker, signal.SIGKILL)
    done = await asyncio.wait_for(running, 300)
    assert [r.status for r in results] == ["requeued", "succeeded"]
    assert done[-1].outcome is not None and done[-1].outcome.resumed_at_step >= 10
    async with app.db.read() as session:
        row = (await session.execute(select(Job).where(Job.id == job.id))).scalar_one()
    assert (row.status, row.attempts) == ("succeeded", 2)
