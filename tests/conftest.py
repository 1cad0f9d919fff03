"""Shared fixtures: isolated settings, real databases (SQLite always, PostgreSQL when
TSUZUKI_TEST_POSTGRES_URL is set), and a built app on a scratch model."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

import bot  # noqa: F401  (sets the OpenMP wait policy before torch is imported)
from bot.app import App, running_app
from bot.config import Settings, load_settings
from storage.db import Database, open_database

PG_URL = os.environ.get("TSUZUKI_TEST_POSTGRES_URL", "")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test sees the developer's TSUZUKI_* variables or .env file."""
    for name in list(os.environ):
        if name.startswith("TSUZUKI_") and name != "TSUZUKI_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    # Nor the developer's Hugging Face cache, nor the network.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-hub-cache"))
    yield


def _backends() -> list[object]:
    params: list[object] = ["sqlite"]
    params.append(
        pytest.param(
            "postgresql",
            marks=pytest.mark.skipif(not PG_URL, reason="TSUZUKI_TEST_POSTGRES_URL not set"),
        )
    )
    return params


async def _create_pg_database() -> str:
    import asyncpg

    base = make_url(PG_URL)
    name = f"tsuzuki_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(
        host=base.host, port=base.port or 5432, user=base.username, database=base.database
    )
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return base.set(database=name).render_as_string(hide_password=False)


async def _drop_pg_database(url: str) -> None:
    import asyncpg

    target = make_url(url)
    base = make_url(PG_URL)
    conn = await asyncpg.connect(
        host=base.host, port=base.port or 5432, user=base.username, database=base.database
    )
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(params=_backends())
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database of each backend."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        return
    url = await _create_pg_database()
    try:
        yield url
    finally:
        await _drop_pg_database(url)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = await open_database(db_url)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return load_settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        base_model="scratch:tiny",
        torch_threads=1,
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[App]:
    async with running_app(settings) as application:
        yield application


@pytest.fixture
def local_settings(tmp_path: Path) -> Settings:
    """Settings on a SQLite file, for tests where the backend does not matter."""
    return load_settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'local.db'}",
        base_model="scratch:tiny",
        torch_threads=1,
    )


@pytest.fixture
async def local_app(local_settings: Settings) -> AsyncIterator[App]:
    async with running_app(local_settings) as application:
        yield application


@pytest.fixture
def live_pid() -> Iterator[int]:
    """The id of another process of this host that is running."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """A Ray of this machine's two cores, for one test module (Ray mode's tests,
    tests/**/test_ray*.py). It listens on free ports (Redis holds Ray's default, 6379)."""
    import logging

    import ray
    from ray import serve

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=128 * 2**20,
        logging_level=logging.WARNING,
        runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1"}},
    )
    try:
        yield
    finally:
        serve.shutdown()
        ray.shutdown()
