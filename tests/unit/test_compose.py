"""docker-compose.yml and the Dockerfile, checked without Docker: what a deployer would
otherwise find out from `docker compose up` (a missing volume, a worker that joins the
wrong address, a GPU reservation that never reaches Ray, a variable with no default).
`docker compose config` itself runs only where Docker is installed."""

from __future__ import annotations

import importlib
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

# PyYAML (pulled in by transformers, huggingface-hub, peft, ray) ships no type hints.
yaml: Any = importlib.import_module("yaml")

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = ROOT / "pyproject.toml"

RAY_NODES = ("ray-head", "gpu-worker", "cpu-worker")
# The services that run the project's image (the bot or a Ray node).
PROJECT_SERVICES = (*RAY_NODES, "bot")

# What compose substitutes: `$$` (a literal `$`), `${...}`, `$NAME`.
_INTERPOLATION = re.compile(r"\$(\$|\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*)?")
_BYTE_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30}


def _interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's substitution, for the forms this file uses: ${VAR:-default},
    ${VAR-default}, ${VAR}, $VAR and the $$ escape."""

    def substitute(match: re.Match[str]) -> str:
        token = match.group(1)
        if token is None:
            raise AssertionError(f"a lone '$' in {text!r}: write '$$'")
        if token == "$":
            return "$"
        if not token.startswith("{"):
            return env.get(token, "")
        inner = token[1:-1]
        if ":?" in inner:  # required: compose refuses to go on without it
            name = inner.split(":?", 1)[0]
            if not env.get(name):
                raise AssertionError(f"{name} must be set")
            return env[name]
        if ":-" in inner:
            name, default = inner.split(":-", 1)
            return env.get(name) or default
        if "-" in inner:
            name, default = inner.split("-", 1)
            return env.get(name, default)
        return env.get(inner, "")

    return _INTERPOLATION.sub(substitute, text)


def _resolve(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return _interpolate(node, env)
    if isinstance(node, dict):
        return {key: _resolve(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(item, env) for item in node]
    return node


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


# What a deployer's .env holds (the secrets have no default).
SECRET_VALUES = {"POSTGRES_PASSWORD": "a-password", "RAY_AUTH_TOKEN": "a-token"}


def _raw() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """docker-compose.yml as compose would see it with these variables set (none: with
    no .env and a clean shell)."""
    resolved = _resolve(_raw(), {**SECRET_VALUES, **(env or {})})
    assert isinstance(resolved, dict)
    return resolved


def _services(env: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    services = _compose(env)["services"]
    assert isinstance(services, dict)
    return services


def _environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) for item in env)
        return {name: value for name, value in pairs}
    return {name: str(value) for name, value in env.items()}


def _depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    """Service name -> condition."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def _mounts(service: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each volume."""
    mounts: list[tuple[str, str]] = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source", ""), volume["target"]
        mounts.append((source, target))
    return mounts


def _is_named_volume(source: str) -> bool:
    return bool(source) and not source.startswith(("/", ".", "~", "$"))


def _command(service: Mapping[str, Any]) -> list[str]:
    """The command's words; a `sh -c` script is split too."""
    command = service.get("command") or []
    words = shlex.split(command) if isinstance(command, str) else [str(w) for w in command]
    if words[:2] == ["sh", "-c"]:
        return shlex.split(words[2])
    return words


def _ray_start(service: Mapping[str, Any]) -> dict[str, str]:
    """The options of the service's `ray start` (a bare flag maps to ""); a `$NAME`
    value is read from the service's environment, as the shell would."""
    words = _command(service)
    assert words[:2] == ["ray", "start"], f"not a `ray start` command: {words}"
    env = _environment(service)
    options: dict[str, str] = {}
    for word in words[2:]:
        if word == "&&":
            break
        assert word.startswith("--"), f"unexpected argument {word!r} in {words}"
        name, _, value = word[2:].partition("=")
        options[name] = env.get(value[1:], "") if value.startswith("$") else value
    return options


def _bytes(size: str) -> int:
    match = re.fullmatch(r"(\d+)\s*([bkmg]?)b?", size.strip().lower())
    assert match, f"not a byte size: {size!r}"
    return int(match.group(1)) * _BYTE_UNITS[match.group(2)]


def test_the_expected_services_are_there() -> None:
    assert set(_services()) >= {"postgres", *PROJECT_SERVICES}


def test_depends_on_names_existing_services_that_start_with_them() -> None:
    services = _services()
    for name, service in services.items():
        for dependency, condition in _depends_on(service).items():
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            target = services[dependency]
            # Compose refuses to start a service whose dependency a profile leaves out.
            assert not target.get("profiles") or set(target["profiles"]) <= set(
                service.get("profiles") or []
            ), f"{name} depends on {dependency}, which only some profiles start"
            if condition == "service_healthy":
                assert "healthcheck" in target, f"{name} waits for {dependency} to be healthy"


