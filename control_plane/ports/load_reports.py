"""Load-report store port: the sliding window of gateway load reports per deployment.

Gateways report each deployment's load about once a second; the autoscaler reads the reports
of the last ``autoscaling_window`` seconds. The window lives in the metadata store's backend,
so it survives a control-plane restart and is shared when the control plane is a Lambda.
Every report carries an expiry: an expired report is never returned, and the backend deletes
it on its own schedule (SQLite on write, DynamoDB through its TTL attribute).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class StoredLoadReport:
    gateway_id: str
    at: float  # the gateway's timestamp, epoch seconds
    value: dict[str, Any]  # the report's counts (JSON), as the domain wrote them


class LoadReportStore(Protocol):
    def add(
        self,
        deployment_key: str,
        gateway_id: str,
        at: float,
        value: dict[str, Any],
        *,
        expires_at: float,
    ) -> None:
        """Store one report; the same gateway and ``at`` again replaces it (a retried send)."""
        ...

    def recent(self, deployment_key: str, *, since: float, now: float) -> list[StoredLoadReport]:
        """The deployment's reports with ``at >= since`` that have not expired at ``now``,
        oldest first."""
        ...

    def close(self) -> None: ...
