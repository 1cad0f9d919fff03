"""The layers point one way (DESIGN.md): cli → app → adapters/core → commands → engine
→ generation and training (model code) → storage/domain. A change that makes model code
reach back into the engine, or the core reach a platform SDK, fails here."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "adapters", "storage")

# package (as a path prefix) → modules it must never import (as a name prefix)
FORBIDDEN = {
    "bot/generation": ("bot.engine", "bot.training", "bot.commands", "bot.core", "bot.app"),
    "bot/training": ("bot.engine", "bot.commands", "bot.core", "bot.app", "bot.jobs"),
    "bot/engine": ("bot.commands", "bot.core", "bot.app", "bot.cli", "adapters"),
    "bot/core.py": ("discord", "slack_bolt", "slack_sdk", "adapters", "bot.app", "bot.cli"),
    "bot/commands.py": ("discord", "slack_bolt", "slack_sdk", "adapters", "bot.app"),
    "storage": ("bot.engine", "bot.generation", "bot.training", "bot.commands", "adapters"),
    "adapters": ("bot.app", "bot.cli", "torch", "transformers", "storage", "sqlalchemy"),
}


def _modules() -> list[Path]:
    return [
        p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if "migrations" not in p.parts
    ]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_layer_imports_one_above_it(layer: str) -> None:
    wrong = []
    for path in _modules():
        rel = path.relative_to(ROOT).as_posix()
        if not rel.startswith(layer):
            continue
        for name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[layer]):
                wrong.append(f"{rel} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_nothing_imports_the_cli() -> None:
    wrong = [
        p.relative_to(ROOT).as_posix()
        for p in _modules()
        if not p.relative_to(ROOT).as_posix().startswith("bot/cli")
        and any(n == "bot.cli" or n.startswith("bot.cli.") for n in _imports(p))
    ]
    assert not wrong


def test_no_two_modules_share_a_name() -> None:
    names = Counter(p.name for p in _modules() if p.name != "__init__.py")
    assert not [n for n, count in names.items() if count > 1]
