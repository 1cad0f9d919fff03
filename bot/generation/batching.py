"""Continuous batching: rows join a running decode at the next step and leave when done.

A `DecodeBatch` holds the rows decoding together on one model (each row may have its
own LoRA adapter, settings and seed). Each `step()`:

1. every row picks its next token from its pending logits, with its own settings and
   random generator;
2. rows that ended (end-of-message, or their token budget) leave, with their cache rows;
3. one forward pass computes the next logits of every remaining row, one token each.

A new row is first prefilled (`Prefill`: a long prompt in chunks, so running rows wait
at most one chunk; prompts that arrive together in one forward pass, grouped by length
so that little of it is padding: `prefill_together`), then `join()`s: its keys and
values are left-padded into the batch's cache, so every row's next token sits at the
same column; the attention mask hides the padding and each row keeps its own position
ids, so a row computes what it would alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.generation.healing import TokenBytes, advance
from bot.generation.ngram import Mixture
from bot.generation.sampling import Pick, pick_batch
from bot.setting_specs import SamplingSettings

if TYPE_CHECKING:
    import torch

    from bot.generation.lora import AdapterSet


# The adapter slot of a row with no adapter: the base model itself (slot 0 of every
# AdapterSet holds zeros). Here, not in lora.py, so that a row can be described
# without importing torch.
BASE_SLOT = 0

# Prompt tokens prefilled per forward pass. Long enough that a prompt costs few passes,
# short enough that rows already decoding wait at most about one decode step for it.
PREFILL_CHUNK = 64
# Prompts of at most this many tokens may be prefilled together in one forward pass.
TOGETHER_MAX_TOKENS = 256
# Prompts prefilled together are left-padded to the longest of them: a group takes a
# prompt only while padding stays under this share of its cells.
TOGETHER_PADDING = 0.2
# Cells (rows × columns) of one forward pass prefilling prompts together, at most.
TOGETHER_CELLS = 4096
# Leading columns that no row uses any more are cut off once there are this many.
TRIM_COLUMNS = 32
# Tokens the leak guard may turn down in a row at one step before the row is cut there.
GUARD_RETRIES = 8


@dataclass
class Row:
    prompt_ids: list[int]
    settings: SamplingSettings
    seed: int
    max_new_tokens: int
    eos_id: int | None
    adapter: int = BASE_SLOT  # the row's LoRA adapter slot; 0: the base model itself
    mixture: Mixture | None = None  # the version's n-gram mixture, if it has one
    # Token healing (bot/generation/healing.py): the bytes the first new tokens must
    # spell, and the model's token table to find the tokens that do.
    tail: bytes = b""
    healing: TokenBytes | None = None
    # The leak guard: whether the row may have these new tokens (False: that last token
    # is turned down and another picked). On the device thread, so it must be quick.
    guard: Callable[[list[int]], bool] | None = None
    # Hears the row's new tokens so far after each step (streaming); on the device
    # thread, so it must be quick.
    listener: Callable[[list[int]], None] | None = None
    owner: Any = None  # whatever the caller needs to find the row's request again


@dataclass
class Live:
    """A row in a batch: what it has written, and its next token's logits."""

    row: Row
    generator: torch.Generator
    logits: torch.Tensor  # [vocab], for the row's next token
    outputs: list[int] = field(default_factory=list)
    done: bool = False
    tail: bytes = b""  # what is left to spell of the healed prompt's end
    cut: bool = False  # the leak guard ended the row early


def _forward(
    model: Any, lora: AdapterSet | None, ids: torch.Tensor, cache: Any, slots: list[int], **kw: Any
) -> torch.Tensor:
    if lora is not None:
        lora.select(slots)
    # Only the last position's logits are needed: on a prompt this skips the output
    # layer (vocab x width) for every other token. The cache goes in as `cache=`
    # (transformers' Cache API since 5.x; `past_key_values=` warns and is going away).
    out = model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1, **kw)
    return out.logits[:, -1, :].float()  # sampling in float32, whatever the base's dtype


class Prefill:
    """One row's prompt, run through the model in chunks, on its own cache."""

    def __init__(self, model: Any, lora: AdapterSet | None, row: Row) -> None:
        from transformers import DynamicCache

        self.model, self.lora, self.row = model, lora, row
        self.cache = DynamicCache()
        self.done_tokens = 0
        self.logits: torch.Tensor | None = None

    @property
    def remaining(self) -> int:
        return len(self.row.prompt_ids) - self.done_tokens

    def advance(self) -> bool:
        """Prefills the next chunk; True once the whole prompt is in the cache."""
        import torch

        chunk = self.row.prompt_ids[self.done_tokens : self.done_tokens + PREFILL_CHUNK]
        ids = torch.tensor([chunk], dtype=torch.long, device=self.model.device)
        with torch.inference_mode():
            self.logits = _forward(self.model, self.lora, ids, self.cache, [self.row.adapter])[0]
        self.done_tokens += len(chunk)
        return self.remaining == 0