def test_every_named_volume_is_declared() -> None:
    compose = _compose()
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for source, _ in _mounts(service):
            if _is_named_volume(source):
                assert source in declared, f"{name} mounts undeclared volume {source}"


# The secrets: required (`${NAME:?why}`), so no deployment runs on a value from this file.
SECRETS = ("POSTGRES_PASSWORD", "RAY_AUTH_TOKEN")


def test_every_variable_has_a_default_but_the_secrets_which_must_be_set() -> None:
    """So `docker compose config` works with a clean shell and only the secrets in .env,
    and a forgotten secret stops `up` with its name rather than starting on a default."""
    missing, required = [], set()
    for text in _strings(_raw()):
        for match in _INTERPOLATION.finditer(text):
            token = match.group(1)
            if token == "$":
                continue
            if token and token.startswith("{") and ":?" in token:
                required.add(token[1:].split(":?", 1)[0])
            elif token is None or not token.startswith("{") or "-" not in token:
                missing.append(match.group(0))
    assert not missing, f"variables without a default: {missing}"
    assert required == set(SECRETS)
    raw = COMPOSE.read_text(encoding="utf-8")
    assert "tsuzuki:tsuzuki@" not in raw and "POSTGRES_PASSWORD: tsuzuki" not in raw


def test_ray_asks_every_caller_for_its_token_and_metrics_reach_prometheus_only() -> None:
    compose = _compose()
    for name in PROJECT_SERVICES:
        env = compose["services"][name]["environment"]
        assert env["RAY_AUTH_MODE"] == "token", name
    bot = compose["services"]["bot"]
    assert bot["environment"]["TSUZUKI_METRICS_HOST"] == "0.0.0.0"
    assert "ports" not in bot  # the compose network only
    prometheus = compose["services"]["prometheus"]
    assert all(str(p).startswith("127.0.0.1:") for p in prometheus["ports"])
    scrape = compose["configs"]["prometheus"]["content"]
    assert f"bot:{bot['environment']['TSUZUKI_METRICS_PORT']}" in scrape


def test_the_image_runs_as_an_unprivileged_user() -> None:
    users = [
        line.split()[1] for line in DOCKERFILE.read_text("utf-8").splitlines()
        if line.startswith("USER ")
    ]  # fmt: skip
    assert users and users[-1] not in ("root", "0")


def test_the_project_services_share_one_image() -> None:
    services = _services()
    builds = {
        (services[name].get("image"), repr(services[name].get("build")))
        for name in PROJECT_SERVICES
    }
    assert len(builds) == 1, f"the bot and the Ray nodes build different images: {builds}"
    [(image, _)] = builds
    assert image == "tsuzuki:latest"
    assert services["ray-head"]["build"]["context"] == "."


def test_the_gpu_worker_reserves_nvidia_gpus_and_offers_them_to_ray() -> None:
    for env, gpus in (({}, "1"), ({"GPUS_PER_WORKER": "2"}, "2")):
        worker = _services(env)["gpu-worker"]
        assert worker["profiles"] == ["gpu"]
        devices = worker["deploy"]["resources"]["reservations"]["devices"]
        assert len(devices) == 1
        [device] = devices
        assert device["driver"] == "nvidia"
        assert device["capabilities"] == ["gpu"]
        assert str(device["count"]) == gpus
        assert _ray_start(worker)["num-gpus"] == gpus


def test_the_cpu_worker_reserves_no_gpu() -> None:
    worker = _services()["cpu-worker"]
    assert worker["profiles"] == ["cpu"]
    assert "devices" not in ((worker.get("deploy") or {}).get("resources") or {}).get(
        "reservations", {}
    )
    options = _ray_start(worker)
    assert options["num-gpus"] == "0"
    assert int(options["num-cpus"]) >= 1


def test_the_head_runs_without_a_profile_and_with_cpus_for_a_replica() -> None:
    """`docker compose up` alone (head + bot) must be able to place one replica and one
    training run (one core each, the defaults) on the head."""
    head = _services()["ray-head"]
    assert not head.get("profiles")
    options = _ray_start(head)
    assert "head" in options
    assert "block" in options
    assert options["num-gpus"] == "0"
    assert int(options["num-cpus"]) >= 2
    assert head["healthcheck"]["test"][:2] == ["CMD", "ray"]


