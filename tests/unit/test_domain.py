from __future__ import annotations

import math

import pytest

from bot.core.text_commands import split_overrides
from bot.domain import ChannelRef
from bot.errors import UserError
from bot.setting_specs import SETTING_SPECS, SamplingSettings


@pytest.mark.parametrize(
    ("key", "raw"),
    [
        ("temperature", "nan"),
        ("temperature", "NaN"),
        ("temperature", "inf"),
        ("temperature", "-inf"),
        ("temperature", "-0.5"),
        ("temperature", "5.01"),
        ("temperature", "hot"),
        ("top_p", "0"),
        ("top_p", "1.5"),
        ("top_k", "-1"),
        ("top_k", "2.5"),
        ("max_new_tokens", "0"),
        ("max_new_tokens", "1e9"),
        ("repetition_penalty", "0.5"),
        ("num_return_sequences", "6"),
        ("seed", "-1"),
        ("seed", "abc"),
        ("no_repeat_ngram_size", ""),
        # Python's float() reads digit separators and words; a user means neither.
        ("temperature", "0_5"),
        ("top_k", "4_0"),
        ("temperature", "infinity"),
        ("temperature", "0x1"),
    ],
)
def test_bad_values_are_refused_with_the_setting_and_its_range(key: str, raw: str) -> None:
    spec = SETTING_SPECS[key]
    with pytest.raises(UserError) as excinfo:
        spec.coerce(raw)
    assert key in excinfo.value.reason
    assert spec.describe_range() in excinfo.value.reason


@pytest.mark.parametrize("raw", [math.nan, math.inf, True, [1], None])
def test_non_string_bad_values_are_refused(raw: object) -> None:
    with pytest.raises(UserError, match="temperature"):
        SETTING_SPECS["temperature"].coerce(raw)


def test_good_values_are_converted_to_their_type() -> None:
    assert SETTING_SPECS["top_k"].coerce("40") == 40
    assert isinstance(SETTING_SPECS["top_k"].coerce("40.0"), int)
    assert SETTING_SPECS["temperature"].coerce(" 0.7 ") == 0.7
    assert SETTING_SPECS["seed"].coerce("none") is None
    assert SETTING_SPECS["temperature"].coerce("0") == 0.0
    # Full-width digits, as a Japanese keyboard types them.
    assert SETTING_SPECS["temperature"].coerce("０．５") == 0.5
    assert SETTING_SPECS["temperature"].coerce("1e-1") == 0.1


def test_minus_zero_is_stored_and_shown_as_zero() -> None:
    value = SETTING_SPECS["temperature"].coerce("-0")
    assert value == 0 and math.copysign(1.0, value) == 1.0
    assert str(value) == "0.0"
    assert str(SETTING_SPECS["seed"].coerce("-0")) == "0"


def test_a_huge_refused_value_is_not_echoed_back_whole() -> None:
    raw = "9" * 100_000
    with pytest.raises(UserError) as excinfo:
        SETTING_SPECS["top_k"].coerce(raw)
    reason = excinfo.value.reason
    assert len(reason) < 400
    assert "top_k" in reason and "100,000 characters" in reason


def test_precedence_request_over_channel_over_default() -> None:
    default = SamplingSettings(temperature=0.9, top_k=50)
    channel = default.merged({"temperature": "0.5", "top_k": "10"})
    request = channel.merged({"temperature": 1.2})
    assert (request.temperature, request.top_k) == (1.2, 10)
    assert default.temperature == 0.9  # merging never changes the original


def test_unknown_setting_names_the_known_ones() -> None:
    with pytest.raises(UserError, match="top_p"):
        SamplingSettings().merged({"temprature": 1})


def test_constructing_invalid_settings_fails() -> None:
    with pytest.raises(UserError):
        SamplingSettings(top_p=0.0)


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("console:general", ChannelRef("console", "local", "general")),
        ("discord:123/456", ChannelRef("discord", "123", "456")),
        ("slack:T01/C02", ChannelRef("slack", "T01", "C02")),
    ],
)
def test_channel_refs_round_trip(text: str, ref: ChannelRef) -> None:
    assert ChannelRef.parse(text) == ref
    assert str(ref) == text


@pytest.mark.parametrize("text", ["general", "irc:x", "discord:123", "console:", "slack:T/../x"])
def test_bad_channel_refs_are_refused(text: str) -> None:
    with pytest.raises(UserError, match="not a channel id"):
        ChannelRef.parse(text)


def test_split_overrides_takes_only_trailing_known_settings() -> None:
    assert split_overrides("織田信長は、 temperature=0.7 n=2") == (
        "織田信長は、",
        {"temperature": "0.7", "num_return_sequences": "2"},
    )
    assert split_overrides("a=b means c") == ("a=b means c", {})
    assert split_overrides("x colour=red") == ("x colour=red", {})


def test_text_people_wrote_is_never_a_voice_tag() -> None:
    from bot.domain import DISARMED, VOICE_TAG, disarm_tags
    from bot.generation.chat_text import model_text

    typed = "«ded930»the cat «0a1b2c» and «not a tag»"
    assert disarm_tags(typed) == f"{DISARMED}ded930»the cat {DISARMED}0a1b2c» and «not a tag»"
    # A stored message, or an author's name, that opens with a tag's shape.
    assert not VOICE_TAG.match(model_text("«ded930»hi", "", "", author_prefix=False))
    assert not VOICE_TAG.match(model_text("hi", "«ded930»", "", author_prefix=True))
    # Only the tag the bot adds opens the text.
    assert model_text("«ded930»hi", "", "«abcdef»", author_prefix=False).startswith("«abcdef»‹")


def test_voice_tags_need_the_installations_key() -> None:
    from bot.domain import voice_tag

    ref = ChannelRef.parse("console:general")
    assert voice_tag(ref, "1", b"one") != voice_tag(ref, "1", b"two")
    assert voice_tag(ref, "1", b"one") == voice_tag(ref, "1", b"one")
