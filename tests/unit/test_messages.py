from __future__ import annotations

import string

from bot import messages as M


def _fields(text: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(text) if f}


def test_every_message_exists_in_every_language_with_the_same_placeholders() -> None:
    for key, versions in M.CATALOG.items():
        assert set(versions) == set(M.LOCALES), key
        assert _fields(versions["en"]) == _fields(versions["ja"]), key


def test_locale_switches_the_language() -> None:
    try:
        M.set_locale("ja")
        assert "管理者" in M.t("admin_only")
    finally:
        M.set_locale("en")
    assert "admin" in M.t("admin_only")
