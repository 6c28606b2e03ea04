"""A replica keeps an idle connection open longer than the gateway pools it.

If the replica closed first (uvicorn's default is 5 s), a request the gateway sent on the
pooled connection at that instant would die with a reset: an intermittent 502 about 5 s after a
replica's previous request (seen in the README test before this was fixed).
"""

from __future__ import annotations

import http.client
import time
from pathlib import Path

import pytest

from gpu_nodes.keepalive import GATEWAY_POOL_IDLE_S, REPLICA_KEEP_ALIVE_S
from gpu_nodes.model_server.testing import ModelServerProcess

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]
IDLE_S = 6.0  # past uvicorn's default keep-alive of 5 s


def test_gateway_pool_closes_before_the_replica() -> None:
    assert GATEWAY_POOL_IDLE_S < REPLICA_KEEP_ALIVE_S


def test_idle_connection_survives_past_five_seconds(tmp_path: Path) -> None:
    server = ModelServerProcess(REPO_ROOT / "examples" / "hello", log_path=tmp_path / "log")
    with server:
        server.wait_live()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            conn.request("GET", "/")
            assert conn.getresponse().read() is not None
            first_socket = conn.sock
            time.sleep(IDLE_S)
            # Same connection after the idle time: still open and served (a server that had
            # closed it would answer with a disconnect here).
            conn.request("GET", "/")
            response = conn.getresponse()
            response.read()
            assert response.status == 200 and conn.sock is first_socket
        finally:
            conn.close()
