"""What the API's routes need from the running server, handed over as one object."""

from __future__ import annotations

from dataclasses import dataclass

from dkos.alerts.engine import Alarms
from dkos.apps.store import AppStore
from dkos.autoscale.engine import Autoscaler
from dkos.core.events import EventBus
from dkos.core.settings import Settings
from dkos.iam.tokens import TokenStore
from dkos.lb.certs import CertificateStore
from dkos.lb.manager import LoadBalancer
from dkos.lb.uploads import UploadedCertificates
from dkos.logs.store import LogStore
from dkos.metrics.prometheus import DkosMetrics
from dkos.metrics.store import MetricsStore
from dkos.orchestration.instances import InstanceStore
from dkos.orchestration.reconciler import Reconciler
from dkos.orchestration.router import Router


@dataclass(frozen=True)
class Services:
    settings: Settings
    server_id: str
    apps: AppStore
    instances: InstanceStore
    tokens: TokenStore
    bus: EventBus
    reconciler: Reconciler
    router: Router
    balancer: LoadBalancer | None
    certificates: CertificateStore | None
    uploads: UploadedCertificates | None
    metrics: MetricsStore
    prom: DkosMetrics
    logs: LogStore | None = None
    alarms: Alarms | None = None
    autoscaler: Autoscaler | None = None
