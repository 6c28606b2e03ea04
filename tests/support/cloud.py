"""Cloud emulators on loopback: a moto server (AWS) and the GCS storage emulator."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.support.servers import LOOPBACK, free_port


@contextmanager
def moto_server(server: Any | None = None) -> Iterator[str]:
    """Run a moto server (a ``ThreadedMotoServer`` on a free loopback port unless ``server`` is
    given) for the ``with`` block; yields its endpoint URL."""
    if server is None:
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@contextmanager
def gcs_emulator() -> Iterator[str]:
    """Run the in-memory GCS storage emulator on a free loopback port; yields its URL.

    Clients find it through ``STORAGE_EMULATOR_HOST``, which the caller sets (with monkeypatch)
    for as long as it needs.
    """
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server(LOOPBACK, port, in_memory=True)
    server.start()
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.stop()
