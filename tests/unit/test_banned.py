"""Banned words: matched case aside and NFKC-normalised, Latin words as whole words,
Japanese anywhere; a text cut before the first; a row's guard turns down the token that
would complete one. The setting takes a list typed with commas, Japanese ones too."""

from __future__ import annotations

import pytest

from bot.errors import UserError
from bot.generation.banned import BannedGuard, BannedWords
from bot.setting_specs import SETTING_SPECS, ChannelOptions

WORDS = BannedWords(["Ramen", "ばか", "ass"])


def test_words_match_case_aside_and_full_width_as_half() -> None:
    assert WORDS.first("I want RAMEN now") == 7
    assert WORDS.first("I want ＲＡＭＥＮ now") == 7
    assert WORDS.first("お前はばかだ") == 3
    assert WORDS.first("おまえはバカだ") is None  # katakana is another word


def test_latin_words_match_whole_and_japanese_anywhere() -> None:
    assert WORDS.first("a class of their own") is None
    assert WORDS.first("what an ass.") == 8
    assert WORDS.first("ramens") is None
    assert WORDS.first("ラーメンとramen、") == 5


def test_a_text_is_cut_before_the_first_banned_word() -> None:
    assert WORDS.cut("we had ramen and more") == "we had"
    assert WORDS.cut("nothing here") == "nothing here"
    assert not BannedWords([]) and BannedWords([]).cut("ramen") == "ramen"


def test_a_guard_turns_down_a_word_as_it_is_completed_not_the_prompt() -> None:
    guard = BannedGuard(WORDS, prompt="ramen? ")
    assert guard.allows("we ha")  # the prompt's own word is the member's
    guard.passed("we ha")
    assert guard.allows("we had ram")
    guard.passed("we had ram")
    assert not guard.allows("we had ramen")
    assert guard.allows("we had rame\ufffd")  # a character not yet complete
    assert guard.allows("we had rampant")
    assert guard.blocked == 1


def test_the_setting_takes_words_with_commas_and_shows_them() -> None:
    spec = SETTING_SPECS["banned_words"]
    assert spec.coerce("Ramen, ばか、 ＡＳＳ ,, ramen") == ("Ramen", "ばか", "ASS")
    assert spec.show(spec.coerce("ramen, ばか")) == "ramen, ばか"
    assert spec.coerce("none") == () and spec.show(()) == "none"
    with pytest.raises(UserError, match="banned_words"):
        spec.coerce("x" * 51)
    with pytest.raises(UserError):
        spec.coerce(", ".join(f"w{i}" for i in range(201)))
    stored = ChannelOptions.from_stored({"banned_words": ["ramen"], "banned_words_train": True})
    assert stored.banned_words == ("ramen",) and stored.banned_words_train
