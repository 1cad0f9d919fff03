"""The data directory on start: each channel's folder under the name of this release
(ChannelRef.slug), and what failed runs left behind cleared away.

Releases before 0.22 named a channel's folder `<platform>-<workspace>-<channel>`, which
two channels could share (`discord:a-b/c` and `discord:a/b-c`). A folder only one known
channel maps to is renamed; a shared one is split by the channel each version's
metadata names, and a channel whose version files were written over by the other's
loses that version (retired for good, with a note) rather than answer from another
channel's history. Caches in a shared folder (scratch tokenizers, runs to resume) are
deleted: nobody can tell whose they are, and they are rebuilt when needed.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from collections import defaultdict
from pathlib import Path

from bot.domain import ChannelRef
from bot.ports import ChannelStore, ModelRegistry
from bot.training.voices import METADATA

log = logging.getLogger(__name__)

VERSION_DIR = re.compile(r"v(\d+)")
# Folders a write in progress uses: a version before its rename, a scratch base being
# fitted, a re-measurement. One older than this belongs to a run that died (a write
# takes seconds), so it is safe to delete even while another process is training.
TEMPORARY = ("v*.tmp", "scratch-*.tmp", "eval-*")
STALE_AFTER_S = 600.0
LOST_NOTE = "its files were another channel's (a folder two channels shared): never served"


def legacy_slug(ref: ChannelRef) -> str:
    return f"{ref.platform}-{ref.workspace}-{ref.channel}"


async def migrate_channel_folders(
    models_dir: Path, channels: ChannelStore, registry: ModelRegistry
) -> None:
    """Moves every known channel's folder from its legacy name to ChannelRef.slug."""
    if not models_dir.is_dir():
        return
    sharing: dict[str, list[ChannelRef]] = defaultdict(list)
    for ref in await channels.known():
        sharing[legacy_slug(ref)].append(ref)
    for old_name, refs in sharing.items():
        old = models_dir / old_name
        if not old.is_dir() or any(old_name == ref.slug for ref in refs):
            continue
        if len(refs) == 1:
            await _move_whole(old, models_dir / refs[0].slug, refs[0], registry)
        else:
            await _split(old, models_dir, refs, registry)


async def _move_whole(old: Path, new: Path, ref: ChannelRef, registry: ModelRegistry) -> None:
    _merge(old, new)
    moved = await registry.move_paths(ref, str(old), str(new))
    _repoint_adapters(new, str(old), str(new))
    log.info("%s: moved its folder %s to %s (%d versions)", ref, old.name, new.name, moved)


async def _split(
    old: Path, models_dir: Path, refs: list[ChannelRef], registry: ModelRegistry
) -> None:
    by_name = {str(ref): ref for ref in refs}
    for child in sorted(old.iterdir()):
        owner = by_name.get(_metadata_channel(child)) if VERSION_DIR.fullmatch(child.name) else None
        if owner is None:
            shutil.rmtree(child, ignore_errors=True)
            continue
        target = models_dir / owner.slug / child.name
        if target.exists():
            shutil.rmtree(child, ignore_errors=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        child.rename(target)
        await registry.move_paths(owner, str(child), str(target))
    # What still points into the shared folder was not the channel's own.
    for ref in refs:
        lost = await registry.lose_under(ref, str(old), LOST_NOTE)
        if lost:
            log.warning("%s: versions %s were written over by another channel's", ref, lost)
    shutil.rmtree(old, ignore_errors=True)
    log.info("split the folder %s that channels %s shared", old.name, ", ".join(map(str, refs)))


def _merge(old: Path, new: Path) -> None:
    """Renames `old` to `new`; if another process made `new` meanwhile, moves in what
    it lacks."""
    try:
        old.rename(new)
        return
    except OSError:
        if not new.is_dir():
            raise
    for child in old.iterdir():
        if not (new / child.name).exists():
            child.rename(new / child.name)
    shutil.rmtree(old, ignore_errors=True)


def _metadata_channel(version_dir: Path) -> str:
    try:
        data = json.loads((version_dir / METADATA).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return str(data.get("channel", "")) if isinstance(data, dict) else ""


def _repoint_adapters(channel_dir: Path, old: str, new: str) -> None:
    """A LoRA adapter over the channel's own scratch base names that base by path."""
    for config in channel_dir.glob("v*/adapter_config.json"):
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        base = str(data.get("base_model_name_or_path", ""))
        if base == old or base.startswith(old + "/"):
            data["base_model_name_or_path"] = new + base[len(old) :]
            config.write_text(json.dumps(data, indent=2), encoding="utf-8")


def clean_temporary(models_dir: Path, stale_after_s: float = STALE_AFTER_S) -> list[Path]:
    """Deletes what runs that died left half-written; returns what it deleted."""
    if not models_dir.is_dir():
        return []
    now = time.time()
    removed = []
    for pattern in TEMPORARY:
        for path in models_dir.glob(f"*/{pattern}"):
            try:
                if now - path.stat().st_mtime < stale_after_s:
                    continue
            except OSError:
                continue
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        log.info("deleted %d folders that failed runs left behind", len(removed))
    return removed
