"""The models in memory: one copy of each base, many LoRA adapters on it, bounded by
memory (least recently used out first).

A channel trained with LoRA costs a few MB of adapter, not another full model: its
requests run on the shared base with the channel's adapter applied per row. Touched
only on the device thread, so it needs no lock.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.generation.loading import ADAPTER_CONFIG, LoadedModel, load_directory, load_hub
from bot.generation.resolver import ModelSource

log = logging.getLogger(__name__)


@dataclass
class ServingModel:
    loaded: LoadedModel  # .model becomes a peft model once an adapter is attached
    nbytes: int
    adapters: OrderedDict[str, str] = field(default_factory=OrderedDict)  # path → name

    @property
    def mixed(self) -> bool:
        return bool(self.adapters)


def model_bytes(model: Any) -> int:
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


def adapter_name(path: str) -> str:
    # peft keeps adapters in module dicts: names must be identifiers, not paths.
    return "v_" + hashlib.sha1(path.encode()).hexdigest()[:12]


class ModelCache:
    def __init__(self, budget_bytes: int, max_adapters: int = 64) -> None:
        self.budget_bytes = budget_bytes
        self.max_adapters = max_adapters
        self._models: OrderedDict[str, ServingModel] = OrderedDict()

    @property
    def nbytes(self) -> int:
        return sum(m.nbytes for m in self._models.values())

    def get(self, source: ModelSource) -> tuple[ServingModel, str | None]:
        """The serving model for `source`, and the adapter name its rows use."""
        adapter_config = Path(source.location) / ADAPTER_CONFIG
        if source.kind == "directory" and adapter_config.is_file():
            base = json.loads(adapter_config.read_text(encoding="utf-8"))["base_model_name_or_path"]
            serving = self._base(base, base)
            return serving, self._adapter(serving, source.location)
        return self._base(source.location, source.name, hub=source.kind == "hub"), None

    def _base(self, location: str, name: str, hub: bool = False) -> ServingModel:
        serving = self._models.get(location)
        if serving is not None:
            self._models.move_to_end(location)
            return serving
        loaded = load_hub(location) if hub else load_directory(Path(location), name)
        serving = ServingModel(loaded, model_bytes(loaded.model))
        self._models[location] = serving
        # Evict the least recently used, but never the model just asked for.
        while self.nbytes > self.budget_bytes and len(self._models) > 1:
            evicted, _ = self._models.popitem(last=False)
            log.info("model cache: evicted %s", evicted)
        return serving

    def _adapter(self, serving: ServingModel, path: str) -> str:
        if path in serving.adapters:
            serving.adapters.move_to_end(path)
            return serving.adapters[path]
        from peft import PeftModel

        name = adapter_name(path)
        model = serving.loaded.model
        if isinstance(model, PeftModel):
            model.load_adapter(path, adapter_name=name)
        else:
            serving.loaded.model = PeftModel.from_pretrained(model, path, adapter_name=name)
        serving.loaded.model.eval()
        serving.adapters[path] = name
        serving.nbytes = model_bytes(serving.loaded.model)
        while len(serving.adapters) > self.max_adapters:
            _, old = serving.adapters.popitem(last=False)
            serving.loaded.model.delete_adapter(old)
        return name
