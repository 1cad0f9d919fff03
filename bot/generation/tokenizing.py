"""Tokenizers as the real bases ship them, made fit for chat: every tokenizer Tsuzuki
loads passes through `prepare_tokenizer` (dataset, training, evaluation, serving).

- An end-of-text token is required: it is the boundary between messages in training
  and where a generated message stops. No pad token is assumed (GPT-2 has none; packed
  blocks never need one).
- SentencePiece unigram models loaded through transformers' T5Tokenizer get their
  unknown-token id hard-coded to 2, which in rinna-style vocabularies is another token
  (`</s>` in some: every unknown character would end the message). The id is set
  back to the vocabulary's own `<unk>`.
- `do_lower_case` (rinna's tokenizer_config) is honoured: the vocabulary was built from
  lower-cased text, so upper-case letters would otherwise all be unknown.

Newlines. A SentencePiece normaliser turns "\\n" into a space ("▁"), so a message's line
breaks would be lost in training and could never be generated. Decision: for a
tokenizer that cannot round-trip "\\n", each newline is written as a marker the
vocabulary can spell (`<nl>` by preference; see NEWLINE_MARKERS) when text is
encoded, and the marker is turned back into "\\n" when ids are decoded. Because this
lives in the tokenizer itself (its normaliser and decoder, or its encode/decode hooks
for Python tokenizers), the dataset, the held-out evaluation, prompts and generated
replies all see the same thing; the model learns line breaks as the marker's pieces.
The cost: a literal "<nl>" typed in a message also comes back as a line break.
Byte-level BPE (GPT-2, scratch models) keeps "\\n" as it is and is left alone.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from bot import messages as M
from bot.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

# Candidates for the newline marker, best first: the first the vocabulary can spell
# without unknown pieces (and that its normaliser leaves as it is) is used.
NEWLINE_MARKERS = ("<nl>", "<br>", "¶", "↵", "\\n")
_PROBE = "x\ny"


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase, name: str) -> PreTrainedTokenizerBase:
    """Fixes `tokenizer` in place (see the module docstring) and returns it."""
    if tokenizer.eos_token_id is None:
        raise UserError(M.t("tokenizer_no_eos", spec=name))
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        _fix_unigram_unk(tokenizer, backend)
        if tokenizer.init_kwargs.get("do_lower_case") and not _lowercases(backend):
            from tokenizers import normalizers

            backend.normalizer = _prepend(backend.normalizer, normalizers.Lowercase())
    elif tokenizer.init_kwargs.get("do_lower_case"):
        _hook_python(tokenizer, lambda text: text.lower(), None)
    if not keeps_newlines(tokenizer):
        _mark_newlines(tokenizer, backend, name)
    return tokenizer


def keeps_newlines(tokenizer: PreTrainedTokenizerBase) -> bool:
    ids = tokenizer(_PROBE, add_special_tokens=False)["input_ids"]
    return "\n" in tokenizer.decode(ids, skip_special_tokens=True)


def _fix_unigram_unk(tokenizer: PreTrainedTokenizerBase, backend: Any) -> None:
    if type(backend.model).__name__ != "Unigram" or tokenizer.unk_token is None:
        return
    model = json.loads(backend.to_str())["model"]
    pieces = [piece for piece, _ in model["vocab"]]
    unk = tokenizer.unk_token
    if unk not in pieces or model.get("unk_id") == pieces.index(unk):
        return
    from tokenizers.models import Unigram

    vocab = [(piece, float(score)) for piece, score in model["vocab"]]
    backend.model = Unigram(
        vocab, unk_id=pieces.index(unk), byte_fallback=bool(model.get("byte_fallback"))
    )


def _lowercases(backend: Any) -> bool:
    normalizer = backend.normalizer
    return normalizer is not None and normalizer.normalize_str("A") == "a"


def _prepend(normalizer: Any, first: Any) -> Any:
    from tokenizers import normalizers

    return first if normalizer is None else normalizers.Sequence([first, normalizer])


def _mark_newlines(tokenizer: PreTrainedTokenizerBase, backend: Any, name: str) -> None:
    marker = _spellable_marker(tokenizer)
    if marker is None:
        log.warning("%s: its tokenizer cannot keep line breaks; they become spaces", name)
        return
    if backend is not None:
        from tokenizers import Regex, decoders, normalizers

        saved = backend.normalizer, backend.decoder
        replace = normalizers.Replace(Regex(r"\r?\n"), marker)
        backend.normalizer = _prepend(backend.normalizer, replace)
        # Fuse first, so a marker spelled in several pieces is one string to replace.
        steps = [d for d in (backend.decoder,) if d is not None]
        steps += [decoders.Fuse(), decoders.Replace(marker, "\n")]
        backend.decoder = decoders.Sequence(steps)
        if not keeps_newlines(tokenizer):
            backend.normalizer, backend.decoder = saved
            log.warning("%s: line breaks could not be kept; they become spaces", name)
            return
    else:
        _hook_python(
            tokenizer,
            lambda text: text.replace("\r\n", "\n").replace("\n", marker),
            lambda text: text.replace(marker, "\n"),
        )
    log.info("%s: line breaks are written as %r for its tokenizer", name, marker)


def _spellable_marker(tokenizer: PreTrainedTokenizerBase) -> str | None:
    unk = tokenizer.unk_token_id
    for marker in NEWLINE_MARKERS:
        ids = tokenizer(marker, add_special_tokens=False)["input_ids"]
        if ids and unk not in ids and tokenizer.decode(ids, skip_special_tokens=True) == marker:
            return marker
    return None


def _hook_python(tokenizer: Any, encode: Any, decode: Any) -> None:
    """For tokenizers in Python (the sentencepiece backend): transform the text before
    it is tokenized, and the text that decoding returns. Per instance; the next load
    of the tokenizer applies it again."""
    if encode is not None:
        prepare = tokenizer.prepare_for_tokenization

        def prepare_for_tokenization(text: str, **kwargs: Any) -> tuple[str, dict[str, Any]]:
            text, kwargs = prepare(text, **kwargs)
            return encode(text), kwargs

        tokenizer.prepare_for_tokenization = prepare_for_tokenization
    if decode is not None:
        inner = tokenizer._decode

        def _decode(*args: Any, **kwargs: Any) -> str:
            return str(decode(inner(*args, **kwargs)))

        tokenizer._decode = _decode
