"""``python -m gpu_nodes.openai --model-dir DIR --port PORT``: serve an engine package alone.

The model server (``python -m gpu_nodes.model_server``) serves the same app for engine packages;
this entry point is for running the OpenAI layer by itself."""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn

from gpu_nodes.keepalive import REPLICA_KEEP_ALIVE_S
from gpu_nodes.openai.server import create_openai_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gpu_nodes.openai", description=__doc__)
    parser.add_argument("--model-dir", type=Path, required=True, help="package directory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)

    from plinth.spec import load_config

    config = load_config(args.model_dir)
    app = create_openai_app(args.model_dir, config)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_keep_alive=REPLICA_KEEP_ALIVE_S,
    )


if __name__ == "__main__":
    main()
