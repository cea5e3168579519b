"""The state database: table definitions, the async engine, and migrations at start.

SQLAlchemy 2 Core with Alembic, chosen because the same code runs on SQLite (the embedded
default, a file under the data dir) and PostgreSQL (several control-plane replicas), and
Alembic is the best-kept migration tool for it. Tables are defined once here; the
migration scripts under `core/migrations/versions` create and change them, and
`migrate()` brings any database to the newest revision before the server serves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

metadata = sa.MetaData()

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.Float, nullable=False),
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

apps = sa.Table(
    "apps",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(63), sa.ForeignKey("projects.name"), nullable=False),
    sa.Column("name", sa.String(63), nullable=False),
    sa.Column("current_version", sa.Integer, nullable=False),
    sa.Column("desired_instances", sa.Integer, nullable=False),
    sa.Column("lifecycle", sa.String(20), nullable=False),
    sa.Column("instance_seq", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.UniqueConstraint("project", "name"),
)

app_versions = sa.Table(
    "app_versions",
    metadata,
    sa.Column("app_id", sa.Integer, sa.ForeignKey("apps.id"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("template_hash", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("created_by", sa.String(100), nullable=False),
    sa.Column("change", sa.Text, nullable=False),
)

instances = sa.Table(
    "instances",
    metadata,
    sa.Column("app_id", sa.Integer, sa.ForeignKey("apps.id"), primary_key=True),
    sa.Column("id", sa.String(80), primary_key=True),
    sa.Column("slot", sa.Integer, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("template_hash", sa.String(64), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("container_id", sa.String(80)),
    sa.Column("ip", sa.String(64)),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.Column("exit_code", sa.Integer),
    sa.Column("permanent_failure", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("not_before", sa.Float, nullable=False, server_default="0"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("healthy_at", sa.Float),
    sa.Column("ended_at", sa.Float),
    sa.Index("ix_instances_state", "state"),
)

deployments = sa.Table(
    "deployments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("app_id", sa.Integer, sa.ForeignKey("apps.id"), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("from_version", sa.Integer),
    sa.Column("to_version", sa.Integer, nullable=False),
    sa.Column("target_instances", sa.Integer, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Index("ix_deployments_app", "app_id", "status"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("type", sa.String(40), nullable=False),
    sa.Column("project", sa.String(63)),
    sa.Column("app", sa.String(63)),
    sa.Column("instance", sa.String(80)),
    sa.Column("deployment", sa.Integer),
    sa.Column("message", sa.Text, nullable=False),
    sa.Index("ix_events_deployment", "deployment"),
)

certificates = sa.Table(
    "certificates",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("names", sa.JSON, nullable=False),
    sa.Column("not_after", sa.Float, nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("issuer", sa.Text, nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

service_ports = sa.Table(
    "service_ports",
    metadata,
    sa.Column("port", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("app_id", sa.Integer, sa.ForeignKey("apps.id"), nullable=False),
    sa.Column("port_name", sa.String(63), nullable=False),
    sa.UniqueConstraint("app_id", "port_name"),
)


# alarms, notifications and autoscaling (issue 5) ------------------------------------------

alarms = sa.Table(
    "alarms",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(63), sa.ForeignKey("projects.name"), nullable=False),
    sa.Column("app", sa.String(63)),
    sa.Column("name", sa.String(63), nullable=False),
    sa.Column("source", sa.String(20), nullable=False),
    sa.Column("definition", sa.JSON, nullable=False),
    sa.Column("origin", sa.String(20), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("state_since", sa.Float, nullable=False),
    sa.Column("state_value", sa.Float),
    sa.Column("state_reason", sa.Text, nullable=False, server_default=""),
    sa.Column("fired_at", sa.Float),
    sa.Column("last_notified_at", sa.Float),
    sa.Column("evaluated_at", sa.Float),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("project", "name"),
)

alarm_history = sa.Table(
    "alarm_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("alarm_id", sa.Integer, sa.ForeignKey("alarms.id", ondelete="CASCADE"), nullable=False),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("old_state", sa.String(20), nullable=False),
    sa.Column("new_state", sa.String(20), nullable=False),
    sa.Column("value", sa.Float),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Index("ix_alarm_history_alarm", "alarm_id", "time"),
)

channels = sa.Table(
    "channels",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(63), sa.ForeignKey("projects.name"), nullable=False),
    sa.Column("name", sa.String(63), nullable=False),
    sa.Column("type", sa.String(20), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("send_resolved", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("project", "name"),
)

notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(63), nullable=False),
    sa.Column("channel", sa.String(63), nullable=False),
    sa.Column("alarm", sa.String(63), nullable=False),
    sa.Column("reason", sa.String(40), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Index("ix_notifications_status", "status"),
)

notification_attempts = sa.Table(
    "notification_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("notification_id", sa.Integer, sa.ForeignKey("notifications.id", ondelete="CASCADE"), nullable=False),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("status_code", sa.Integer),
    sa.Column("outcome", sa.String(20), nullable=False),
    sa.Column("error", sa.Text, nullable=False, server_default=""),
    sa.Index("ix_notification_attempts_notification", "notification_id"),
)

scaling_policies = sa.Table(
    "scaling_policies",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(63), sa.ForeignKey("projects.name"), nullable=False),
    sa.Column("app", sa.String(63), nullable=False),
    sa.Column("name", sa.String(63), nullable=False),
    sa.Column("definition", sa.JSON, nullable=False),
    sa.Column("origin", sa.String(20), nullable=False),
    sa.Column("cooldown_until", sa.Float),
    sa.Column("cooldown_direction", sa.String(10)),
    sa.Column("recommendations", sa.JSON, nullable=False),
    sa.Column("last_limited", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("project", "app", "name"),
)

scaling_executions = sa.Table(
    "scaling_executions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("policy_id", sa.Integer, sa.ForeignKey("scaling_policies.id", ondelete="CASCADE"), nullable=False),
    sa.Column("project", sa.String(63), nullable=False),
    sa.Column("app", sa.String(63), nullable=False),
    sa.Column("policy", sa.String(63), nullable=False),
    sa.Column("alarms", sa.JSON, nullable=False),
    sa.Column("value", sa.Float),
    sa.Column("from_instances", sa.Integer, nullable=False),
    sa.Column("to_instances", sa.Integer, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("limited", sa.Text, nullable=False, server_default=""),
    sa.Column("deployment_id", sa.Integer),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Index("ix_scaling_executions_app", "project", "app", "id"),
)


def inserted_id(result: sa.CursorResult[Any]) -> int:
    """The primary key an INSERT made (every table with an autoincrement id)."""
    key = result.inserted_primary_key
    assert key is not None, "not an INSERT"
    return int(key[0])


_MIGRATIONS = Path(__file__).with_name("migrations")


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    command.upgrade(_alembic_config(connection), "head")


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision; safe on every start."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)


@asynccontextmanager
async def open_database(url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a migrated database. SQLite gets WAL and a busy timeout so the API and
    the loops can read while one of them writes."""
    engine = create_async_engine(url, connect_args={"timeout": 30} if url.startswith("sqlite") else {})
    if url.startswith("sqlite"):

        @sa.event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

    try:
        await migrate(engine)
        yield engine
    finally:
        await engine.dispose()
