"""Typed settings from TSUZUKI_* environment variables, a .env file and defaults.

`load_settings()` is the only way in: a bad value stops the bot at start with a message
that names the variable, instead of failing later in the middle of a request.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.errors import ConfigError, UserError
from bot.setting_specs import SAMPLING_KEYS, SETTING_SPECS, SamplingSettings

ENV_PREFIX = "TSUZUKI_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    # Where models, logs and (by default) the SQLite database live.
    data_dir: Path = Path("./data")
    # SQLAlchemy URL; empty means a SQLite file inside data_dir. PostgreSQL:
    # postgresql+asyncpg://user@host/db
    database_url: str = ""
    # The model a channel uses until it has a trained version: a hub id
    # (rinna/japanese-gpt2-xsmall), a local directory, or scratch[:tiny|small].
    base_model: str = "scratch:mini"
    # Language of the bot's own messages.
    locale: Literal["en", "ja"] = "en"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Threads torch may use for the device worker; 0 means one per CPU core.
    torch_threads: int = Field(default=0, ge=0, le=256)
    # The channel `tsuzuki run` opens in the terminal when no platform token is set.
    console_channel: str = "console:general"
    # Longest prompt accepted, in characters (longer ones are refused, not cut: a
    # mistake like pasting a whole file should be told, not silently truncated).
    max_prompt_chars: int = Field(default=4000, ge=1, le=100_000)
    # Largest history file `tsuzuki import` reads, in MiB: for a zip, what it unpacks
    # to. An import is parsed whole in memory, so a zip bomb must be refused unread.
    import_max_mb: int = Field(default=512, ge=1, le=1_000_000)
    # How many recent channel messages an @mention reply sees as context.
    reply_context_messages: int = Field(default=8, ge=0, le=100)
    # Live ingest commits messages, edits and deletes in batches (group commit); off,
    # each is its own transaction (the path `bench ingest` compares against).
    ingest_group_commit: bool = True
    # Writes queued for the next batch before a new one waits (backpressure, not loss).
    ingest_queue_max: int = Field(default=10_000, ge=1, le=1_000_000)

    # Training: model versions kept on disk per channel (the active one always stays).
    keep_versions: int = Field(default=5, ge=1, le=100)
    # Train on "name: text" lines, so the model also learns who says what.
    train_author_prefix: bool = False
    # Nightly re-finetunes: local time and time zone (IANA name; empty = the machine's),
    # and how many new messages a channel needs since its last version.
    nightly_time: str = Field(default="03:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    nightly_timezone: str = ""
    nightly_min_new_messages: int = Field(default=50, ge=0)
    nightly_max_minutes: float = Field(default=30.0, gt=0)
    # Time budget of a training run that names none (`tsuzuki train`, /train, the demo's
    # background run): what two CPU cores need to beat the channel's Markov chain.
    train_max_minutes: float = Field(default=11.0, gt=0)

    # Generation requests a user, and a channel, may make per minute (0: no limit).
    rate_per_user_per_minute: int = Field(default=12, ge=0)
    rate_per_channel_per_minute: int = Field(default=30, ge=0)
    # Interactive requests waiting for the device before new ones are refused.
    max_pending_requests: int = Field(default=64, ge=1)
    # Rows generated together at most, and how long a new batch waits for more
    # requests (added to a lone request's latency; with continuous batching a request
    # that comes later joins at the next step anyway, so this can be short).
    max_batch: int = Field(default=16, ge=1, le=256)
    batch_window_ms: float = Field(default=2.0, ge=0, le=1000)
    # Memory for models kept loaded (bases; LoRA adapters ride on them).
    model_cache_mb: int = Field(default=4096, ge=64)
    # Prometheus metrics on http://METRICS_HOST:PORT/metrics while the bot runs (0: off);
    # `tsuzuki status` reads them from there.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    # The address the metrics listen on: this machine only by default. In a container,
    # 0.0.0.0 lets Prometheus in another container on the same network scrape them.
    metrics_host: str = Field(default="127.0.0.1", min_length=1, max_length=255)
    # Serve every base in low precision: int8 weights on the CPU (bf16 on a GPU), each
    # channel's LoRA adapter on top in float32. About 2x faster decoding, held-out loss
    # within 0.5% of float32; a seeded request may read differently in a batch than
    # alone (README). False: float32 throughout.
    serve_int8: bool = True
    # The serving base's precision, when it must not follow the device: `auto` (the
    # above), `int8` (CPU only), `bf16` (what a GPU serves in: forced on the CPU, it
    # runs the GPU's dtype path where CI can test it), `float32`.
    serve_dtype: Literal["auto", "int8", "bf16", "float32"] = "auto"
    # Training under bf16 autocast: `auto` where the hardware has it (a GPU, a CPU with
    # AVX512-BF16), `on` anywhere (emulated, slower, on other CPUs), `off`.
    train_bf16: Literal["auto", "on", "off"] = "auto"
    # A streamed generation (the platform shows text as it is written) reaches its
    # adapter at most this often; adapters also keep to their platform's edit limits.
    stream_interval_ms: float = Field(default=200.0, ge=0, le=10_000)

    # Where generation and training run: `local`, this process's device (one thread
    # that owns the CPU or GPU); `ray`, a Ray cluster: generation on a Ray Serve
    # deployment that routes each channel to a replica holding its adapter, training
    # as Ray tasks wherever a GPU is free (README "Scaling out").
    engine: Literal["local", "ray"] = "local"
    # The cluster to join: the head's address (ray-head:6379) or a Ray Client URL
    # (ray://host:10001). Unset: a Ray started in this process (development, benches).
    ray_address: str | None = None
    # Generation replicas, and what each holds: GPUs (1 on a GPU node; 0 serves on CPU
    # cores) and CPU cores (its torch threads); channels whose adapters it keeps ready.
    ray_replicas: int = Field(default=1, ge=1, le=1024)
    ray_replica_gpus: float = Field(default=0.0, ge=0, le=8)
    ray_replica_cpus: float = Field(default=1.0, gt=0, le=256)
    ray_adapters_per_replica: int = Field(default=64, ge=1, le=100_000)
    # What one training run claims.
    ray_train_gpus: float = Field(default=0.0, ge=0, le=8)
    ray_train_cpus: float = Field(default=1.0, gt=0, le=256)
    # Training jobs one bot process runs at once (with Ray: one per free GPU makes the
    # nightly queue shorter; locally they would only share the one device).
    train_concurrency: int = Field(default=1, ge=1, le=1024)

    # Default sampling settings (channel settings and per-request overrides win).
    temperature: float = SamplingSettings.temperature
    top_k: int = SamplingSettings.top_k
    top_p: float = SamplingSettings.top_p
    max_new_tokens: int = SamplingSettings.max_new_tokens
    repetition_penalty: float = SamplingSettings.repetition_penalty
    no_repeat_ngram_size: int = SamplingSettings.no_repeat_ngram_size
    num_return_sequences: int = SamplingSettings.num_return_sequences
    seed: int | None = None

    # Platform credentials: all optional; an adapter starts only when its token is set.
    discord_token: SecretStr | None = None
    # Discord: another REST base and gateway (a proxy; the fake in tests), and a guild
    # to sync slash commands to at once (development; global sync can take an hour).
    discord_api_url: str | None = None
    discord_gateway_url: str | None = None
    discord_sync_guild: int | None = None
    # Sharding, so several bot processes split the guilds: how many shards in all, and
    # which this process runs (JSON, e.g. TSUZUKI_DISCORD_SHARD_IDS='[0, 1]'). Unset: the
    # count Discord recommends, every shard in this process.
    discord_shard_count: int | None = Field(default=None, ge=1, le=10_000)
    discord_shard_ids: list[int] | None = None
    # Seconds between edits of a message that shows a generation as it is written
    # (Discord allows about five edits in five seconds per channel; Slack's chat.update
    # about 50 a minute per workspace, which the Slack adapter also keeps to in all).
    discord_edit_interval_s: float = Field(default=1.0, ge=0, le=60)
    slack_update_interval_s: float = Field(default=1.2, ge=0, le=60)
    slack_bot_token: SecretStr | None = None
    # Slack: HTTP mode listens here (path /slack/events) when no app token is set;
    # another Web API base (a proxy; the fake in tests); users who are admins
    # besides the workspace's admins and owners (comma-separated ids).
    slack_http_port: int = Field(default=3000, ge=1, le=65535)
    slack_api_url: str | None = None
    slack_admin_ids: str = ""
    slack_app_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    # A platform that cannot be reached is retried on its own, after this many seconds,
    # doubled after each failure up to the second figure; the others keep running.
    platform_retry_first_s: float = Field(default=1.0, gt=0, le=3600)
    platform_retry_max_s: float = Field(default=300.0, gt=0, le=86_400)

    @field_validator("base_model")
    @classmethod
    def _base_model_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must name a hub id, a directory or scratch[:size]")
        return v.strip()

    @field_validator("discord_shard_ids")
    @classmethod
    def _shards_within_count(cls, v: list[int] | None, info: ValidationInfo) -> list[int] | None:
        if v is None:
            return v
        count = info.data.get("discord_shard_count")
        if count is None:
            raise ValueError("needs TSUZUKI_DISCORD_SHARD_COUNT: ids are out of a count")
        if not v or len(set(v)) != len(v) or not all(0 <= i < count for i in v):
            raise ValueError(f"must be distinct shard ids from 0 to {count - 1}")
        return sorted(v)

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, v: Path) -> Path:
        # Model versions record their paths (a LoRA adapter names its base): relative
        # paths would break as soon as the bot starts from another directory.
        return v.expanduser().resolve()

    @field_validator(*SAMPLING_KEYS)
    @classmethod
    def _sampling_in_range(cls, v: object, info: ValidationInfo) -> object:
        # Reuse the ranges the commands enforce, so a default can never be something
        # a user would be refused.
        assert info.field_name is not None
        try:
            return SETTING_SPECS[info.field_name].coerce(v)
        except UserError as e:
            raise ValueError(e.reason) from None

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'tsuzuki.db').as_posix()}"

    @property
    def serving_dtype(self) -> str:
        """The precision bases are served in (bot/generation/quantize.py
        serving_precision): `low` is int8 on the CPU, bf16 on a GPU."""
        if self.serve_dtype != "auto":
            return self.serve_dtype
        return "low" if self.serve_int8 else "float32"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def effective_torch_threads(self) -> int:
        return self.torch_threads or (os.cpu_count() or 1)

    def default_sampling(self) -> SamplingSettings:
        return SamplingSettings(**{name: getattr(self, name) for name in SAMPLING_KEYS})


def load_settings(**overrides: Any) -> Settings:
    """Reads the settings, turning validation errors into one ConfigError that names
    each bad variable (TSUZUKI_TOP_P, …) and never echoes secret values."""
    try:
        return Settings(**overrides)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            field = str(err["loc"][0]) if err["loc"] else "settings"
            var = ENV_PREFIX + field.upper() if field != "settings" else "settings"
            problems.append(f"{var}: {err['msg']}")
        raise ConfigError("invalid configuration — " + "; ".join(problems)) from None
