"""Replica choice: least outstanding requests among ready replicas; ties go round robin.

A replica that refused a connection is set aside for a few seconds (the routing table can lag
behind a crash), unless every ready replica is set aside. One instance per gateway, used only
from the event loop thread (no locks needed).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Collection, Sequence

from plinth.contracts.routing import ReplicaRoute


class ReplicaBalancer:
    def __init__(self, *, eject_seconds: float = 5.0) -> None:
        self._outstanding: defaultdict[str, int] = defaultdict(int)
        self._turn: defaultdict[str, int] = defaultdict(int)
        self._ejected_until: dict[str, float] = {}
        self._eject_seconds = eject_seconds

    def eject(self, url: str) -> None:
        """Avoid ``url`` for a while: it just failed to accept a connection."""
        self._ejected_until[url] = time.monotonic() + self._eject_seconds

    def _healthy(self, replicas: list[ReplicaRoute]) -> list[ReplicaRoute]:
        if not self._ejected_until:
            return replicas
        now = time.monotonic()
        for url in [u for u, until in self._ejected_until.items() if until <= now]:
            del self._ejected_until[url]
        healthy = [r for r in replicas if r.url not in self._ejected_until]
        return healthy or replicas

    def choose(
        self, deployment_id: str, replicas: Sequence[ReplicaRoute], exclude: Collection[str] = ()
    ) -> ReplicaRoute | None:
        ready = self._healthy([r for r in replicas if r.ready and r.url not in exclude])
        if not ready:
            return None
        fewest = min(self._outstanding[r.url] for r in ready)
        ties = [r for r in ready if self._outstanding[r.url] == fewest]
        turn = self._turn[deployment_id]
        self._turn[deployment_id] = turn + 1
        return ties[turn % len(ties)]

    def acquire(self, url: str) -> None:
        self._outstanding[url] += 1

    def release(self, url: str) -> None:
        remaining = self._outstanding[url] - 1
        if remaining > 0:
            self._outstanding[url] = remaining
        else:
            self._outstanding.pop(url, None)

    def outstanding(self, url: str) -> int:
        return self._outstanding.get(url, 0)