def test_the_bot_and_the_workers_join_the_head() -> None:
    services = _services()
    head_port = _ray_start(services["ray-head"])["port"]
    bot_env = _environment(services["bot"])
    assert bot_env["TSUZUKI_ENGINE"] == "ray"
    host, _, port = bot_env["TSUZUKI_RAY_ADDRESS"].partition(":")
    assert host == "ray-head" and host in services
    assert port == head_port
    for name in ("gpu-worker", "cpu-worker"):
        options = _ray_start(services[name])
        assert options["address"] == f"ray-head:{head_port}", name
        assert "block" in options, f"{name} would exit (and its container stop) at once"
    # The bot's own node (a driver attaches only through a local raylet) offers nothing,
    # and the bot itself runs after it.
    bot = services["bot"]
    options = _ray_start(bot)
    assert options["address"] == bot_env["TSUZUKI_RAY_ADDRESS"]
    assert options["num-cpus"] == "0" and options["num-gpus"] == "0"
    assert _command(bot)[-3:] == ["exec", "tsuzuki", "run"]
    assert bot.get("stdin_open") and bot.get("tty")


def test_the_gpu_settings_default_to_cpu_replicas() -> None:
    env = _environment(_services()["bot"])
    assert env["TSUZUKI_RAY_REPLICA_GPUS"] == "0"
    assert env["TSUZUKI_RAY_TRAIN_GPUS"] == "0"
    env = _environment(
        _services({"TSUZUKI_RAY_REPLICA_GPUS": "1", "TSUZUKI_RAY_TRAIN_GPUS": "0.5"})["bot"]
    )
    assert env["TSUZUKI_RAY_REPLICA_GPUS"] == "1"
    assert env["TSUZUKI_RAY_TRAIN_GPUS"] == "0.5"


def test_the_bot_and_every_ray_node_share_the_data_directory() -> None:
    """Training writes model versions where replicas and the bot read them: one volume,
    mounted where TSUZUKI_DATA_DIR says, on every node."""
    services = _services()
    volumes: set[tuple[str, str]] = set()
    for name in PROJECT_SERVICES:
        service = services[name]
        data_dir = _environment(service)["TSUZUKI_DATA_DIR"]
        sources = [source for source, target in _mounts(service) if target == data_dir]
        assert len(sources) == 1, f"{name} does not mount a volume at {data_dir}"
        assert _is_named_volume(sources[0])
        volumes.add((sources[0], data_dir))
        assert _environment(service)["TSUZUKI_DATABASE_URL"].startswith("postgresql")
    assert len(volumes) == 1, f"the nodes mount different data volumes: {volumes}"


def test_every_ray_node_has_shared_memory_for_its_object_store() -> None:
    """Docker's /dev/shm is 64 MB; Ray falls back to a slow /tmp store when its object
    store does not fit in 95% of it."""
    for env in ({}, {"RAY_SHM_SIZE": "8gb", "RAY_OBJECT_STORE_BYTES": "4000000000"}):
        services = _services(env)
        for name in PROJECT_SERVICES:
            service = services[name]
            store = int(_ray_start(service)["object-store-memory"])
            assert store <= 0.95 * _bytes(str(service["shm_size"])), name


def test_the_dockerfile_installs_the_ray_extra_and_runs_any_command() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    installs = [line for line in text.splitlines() if re.match(r"\s*RUN\s.*pip install", line)]
    assert any(re.search(r"""["']?\.\[([\w,-]*,)?ray(,[\w,-]*)?\]["']?""", i) for i in installs)
    # The torch index is a build argument, CPU by default; compose passes the same one.
    assert "ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu" in text
    assert any("${TORCH_INDEX}" in line for line in installs)
    build = _services()["bot"]["build"]
    assert build["args"]["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
    # `command: ray start ...` must replace the whole command line.
    assert not re.search(r"^\s*ENTRYPOINT", text, re.MULTILINE)
    assert re.search(r'^CMD \["tsuzuki", "run"\]$', text, re.MULTILINE)


def test_pyproject_defines_the_ray_extra() -> None:
    """pip only warns about an extra it does not know: the image would lack `ray`."""
    extras = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"].get(
        "optional-dependencies", {}
    )
    ray = extras.get("ray", [])
    assert any(req.replace(" ", "").startswith("ray[serve]") for req in ray), (
        "pyproject.toml has no `ray` extra with ray[serve], which the Dockerfile installs"
    )


def test_docker_compose_config_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker is not installed")
    version = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, timeout=60
    )
    if version.returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    for profiles in ([], ["--profile", "gpu", "--profile", "cpu"]):
        result = subprocess.run(
            [docker, "compose", "-f", str(COMPOSE), *profiles, "config", "-q"],
            cwd=ROOT,
            env={**os.environ, **SECRET_VALUES},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
