"""Send one request to the replica the picker chose and relay the answer without buffering.

The picker (``picker.py``) chooses the replica, parks the request while the deployment wakes,
and counts the replica's outstanding requests; the proxy ends each pick it got. A connection
error before anything was sent is retried once on another replica; a replica failing after the
response started drops the client connection (the client sees a broken stream, never a short
"complete" one).

The upstream client is ``upstream.py``'s small HTTP/1.1 pool: on this hot path httpx's pool
spent about a third of the gateway's CPU checking every pooled connection on each request, and
aiohttp, which replaced it, later about half (see that module).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gpu_nodes.gateway.exceptions import ClusterUnreachableError, UpstreamError
from gpu_nodes.gateway.picker import ReplicaPicker
from gpu_nodes.gateway.routing import Target
from gpu_nodes.gateway.settings import GatewaySettings
from gpu_nodes.gateway.upstream import (
    UpstreamClosedBeforeAnswer,
    UpstreamConnectError,
    UpstreamFailure,
    UpstreamPool,
    UpstreamResponse,
    UpstreamTimeout,
)
from gpu_nodes.keepalive import GATEWAY_POOL_IDLE_S
from plinth.contracts.routing import ReplicaRoute

log = logging.getLogger("plinth.gateway")

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Never passed to the model: the caller's API key, and what the client computes itself.
DROPPED_REQUEST_HEADERS = HOP_BY_HOP | {"host", "content-length", "authorization"}
# The gateway's own server adds these to every response; the replica's copies would repeat them.
DROPPED_RESPONSE_HEADERS = frozenset(name.encode() for name in HOP_BY_HOP | {"date", "server"})


@dataclass(frozen=True)
class UpstreamRequest:
    method: str
    path: str  # replica path, e.g. "/v1/models/model:predict"
    query: bytes
    headers: list[tuple[str, str]]
    body: bytes
    request_id: str


def forwardable_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    kept = []
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        if name not in DROPPED_REQUEST_HEADERS:
            kept.append((name, raw_value.decode("latin-1")))
    return kept


# Told about each replica failure: (target, kind), kind one of "unreachable", "failed",
# "mid_response" (the gateway's metrics count them).
UpstreamErrorHook = Callable[[Target, str], None]


def _ignore_error(target: Target, kind: str) -> None:
    pass


def _nothing() -> None:
    pass


class ReplicaProxy:
    def __init__(
        self,
        settings: GatewaySettings,
        picker: ReplicaPicker,
        on_upstream_error: UpstreamErrorHook = _ignore_error,
    ) -> None:
        self._settings = settings
        self._pool = UpstreamPool(
            connect_timeout_s=settings.connect_timeout_s,
            read_timeout_s=settings.read_timeout_s,
            idle_s=GATEWAY_POOL_IDLE_S,
        )
        self._picker = picker
        self._on_upstream_error = on_upstream_error

    async def close(self) -> None:
        self._pool.close()

    async def forward(
        self,
        target: Target,
        request: UpstreamRequest,
        elsewhere: Callable[[], bool] | None = None,
    ) -> Response:
        """Send to a replica of this gateway's (``elsewhere``: see ``ReplicaPicker.pick``)."""
        tried: set[str] = set()
        for attempt in (1, 2):
            if attempt == 1:
                replica = await self._picker.pick(target, elsewhere)
            else:
                replica = self._picker.pick_another(target, tried)
            tried.add(replica.url)
            try:
                upstream = await self._send(replica, request)
            except UpstreamConnectError as exc:
                self._picker.unreachable(replica)
                self._on_upstream_error(target, "unreachable")
                log.warning(
                    "request_id=%s replica %s unreachable (%s)%s",
                    request.request_id,
                    replica.id,
                    exc,
                    "; retrying on another replica" if attempt == 1 else "",
                )
                continue
            except UpstreamFailure as exc:
                self._picker.release(replica)
                self._on_upstream_error(target, "failed")
                raise UpstreamError(f"replica {replica.id} failed before answering: {exc}") from exc
            except BaseException:  # cancelled (the client went away): stop counting it
                self._picker.release(replica)
                raise
            release = self._release_callback(replica)
            return await self._relay(upstream, f"replica {replica.id}", target, request, release)
        raise UpstreamError(f"no replica of deployment {target.deployment_id} could be reached")

    async def forward_to_cluster(
        self, cluster_id: str, gateway_url: str, target: Target, request: UpstreamRequest
    ) -> Response:
        """Send the request (its full gateway path) to another cluster's gateway and relay.

        Raises ``ClusterUnreachableError`` when the connection failed or was dropped before any
        response (the caller tries another cluster): a cluster that dies with requests in
        flight loses none of them, at the price of at-least-once for those few (the
        ``x-request-id`` is the same on both tries)."""
        try:
            upstream = await self._send_to(gateway_url, request)
        except UpstreamConnectError as exc:
            self._on_upstream_error(target, "unreachable")
            raise ClusterUnreachableError(
                f"the gateway of cluster {cluster_id} is unreachable: {exc}"
            ) from exc
        except UpstreamClosedBeforeAnswer as exc:
            self._on_upstream_error(target, "unreachable")
            raise ClusterUnreachableError(
                f"the gateway of cluster {cluster_id} dropped the connection before answering"
            ) from exc
        except UpstreamTimeout as exc:  # slow, not gone: do not run it twice
            self._on_upstream_error(target, "failed")
            raise UpstreamError(f"the gateway of cluster {cluster_id} timed out") from exc
        except UpstreamFailure as exc:
            self._on_upstream_error(target, "failed")
            raise UpstreamError(
                f"the gateway of cluster {cluster_id} failed before answering: {exc}"
            ) from exc
        return await self._relay(upstream, f"cluster {cluster_id}", target, request, _nothing)

    def _release_callback(self, replica: ReplicaRoute) -> Callable[[], None]:
        return lambda: self._picker.release(replica)

    async def _send(self, replica: ReplicaRoute, request: UpstreamRequest) -> UpstreamResponse:
        return await self._send_to(replica.url, request)

    async def _send_to(self, base_url: str, request: UpstreamRequest) -> UpstreamResponse:
        return await self._pool.request(
            base_url, request.method, request.path, request.query, request.headers, request.body
        )

    async def _relay(
        self,
        upstream: UpstreamResponse,
        source: str,
        target: Target,
        request: UpstreamRequest,
        release: Callable[[], None],
    ) -> Response:
        headers = [
            (name, value)
            for name, value in upstream.raw_headers
            if name.lower() not in DROPPED_RESPONSE_HEADERS
        ]
        length = upstream.content_length
        if length is not None and length <= self._settings.buffered_response_bytes:
            try:
                body = await upstream.read()
            except UpstreamFailure as exc:
                self._on_upstream_error(target, "mid_response")
                raise UpstreamError(f"{source} failed mid-response: {exc}") from exc
            finally:
                upstream.release()
                release()
            response = Response(body, status_code=upstream.status)
            response.raw_headers = headers
            return response
        return RelayedStream(
            upstream,
            headers,
            on_close=release,
            on_failure=lambda: self._on_upstream_error(target, "mid_response"),
            label=f"request_id={request.request_id} {source}",
        )


class RelayedStream(Response):
    """Passes the replica's bytes through as they arrive; closes upstream on any ending."""

    def __init__(
        self,
        upstream: UpstreamResponse,
        headers: list[tuple[bytes, bytes]],
        *,
        on_close: Callable[[], None],
        on_failure: Callable[[], None],
        label: str,
    ) -> None:
        self.status_code = upstream.status
        self.background = None
        self.raw_headers = headers
        self._upstream = upstream
        self._on_close = on_close
        self._on_failure = on_failure
        self._label = label

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as group:

                async def pump() -> None:
                    await self._pump(send)
                    group.cancel_scope.cancel()

                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(pump)
                group.start_soon(watch_disconnect)
        finally:
            # Back to the pool when it was read to the end; closed when it was not.
            self._upstream.release()
            self._on_close()

    async def _pump(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        try:
            while (chunk := await self._upstream.next_chunk()) is not None:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except UpstreamFailure as exc:
            # Returning without the final message makes the server drop the connection.
            log.warning("%s failed mid-stream: %s", self._label, exc)
            self._on_failure()
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})
