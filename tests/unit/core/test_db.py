"""The migrations build exactly the schema the code uses, and are safe to run on every start."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from dkos.core import db


async def test_migrations_match_the_table_definitions(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'state.db'}"
    async with db.open_database(url) as engine, engine.connect() as conn:
        drift = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), db.metadata))
    assert drift == []


async def test_a_second_start_keeps_the_data(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'state.db'}"
    async with db.open_database(url) as engine, engine.begin() as conn:
        await conn.execute(db.projects.insert().values(name="news", description="", created_at=1.0))
    async with db.open_database(url) as engine, engine.connect() as conn:
        assert await conn.scalar(sa.select(db.projects.c.name)) == "news"
