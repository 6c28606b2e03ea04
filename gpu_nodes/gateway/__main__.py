"""``python -m gpu_nodes.gateway --control-plane-url URL --port PORT [options]``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import uvicorn

from gpu_nodes.gateway.app import create_gateway_app
from gpu_nodes.gateway.settings import DEFAULT_MAX_BODY_BYTES, GatewaySettings
from gpu_nodes.serving.logs import configure_process_logging


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gpu_nodes.gateway")
    parser.add_argument("--control-plane-url", required=True)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--internal-token",
        default=os.environ.get("PLINTH_INTERNAL_TOKEN"),
        help="token for GET /v1/routing and wake (default: $PLINTH_INTERNAL_TOKEN; prefer the"
        " variable: an argument is visible to every user of the host in ps)",
    )
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument("--domain", default="plinth.localhost")
    parser.add_argument("--cache-file", type=Path, default=None)
    parser.add_argument("--poll-interval", type=float, default=1.0, help="seconds")
    parser.add_argument("--park-timeout", type=float, default=60.0, help="seconds")
    parser.add_argument(
        "--max-parked", type=int, default=1000, help="parked requests per deployment, at most"
    )
    parser.add_argument(
        "--park-retry-after", type=int, default=5, help="Retry-After (s) of a refused park"
    )
    parser.add_argument(
        "--cluster-id",
        default=None,
        help="multi-cluster: the registered cluster this gateway serves (it sends its heartbeats)",
    )
    parser.add_argument("--heartbeat-interval", type=float, default=1.0, help="seconds")
    parser.add_argument("--log-level", default=os.environ.get("PLINTH_LOG_LEVEL", "INFO"))
    parser.add_argument("--access-log", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_process_logging(args.log_level)
    settings = GatewaySettings(
        control_plane_url=args.control_plane_url,
        internal_token=args.internal_token,
        max_body_bytes=args.max_body_bytes,
        domain=args.domain,
        cache_file=args.cache_file,
        poll_interval_s=args.poll_interval,
        park_timeout_s=args.park_timeout,
        max_parked_requests=args.max_parked,
        park_retry_after_s=args.park_retry_after,
        cluster_id=args.cluster_id,
        heartbeat_interval_s=args.heartbeat_interval,
    )
    uvicorn.run(
        create_gateway_app(settings),
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=args.access_log,
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
