"""A lean HTTP/1.1 client for the gateway -> replica hop: a keep-alive pool and httptools' parser.

Why not aiohttp (or httpx): once the ASGI router took FastAPI off the hot path, aiohttp's request
machinery (session, request and response objects, header multidicts, timers, tracing hooks) was
about half of the gateway's CPU per request. The hop is narrow enough for a small client: plain
HTTP/1.1 to a replica URL from the routing table, one request at a time per pooled connection,
the body sent whole, the answer read whole or relayed chunk by chunk. The response is parsed by
httptools (llhttp, the parser uvicorn already uses for requests), which also undoes chunked
transfer encoding; ``Content-Encoding`` is left alone, so bytes pass through as the replica sent
them.

Failures come in two kinds, because the proxy treats them differently: ``UpstreamConnectError``
(nothing was sent: safe to try another replica) and ``UpstreamFailure`` (sent, then the
connection broke, the parser choked or ``read_timeout_s`` passed without a byte; its subclass
``UpstreamClosedBeforeAnswer`` is a connection closed before any response byte, which the proxy
retries on another cluster's gateway). A connection
is reused only after a complete response the replica agreed to keep alive; anything else
(cancelled, failed, half read) closes it. Everything runs on the event loop: no locks.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from typing import Any
from urllib.parse import quote, urlsplit

import httptools

# A streamed response stops reading from the replica while this much waits for the client.
_PAUSE_BYTES = 256 * 1024
_RESUME_BYTES = 64 * 1024
# Most idle connections kept per replica; more are closed when released.
_MAX_IDLE_PER_REPLICA = 256
# Most requests in flight to replicas at once (each holds a connection, so a file descriptor);
# more wait for one to end. The same bound aiohttp's pool had here.
MAX_ACTIVE_CONNECTIONS = 1000
# Never forwarded: what this client writes itself, and ``expect`` (the body is sent at once, so
# a ``100 Continue`` would only be one more response to skip).
_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "expect"})
# Characters a decoded path may keep as they are when it becomes a request target again.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


class UpstreamConnectError(Exception):
    """No connection to the replica (refused, unreachable, timed out): nothing was sent."""


class UpstreamFailure(Exception):
    """The request was sent, then the exchange failed (closed, malformed, timed out)."""


class UpstreamTimeout(UpstreamFailure):
    """No byte from the replica for ``read_timeout_s``."""


class UpstreamClosedBeforeAnswer(UpstreamFailure):
    """The connection closed (or was reset) after the request was sent, before any response
    byte: the peer went away. Forwarding to another cluster's gateway retries on this."""


@functools.lru_cache(maxsize=1024)
def _address(url: str) -> tuple[str, int, bytes, str]:
    """``http://10.0.0.5:8080`` -> (host, port, Host header value, path prefix); replica URLs
    are plain HTTP (pod or loopback addresses)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise UpstreamConnectError(f"replica URL {url!r} is not http://host[:port]")
    prefix = parts.path.rstrip("/")
    return parts.hostname, parts.port or 80, parts.netloc.encode("latin-1"), prefix


def _request_target(prefix: str, path: str, query: bytes) -> bytes:
    """The request line's target: the (decoded) path quoted again, the raw query as it came."""
    target = quote(prefix + path, safe=_PATH_SAFE).encode("latin-1")
    return target + b"?" + query if query else target


