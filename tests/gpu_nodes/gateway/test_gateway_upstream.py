"""The gateway's replica client (``gpu_nodes.gateway.upstream``) against scripted replicas: real
TCP servers on loopback that record the raw request bytes and answer raw HTTP/1.1 bytes, so
the cases a well-behaved server never shows (chunked, body until close, a close mid-answer, no
answer at all, a half-read response) are exercised exactly."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from gpu_nodes.gateway.upstream import (
    UpstreamConnectError,
    UpstreamFailure,
    UpstreamPool,
    UpstreamTimeout,
)
from gpu_nodes.model_server.testing import free_port

# Writes the answer to one request (given its raw head) and says whether to keep the connection.
Answer = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]
OK = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ok":true}'


class ScriptedReplica:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> ScriptedReplica:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                self.requests.append(head + await reader.readexactly(length))
                keep = await self.answer(head, writer)
                await writer.drain()
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


def answering(*parts: bytes, keep: bool = True, pause_s: float = 0.0) -> Answer:
    async def answer(head: bytes, writer: asyncio.StreamWriter) -> bool:
        for part in parts:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(pause_s)
        return keep

    return answer


def pool(read_timeout_s: float = 5.0) -> UpstreamPool:
    return UpstreamPool(connect_timeout_s=2.0, read_timeout_s=read_timeout_s, idle_s=30.0)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(20):
            await scenario()

    asyncio.run(bounded())


def test_keep_alive_reuses_one_connection_and_sends_a_clean_request() -> None:
    cookie = b"HTTP/1.1 200 OK\r\nset-cookie: s=1\r\ncontent-length: 2\r\n\r\nhi"

    async def scenario() -> None:
        async with ScriptedReplica(answering(cookie)) as replica:
            client = pool()
            headers = [("x-request-id", "abc"), ("expect", "100-continue"), ("cookie", "c=2")]
            for body in (b'{"a":1}', b"{}"):
                response = await client.request(replica.url, "POST", "/p", b"q=1", headers, body)
                assert (response.status, await response.read()) == (200, b"hi")
                assert (b"set-cookie", b"s=1") in response.raw_headers
                response.release()
            client.close()
        assert replica.connections == 1
        first, second = replica.requests
        assert first.startswith(b"POST /p?q=1 HTTP/1.1\r\nhost: 127.0.0.1:")
        assert b"x-request-id: abc\r\n" in first and first.endswith(b'\r\n\r\n{"a":1}')
        assert b"expect" not in first.lower()
        # The replica's cookie is never sent back; only the caller's own cookie header passes.
        assert second.lower().count(b"cookie") == 1 and b"cookie: c=2" in second

    run(scenario)


def test_chunked_answer_is_relayed_chunk_by_chunk_without_the_framing() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
        b"6\r\nfirst\n\r\n",
        b"7\r\nsecond\n\r\n0\r\n\r\n",
    )

    async def scenario() -> None:
        async with ScriptedReplica(answering(*chunked, pause_s=0.05)) as replica:
            client = pool()
            response = await client.request(replica.url, "POST", "/s", b"", [], b"{}")
            assert response.content_length is None
            chunks = []
            while (chunk := await response.next_chunk()) is not None:
                chunks.append(chunk)
            assert b"".join(chunks) == b"first\nsecond\n" and len(chunks) >= 2
            response.release()
            again = await client.request(replica.url, "POST", "/s", b"", [], b"{}")
            assert await again.read() == b"first\nsecond\n"
            client.close()
        assert replica.connections == 1  # a complete chunked answer keeps the connection

    run(scenario)


def test_body_delimited_by_the_close_is_whole_and_the_connection_not_reused() -> None:
    until_close = b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it"

    async def scenario() -> None:
        async with ScriptedReplica(answering(until_close, keep=False)) as replica:
            client = pool()
            for _ in range(2):
                response = await client.request(replica.url, "GET", "/", b"", [], b"")
                assert await response.read() == b"all of it"
                response.release()
            client.close()
        assert replica.connections == 2

    run(scenario)


@pytest.mark.parametrize(
    ("parts", "fails_at"),
    [
        ((), "head"),  # closed before answering
        ((b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",), "body"),  # closed mid-answer
        ((b"NOT HTTP AT ALL\r\n\r\n",), "head"),  # malformed
    ],
)
def test_a_broken_answer_is_an_upstream_failure(parts: tuple[bytes, ...], fails_at: str) -> None:
    async def scenario() -> None:
        async with ScriptedReplica(answering(*parts, keep=False)) as replica:
            client = pool()
            if fails_at == "head":
                with pytest.raises(UpstreamFailure):
                    await client.request(replica.url, "POST", "/", b"", [], b"{}")
            else:
                response = await client.request(replica.url, "POST", "/", b"", [], b"{}")
                with pytest.raises(UpstreamFailure, match="mid-response"):
                    await response.read()
                response.release()
            client.close()

    run(scenario)


def test_silence_past_the_read_timeout_is_a_timeout() -> None:
    async def silent(head: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(5)
        return False

    async def scenario() -> None:
        async with ScriptedReplica(silent) as replica:
            client = pool(read_timeout_s=0.2)
            with pytest.raises(UpstreamTimeout):
                await client.request(replica.url, "POST", "/", b"", [], b"{}")
            client.close()

    run(scenario)


def test_nobody_listening_is_a_connect_error_and_a_bad_url_too() -> None:
    async def scenario() -> None:
        client = pool()
        with pytest.raises(UpstreamConnectError):
            await client.request(f"http://127.0.0.1:{free_port()}", "POST", "/", b"", [], b"")
        with pytest.raises(UpstreamConnectError, match="not http"):
            await client.request("ftp://127.0.0.1:21", "POST", "/", b"", [], b"")

    run(scenario)


def test_a_decoded_path_is_quoted_again_so_it_cannot_add_a_header() -> None:
    async def scenario() -> None:
        async with ScriptedReplica(answering(OK)) as replica:
            client = pool()
            path = "/v1/a b\r\nx-injected: 1"
            response = await client.request(replica.url + "/base/", "POST", path, b"", [], b"")
            assert response.status == 200
            response.release()
            client.close()
        (request,) = replica.requests
        assert request.startswith(b"POST /base/v1/a%20b%0D%0Ax-injected:%201 HTTP/1.1\r\n")
        assert b"\r\nx-injected" not in request

    run(scenario)


def test_head_answer_ends_at_its_headers_and_a_half_read_answer_closes_the_connection() -> None:
    async def scenario() -> None:
        head_answer = b"HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n"
        async with ScriptedReplica(answering(head_answer)) as replica:
            client = pool()
            response = await client.request(replica.url, "HEAD", "/", b"", [], b"")
            assert (response.content_length, await response.read()) == (5000, b"")
            response.release()
            # The 5000 bytes never come: a reused connection would hang; a new one is opened.
            second = await client.request(replica.url, "HEAD", "/", b"", [], b"")
            second.release()
            client.close()
        assert replica.connections == 2

    run(scenario)


def test_a_large_stream_read_slowly_arrives_whole() -> None:
    block = bytes(range(256)) * 256  # 64 KiB
    parts = [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"]
    parts += [b"%x\r\n" % len(block) + block + b"\r\n"] * 32  # 2 MiB, past the pause mark
    parts.append(b"0\r\n\r\n")

    async def scenario() -> None:
        async with ScriptedReplica(answering(*parts)) as replica:
            client = pool()
            response = await client.request(replica.url, "GET", "/", b"", [], b"")
            received = bytearray()
            while (chunk := await response.next_chunk()) is not None:
                received += chunk
                await asyncio.sleep(0.001)
            assert bytes(received) == block * 32
            response.release()
            client.close()
        assert replica.connections == 1

    run(scenario)


def test_requests_past_the_active_bound_wait_for_one_to_end() -> None:
    async def scenario() -> None:
        async with ScriptedReplica(answering(OK)) as replica:
            client = UpstreamPool(connect_timeout_s=2, read_timeout_s=5, idle_s=30, max_active=1)
            first = await client.request(replica.url, "POST", "/", b"", [], b"{}")
            second = asyncio.create_task(client.request(replica.url, "POST", "/", b"", [], b"{}"))
            await asyncio.sleep(0.1)
            assert not second.done()
            assert await first.read() == b'{"ok":true}'
            first.release()
            response = await second
            assert await response.read() == b'{"ok":true}'
            response.release()
            client.close()
        assert replica.connections == 1  # the second request took over the first's connection

    run(scenario)
