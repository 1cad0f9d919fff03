"""Loading a causal LM and its own tokenizer from a local directory or the hub.

Tokenizers always come from the model's own files through AutoTokenizer (SentencePiece
for rinna's T5Tokenizer, byte-level BPE for GPT-2 and scratch models). A model without
a tokenizer is an error: a silent fallback to the English GPT-2 tokenizer would turn
Japanese into garbage that still looks like it works.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from bot import messages as M
from bot.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "spiece.model", "vocab.json")
# A LoRA version holds only its adapter; the base it was trained on is named inside.
ADAPTER_CONFIG = "adapter_config.json"
HUB_PROBE_TIMEOUT_S = 3.0


@dataclass
class LoadedModel:
    """A model ready to generate with, and what it needs to know about itself."""

    name: str  # shown to users: "scratch:tiny", "rinna/japanese-gpt2-xsmall", "v3"
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    context_length: int  # tokens the model can attend to (prompt + generated)
    eos_id: int | None  # the end-of-message token; None if the tokenizer has none


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_directory(path: Path, name: str) -> LoadedModel:
    """A model saved with save_pretrained (model + tokenizer in one directory)."""
    _check_directory(path)
    return _load(str(path), name, local_files_only=True)


def _check_directory(path: Path) -> None:
    has_weights = (path / "config.json").is_file() or (path / ADAPTER_CONFIG).is_file()
    if not has_weights or not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise UserError(M.t("model_dir_incomplete", path=path))


def load_trainable(source: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A model to train further (a directory or a hub id): a full model, or a base with
    its LoRA adapter left trainable (not merged)."""
    from transformers import AutoTokenizer

    local = _local_or_cached(source)
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local)
    model = _model_from(source, local_files_only=local, merge=False)
    return model.to(pick_device()), tokenizer


def _local_or_cached(source: str) -> bool:
    """True when `source` can load without network; raises the helpful error when it
    would need the hub and the hub is out of reach."""
    if Path(source).is_dir():
        _check_directory(Path(source))
        return True
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(source, "config.json"), str):
        return True
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"} or not _hub_reachable():
        raise UserError(M.t("model_hub_unreachable", spec=source))
    return False


def load_hub(hub_id: str) -> LoadedModel:
    """A model from the Hugging Face hub (or its local cache). With no network this fails
    within seconds instead of retrying for a minute."""
    try:
        return _load(hub_id, hub_id, local_files_only=True)
    except UserError:
        pass
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"} or not _hub_reachable():
        raise UserError(M.t("model_hub_unreachable", spec=hub_id))
    return _load(hub_id, hub_id, local_files_only=False)


def _hub_reachable() -> bool:
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=HUB_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def _load(source: str, name: str, *, local_files_only: bool) -> LoadedModel:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)
    except (OSError, ValueError) as e:
        raise UserError(M.t("model_load_failed", spec=name, reason=_first_line(e))) from e
    if tokenizer is None or isinstance(tokenizer, bool):
        raise UserError(M.t("tokenizer_missing", spec=name))
    try:
        model = _model_from(source, local_files_only=local_files_only, merge=True)
    except (OSError, ValueError) as e:
        raise UserError(M.t("model_load_failed", spec=name, reason=_first_line(e))) from e
    model.to(pick_device()).eval()
    fuse_gelu(model)
    return LoadedModel(
        name=name,
        model=model,
        tokenizer=tokenizer,
        context_length=context_length(model, tokenizer),
        eos_id=tokenizer.eos_token_id,
    )


def _model_from(source: str, *, local_files_only: bool, merge: bool) -> PreTrainedModel:
    import torch
    from transformers import AutoModelForCausalLM

    if not (Path(source) / ADAPTER_CONFIG).is_file():
        return AutoModelForCausalLM.from_pretrained(
            source, local_files_only=local_files_only, dtype=torch.float32
        )
    from peft import PeftConfig, PeftModel

    base_id = PeftConfig.from_pretrained(source).base_model_name_or_path
    base = AutoModelForCausalLM.from_pretrained(
        base_id, local_files_only=local_files_only, dtype=torch.float32
    )
    if merge:
        # Serving: fold the adapter into the weights, so generation costs what the
        # base costs. (Mixed-adapter batches will keep them apart.)
        return PeftModel.from_pretrained(base, source).merge_and_unload()
    return PeftModel.from_pretrained(base, source, is_trainable=True)


def fuse_gelu(model: PreTrainedModel) -> None:
    """GPT-2's "gelu_new" is the tanh approximation of GELU written out in Python ops;
    torch's built-in GELU(approximate="tanh") computes the same function in one fused
    kernel. Swapped at load for serving (about a tenth of CPU decode time)."""
    import torch
    from transformers.activations import NewGELUActivation

    for module in model.modules():
        for name, child in list(module.named_children()):
            if isinstance(child, NewGELUActivation):
                setattr(module, name, torch.nn.GELU(approximate="tanh"))


def context_length(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> int:
    config = model.config
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 1_000_000 else 1024


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
