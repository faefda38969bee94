"""What the task loops work with. The edge (app.runtime) builds it from the runtime it owns, so the
worker, callbacks, alerts and retention see only the collaborators and settings values they use."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from app.alerts.delivery import AlertSender
from app.db import Database
from app.files.service import FileStore
from app.generation.service import GenerationService
from app.net.ssrf import Networks


@dataclass(frozen=True)
class TaskDeps:
    db: Database
    generation: GenerationService
    files: FileStore  # blobs for retention, the URL signer for the task object of a callback
    # Callbacks go to addresses callers chose: a client of their own, and the networks an operator
    # allowed besides the public internet (GATEWAY_CALLBACK_ALLOW_NETWORKS).
    callback_http: httpx.AsyncClient
    callback_networks: Networks
    callback_retry_base_s: float
    public_url: str | None
    task_lease_s: float
    worker_poll_s: float
    worker_concurrency: int
    hold_timeout_s: float
    sweep_interval_s: float
    # Sends queued alerts to GATEWAY_ALERT_URL; None when it is unset (alerts are kept, not sent).
    alerts: AlertSender | None = None
