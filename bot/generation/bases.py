"""The one resolver for a base model: a spec (hub id, local directory) → the directory
its files are in. Every path that loads a base goes through `locate`: the dataset's
tokenizer, training, evaluation, serving, and the base named inside a LoRA adapter.

A hub id is looked up in the local Hugging Face cache first (`$HF_HUB_CACHE`, else
`$HF_HOME/hub`, else `~/.cache/huggingface/hub`) and, when it is there, loaded from its
snapshot directory like any local directory: no request to the hub, no retries, no
waiting, with or without network. Only a hub id that is not cached goes to the network,
and only after a quick check that the hub is reachable; offline (HF_HUB_OFFLINE=1) or
unreachable, it fails at once with advice on how to get the model.

`scratch` bases belong to a channel (their tokenizer is fitted to its history), so they
are resolved by the channel's ModelResolver, never here.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from bot import messages as M
from bot.errors import UserError
from bot.generation.libraries import import_libraries
from bot.generation.spec import ModelSpec

log = logging.getLogger(__name__)

HUB_PROBE_TIMEOUT_S = 3.0
# A LoRA version holds only its adapter; the base it was trained on is named inside.
ADAPTER_CONFIG = "adapter_config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "spiece.model", "vocab.json")
# What a download fetches: configuration, tokenizer files and one copy of the weights.
_HUB_FILES = ["*.json", "*.model", "*.txt", "*.tiktoken", "*.jinja"]


def locate(spec: ModelSpec | str) -> Path:
    """The directory holding the model `spec` names (checked to hold a model and its
    tokenizer, or a LoRA adapter). Blocks: call it off the event loop."""
    import_libraries()  # this may run on a thread beside the device's
    if isinstance(spec, str):
        spec = ModelSpec.parse(spec)
    if spec.kind == "scratch":
        raise ValueError(f"{spec} is a channel's scratch model; ModelResolver resolves it")
    if spec.kind == "local":
        path = Path(spec.value)
    else:
        path = cached_snapshot(spec.value) or _download(spec.value)
    check_directory(path)
    return path


def check_directory(path: Path) -> None:
    has_weights = (path / "config.json").is_file() or (path / ADAPTER_CONFIG).is_file()
    if not has_weights or not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise UserError(M.t("model_dir_incomplete", path=path))


def hub_cache_dir() -> Path:
    """Where huggingface_hub keeps downloaded models. Read from the environment on every
    call (huggingface_hub reads it once, at import)."""
    if cache := os.environ.get("HF_HUB_CACHE"):
        return Path(os.path.expandvars(cache)).expanduser()
    if home := os.environ.get("HF_HOME"):
        return Path(os.path.expandvars(home)).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def cached_snapshot(hub_id: str) -> Path | None:
    """The snapshot directory of `hub_id`'s main revision in the local cache, if any."""
    from huggingface_hub import try_to_load_from_cache

    try:
        config = try_to_load_from_cache(hub_id, "config.json", cache_dir=hub_cache_dir())
    except ValueError:  # not a valid repo id
        return None
    return Path(config).parent if isinstance(config, str) else None


def hub_offline() -> bool:
    from huggingface_hub import constants

    flags = (os.environ.get(name, "") for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return constants.HF_HUB_OFFLINE or any(f.lower() in {"1", "true", "yes", "on"} for f in flags)


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT") or constants.ENDPOINT


def hub_reachable() -> bool:
    url = urlparse(hub_endpoint())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=HUB_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def _download(hub_id: str) -> Path:
    """Fetches `hub_id` into the hub cache (only when the hub can be reached)."""
    if hub_offline() or not hub_reachable():
        raise UserError(M.t("model_not_cached", spec=hub_id, cache=hub_cache_dir()))
    from huggingface_hub import HfApi, snapshot_download

    endpoint = hub_endpoint()
    log.info("downloading %s from %s into %s", hub_id, endpoint, hub_cache_dir())
    try:
        files = HfApi(endpoint=endpoint).list_repo_files(hub_id)
        safetensors = any(f.endswith(".safetensors") for f in files)
        weights = ["*.safetensors"] if safetensors else ["pytorch_model*.bin"]
        path = snapshot_download(
            hub_id,
            cache_dir=hub_cache_dir(),
            endpoint=endpoint,
            allow_patterns=_HUB_FILES + weights,
        )
    except Exception as e:  # network, HTTP, disk: whatever it is, the user hears why
        log.exception("downloading %s failed", hub_id)
        text = str(e).strip().splitlines()
        reason = text[0] if text else type(e).__name__
        raise UserError(M.t("model_load_failed", spec=hub_id, reason=reason)) from e
    return Path(str(path))
