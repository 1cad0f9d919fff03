"""The models in memory: one copy of each base, many LoRA adapters on it, bounded by
memory (least recently used out first).

A channel trained with LoRA costs a few MB of adapter, not another full model: its
requests run on the shared base with the channel's adapter applied per row
(bot/generation/lora.py). Touched only on the device thread, so it needs no lock.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.generation.batching import BASE_SLOT
from bot.generation.loading import LoadedModel, load_directory
from bot.generation.ngram import Mixture
from bot.generation.source import ModelSource

if TYPE_CHECKING:
    from bot.generation.lora import AdapterSet

log = logging.getLogger(__name__)

MAX_MIXTURES = 256  # n-gram tables kept loaded (a few MB each)


@dataclass
class ServingModel:
    loaded: LoadedModel
    base_bytes: int
    lora: AdapterSet | None = None  # the channels' adapters, once one is asked for

    @property
    def nbytes(self) -> int:
        return self.base_bytes + (self.lora.nbytes if self.lora else 0)


def model_bytes(model: Any) -> int:
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


class ModelCache:
    def __init__(self, budget_bytes: int, max_adapters: int = 64, dtype: str = "low") -> None:
        self.budget_bytes = budget_bytes
        self.max_adapters = max_adapters
        # The bases' precision (quantize.serving_precision): `low` is int8 on the CPU and
        # bf16 on a GPU; adapters stay float32 on top of any of them.
        self.dtype = dtype
        self._models: OrderedDict[str, ServingModel] = OrderedDict()
        # Each version's n-gram mixture by directory (versions never change on disk).
        self._mixtures: OrderedDict[str, Mixture | None] = OrderedDict()

    @property
    def nbytes(self) -> int:
        return sum(m.nbytes for m in self._models.values())

    def get(self, source: ModelSource) -> tuple[ServingModel, int]:
        """The serving model for `source`, and the adapter slot its rows use (0: none).
        A LoRA version's base is the directory the resolver found for it (a hub id's
        cached snapshot, a local directory, the channel's scratch model)."""
        if source.base is not None:
            serving = self._base(source.base, source.base)
            return serving, self._adapter(serving, source.location)
        return self._base(source.location, source.name), BASE_SLOT

    def mixture(self, source: ModelSource) -> Mixture | None:
        """The n-gram mixture `source` serves with (None for a base, or a version
        trained before versions had one)."""
        if source.location in self._mixtures:
            self._mixtures.move_to_end(source.location)
            return self._mixtures[source.location]
        mixture = Mixture.load(Path(source.location))
        self._mixtures[source.location] = mixture
        while len(self._mixtures) > MAX_MIXTURES:
            self._mixtures.popitem(last=False)
        return mixture

    def _base(self, location: str, name: str) -> ServingModel:
        serving = self._models.get(location)
        if serving is not None:
            self._models.move_to_end(location)
            return serving
        loaded = load_directory(Path(location), name)
        # Counted at float size: a conservative bound (packed int8 weights are not
        # parameters, so they cannot be counted after quantizing).
        nbytes = model_bytes(loaded.model)
        if self.dtype != "float32":
            from bot.generation.quantize import serving_precision

            loaded.model = serving_precision(loaded.model, self.dtype)
        serving = ServingModel(loaded, nbytes)
        self._models[location] = serving
        # Evict the least recently used, but never the model just asked for.
        while self.nbytes > self.budget_bytes and len(self._models) > 1:
            evicted, _ = self._models.popitem(last=False)
            log.info("model cache: evicted %s", evicted)
        return serving

    def _adapter(self, serving: ServingModel, path: str) -> int:
        if serving.lora is None:
            from bot.generation.lora import AdapterSet  # torch: only once needed

            serving.lora = AdapterSet(serving.loaded.model, self.max_adapters)
        return serving.lora.slot(path)
