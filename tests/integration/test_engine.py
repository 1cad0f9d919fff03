"""The device worker and batched generation: same text in a batch as alone, per-row
settings, a bounded queue, training interleaved, and an event loop that never stalls."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from pathlib import Path

import pytest

from bot.app import App, running_app
from bot.config import Settings
from bot.device import Priority
from bot.domain import ChannelRef, GenerationRequest
from bot.engine.local import LocalEngine
from bot.engine.worker import DeviceWorker
from bot.errors import BusyError
from tests.e2e.serving import until
from tests.integration.test_training import QUICK, corpus, ready_channel

A = ChannelRef.parse("console:a")
B = ChannelRef.parse("console:b")


def request(app: App, ref: ChannelRef, prompt: str, **settings: object) -> GenerationRequest:
    merged = app.settings.default_sampling().merged({"max_new_tokens": 16, **settings})
    return GenerationRequest(ref, merged, prompt=prompt)


async def alone_then_together(app: App, requests: list[GenerationRequest]) -> tuple[list, list]:  # type: ignore[type-arg]
    alone = [(await app.generator.generate(r)).texts for r in requests]
    app.worker.batch_sizes.clear()
    # Together for certain: the device is held until every request waits for it (on a
    # busy machine one request could resolve its model, and finish, before the others).
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait()

    held = asyncio.create_task(app.worker.run(hold))
    await asyncio.to_thread(started.wait)
    answers = [asyncio.create_task(app.generator.generate(r)) for r in requests]
    await until(lambda: app.worker._pending_interactive == len(requests))
    release.set()
    await held
    together = [r.texts for r in await asyncio.gather(*answers)]
    return alone, together


async def test_a_seeded_request_reads_the_same_in_a_batch_as_alone(
    local_settings: Settings,
) -> None:
    # In float32: the README's promise (int8 rounding may magnify a batch's tiny
    # differences; the next test holds int8 to what the README says of it).
    async with running_app(local_settings.model_copy(update={"serve_int8": False})) as app:
        requests = [
            request(app, A, "織田信長は、", seed=1),
            request(app, A, "a much longer prompt, so the rows need padding", seed=2),
            request(app, A, "x", seed=3, num_return_sequences=2),
            request(app, B, "another channel", seed=4),  # its own scratch model
        ]
        alone, together = await alone_then_together(app, requests)
        assert together == alone
        assert max(app.worker.batch_sizes) >= 3  # they really were batched


async def test_int8_a_seeded_request_reads_the_same_each_time_alone(local_app: App) -> None:
    assert local_app.settings.serve_int8  # the default
    seeded = request(local_app, A, "織田信長は、", seed=5, max_new_tokens=24)
    first = await local_app.generator.generate(seeded)
    again = await local_app.generator.generate(seeded)
    other = await local_app.generator.generate(
        request(local_app, A, "織田信長は、", seed=6, max_new_tokens=24)
    )
    assert first.texts == again.texts
    assert other.texts != first.texts  # the seed does decide


async def test_each_row_keeps_its_own_settings(local_app: App) -> None:
    greedy = request(local_app, A, "hello", temperature=0)
    top1 = request(local_app, A, "hello", top_k=1, seed=9)  # top-k 1 is greedy too
    short = request(local_app, A, "hello", seed=5, max_new_tokens=2)
    hot = request(local_app, A, "hello", seed=5, temperature=4.0)
    results = await asyncio.gather(
        *(local_app.generator.generate(r) for r in (greedy, top1, short, hot))
    )
    assert results[0].texts == results[1].texts
    assert results[2].new_tokens <= 2
    assert results[3].texts != results[0].texts
    assert {r.batch_rows for r in results} == {4}


async def test_a_request_joins_a_running_batch_and_leaves_when_done(local_app: App) -> None:
    under_way = asyncio.Event()
    # Long requests (their messages may end early; one of three still runs, in practice
    # all of them).
    long = [
        asyncio.create_task(
            local_app.generator.generate(
                request(local_app, A, "hello", seed=s, max_new_tokens=300, temperature=1.5),
                lambda text: under_way.set(),
            )
        )
        for s in range(3)
    ]
    await under_way.wait()
    short = await local_app.generator.generate(request(local_app, A, "bye", max_new_tokens=2))
    # It joined the running batch and was answered while the long ones went on.
    assert short.batch_rows >= 2
    assert not all(task.done() for task in long)
    results = await asyncio.gather(*long)
    assert max(r.new_tokens for r in results) > 2


async def test_lora_channels_share_one_base_in_one_batch(
    tmp_path: Path, local_settings: Settings
) -> None:
    from bot.generation.scratch import create_scratch
    from bot.generation.spec import SCRATCH_SIZES

    base_dir = tmp_path / "pretrained"
    create_scratch(base_dir, SCRATCH_SIZES["tiny"], corpus(200, seed=1))
    # Float32: where the README promises a batch reads as alone (int8 may differ).
    settings = local_settings.model_copy(update={"base_model": str(base_dir), "serve_int8": False})
    async with running_app(settings) as app:
        for ref in (A, B):
            await ready_channel(app, ref=ref)
            assert (await app.training.train(ref, QUICK.but(max_steps=5))).promoted
        plain = ChannelRef.parse("console:untrained")  # the base alone, no adapter
        requests = [request(app, ref, "豊臣秀吉は", seed=7) for ref in (A, B, plain)]
        alone, together = await alone_then_together(app, requests)
        assert together == alone
        assert app.worker.batch_sizes == [3]
        # One base in memory, with both channels' adapters on it.
        assert isinstance(app.engine, LocalEngine)
        (serving,) = app.engine.generator.cache._models.values()
        assert serving.lora is not None and len(serving.lora.slots) == 2


async def test_a_full_queue_refuses_at_once() -> None:
    worker = DeviceWorker(threads=1, max_pending=2)
    release = threading.Event()
    try:
        blocker = asyncio.create_task(worker.run(release.wait, priority=Priority.NORMAL))
        await asyncio.sleep(0.05)
        waiting = [
            asyncio.create_task(worker.run(lambda: 1, priority=Priority.INTERACTIVE))
            for _ in range(2)
        ]
        await asyncio.sleep(0.05)
        with pytest.raises(BusyError, match="busy"):
            await worker.run(lambda: 1, priority=Priority.INTERACTIVE)
        release.set()
        assert await asyncio.gather(*waiting) == [1, 1]
        await blocker
        assert await worker.run(lambda: 2, priority=Priority.INTERACTIVE) == 2  # room again
    finally:
        release.set()
        worker.close()


async def test_cancelled_requests_never_reach_the_device() -> None:
    worker = DeviceWorker(threads=1)
    release = threading.Event()
    ran: list[str] = []
    try:
        blocker = asyncio.create_task(worker.run(release.wait))
        await asyncio.sleep(0.05)
        gone = asyncio.create_task(worker.run(ran.append, "gone", priority=Priority.INTERACTIVE))
        await asyncio.sleep(0.05)
        gone.cancel()
        await asyncio.sleep(0.05)
        release.set()
        await blocker
        await worker.run(ran.append, "kept", priority=Priority.INTERACTIVE)
        assert ran == ["kept"]
    finally:
        release.set()
        worker.close()


async def test_interactive_work_goes_before_training_steps() -> None:
    worker = DeviceWorker(threads=1)
    release = threading.Event()
    order: list[str] = []
    try:
        blocker = asyncio.create_task(worker.run(release.wait))
        await asyncio.sleep(0.05)
        steps = [
            asyncio.create_task(worker.run(order.append, f"step{i}", priority=Priority.TRAINING))
            for i in range(3)
        ]
        await asyncio.sleep(0.01)
        chat = asyncio.create_task(worker.run(order.append, "chat", priority=Priority.INTERACTIVE))
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(blocker, chat, *steps)
        assert order == ["chat", "step0", "step1", "step2"]
    finally:
        release.set()
        worker.close()


async def test_generation_during_training_finishes_first_and_the_loop_keeps_ticking(
    local_app: App,
) -> None:
    await ready_channel(local_app, ref=A)
    lags: list[float] = []
    stop = asyncio.Event()

    async def heartbeat() -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            before = loop.time()
            await asyncio.sleep(0.05)
            lags.append(loop.time() - before - 0.05)

    ticking = asyncio.create_task(heartbeat())
    under_way = asyncio.Event()
    training = asyncio.create_task(
        local_app.training.train(
            A,
            QUICK.but(max_steps=150, block_size=128),
            progress=lambda step, total: under_way.set() if step.step >= 5 else None,
        )
    )
    await under_way.wait()
    result = await local_app.generator.generate(request(local_app, A, "織田信長は", seed=1))
    assert result.texts[0].startswith("織田信長は")
    assert not training.done()  # the answer did not wait for the whole run
    await training
    stop.set()
    await ticking
    assert len(lags) > 10
    assert max(lags) < 0.5  # never blocked for the length of a generation or training


async def test_a_long_job_lets_waiting_chat_requests_run_at_its_yield_points() -> None:
    """Training calls serve_waiting between layers: a chat request is answered while
    the training slice is still under way, not after it."""
    worker = DeviceWorker(threads=1)
    answered = threading.Event()
    try:

        def training_slice() -> str:
            while not answered.is_set():  # a slice that only ends once the chat was served
                worker.serve_waiting()
                time.sleep(0.001)
            return "slice done"

        slice_ = asyncio.create_task(worker.run(training_slice, priority=Priority.TRAINING))
        await asyncio.sleep(0.05)
        assert not slice_.done()
        await worker.run(answered.set, priority=Priority.INTERACTIVE)
        assert answered.is_set()
        assert await slice_ == "slice done"
    finally:
        answered.set()
        worker.close()


async def test_a_chat_request_during_training_runs_inside_the_training_slice(
    local_app: App,
) -> None:
    """Training yields between layers: a request sent while a slice runs is answered
    before that slice ends."""
    await ready_channel(local_app, ref=B)
    # A's model is built before training starts: the request below needs no other
    # device job (which would wait behind the held slice) before it is queued.
    await local_app.generator.generate(request(local_app, A, "warm-up", seed=0))
    events: list[str] = []
    held: list[bool] = []
    original = local_app.worker.serve_waiting
    sent = threading.Event()

    def yield_point() -> None:
        if sent.is_set() and not held:
            held.append(True)
            # Hold this slice (on the device thread) until the request is queued, so
            # the request surely arrives mid-slice.
            deadline = time.monotonic() + 30
            while local_app.worker._pending_interactive == 0 and time.monotonic() < deadline:
                time.sleep(0.001)
        sessions = len(local_app.worker.batch_sizes)
        original()
        if len(local_app.worker.batch_sizes) > sessions:
            events.append("served inside a training slice")

    local_app.worker.serve_waiting = yield_point  # type: ignore[method-assign]
    seen_steps: list[int] = []

    under_way = asyncio.Event()

    def progress(step: object, total: int) -> None:
        seen_steps.append(1)
        sent.set()
        under_way.set()

    training = asyncio.create_task(
        local_app.training.train(B, QUICK.but(max_steps=400, batch_size=8), progress)
    )
    await under_way.wait()
    result = await local_app.generator.generate(request(local_app, A, "hello", seed=1))
    steps_when_answered = len(seen_steps)
    training.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await training
    assert result.texts
    assert events == ["served inside a training slice"]
    assert steps_when_answered < 400
