import os
from pathlib import Path

import pytest

from bot.generation.libraries import import_libraries
from tests.fakes.discord_server import fake_discord  # noqa: F401  (a fixture for e2e tests)
from tests.fakes.slack_server import fake_slack  # noqa: F401  (a fixture for e2e tests)


@pytest.fixture(scope="session")
def ml_libraries() -> None:
    """torch, transformers and peft, imported once for the session. The bot imports
    them on its first generation, which takes seconds (several times that on a busy
    machine): without this, that one-off cost lands inside the time limits of whichever
    test happens to generate first."""
    import_libraries()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of a `tsuzuki` process: a data dir of its own, a scratch model,
    one torch thread, no hub, and none of the caller's TSUZUKI_ settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TSUZUKI_")}
    return {
        **clean,
        "TSUZUKI_BASE_MODEL": "scratch:tiny",
        "TSUZUKI_DATA_DIR": str(tmp_path / "data"),
        "TSUZUKI_TORCH_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }
