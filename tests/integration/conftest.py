"""Fixtures of the pretrained path's tests: a hub cache built in the test, and a
record of every network connection attempted."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from tests import hubcache


@pytest.fixture
def network_attempts(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every outgoing connection fails at once and is recorded. The hub is not in
    offline mode: only the code's own choice keeps it away from the network."""
    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise ConnectionRefusedError(f"no network in this test ({address})")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hub cache (HF_HOME, HF_HUB_CACHE) and an endpoint on a closed port."""
    env = hubcache.hub_cache_env(tmp_path / "hf")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Path(env["HF_HUB_CACHE"])
