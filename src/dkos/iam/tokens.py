"""API tokens: only their SHA-256 is stored; the admin token is written once to a 0600 file.

Tokens are 32 random bytes, so a plain SHA-256 (no salt, no slow hash) is enough to make a
stolen database useless; lookups by hash keep verification one indexed read.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from dkos.core import db

TOKEN_PREFIX = "dkos_"
ADMIN_TOKEN_FILE = "admin.token"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name (recorded as `created_by` on versions) and role."""

    name: str
    role: str


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class TokenStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def verify(self, token: str) -> Principal | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(db.tokens.c.name, db.tokens.c.role).where(db.tokens.c.token_hash == digest(token))
                )
            ).first()
        return None if row is None else Principal(name=row.name, role=row.role)

    async def ensure_admin(self, data_dir: Path) -> Path:
        """Create the admin token at first start: hash in the database, token in a 0600 file.

        If the file is lost, a new admin token is made (the old one stops working), so an
        operator with access to the data dir can always get back in."""
        path = data_dir / ADMIN_TOKEN_FILE
        if path.exists():
            known = await self.verify(path.read_text().strip())
            if known is not None:
                return path
        token = new_token()
        async with self._engine.begin() as conn:
            await conn.execute(db.tokens.delete().where(db.tokens.c.name == "admin"))
            await conn.execute(
                db.tokens.insert().values(name="admin", token_hash=digest(token), role="admin", created_at=time.time())
            )
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
        os.replace(tmp, path)
        return path
