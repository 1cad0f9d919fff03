from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import load_settings
from bot.errors import ConfigError


def test_defaults_need_no_configuration(tmp_path: Path) -> None:
    settings = load_settings()  # the tests run in tmp_path
    assert settings.data_dir == tmp_path / "data"
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{tmp_path}/data/tsuzuki.db"
    assert settings.base_model == "scratch:mini"
    assert settings.discord_token is None
    assert settings.default_sampling().temperature == 0.9


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TSUZUKI_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("TSUZUKI_TEMPERATURE", "0.3")
    monkeypatch.setenv("TSUZUKI_BASE_MODEL", "rinna/japanese-gpt2-xsmall")
    settings = load_settings()
    assert settings.default_sampling().temperature == 0.3
    assert settings.base_model == "rinna/japanese-gpt2-xsmall"
    assert settings.resolved_database_url.endswith(f"{tmp_path}/d/tsuzuki.db")


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TSUZUKI_TOP_K=7\n", encoding="utf-8")
    assert load_settings().top_k == 7


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("TSUZUKI_TOP_P", "nan"),
        ("TSUZUKI_TEMPERATURE", "-1"),
        ("TSUZUKI_TORCH_THREADS", "many"),
        ("TSUZUKI_LOCALE", "fr"),
        ("TSUZUKI_MAX_NEW_TOKENS", "0"),
    ],
)
def test_a_bad_value_fails_at_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as excinfo:
        load_settings()
    assert var in excinfo.value.reason


def test_secrets_are_not_echoed_in_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TSUZUKI_DISCORD_TOKEN", "super-secret-token-value")
    monkeypatch.setenv("TSUZUKI_TOP_K", "lots")
    with pytest.raises(ConfigError) as excinfo:
        load_settings()
    assert "super-secret-token-value" not in excinfo.value.reason
