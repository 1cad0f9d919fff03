"""The layers point one way (DESIGN.md), lowest first:

    leaves (domain, setting_specs, errors, messages, statuses, records, processes,
    device, token_bucket, logs, outages) → storage → model code (generation, training,
    importing) → ports, config → engine → core → adapters → app, benchmarks, demo → cli

A module may import its own layer or one below it, never one above; and no two modules
import each other, directly or round a longer loop. A change that makes model code
reach the stores, the core reach a platform SDK, or brings back the cycle ports →
training → engine → ports, fails here.
"""

from __future__ import annotations

import ast
import functools
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "adapters", "storage")

# Lowest first: (layer, the path prefixes that make it up).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "leaves",
        tuple(
            f"bot/{name}.py"
            for name in (
                "__init__",
                "domain",
                "setting_specs",
                "errors",
                "messages",
                "statuses",
                "records",
                "processes",
                "device",
                "token_bucket",
                "logs",
                "outages",
            )
        ),
    ),
    ("storage", ("storage/",)),
    ("model code", ("bot/generation/", "bot/training/", "bot/importing/")),
    ("ports", ("bot/ports.py", "bot/config.py")),
    ("engine", ("bot/engine/",)),
    ("core", ("bot/core/",)),
    ("adapters", ("adapters/",)),
    ("app", ("bot/app.py", "bot/bench.py", "bot/benchmarks/", "bot/demo/")),
    ("cli", ("bot/cli/",)),
]

# Third-party packages a layer must not import, whatever its rank allows.
FORBIDDEN_LIBRARIES = {
    "bot/core/": ("discord", "slack_bolt", "slack_sdk", "torch", "transformers", "sqlalchemy"),
    "bot/generation/": ("sqlalchemy",),
    "bot/training/": ("sqlalchemy",),
    "adapters/": ("torch", "transformers", "sqlalchemy"),
    "storage/": ("torch", "transformers"),
}


def _modules() -> list[Path]:
    return [
        p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if "migrations" not in p.parts
    ]


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _module_name(rel: str) -> str:
    name = rel.removesuffix(".py").replace("/", ".")
    return name.removesuffix(".__init__")


@functools.cache
def _imports(path: Path) -> frozenset[str]:
    """Every module the file imports, anywhere in it (a function's lazy import and a
    TYPE_CHECKING block count too: both are arrows of the structure)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from bot.core import entry` imports the module bot.core.entry.
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return frozenset(names)


def _rank(rel: str) -> int:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if rel.startswith(prefixes):
            return rank
    raise AssertionError(f"{rel} is in no layer: add it to LAYERS")


def _paths() -> dict[str, str]:
    """Module name → its path."""
    return {_module_name(_rel(p)): _rel(p) for p in _modules()}


def _graph() -> dict[str, set[str]]:
    """Module → the project's modules it imports."""
    paths = _paths()
    return {
        name: {i for i in _imports(ROOT / rel) if i in paths and i != name}
        for name, rel in paths.items()
    }


def test_every_module_is_in_a_layer() -> None:
    for p in _modules():
        _rank(_rel(p))


def test_no_module_imports_a_layer_above_its_own() -> None:
    paths = _paths()
    wrong = []
    for name, imported in _graph().items():
        rank = _rank(paths[name])
        for other in sorted(imported):
            if _rank(paths[other]) > rank:
                wrong.append(
                    f"{paths[name]} ({LAYERS[rank][0]}) imports {other} "
                    f"({LAYERS[_rank(paths[other])][0]})"
                )
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle() -> None:
    graph = _graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(" → ".join(c) for c in cycles)


@pytest.mark.parametrize("layer", sorted(FORBIDDEN_LIBRARIES))
def test_no_layer_imports_a_library_it_must_not(layer: str) -> None:
    wrong = []
    for path in _modules():
        rel = _rel(path)
        if not rel.startswith(layer):
            continue
        for name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN_LIBRARIES[layer]):
                wrong.append(f"{rel} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_model_code_knows_neither_the_stores_nor_the_settings() -> None:
    """Model code gets a Device and plain values (DESIGN.md): said on its own, since
    it is the rule a newcomer is most likely to break by a shortcut."""
    wrong = [
        f"{_rel(p)} imports {name}"
        for p in _modules()
        if _rel(p).startswith(("bot/generation/", "bot/training/"))
        for name in _imports(p)
        if name.split(".")[:2] in (["bot", "ports"], ["bot", "config"])
        or name == "storage"
        or name.startswith("storage.")
    ]
    assert not wrong, "\n".join(wrong)


def test_no_two_modules_share_a_name() -> None:
    names = Counter(p.name for p in _modules() if p.name != "__init__.py")
    assert not [n for n, count in names.items() if count > 1]
