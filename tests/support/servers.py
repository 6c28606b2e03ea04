"""Loopback servers for tests: a free port, and uvicorn serving an ASGI app in a thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import uvicorn

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A port that was free on ``host`` a moment ago (the OS picked it for a closed socket)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class UvicornThread:
    """uvicorn serving ``app`` on loopback in a daemon thread.

    ``start()`` returns once uvicorn accepts connections (lifespan startup included when it is
    on) and raises ``RuntimeError`` if it does not within ``start_timeout`` or its thread dies.
    Also a context manager: ``with UvicornThread(app) as server: httpx.get(server.url)``.
    """

    def __init__(
        self,
        app: Any,
        *,
        port: int | None = None,
        host: str = LOOPBACK,
        log_level: str = "warning",
        lifespan: Literal["auto", "on", "off"] = "auto",
        start_timeout: float = 30.0,
        stop_timeout: float = 30.0,
        name: str = "test server",
    ) -> None:
        self.app = app
        self.host = host
        self.port = free_port(host) if port is None else port
        self.url = f"http://{host}:{self.port}"
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._name = name
        config = uvicorn.Config(
            app, host=host, port=self.port, log_level=log_level, lifespan=lifespan
        )
        self._server = uvicorn.Server(config)
        self._exit_code: object = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        # uvicorn calls sys.exit when startup fails (e.g. the port is taken); keep the code for
        # start()'s error instead of letting the thread die with an unhandled SystemExit.
        try:
            self._server.run()
        except SystemExit as exc:
            self._exit_code = exc.code

    @property
    def started(self) -> bool:
        return bool(self._server.started)

    def start(self) -> UvicornThread:
        self._thread.start()
        deadline = time.monotonic() + self._start_timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                exited = "" if self._exit_code is None else f" (uvicorn exited {self._exit_code})"
                raise RuntimeError(f"{self._name} did not start on {self.url}{exited}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for its thread; a second call does nothing."""
        if not self._thread.is_alive():
            return
        self._server.should_exit = True
        self._thread.join(timeout=self._stop_timeout)

    def __enter__(self) -> UvicornThread:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


@contextmanager
def serve(
    app: Any, *, log_level: str = "error", start_timeout: float = 15.0, stop_timeout: float = 10.0
) -> Iterator[str]:
    """Serve ``app`` on a free loopback port for the ``with`` block; yields its base URL."""
    with UvicornThread(
        app, log_level=log_level, start_timeout=start_timeout, stop_timeout=stop_timeout
    ) as server:
        yield server.url
