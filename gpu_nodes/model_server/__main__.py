"""``python -m gpu_nodes.model_server --model-dir DIR --port PORT [--host 127.0.0.1]``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import uvicorn

from gpu_nodes.keepalive import REPLICA_KEEP_ALIVE_S
from gpu_nodes.model_server.app import create_model_server_app
from gpu_nodes.model_server.exceptions import PackageError
from gpu_nodes.serving.logs import configure_process_logging
from plinth.contracts.replica_env import ReplicaVar


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    secrets_dir = os.environ.get(ReplicaVar.SECRETS_DIR)
    parser = argparse.ArgumentParser(prog="python -m gpu_nodes.model_server")
    parser.add_argument("--model-dir", required=True, type=Path, help="package directory")
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--secrets-dir",
        type=Path,
        default=Path(secrets_dir) if secrets_dir else None,
        help=f"directory with one file per secret (default: ${ReplicaVar.SECRETS_DIR})",
    )
    parser.add_argument("--log-level", default=os.environ.get(ReplicaVar.LOG_LEVEL, "INFO"))
    parser.add_argument(
        "--access-log", action="store_true", help="also log every HTTP request (uvicorn)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_process_logging(args.log_level)
    log = logging.getLogger("plinth.model_server")
    try:
        app = create_model_server_app(args.model_dir, secrets_dir=args.secrets_dir)
    except PackageError as exc:
        log.error("cannot serve %s: %s", args.model_dir, exc)
        return 2
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=args.access_log,
        timeout_graceful_shutdown=10,
        timeout_keep_alive=REPLICA_KEEP_ALIVE_S,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
