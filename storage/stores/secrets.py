"""Keys the installation makes for itself, once, shared by every process on the
database (bot processes, Ray workers, the CLI)."""

from __future__ import annotations

import secrets

from sqlalchemy import select

from storage.db import Database
from storage.models import Secret
from storage.stores.rows import insert


async def instance_secret(db: Database, name: str) -> bytes:
    """The installation's key `name`, made on first use; two processes asking at once
    get the same one (the first insert wins, both read it back)."""
    async with db.read() as session:
        value = await session.scalar(select(Secret.value).where(Secret.name == name))
    if value is None:
        async with db.write() as session:
            await session.execute(
                insert(session, Secret)
                .values(name=name, value=secrets.token_hex(32))
                .on_conflict_do_nothing(index_elements=["name"])
            )
            value = await session.scalar(select(Secret.value).where(Secret.name == name))
    assert value is not None
    return bytes.fromhex(value)