class _RowCache:
    """One row's keys and values, cut from a cache that prefilled several rows: what
    DecodeBatch.join reads of a Prefill's cache (`layers[i].keys`, `.values`)."""

    @dataclass
    class Layer:
        keys: torch.Tensor
        values: torch.Tensor

    def __init__(self, layers: list[_RowCache.Layer]) -> None:
        self.layers = layers


def together_groups(prefills: list[Prefill], cells: int | None = None) -> list[list[Prefill]]:
    """The fresh short prompts among `prefills`, grouped by length for
    prefill_together (longest first); a group of one is prefilled on its own. `cells`:
    the most rows × columns all the groups may take (None: TOGETHER_CELLS each)."""
    fresh = [p for p in prefills if p.done_tokens == 0 and p.remaining <= TOGETHER_MAX_TOKENS]
    fresh.sort(key=lambda p: -p.remaining)
    groups: list[list[Prefill]] = []
    spent = 0
    for p in fresh:
        group = groups[-1] if groups else None
        if group is not None:
            width, rows = group[0].remaining, len(group) + 1
            real = sum(q.remaining for q in group) + p.remaining
            if (
                rows * width * (1 - TOGETHER_PADDING) <= real
                and rows * width <= TOGETHER_CELLS
                and (cells is None or spent + width <= cells)
            ):
                group.append(p)
                spent += width
                continue
        if cells is not None and spent + p.remaining > cells:
            continue  # not this turn: rows are decoding (or in the chunks below)
        groups.append([p])
        spent += p.remaining
    return groups


def prefill_together(prefills: list[Prefill]) -> None:
    """Prefills fresh prompts (nothing of them cached yet) in one forward pass: left-
    padded to the longest of them, the attention mask hiding the padding and each row
    at its own positions, so each row computes what it would alone. Each row then gets
    its own slice of the keys and values, without the padding, to join a batch with."""
    import torch
    from transformers import DynamicCache

    if len(prefills) == 1:
        while not prefills[0].advance():
            pass
        return
    model, lora = prefills[0].model, prefills[0].lora
    lengths = [len(p.row.prompt_ids) for p in prefills]
    width = max(lengths)
    ids = torch.zeros((len(prefills), width), dtype=torch.long)
    mask = torch.zeros((len(prefills), width), dtype=torch.long)
    for i, (p, n) in enumerate(zip(prefills, lengths, strict=True)):
        ids[i, width - n :] = torch.tensor(p.row.prompt_ids)
        mask[i, width - n :] = 1
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    cache = DynamicCache()
    device = model.device
    with torch.inference_mode():
        logits = _forward(
            model,
            lora,
            ids.to(device),
            cache,
            [p.row.adapter for p in prefills],
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
        )
    for i, (p, n) in enumerate(zip(prefills, lengths, strict=True)):
        p.cache = _RowCache(
            [
                _RowCache.Layer(
                    layer.keys[i : i + 1, :, width - n :], layer.values[i : i + 1, :, width - n :]
                )
                for layer in cache.layers
            ]
        )
        p.logits = logits[i]
        p.done_tokens = n


