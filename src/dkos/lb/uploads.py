"""Certificates users upload for their domains: validated, stored as a 0600 PEM bundle by
`certs.CertificateStore`, and listed in the state database (names, expiry, fingerprint —
never the key). The router puts them in front of the local CA's certificates for the
names they cover.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from dkos.core import db
from dkos.core.errors import NotFound
from dkos.lb.certs import CertificateStore


@dataclass(frozen=True)
class Upload:
    name: str
    names: tuple[str, ...]
    not_after: float
    fingerprint: str
    issuer: str
    path: Path

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "names": list(self.names),
            "not_after": self.not_after,
            "fingerprint": self.fingerprint,
            "issuer": self.issuer,
        }


def covers(pattern: str, host: str) -> bool:
    """Whether a certificate name covers a host: equal, or a wildcard for exactly one label."""
    if pattern == host:
        return True
    return pattern.startswith("*.") and host.partition(".")[2] == pattern[2:]


class UploadedCertificates:
    def __init__(self, engine: AsyncEngine, store: CertificateStore) -> None:
        self._engine = engine
        self._store = store

    async def put(self, name: str, certificate: str, key: str) -> tuple[Upload, bool]:
        """Store (or replace) a certificate; True when it is new. Raises `InvalidInput` naming
        `certificate` or `key` when they do not parse, do not match, or are expired."""
        stored = await asyncio.to_thread(self._store.put_upload, name, certificate, key, now=datetime.now(UTC))
        assert stored.path is not None
        upload = Upload(
            name=name,
            names=stored.names,
            not_after=stored.not_after.timestamp(),
            fingerprint=stored.fingerprint,
            issuer=stored.issuer,
            path=stored.path,
        )
        row = {**upload.to_json(), "path": str(upload.path), "created_at": time.time()}
        async with self._engine.begin() as conn:
            existed = await conn.scalar(sa.select(db.certificates.c.name).where(db.certificates.c.name == name))
            if existed:
                await conn.execute(db.certificates.update().where(db.certificates.c.name == name).values(**row))
            else:
                await conn.execute(db.certificates.insert().values(**row))
        return upload, not existed

    async def list(self) -> list[Upload]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(sa.select(db.certificates).order_by(db.certificates.c.name))
            return [
                Upload(
                    name=r.name,
                    names=tuple(r.names),
                    not_after=r.not_after,
                    fingerprint=r.fingerprint,
                    issuer=r.issuer,
                    path=Path(r.path),
                )
                for r in rows
            ]

    async def remove(self, name: str) -> None:
        async with self._engine.begin() as conn:
            result = await conn.execute(db.certificates.delete().where(db.certificates.c.name == name))
        if not result.rowcount:
            raise NotFound(f"certificate '{name}' not found")
        await asyncio.to_thread(self._store.remove, name)
