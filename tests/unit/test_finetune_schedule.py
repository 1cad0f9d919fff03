from __future__ import annotations

import pytest

from bot.training.run_config import TrainConfig


def test_learning_rate_warms_up_then_decays_to_the_floor() -> None:
    cfg = TrainConfig(method="full", max_steps=100, warmup_steps=10, learning_rate=1e-3)
    assert cfg.lr_at(0) == pytest.approx(1e-4)
    assert cfg.lr_at(9) == pytest.approx(1e-3)
    assert cfg.lr_at(55) < cfg.lr_at(20)
    assert cfg.lr_at(100) == pytest.approx(1e-4)  # min_lr_ratio of the peak


def test_a_time_budget_anneals_the_rate_by_the_clock() -> None:
    cfg = TrainConfig(method="full", max_steps=10_000, max_minutes=1.0, learning_rate=1e-3)
    early = cfg.lr_at(50, seconds=1.0)
    assert cfg.lr_at(50, seconds=60.0) == pytest.approx(1e-4)
    assert early > 5e-4
