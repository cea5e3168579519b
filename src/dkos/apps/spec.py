"""The app spec: what a service team hands dkos, validated before anything is stored.

Field names are a public contract (docs/app-spec.md): specs written for dkos must stay
valid. Unknown fields are refused so a typo (`instance: 3`) is caught, not ignored.
`parse()` is the one way in: it turns YAML or JSON text, or a dict, into an `AppSpec` or
raises `InvalidInput` naming every broken field and its rule.
"""

from __future__ import annotations

import enum
import json
import re
from typing import Annotated, Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dkos.alerts.spec import AlarmSpec, NamedAlarm
from dkos.autoscale.spec import PolicySpec
from dkos.core.errors import FieldProblem, InvalidInput
from dkos.logs.keyword_spec import LogAlarmSpec

DNS_LABEL = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
_DNS_LABEL_RULE = "must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_ENV_PREFIX = "DKOS_"
RESERVED_LABEL_PREFIX = "dkos."

Seconds = Annotated[float, Field(ge=0, le=86_400)]


def _as_text(value: Any) -> Any:
    if isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int | float):
        return str(value)
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Protocol(enum.StrEnum):
    HTTP = "http"
    TCP = "tcp"


class HealthCheckType(enum.StrEnum):
    HTTP = "http"
    TCP = "tcp"
    COMMAND = "command"


class Resources(_Strict):
    cpus: float = Field(1.0, gt=0, le=256, description="CPU cores; the engine enforces the share.")
    memory: int = Field(128, ge=6, le=1_048_576, description="Memory limit in MiB; the engine kills above it.")


class Port(_Strict):
    name: str = Field(pattern=DNS_LABEL)
    container_port: int = Field(ge=1, le=65_535)
    protocol: Protocol = Protocol.HTTP


