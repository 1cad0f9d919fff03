"""Generation through the real app: scratch models, local directories, the hub path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.app import App, running_app
from bot.config import Settings
from bot.core.context import CommandContext
from bot.domain import Author, ChannelRef, GenerationRequest
from bot.errors import UserError
from bot.generation.bases import locate
from bot.generation.loading import load_directory

REF = ChannelRef.parse("console:general")
ADMIN = CommandContext(REF, Author("admin", "Admin", is_admin=True))
PROMPT = "織田信長は、"


async def test_continue_starts_with_the_prompt(local_app: App) -> None:
    reply = await local_app.commands.replies.continue_text(ADMIN, PROMPT, {"seed": 1})
    (text,) = reply.texts
    assert text.startswith(PROMPT)
    assert len(text) > len(PROMPT)
    assert reply.generated


async def test_n_variants_are_returned(local_app: App) -> None:
    reply = await local_app.commands.replies.continue_text(
        ADMIN, "Hello", {"num_return_sequences": 3, "seed": 5}
    )
    assert len(reply.texts) == 3
    assert all(t.startswith("Hello") for t in reply.texts)
    assert len(set(reply.texts)) > 1


async def test_same_seed_same_text_and_temperature_changes_it(local_app: App) -> None:
    c = local_app.commands
    a = await c.replies.continue_text(ADMIN, PROMPT, {"seed": 42, "temperature": 1.0})
    b = await c.replies.continue_text(ADMIN, PROMPT, {"seed": 42, "temperature": 1.0})
    assert a.texts == b.texts
    # The channel's own temperature is honoured: setting it changes seeded output.
    await c.settings.set(ADMIN, "temperature", "3.0")
    hot = await c.replies.continue_text(ADMIN, PROMPT, {"seed": 42})
    await c.settings.set(ADMIN, "temperature", "0.2")
    cold = await c.replies.continue_text(ADMIN, PROMPT, {"seed": 42})
    assert hot.texts != cold.texts
    assert cold.texts == (await c.replies.continue_text(ADMIN, PROMPT, {"seed": 42})).texts


async def test_greedy_is_deterministic_without_a_seed(local_app: App) -> None:
    c = local_app.commands
    a = await c.replies.continue_text(ADMIN, "abc", {"temperature": 0})
    b = await c.replies.continue_text(ADMIN, "abc", {"temperature": 0})
    assert a.texts == b.texts


async def test_a_prompt_longer_than_the_context_is_cut_from_the_left(local_app: App) -> None:
    long_prompt = "とても長い書き出し、" * 200  # far beyond scratch:tiny's 256 tokens
    result = await local_app.generator.generate(
        GenerationRequest(
            channel=REF,
            settings=local_app.settings.default_sampling().merged({"max_new_tokens": 8, "seed": 1}),
            prompt=long_prompt,
        )
    )
    assert result.prompt_truncated
    assert result.texts[0].startswith(long_prompt)


async def test_empty_and_oversized_prompts_are_refused(local_app: App) -> None:
    with pytest.raises(UserError, match="continue"):
        await local_app.commands.replies.continue_text(ADMIN, "   ")
    with pytest.raises(UserError, match="too long"):
        await local_app.commands.replies.continue_text(ADMIN, "x" * 5000)


async def test_bad_override_is_refused_before_generating(local_app: App) -> None:
    with pytest.raises(UserError, match="top_p"):
        await local_app.commands.replies.continue_text(ADMIN, PROMPT, {"top_p": "nan"})


async def test_a_mention_gets_the_next_message_of_the_channel(local_app: App) -> None:
    from datetime import UTC, datetime

    from bot.domain import ChatMessage

    for i, text in enumerate(["おはよう", "今日は晴れ", "hello all"]):
        await local_app.messages.add(
            ChatMessage(REF, f"m{i}", Author("u", "U"), text, datetime.now(UTC))
        )
    await local_app.commands.settings.set(ADMIN, "seed", "3")
    mention = ChatMessage(REF, "m9", Author("u", "U"), "what do you think?", datetime.now(UTC))
    reply = await local_app.core.on_message(mention, mentions_bot=True)
    assert reply is not None and not reply.is_error and reply.generated
    assert len(reply.texts) == 1 and reply.texts[0]
    assert await local_app.messages.count(REF) == 4  # the mention itself is history too


def test_scratch_tokenizer_round_trips_any_unicode(tmp_path: Path) -> None:
    from bot.generation.scratch import create_scratch
    from bot.generation.spec import SCRATCH_SIZES

    create_scratch(tmp_path / "m", SCRATCH_SIZES["tiny"], ["hello world", "こんにちは世界"] * 20)
    loaded = load_directory(tmp_path / "m", "scratch:tiny")
    for text in ["織田信長は、", "emoji 🎌🍣👨‍👩‍👧", "Ünïcödé ∑ 한국어 עברית", "never seen: 鬱"]:
        ids = loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
        assert loaded.tokenizer.decode(ids) == text
    assert (tmp_path / "m" / "tokenizer.json").is_file()


def _save_sentencepiece_gpt2(directory: Path) -> None:
    """A GPT-2 with a SentencePiece tokenizer saved the way rinna's models are."""
    import sentencepiece as spm
    from transformers import GPT2Config, GPT2LMHeadModel

    directory.mkdir()
    corpus = directory / "corpus.txt"
    lines = [
        "織田信長は、尾張国の戦国大名である。",
        "今日は良い天気ですね。",
        "桶狭間の戦いで今川義元を破った。",
        "吾輩は猫である。名前はまだ無い。",
        "明日は雨が降るでしょう。",
    ]
    corpus.write_text("\n".join(lines * 40), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(directory / "spiece"),
        vocab_size=200,
        character_coverage=1.0,
        model_type="unigram",
        pad_id=3,
        unk_id=2,
        bos_id=1,
        eos_id=0,
        pad_piece="[PAD]",
        unk_piece="<unk>",
        bos_piece="<s>",
        eos_piece="</s>",
        hard_vocab_limit=False,
        minloglevel=2,
    )
    vocab_size = spm.SentencePieceProcessor(
        model_file=str(directory / "spiece.model")
    ).get_piece_size()
    corpus.unlink()
    (directory / "spiece.vocab").unlink()
    (directory / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "T5Tokenizer",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "pad_token": "[PAD]",
                "bos_token": "<s>",
                "extra_ids": 0,
                "do_lower_case": False,
                "model_max_length": 1024,
            }
        ),
        encoding="utf-8",
    )
    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=128,
        n_embd=32,
        n_layer=1,
        n_head=2,
        bos_token_id=1,
        eos_token_id=0,
        pad_token_id=3,
    )
    config.tokenizer_class = "T5Tokenizer"
    GPT2LMHeadModel(config).save_pretrained(directory)


