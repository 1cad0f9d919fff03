"""The leak guard's index: whole stored messages and long runs of one are caught; what
the user typed, and the channel's short phrases, are not."""

from __future__ import annotations

from bot.generation.verbatim import GuardLimits, VerbatimGuard, VerbatimIndex

SECRET = "my password is hunter2-ZX81-canary and nobody knows it at all"  # 61 chars
SHORT = "織田信長は、身分にこだわらずに人を取り立てた。"  # 23 chars


def _index() -> VerbatimIndex:
    return VerbatimIndex([SECRET, SHORT, "lol", "see you tomorrow then"])


def test_a_run_of_a_stored_message_beyond_the_prompt_is_caught() -> None:
    index = _index()
    prompt = SECRET[:10]
    assert index.copied(prompt + SECRET[10:42], len(prompt))  # 32 new characters
    assert not index.copied(prompt + SECRET[10:41], len(prompt))  # 31: the voice
    # The same 32 characters, but the user typed them all.
    assert not index.copied(SECRET[:42], 42)


def test_a_whole_short_message_is_caught_unless_the_user_typed_it() -> None:
    index = _index()
    assert index.copied("織田信長は、" + SHORT[6:], len("織田信長は、"))
    assert index.copied("そういえば" + SHORT + "よね", 0)
    assert not index.copied(SHORT, len(SHORT))
    assert not index.copied("織田信長は、身分にこだわらずに人を", 6)  # a part of it
    # Shorter than the threshold: said in the channel, and fine to say again.
    assert not index.copied("lol", 0)


def test_removed_messages_no_longer_block() -> None:
    index = _index()
    index.remove(SHORT)
    index.remove(SECRET)
    assert not index.copied(SHORT, 0)
    assert not index.copied(SECRET, 0)
    index.add(SHORT)
    assert index.copied(SHORT, 0)


def test_the_thresholds_are_the_channels() -> None:
    index = VerbatimIndex([SHORT], GuardLimits(whole_chars=30, run_chars=12))
    assert not index.copied("x" + SHORT[:11], 1)  # 23 characters: no whole check
    assert index.copied("x" + SHORT[:12], 1)  # but a run of 12 is one too many


def test_a_guard_checks_each_character_once_and_counts_what_it_turned_down() -> None:
    guard = VerbatimGuard(_index(), prompt="織田信長は、")
    assert guard.allows("身分に")
    guard.passed("身分に")  # the row took it: checks go on after it
    assert not guard.allows(SHORT[6:])
    assert guard.blocked == 1
    assert guard.allows("身分に関係なく")
    assert guard.allows("身分に関係なく\ufffd")  # a character not yet complete
