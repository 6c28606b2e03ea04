"""Replica choice: least outstanding requests among ready replicas; ties go round robin.

One instance per gateway, used only from the event loop thread (no locks needed).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence

from gpu_nodes.gateway.routing import ReplicaRoute


class ReplicaBalancer:
    def __init__(self) -> None:
        self._outstanding: defaultdict[str, int] = defaultdict(int)
        self._turn: defaultdict[str, int] = defaultdict(int)

    def choose(
        self, deployment_id: str, replicas: Sequence[ReplicaRoute], exclude: Collection[str] = ()
    ) -> ReplicaRoute | None:
        ready = [r for r in replicas if r.ready and r.url not in exclude]
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
