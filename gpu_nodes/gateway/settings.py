"""Gateway settings, built once (CLI flags / caller) and passed to ``create_gateway_app``."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class GatewaySettings:
    control_plane_url: str
    internal_token: str | None = None
    # Requests larger than this are refused with 413 (Content-Length and while reading).
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # Host-based routing: ``model-{id}.{domain}``.
    domain: str = "plinth.localhost"
    # Last good routing table is written here, and read at start when the control plane is down.
    cache_file: Path | None = None
    poll_interval_s: float = 1.0
    # Faster polling while requests are parked, so they start soon after a replica is ready.
    parked_poll_interval_s: float = 0.2
    # Parking is bounded per deployment, in time and in length; beyond either bound the gateway
    # answers 503 with ``Retry-After: park_retry_after_s`` (docs/autoscaling.md).
    park_timeout_s: float = 60.0
    max_parked_requests: int = 1000
    park_retry_after_s: int = 5
    control_plane_timeout_s: float = 5.0
    connect_timeout_s: float = 5.0
    # Time allowed between bytes from a replica (predict calls and streams can be slow).
    read_timeout_s: float = 600.0
    # Responses up to this size with a Content-Length are relayed in one piece.
    buffered_response_bytes: int = 1024 * 1024
    # Load reports for the autoscaler (POST /v1/load_reports): how often, and this gateway's
    # name in them (reports of several gateways add up; a restart is a new gateway).
    load_report_interval_s: float = 1.0
    gateway_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    # Multi-cluster: the cluster this gateway serves (its replicas, its heartbeats); None
    # for a single cluster. Requests it cannot serve go to the nearest cluster's gateway.
    cluster_id: str | None = None
    heartbeat_interval_s: float = 1.0
    # A request is forwarded between cluster gateways at most this many times.
    max_hops: int = 2

    def __post_init__(self) -> None:
        if not self.park_timeout_s >= 0:  # also rejects NaN
            raise ValueError(f"park_timeout_s={self.park_timeout_s!r} must be >= 0 (seconds)")
        if self.max_parked_requests < 0:
            raise ValueError(f"max_parked_requests={self.max_parked_requests!r} must be >= 0")
        if self.park_retry_after_s < 0:
            raise ValueError(f"park_retry_after_s={self.park_retry_after_s!r} must be >= 0")

    @property
    def control_plane_base(self) -> str:
        return self.control_plane_url.rstrip("/")

    @property
    def control_plane_headers(self) -> dict[str, str]:
        """Sent on every call to the control plane (routing table, wake)."""
        return {"Authorization": f"Bearer {self.internal_token}"} if self.internal_token else {}