async def test_a_sentencepiece_model_directory_loads_like_rinnas(
    tmp_path: Path, local_settings: Settings
) -> None:
    model_dir = tmp_path / "rinna-like"
    _save_sentencepiece_gpt2(model_dir)

    loaded = load_directory(model_dir, str(model_dir))
    assert type(loaded.tokenizer).__name__ == "T5Tokenizer"  # not GPT-2's English BPE
    text = "織田信長は、今日は良い天気ですね。"
    ids = loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert loaded.tokenizer.decode(ids) == text

    async with running_app(local_settings.model_copy(update={"base_model": str(model_dir)})) as app:
        reply = await app.commands.replies.continue_text(
            ADMIN, "織田信長は、", {"seed": 1, "num_return_sequences": 3}
        )
    assert all(t.startswith("織田信長は、") for t in reply.texts)
    # An untrained model may end a variant at once; at least one must go on, in the
    # model's own Japanese pieces.
    assert any(len(t) > len("織田信長は、") for t in reply.texts)


def test_a_directory_without_a_tokenizer_is_refused(tmp_path: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)).save_pretrained(
        tmp_path / "m"
    )
    with pytest.raises(UserError, match="tokenizer"):
        load_directory(tmp_path / "m", "m")


def test_a_hub_id_with_no_network_fails_fast_with_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not offline mode: the real path probes the hub, which here is a closed port.
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(UserError) as excinfo:
        locate("rinna/japanese-gpt2-xsmall")
    assert "TSUZUKI_BASE_MODEL" in excinfo.value.reason
    assert "scratch:tiny" in excinfo.value.reason
    assert "hf download rinna/japanese-gpt2-xsmall" in excinfo.value.reason


async def test_the_hub_error_reaches_the_user_as_a_clear_reply(local_settings: Settings) -> None:
    hub = local_settings.model_copy(update={"base_model": "rinna/japanese-gpt2-xsmall"})
    async with running_app(hub) as app:
        reply = await app.core.on_command(ADMIN, "/continue 織田信長は、")
    assert reply.is_error
    assert "not reachable" in reply.texts[0]


async def test_the_active_version_answers_instead_of_the_base(
    local_app: App, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    from bot.generation.scratch import create_scratch
    from bot.generation.spec import SCRATCH_SIZES
    from storage.models import ModelVersion

    before = await local_app.generator.generate(
        GenerationRequest(
            REF, local_app.settings.default_sampling().merged({"seed": 1}), prompt="a"
        )
    )
    assert before.model == "scratch:tiny"
    version_dir = tmp_path / "v1"
    create_scratch(version_dir, SCRATCH_SIZES["tiny"], ["trained history"] * 10)
    channel = await local_app.channels.ensure(REF)
    async with local_app.db.write() as session:
        session.add(
            ModelVersion(
                channel_id=channel.id,
                version=1,
                base_model="scratch:tiny",
                method="full",
                path=str(version_dir),
                status="active",
                created_at=datetime.now(UTC),
            )
        )
    after = await local_app.generator.generate(
        GenerationRequest(
            REF, local_app.settings.default_sampling().merged({"seed": 1}), prompt="a"
        )
    )
    assert after.model == "v1"  # no restart needed
    assert "v1 active" in (await local_app.commands.models.show(ADMIN)).texts[0]