class DecodeBatch:
    """The rows decoding together on one model, and their shared cache."""

    def __init__(self, model: Any, lora: AdapterSet | None = None) -> None:
        from bot.generation import gpt2_decode

        self.model, self.lora = model, lora
        # GPT-2s take the written-out decode step (bot/generation/gpt2_decode.py).
        self.fast = gpt2_decode.supports(model)
        self._decode_step = gpt2_decode.decode_step
        self.live: list[Live] = []
        self.cache: Any = None  # a DynamicCache of ReservedLayers, once a row joined
        self.mask: torch.Tensor | None = None  # [rows, columns]: 1 where a token is
        self.positions: torch.Tensor | None = None  # [rows, 1]: each row's next position

    def __len__(self) -> int:
        return len(self.live)

    def join(self, prefills: list[Prefill]) -> list[Live]:
        """Adds prefilled rows; their first token is picked at the next step."""
        import torch

        device = self.model.device
        joined = []
        for p in prefills:
            assert p.logits is not None and p.remaining == 0
            generator = torch.Generator(device=device).manual_seed(p.row.seed)
            joined.append(Live(p.row, generator, p.logits, tail=p.row.tail))
        old = 0 if self.mask is None else self.mask.shape[1]
        width = max(old, *(len(p.row.prompt_ids) for p in prefills))
        room = width + max(lv.row.max_new_tokens - len(lv.outputs) for lv in self.live + joined)
        parts = [] if self.cache is None else [(self.cache, old)]
        parts += [(p.cache, len(p.row.prompt_ids)) for p in prefills]
        self.cache = _merge_left_padded(parts, width, room)

        masks = [] if self.mask is None else [_pad_left(self.mask, width - old)]
        for p in prefills:
            n = len(p.row.prompt_ids)
            # Made on the device: the running rows' mask is there already.
            row_mask = torch.zeros(1, width, dtype=torch.long, device=device)
            row_mask[0, width - n :] = 1
            masks.append(row_mask)
        self.mask = torch.cat(masks)
        new_positions = torch.tensor([[len(p.row.prompt_ids)] for p in prefills], device=device)
        self.positions = (
            new_positions if self.positions is None else torch.cat([self.positions, new_positions])
        )
        self.live += joined
        return joined

    def step(self) -> list[Live]:
        """Picks every row's next token, lets finished rows go (returned), and runs one
        forward pass for the rest."""
        import torch

        # 1. Each row picks its token with its own settings and random generator (the
        #    tensor work for all rows at once).
        chosen: list[int] = []
        keep: list[int] = []
        finished: list[Live] = []
        for index, (lv, token) in enumerate(zip(self.live, _choose(self.live), strict=True)):
            row = lv.row
            ended = token is None or token == row.eos_id
            if token is not None and not ended:
                lv.outputs.append(token)
                if lv.tail and row.healing is not None:
                    lv.tail = advance(lv.tail, row.healing.bytes[token])
                if row.listener is not None:
                    row.listener(lv.outputs)
            if ended or len(lv.outputs) >= row.max_new_tokens:
                lv.done = True
                finished.append(lv)
            else:
                keep.append(index)
                chosen.append(token)  # type: ignore[arg-type]

        # 2. Rows that ended leave the batch, with their cache rows.
        if not keep:
            self._clear()
            return finished
        if len(keep) < len(self.live):
            self.drop(keep)

        # 3. One forward pass: one new token for every live row.
        assert self.mask is not None and self.positions is not None
        device = self.model.device
        self.mask = torch.cat([self.mask, self.mask.new_ones((len(self.live), 1))], 1)
        ids = torch.tensor(chosen, device=device).unsqueeze(1)
        slots = [lv.row.adapter for lv in self.live]
        with torch.inference_mode():
            if self.fast:
                if self.lora is not None:
                    self.lora.select(slots)
                logits = self._decode_step(self.model, ids, self.cache, self.mask, self.positions)
                logits = logits.float()
            else:
                logits = _forward(
                    self.model,
                    self.lora,
                    ids,
                    self.cache,
                    slots,
                    attention_mask=self.mask,
                    position_ids=self.positions,
                )
        self.positions = self.positions + 1
        for lv, row_logits in zip(self.live, logits, strict=True):
            lv.logits = row_logits
        return finished

    def drop(self, keep: list[int]) -> None:
        """Keeps only the rows at these indices (others finished or were abandoned)."""
        import torch

        if not keep:
            self._clear()
            return
        assert self.mask is not None and self.positions is not None
        index = torch.tensor(keep, device=self.model.device)
        self.cache.batch_select_indices(index)
        self.mask = self.mask[index]
        self.positions = self.positions[index]
        self.live = [self.live[i] for i in keep]
        # Columns only the rows that left used are padding for everyone now; dropping
        # them keeps a batch that never empties (steady traffic) from growing without
        # end.
        lead = int(self.mask.any(0).long().argmax())
        if lead >= TRIM_COLUMNS:
            for layer in self.cache.layers:
                layer.trim_left(lead)
            self.mask = self.mask[:, lead:]

    def _clear(self) -> None:
        self.live, self.cache, self.mask, self.positions = [], None, None, None


def _choose(live: list[Live]) -> list[int | None]:
    """Each row's next token: by its settings, healing its prompt's end first, and none
    the leak guard turns down (None: the guard turned down every try, the row ends)."""
    import torch

    picks = [_pick(lv) for lv in live]
    first = pick_batch(torch.stack([lv.logits for lv in live]), picks)  # a copy: used up
    return [_guarded(lv, pick, token) for lv, pick, token in zip(live, picks, first, strict=True)]


