"""A replica keeps an idle connection open longer than the gateway pools it.

If the replica closed first (uvicorn's default is 5 s), a request the gateway sent on the
pooled connection at that instant would die with a reset: an intermittent 502 about 5 s after a
replica's previous request (seen in the README test before this was fixed).
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from gpu_nodes.keepalive import GATEWAY_POOL_IDLE_S, REPLICA_KEEP_ALIVE_S
from gpu_nodes.model_server.testing import ModelServerProcess

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]
IDLE_S = 6.0  # past uvicorn's default keep-alive of 5 s


def _get(sock: socket.socket, port: int) -> bytes:
    request = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    sock.sendall(request)
    return sock.recv(65536)


def test_gateway_pool_closes_before_the_replica() -> None:
    assert GATEWAY_POOL_IDLE_S < REPLICA_KEEP_ALIVE_S


def test_idle_connection_survives_past_five_seconds(tmp_path: Path) -> None:
    server = ModelServerProcess(REPO_ROOT / "examples" / "hello", log_path=tmp_path / "log")
    with server:
        server.wait_live()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            assert _get(sock, server.port).startswith(b"HTTP/1.1 200")
            time.sleep(IDLE_S)
            # Same connection, after the idle time: still served, not closed under us.
            assert _get(sock, server.port).startswith(b"HTTP/1.1 200")
