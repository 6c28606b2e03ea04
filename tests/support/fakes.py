"""In-memory stand-ins for what the domain's loops drive: a clock and an instant cluster."""

from __future__ import annotations

from control_plane.ports.cluster import ReplicaPhase, ReplicaSpec, ReplicaState

START = 1000.0


class FakeClock:
    """A clock the test moves by hand (`clock.now += 5`)."""

    def __init__(self, start: float = START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class InstantCluster:
    """Replicas exist (READY) exactly as scaled: the cluster side of the loop, in memory."""

    name = "instant"

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def scale(self, spec: ReplicaSpec, replicas: int) -> None:
        self.counts[spec.deployment_id] = replicas

    def replicas(self, deployment_id: str) -> list[ReplicaState]:
        return [
            ReplicaState(f"{deployment_id}-{i}", deployment_id, f"http://r{i}", ReplicaPhase.READY)
            for i in range(self.counts.get(deployment_id, 0))
        ]

    def logs(self, deployment_id: str, *, tail: int = 200) -> list[str]:
        return []

    def close(self) -> None:
        self.counts.clear()
