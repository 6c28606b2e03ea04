"""The async backlog: which async requests are QUEUED for each deployment, countable cheaply.

Queued async work is load for the autoscaler (a deep queue scales its deployment up, and wakes
it at zero), which counts it on every reconciler tick. The requests themselves are keyed by
request id (``async_requests``), so counting one deployment's would scan every request. Each
QUEUED request therefore also has an entry in its deployment's own table
(``async_queued#<model>/<deployment>``, key = request id): one DynamoDB partition per
deployment, read with a Query; on SQLite the primary key's index.

``AsyncRequestService`` adds the entry when it queues a request and removes it when the
request leaves QUEUED (claimed, canceled, expired). A process that dies between the request's
write and the entry's leaves a stale entry: it carries the request's queue deadline, after
which it is not counted (and is deleted by the next count), so a leak is bounded.
"""

from __future__ import annotations

from control_plane.ports.store import MetadataStore

TABLE_PREFIX = "async_queued#"


def table(model_id: str, deployment_id: str) -> str:
    return f"{TABLE_PREFIX}{model_id}/{deployment_id}"


class AsyncBacklog:
    """Entries of QUEUED async requests, one table per deployment."""

    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    def add(self, model_id: str, deployment_id: str, request_id: str, deadline: float) -> None:
        entry = {"queue_deadline": deadline}
        self._store.put(table(model_id, deployment_id), request_id, entry)

    def remove(self, model_id: str, deployment_id: str, request_id: str) -> None:
        self._store.delete(table(model_id, deployment_id), request_id)

    def count(self, model_id: str, deployment_id: str, now: float) -> int:
        """QUEUED requests of the deployment whose queue deadline has not passed; entries past
        it (left by a process that died mid-change, or expired unclaimed) are deleted."""
        name = table(model_id, deployment_id)
        queued = 0
        for item in self._store.scan(name):
            if now < float(item.value.get("queue_deadline", 0.0)):
                queued += 1
            else:
                self._store.delete(name, item.key)
        return queued
