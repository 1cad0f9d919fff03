from __future__ import annotations

from prometheus_client import generate_latest

from bot.engine.metrics import EngineMetrics, summarise


def test_status_summarises_what_the_engine_recorded() -> None:
    m = EngineMetrics()
    for seconds in (0.2, 0.3, 0.4, 3.0):
        m.latency.observe(seconds)
        m.first_token.observe(seconds / 2)
    m.batch_rows.observe(4)
    m.batch_rows.observe(2)
    m.tokens.inc(600)
    m.generation_seconds.inc(3.0)
    m.train_step.observe(0.5)
    m.queue_depth.set(3)
    m.refused.inc()
    lines = summarise(generate_latest(m.registry).decode())
    text = "\n".join(lines)
    assert "queue depth 3, refused when full 1" in text
    assert "requests 4: latency p50 ≤ 0.5s, p95 ≤ 4s" in text
    assert "decode steps 2, mean rows 3.0; 600 tokens at 200.0 tokens/s" in text
    assert "training steps 1, mean 0.50s" in text


def test_nothing_recorded_yet() -> None:
    lines = summarise(generate_latest(EngineMetrics().registry).decode())
    assert "requests 0: latency p50 —s" in lines[1]
