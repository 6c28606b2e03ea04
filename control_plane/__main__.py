"""``python -m control_plane``: serve the control plane with uvicorn (settings from PLINTH_*)."""

from __future__ import annotations

import logging

import uvicorn

from control_plane.app import create_app
from control_plane.settings import Settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # The local driver health-checks every replica several times a second: keep that quiet.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = Settings.from_env()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


if __name__ == "__main__":
    main()