class HealthCheck(_Strict):
    type: HealthCheckType = HealthCheckType.HTTP
    port: str | None = Field(None, description="Name of the port to check; default the first port.")
    path: str = Field("/", description="HTTP path; a 2xx or 3xx answer passes.")
    command: list[str] | None = Field(None, description="For type command: run inside the container, exit 0 passes.")
    grace_period: Seconds = Field(30, description="Failures in the first seconds after start do not count.")
    interval: float = Field(5, ge=0.2, le=3_600, description="Seconds between checks once healthy.")
    start_interval: float = Field(0.5, ge=0.1, le=3_600, description="Seconds between checks until the first pass.")
    timeout: float = Field(2, gt=0, le=3_600, description="Seconds a check may take.")
    max_consecutive_failures: int = Field(3, ge=1, le=1_000, description="Failures in a row that get it replaced.")

    @field_validator("path")
    @classmethod
    def _absolute_path(cls, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError("must start with '/'")
        return path

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.timeout > self.interval:
            raise ValueError("timeout: must be ≤ interval")
        if self.type is HealthCheckType.COMMAND and not self.command:
            raise ValueError("command: is required for a command check")
        return self


class RestartBackoff(_Strict):
    initial_delay: Seconds = Field(1, description="Delay before the second restart in a row; the first is at once.")
    factor: float = Field(2, ge=1, le=10, description="Each further restart in a row waits this much longer.")
    max_delay: Seconds = Field(300, description="The delay never grows beyond this.")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.max_delay < self.initial_delay:
            raise ValueError("max_delay: must be ≥ initial_delay")
        return self


Surge = int | str
"""An absolute number of instances, or a percentage of `instances` such as `25%`."""
_PERCENT = re.compile(r"^(100|[1-9]?[0-9])%$")


class Strategy(_Strict):
    """How a new version replaces the old one (Kubernetes' RollingUpdate fields)."""

    max_surge: Surge = Field("25%", description="Instances above `instances` during a rollout; % rounds up.")
    max_unavailable: Surge = Field("25%", description="Instances below `instances` during a rollout; % rounds down.")
    min_ready_seconds: Seconds = Field(0, description="Seconds a new instance must stay healthy to count as available.")
    drain_timeout: Seconds = Field(
        30, description="Seconds to wait for in-flight requests to finish on a draining instance before stopping it."
    )
    progress_deadline: float = Field(
        600, gt=0, le=86_400, description="Seconds a rollout may go without finishing before it is rolled back."
    )

    @field_validator("max_surge", "max_unavailable")
    @classmethod
    def _count_or_percent(cls, value: int | str) -> int | str:
        if (isinstance(value, int) and value < 0) or (isinstance(value, str) and not _PERCENT.match(value)):
            raise ValueError("must be a whole number ≥ 0 or a percentage from 0% to 100%")
        return value

    @model_validator(mode="after")
    def _can_progress(self) -> Self:
        if self.max_surge in (0, "0%") and self.max_unavailable in (0, "0%"):
            raise ValueError("max_unavailable: max_surge and max_unavailable cannot both be 0")
        return self

    def bounds(self, instances: int) -> tuple[int, int]:
        """(surge, unavailable) as instance counts, with Kubernetes' rounding: surge rounds
        up, unavailable down, and if both come to 0 one instance may be unavailable."""
        surge = _resolve(self.max_surge, instances, round_up=True)
        unavailable = _resolve(self.max_unavailable, instances, round_up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        return surge, unavailable


def _resolve(value: int | str, instances: int, *, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    scaled = int(value.rstrip("%")) * instances
    return -(-scaled // 100) if round_up else scaled // 100


DOMAIN = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"


class AppSpec(_Strict):
    name: str = Field(pattern=DNS_LABEL)
    project: str = Field("default", pattern=DNS_LABEL)
    image: str = Field(min_length=1, max_length=512)
    command: list[str] | None = None
    args: list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    instances: int = Field(1, ge=0, le=10_000)
    resources: Resources = Field(default_factory=Resources)
    ports: list[Port] = Field(default_factory=list)
    health_check: HealthCheck | None = None
    stop_grace_period: Seconds = Field(10, description="SIGTERM, then SIGKILL after this many seconds.")
    labels: dict[str, str] = Field(default_factory=dict)
    restart: RestartBackoff = Field(default_factory=RestartBackoff)
    strategy: Strategy = Field(default_factory=Strategy)
    domains: list[Annotated[str, Field(pattern=DOMAIN, max_length=253)]] = Field(
        default_factory=list, description="Custom host names routed to the app's first HTTP port."
    )
    redirect_to_https: bool = Field(False, description="Answer plain HTTP requests with a redirect to HTTPS.")
    alarms: list[AlarmSpec] = Field(
        default_factory=list, description="Metric alarms on this app (docs/alarms-and-autoscaling.md)."
    )
    log_alarms: list[LogAlarmSpec] = Field(
        default_factory=list,
        description="Keyword alarms on this app's log lines: ≥ threshold lines matching query within window s "
        "(docs/logs.md). Names unique together with `alarms`.",
    )
    scaling_policies: list[PolicySpec] = Field(default_factory=list, description="Scaling policies of this app.")

    @field_validator("env", mode="before")
    @classmethod
    def _env_values_as_text(cls, env: Any) -> Any:
        # YAML turns `PORT: 8080` into an int; a user means the text "8080".
        if isinstance(env, dict):
            return {k: _as_text(v) for k, v in env.items()}
        return env

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for key in env:
            if not _ENV_NAME.match(key):
                raise ValueError(f"'{key}' is not a valid variable name")
            if key.startswith(RESERVED_ENV_PREFIX):
                raise ValueError(f"'{key}': names starting with {RESERVED_ENV_PREFIX} are set by dkos")
        return env

    @field_validator("labels")
    @classmethod
    def _label_keys(cls, labels: dict[str, str]) -> dict[str, str]:
        for key in labels:
            if key.startswith(RESERVED_LABEL_PREFIX):
                raise ValueError(f"'{key}': keys starting with '{RESERVED_LABEL_PREFIX}' are set by dkos")
        return labels

    @field_validator("domains", mode="before")
    @classmethod
    def _lower_domains(cls, domains: Any) -> Any:
        return (
            [d.lower().rstrip(".") if isinstance(d, str) else d for d in domains]
            if isinstance(domains, list)
            else domains
        )

    @field_validator("domains")
    @classmethod
    def _unique_domains(cls, domains: list[str]) -> list[str]:
        if len(set(domains)) != len(domains):
            raise ValueError("each domain may be listed once")
        return domains

    @field_validator("ports")
    @classmethod
    def _unique_ports(cls, ports: list[Port]) -> list[Port]:
        names = [p.name for p in ports]
        if len(set(names)) != len(names):
            raise ValueError("port names must be unique")
        numbers = [p.container_port for p in ports]
        if len(set(numbers)) != len(numbers):
            raise ValueError("container ports must be unique")
        return ports

    @model_validator(mode="after")
    def _unique_alarms_and_policies(self) -> Self:
        # Metric and log alarms share one namespace (the project's alarms, which policies link by name).
        seen: set[str] = set()
        for where, alarm in self.declared_alarms():
            if alarm.name in seen:
                raise ValueError(f"{where}.name: '{alarm.name}' is declared twice (alarms and log_alarms share names)")
            seen.add(alarm.name)
        names = [p.name for p in self.scaling_policies]
        if len(set(names)) != len(names):
            raise ValueError("scaling_policies: names must be unique")
        return self

    def declared_alarms(self) -> list[tuple[str, NamedAlarm]]:
        """Every declared alarm, metric ones first, with where it sits in the spec (`log_alarms.0`)."""
        return [(f"alarms.{i}", a) for i, a in enumerate(self.alarms)] + [
            (f"log_alarms.{i}", a) for i, a in enumerate(self.log_alarms)
        ]

    def alarm_names(self) -> set[str]:
        """The names of every alarm the spec declares, metric and log."""
        return {alarm.name for _, alarm in self.declared_alarms()}

    @model_validator(mode="after")
    def _domains_need_http(self) -> Self:
        if (self.domains or self.redirect_to_https) and self.http_port() is None:
            raise ValueError("ports: domains and redirect_to_https need an http port")
        return self

    def http_port(self) -> Port | None:
        """The port the app's host names route to: its first HTTP port."""
        return next((p for p in self.ports if p.protocol is Protocol.HTTP), None)

    @model_validator(mode="after")
    def _health_check_port(self) -> Self:
        check = self.health_check
        if check is None or check.type is HealthCheckType.COMMAND:
            return self
        if not self.ports:
            raise ValueError(f"ports: a {check.type.value} health check needs at least one port")
        if check.port is not None and check.port not in {p.name for p in self.ports}:
            raise ValueError(f"health_check.port: must name one of the app's ports, not '{check.port}'")
        return self

    def checked_port(self) -> Port | None:
        """The port the health check probes (its named port, else the first)."""
        if self.health_check is None or self.health_check.type is HealthCheckType.COMMAND:
            return None
        wanted = self.health_check.port
        return next((p for p in self.ports if wanted is None or p.name == wanted), None)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


_PATTERN_RULES = {
    DNS_LABEL: _DNS_LABEL_RULE,
    DOMAIN: "must be a host name such as news.example.com (lowercase letters, digits, '-' and '.')",
}
_FIELD_IN_MESSAGE = re.compile(r"^([a-z_][a-z0-9_.]*): (.+)$", re.S)
"""Cross-field validators say `field: rule`, so the problem names the field, not the model."""

_RULES = {
    "missing": "is required",
    "extra_forbidden": "is not a known field",
    "greater_than_equal": "must be ≥ {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be ≤ {le}",
    "less_than": "must be < {lt}",
    "string_too_short": "must not be empty",
    "too_short": "must not be empty",
    "string_too_long": "must be at most {max_length} characters",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "string_type": "must be text",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "enum": "must be one of {expected}",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
}


def _problem(error: Any) -> FieldProblem:
    loc = ".".join(str(part) for part in error["loc"])
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "string_pattern_mismatch":
        rule = _PATTERN_RULES.get(ctx.get("pattern", ""), f"must match {ctx.get('pattern')}")
    elif kind in _RULES:
        rule = _RULES[kind].format(**ctx)
    else:
        rule = str(error["msg"]).removeprefix("Value error, ")
        inner = _FIELD_IN_MESSAGE.match(rule)
        if inner:
            loc = f"{loc}.{inner.group(1)}" if loc else inner.group(1)
            rule = inner.group(2)
    return FieldProblem(field=loc or "spec", rule=rule)


def validate(data: Any) -> AppSpec:
    """An `AppSpec` from parsed data, or `InvalidInput` listing every broken rule."""
    if not isinstance(data, dict):
        raise InvalidInput([FieldProblem("spec", "must be a mapping of fields")])
    try:
        return AppSpec.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput([_problem(e) for e in exc.errors()]) from exc


def parse(text: str | bytes) -> AppSpec:
    """An `AppSpec` from YAML or JSON text (JSON is YAML, so one parser serves both)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput([FieldProblem("spec", f"is not valid YAML or JSON: {exc}")]) from exc
    return validate(data)
