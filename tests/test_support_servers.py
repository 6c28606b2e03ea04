"""The shared test servers (tests/support) behave as the suites that use them assume."""

from __future__ import annotations

import socket

import httpx
import pytest
from fastapi import FastAPI

from tests.support.servers import UvicornThread, free_port, serve


def _hello_app() -> FastAPI:
    app = FastAPI()
    app.get("/hello")(lambda: {"hello": "world"})
    return app


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_uvicorn_thread_serves_until_stopped() -> None:
    with UvicornThread(_hello_app()) as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert httpx.get(f"{server.url}/hello").json() == {"hello": "world"}
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/hello", timeout=2)


def test_uvicorn_thread_restarts_on_the_same_port() -> None:
    first = UvicornThread(_hello_app()).start()
    first.stop()
    with UvicornThread(_hello_app(), port=first.port) as second:
        assert httpx.get(f"{second.url}/hello").status_code == 200


def test_start_fails_when_the_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        with pytest.raises(RuntimeError, match=r"did not start.*uvicorn exited 3"):
            UvicornThread(_hello_app(), port=port, log_level="critical").start()


def test_serve_yields_the_url() -> None:
    with serve(_hello_app()) as url:
        assert httpx.get(f"{url}/hello").status_code == 200
