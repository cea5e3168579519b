"""Server settings: every timeout, interval, limit and backoff is a field here, not a literal.

Read from the environment with the `DKOS_` prefix (e.g. `DKOS_RESYNC_INTERVAL=5`) and from
the `dkos server` flags. Spec-level defaults (health check timings, restart backoff) live
with the spec in `apps/spec.py`, since users set them per app.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DKOS_", extra="ignore")

    data_dir: Path = Field(Path(".dkos"), description="Where state, the admin token and the server id live.")
    listen: str = Field("127.0.0.1:7700", description="HOST:PORT the API listens on.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default is the SQLite file <data_dir>/dkos.db.")
    docker_url: str | None = Field(None, description="Docker Engine API URL; default DOCKER_HOST or the local socket.")

    resync_interval: float = Field(10.0, description="Seconds between full reconciles of every app.")
    engine_ping_interval: float = Field(2.0, description="Seconds between engine liveness checks.")
    reconcile_workers: int = Field(8, description="Apps reconciled at the same time.")
    start_concurrency: int = Field(
        8, description="Containers one app starts at the same time (one engine tops out at ≈ 7.5 starts/s)."
    )

    min_running: float = Field(
        1.0,
        description="Seconds an instance of an app without a health check must run to count as healthy.",
    )
    backoff_reset_after: float = Field(
        600.0,
        description="Seconds an instance must stay healthy before its slot's restart backoff is forgotten.",
    )
    deploy_failure_threshold: int = Field(
        3,
        description="Failed starts of the new version in one slot after which a deployment is marked failed.",
    )
    orphan_grace: float = Field(
        30.0,
        description="Seconds a labelled container nothing tracks may live before the sweeper removes it.",
    )

    lb_enabled: bool = Field(True, description="Run HAProxy and route the apps' ports through it.")
    haproxy: str = Field("/usr/sbin/haproxy", description="The HAProxy 2.6 binary.")
    lb_bind_address: str = Field("127.0.0.1", description="Address the load balancer's listeners bind to.")
    lb_http_port: int = Field(8080, description="The HTTP listener (80 in production).")
    lb_https_port: int = Field(8443, description="The HTTPS listener (443 in production).")
    base_domain: str = Field(
        "localhost", description="Apps answer `<app>.<project>.<base domain>`; *.localhost resolves to loopback."
    )
    service_port_min: int = Field(10000, description="First service port given to TCP app ports.")
    service_port_max: int = Field(10999, description="Last service port given to TCP app ports.")

    metrics_interval: float = Field(10.0, ge=1.0, description="Seconds between metric collections (1 s at least).")
    metrics_raw_retention: float | None = Field(
        7 * 86_400.0, description="Seconds raw metric points are kept; unset (null) keeps them forever."
    )
    metrics_rollup_1m_retention: float | None = Field(
        90 * 86_400.0, description="Seconds 1-minute rollups are kept; unset (null) keeps them forever."
    )
    metrics_rollup_5m_retention: float | None = Field(
        400 * 86_400.0, description="Seconds 5-minute rollups are kept; unset (null) keeps them forever."
    )
    metrics_rollup_1h_retention: float | None = Field(
        None, description="Seconds 1-hour rollups are kept; unset (null, the default) keeps them forever."
    )
    zone: str = Field("default", description="The zone (datacenter) of this node, a tag on its metrics.")
    metrics_max_points: int = Field(
        10_000_000, description="Points one metrics query may read; a bigger one is refused with 413."
    )

    alarm_min_period: float = Field(
        60.0,
        ge=1.0,
        description="Shortest alarm period accepted, in seconds (lower it for tests and small installations).",
    )
    alarm_history_retention: float = Field(
        14 * 86_400.0, description="Seconds alarm history and notifications are kept."
    )
    alarm_resync_interval: float = Field(
        30.0, description="Seconds between evaluations of every alarm even when no new data arrives."
    )
    notify_timeout: float = Field(10.0, description="Seconds one notification request may take.")
    notify_max_attempts: int = Field(5, ge=1, description="Tries of one notification on 5xx or network errors.")
    notify_backoff_initial: float = Field(1.0, description="Seconds before the first retry of a notification.")
    notify_backoff_factor: float = Field(2.0, ge=1.0, description="Each further retry waits this much longer.")
    notify_backoff_max: float = Field(60.0, description="The wait between retries never grows beyond this.")
    autoscale_interval: float = Field(
        1.0, gt=0, description="Seconds between passes of the autoscaler over every policy."
    )
    autoscale_max_instances: int = Field(
        100, ge=1, description="Most instances a scaling policy may set: the project limit until quotas exist."
    )

    log_max_size: str = Field("10m", description="Engine-side json-file rotation: size of one file.")
    log_max_files: int = Field(3, description="Engine-side json-file rotation: files kept per container.")
    logs_total_bytes: int = Field(1 << 30, description="Log store cap, all apps together, in bytes (docs/logs.md).")
    logs_app_bytes: int = Field(256 << 20, description="Log store cap per app, in bytes.")
    logs_max_age: float | None = Field(7 * 86_400.0, description="Seconds log lines are kept; null: until a cap.")
    logs_max_line_bytes: int = Field(32 * 1024, ge=256, description="Longer log lines are stored in marked pieces.")
    logs_flush_delay: float = Field(0.05, description="Seconds captured lines gather before they are stored.")
    logs_batch_lines: int = Field(10_000, description="Captured lines stored in one transaction, at most.")
    logs_discover_interval: float = Field(5.0, description="Seconds between looks for containers to capture.")
    logs_drain_timeout: float = Field(10.0, description="Seconds a removal waits for a container's last lines.")
    logs_retry_max_delay: float = Field(5.0, description="Longest wait before reopening a broken log stream.")
    logs_alarm_tick: float = Field(1.0, description="Seconds between log alarm evaluations when no lines arrive.")
    logs_ship_url: str | None = Field(None, description="Elasticsearch/OpenSearch URL to ship lines to (`_bulk`).")
    logs_ship_index: str = Field("dkos-logs", description="Index shipped lines go to.")
    logs_ship_batch: int = Field(1000, description="Lines per `_bulk` request, at most.")
    logs_ship_retry_max_delay: float = Field(60.0, description="Longest wait between `_bulk` retries.")

    events_kept: int = Field(10_000, description="Stored events kept for replay; older ones are pruned.")
    instances_kept_per_app: int = Field(50, description="Stopped or failed instances kept per app for history.")
    sse_keepalive: float = Field(15.0, description="Seconds of silence after which an event stream sends a comment.")

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, data_dir: Path) -> Path:
        # HAProxy's configuration and the SQLite URL need absolute paths, whatever the cwd.
        return data_dir.expanduser().resolve()

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'dkos.db'}"

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host or "127.0.0.1", int(port)
