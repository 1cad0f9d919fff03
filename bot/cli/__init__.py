"""`tsuzuki …`: run the bot, import history, continue text, manage settings, models and
training. The CLI only parses arguments and prints; bot/app.py builds what runs.

Each module registers its commands on the groups in shared.py when imported.
"""

from __future__ import annotations

import importlib

from bot.cli.shared import cli

# Each module registers its commands when imported, in the order `tsuzuki --help` lists.
COMMAND_MODULES = (
    "run_command",
    "channel_commands",
    "training_commands",
    "db_commands",
    "bench_commands",
)
for _module in COMMAND_MODULES:
    importlib.import_module(f"bot.cli.{_module}")


def main() -> None:
    cli(prog_name="tsuzuki")