class UpstreamResponse:
    """One response, read whole (``read``) or chunk by chunk (``next_chunk``); ``release`` ends
    it (its connection goes back to the pool only when the response was complete)."""

    def __init__(self, connection: _Connection, read_timeout_s: float, head_only: bool) -> None:
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.content_length: int | None = None
        self._connection = connection
        self._read_timeout_s = read_timeout_s
        self._head_only = head_only
        self._chunked = False
        self._head_done = False
        self._done = False
        self._keep_alive = False
        self._error: UpstreamFailure | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._released = False

    # ---- reading (the proxy) ---------------------------------------------------------------
    async def read(self) -> bytes:
        """The whole body."""
        while not self._done:
            self._raise_error()
            await self._wait()
        self._raise_error()
        body = b"".join(self._chunks)
        self._chunks.clear()
        return body

    async def next_chunk(self) -> bytes | None:
        """The next piece of the body as it arrived; None once it ended."""
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._paused and self._buffered <= _RESUME_BYTES:
                    self._paused = False
                    self._connection.resume_reading()
                return chunk
            self._raise_error()
            if self._done:
                return None
            await self._wait()

    def release(self) -> None:
        """Done with this response: keep the connection for the next request, or close it."""
        if self._released:
            return
        self._released = True
        reusable = self._done and self._keep_alive and self._error is None
        self._connection.finish(reusable)

    async def wait_head(self) -> None:
        while not self._head_done:
            self._raise_error()
            await self._wait()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    async def _wait(self) -> None:
        """Until the connection has news (bytes, the end, a failure), at most the read timeout."""
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(self._read_timeout_s, self._time_out, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _time_out(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            self._error = UpstreamTimeout(f"no byte from the replica in {self._read_timeout_s:g}s")
            waiter.set_result(None)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # ---- events (the connection) -----------------------------------------------------------
    def on_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        self.raw_headers = headers
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"content-length" and value.strip().isdigit():
                self.content_length = int(value)
            elif lowered == b"transfer-encoding" and b"chunked" in value.lower():
                self._chunked = True
        self._head_done = True
        if self._head_only:  # a HEAD answer has no body, whatever its headers say
            self._done = True
        self._wake()

    def on_body(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if not self._paused and self._buffered > _PAUSE_BYTES:
            self._paused = True
            self._connection.pause_reading()
        self._wake()

    def on_complete(self, keep_alive: bool) -> None:
        self._done = True
        self._keep_alive = keep_alive and not self._head_only
        self._wake()

    def on_failure(self, error: UpstreamFailure) -> None:
        if not self._done and self._error is None:
            self._error = error
        self._wake()

    def on_closed(self) -> None:
        """The replica closed the connection: the end of a body read until close, or a failure."""
        if self._done:
            return
        if self._head_done and self.content_length is None and not self._chunked:
            self._done = True  # a body delimited by the connection's end (HTTP/1.0 style)
            self._keep_alive = False
            self._wake()
            return
        if self._head_done:
            self.on_failure(UpstreamFailure("the replica closed the connection mid-response"))
        else:
            self.on_failure(
                UpstreamClosedBeforeAnswer("the replica closed the connection before answering")
            )


class _Connection(asyncio.Protocol):
    """One keep-alive connection; httptools calls the ``on_*`` methods while parsing."""

    def __init__(self, pool: UpstreamPool, key: tuple[str, int]) -> None:
        self._pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.response: UpstreamResponse | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._parser = httptools.HttpResponseParser(self)

    # ---- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.response is None:  # bytes nobody asked for: not a connection to trust again
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self.response.on_failure(UpstreamFailure(f"malformed response from the replica: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.response is not None:
            self.response.on_closed()

    # ---- httptools callbacks ---------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        headers, self._headers = self._headers, []
        if 100 <= status < 200:  # informational (we never ask for one): the real answer follows
            return
        if self.response is not None:
            self.response.on_head(status, headers)

    def on_body(self, body: bytes) -> None:
        if self.response is not None:
            self.response.on_body(body)

    def on_message_complete(self) -> None:
        if self.response is not None and self.response.status:
            self.response.on_complete(self._parser.should_keep_alive())

    # ---- the pool's side ---------------------------------------------------------------------
    def send(self, request: bytes, response: UpstreamResponse) -> None:
        self.response = response
        if self.transport is None:
            raise UpstreamFailure("the connection to the replica is not open")
        self.transport.write(request)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def finish(self, reusable: bool) -> None:
        self.response = None
        self._pool.finished(self, reusable)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class UpstreamPool:
    """Keep-alive connections per replica address; idle ones are dropped after ``idle_s`` (see
    ``gpu_nodes.keepalive``: the gateway must give up on a connection before the replica)."""

    def __init__(
        self,
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
        idle_s: float,
        max_active: int = MAX_ACTIVE_CONNECTIONS,
    ) -> None:
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._idle_s = idle_s
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._active = asyncio.Semaphore(max_active)

    async def request(
        self,
        url: str,
        method: str,
        path: str,
        query: bytes,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> UpstreamResponse:
        """Send the request to the replica at ``url`` (its base URL; ``path`` decoded, ``query``
        raw); returns once the response head arrived. Cancelled or failed, the connection is
        closed (the replica sees the client go)."""
        host, port, host_header, prefix = _address(url)
        target = _request_target(prefix, path, query)
        await self._active.acquire()  # given back by ``finished`` (the response's release)
        try:
            connection = self._idle_connection((host, port)) or await self._connect(host, port)
        except BaseException:
            self._active.release()
            raise
        lines = [method.encode("latin-1"), b" ", target, b" HTTP/1.1\r\nhost: ", host_header]
        for name, value in headers:
            if name not in _OWN_HEADERS:
                lines += [b"\r\n", name.encode("latin-1"), b": ", value.encode("latin-1")]
        lines += [b"\r\ncontent-length: ", str(len(body)).encode(), b"\r\n\r\n", body]
        response = UpstreamResponse(connection, self._read_timeout_s, head_only=method == "HEAD")
        try:
            connection.send(b"".join(lines), response)
            await response.wait_head()
        except BaseException:
            response.release()
            raise
        return response

    def _idle_connection(self, key: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        oldest_usable = time.monotonic() - self._idle_s
        while idle:
            connection = idle.pop()
            if not connection.closed and connection.idle_since > oldest_usable:
                return connection
            connection.close()
        return None

    async def _connect(self, host: str, port: int) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self, (host, port)), host, port
                )
        except (OSError, TimeoutError) as exc:
            raise UpstreamConnectError(f"{type(exc).__name__}: {exc}") from exc
        return connection

    def finished(self, connection: _Connection, reusable: bool) -> None:
        """A response on ``connection`` was released: reuse the connection or close it."""
        self._active.release()
        if reusable and not connection.closed:
            self._put_back(connection)
        else:
            connection.close()

    def _put_back(self, connection: _Connection) -> None:
        idle = self._idle.setdefault(connection.key, [])
        now = time.monotonic()
        # The oldest idle connections sit at the bottom of the stack, never popped while the
        # newer ones serve: drop the expired or closed ones here, one at a time.
        if idle and (idle[0].closed or idle[0].idle_since <= now - self._idle_s):
            idle.pop(0).close()
        if len(idle) >= _MAX_IDLE_PER_REPLICA:
            connection.close()
            return
        connection.idle_since = now
        idle.append(connection)

    def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