def _pick(lv: Live) -> Pick:
    row = lv.row
    forbid: set[int] = set()
    if row.eos_id is not None and (not lv.outputs or lv.tail):
        forbid.add(row.eos_id)  # a message is never empty, nor a healed word unfinished
    allowed = row.healing.fitting(lv.tail) if lv.tail and row.healing is not None else None
    history = row.prompt_ids + lv.outputs
    return Pick(row.settings, history, lv.generator, forbid, row.mixture, allowed)


def _guarded(lv: Live, pick: Pick, token: int) -> int | None:
    """The first token the leak guard lets the row have, picking again (alone) in its
    place while it turns them down."""
    row = lv.row
    for attempt in range(GUARD_RETRIES):
        if attempt:
            token = pick_batch(lv.logits.clone().unsqueeze(0), [pick])[0]
        if row.guard is None or token == row.eos_id or row.guard([*lv.outputs, token]):
            return token
        pick.forbid.add(token)
    lv.cut = True
    return None


def decode_rows(model: Any, rows: list[Row], lora: AdapterSet | None = None) -> list[list[int]]:
    """Each row's new tokens, all rows started together and run to the end (benchmarks
    and tests; the engine feeds a DecodeBatch as requests come)."""
    prefills = [Prefill(model, lora, row) for row in rows]
    for p in prefills:
        while not p.advance():
            pass
    batch = DecodeBatch(model, lora)
    joined = batch.join(prefills)
    while batch.live:
        batch.step()
    return [lv.outputs for lv in joined]


def _pad_left(t: torch.Tensor, pad: int) -> torch.Tensor:
    import torch

    if not pad:
        return t
    return torch.cat([t.new_zeros((t.shape[0], pad)), t], 1)


def _merge_left_padded(parts: list[tuple[Any, int]], width: int, capacity: int) -> Any:
    """One cache from several, each (cache, its columns), every row's keys and values
    left-padded to `width` columns, with room for `capacity` columns in all."""
    import torch
    from transformers import DynamicCache

    first = parts[0][0]
    merged = DynamicCache()
    merged.layers = [_reserved_layer(capacity) for _ in first.layers]
    for layer in range(len(first.layers)):
        keys, values = [], []
        for cache, _ in parts:
            k, v = cache.layers[layer].keys, cache.layers[layer].values
            pad = width - k.shape[2]
            if pad:
                k = torch.nn.functional.pad(k, (0, 0, pad, 0))
                v = torch.nn.functional.pad(v, (0, 0, pad, 0))
            keys.append(k)
            values.append(v)
        merged.layers[layer].update(torch.cat(keys), torch.cat(values))
    return merged


def _reserved_layer(capacity: int) -> Any:
    """A cache layer with room for the whole generation reserved up front: appending a
    token writes in place instead of copying the whole cache (torch.cat) every step,
    which took about a sixth of decoding time."""
    from transformers.cache_utils import DynamicLayer

    class ReservedLayer(DynamicLayer):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.length = 0
            self.buffers: tuple[torch.Tensor, torch.Tensor] | None = None

        def update(
            self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
        ) -> tuple[torch.Tensor, torch.Tensor]:
            new = key_states.shape[-2]
            if self.buffers is None or self.length + new > self.buffers[0].shape[-2]:
                size = max(capacity, 2 * (self.length + new))
                grown = []
                for old, states in zip(
                    self.buffers or (None, None), (key_states, value_states), strict=True
                ):
                    shape = (*states.shape[:-2], size, states.shape[-1])
                    # Uninitialised: only columns already written are ever read.
                    buffer = states.new_empty(shape)
                    if old is not None:
                        buffer[..., : self.length, :] = old[..., : self.length, :]
                    grown.append(buffer)
                self.buffers = (grown[0], grown[1])
                self.dtype, self.device = key_states.dtype, key_states.device
                self.is_initialized = True
            keys, values = self.buffers
            keys[..., self.length : self.length + new, :] = key_states
            values[..., self.length : self.length + new, :] = value_states
            self.length += new
            self.keys = keys[..., : self.length, :]
            self.values = values[..., : self.length, :]
            return self.keys, self.values

        def trim_left(self, columns: int) -> None:
            assert self.buffers is not None
            self.buffers = (self.buffers[0][..., columns:, :], self.buffers[1][..., columns:, :])
            self.length -= columns
            self.keys = self.buffers[0][..., : self.length, :]
            self.values = self.buffers[1][..., : self.length, :]

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            if self.buffers is not None:
                self.buffers = (self.buffers[0][indices], self.buffers[1][indices])
                self.keys = self.buffers[0][..., : self.length, :]
                self.values = self.buffers[1][..., : self.length, :]

    return ReservedLayer()
