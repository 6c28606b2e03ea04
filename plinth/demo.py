"""`make demo`: start Plinth locally, push the examples with the real CLI, call them.

Runs end to end on embedded defaults (SQLite, files, local processes) in `.plinth-demo/`,
on free loopback ports, and stops everything it started.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import httpx
from rich.console import Console

from plinth.local import LocalPlatform, start_platform

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "examples"
PUSH_TIMEOUT_S = 600


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def plinth_cli(args: list[str], state_dir: Path, console: Console) -> str:
    """Run the real `plinth` CLI, echoing what it prints; return its stdout."""
    console.print(f"[bold]$ plinth {' '.join(args)}[/]")
    env = dict(os.environ, PLINTH_STATE_DIR=str(state_dir))
    proc = subprocess.run(
        [sys.executable, "-m", "plinth.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=PUSH_TIMEOUT_S,
    )
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"plinth {' '.join(args)} failed with exit code {proc.returncode}")
    return proc.stdout


def model_id_of(name: str, platform: LocalPlatform) -> str:
    ep = platform.endpoints
    resp = httpx.get(
        f"{ep.control_plane_url}/v1/models",
        headers={"Authorization": f"Api-Key {ep.api_key}"},
        timeout=10,
    )
    resp.raise_for_status()
    for model in resp.json()["models"]:
        if model["name"] == name:
            return str(model["id"])
    raise SystemExit(f"model {name!r} not found after push")


def demo_predict(platform: LocalPlatform, console: Console) -> None:
    plinth_cli(["push", str(EXAMPLES / "hello"), "--promote"], platform.state_dir, console)
    model_id = model_id_of("hello", platform)
    ep = platform.endpoints
    url = f"{ep.gateway_url}/models/{model_id}/production/predict"
    console.print(f"[bold]POST {url}[/]")
    resp = httpx.post(
        url, json={"x": 3}, headers={"Authorization": f"Api-Key {ep.api_key}"}, timeout=60
    )
    resp.raise_for_status()
    console.print(f"[green]prediction:[/] {json.dumps(resp.json())}")


def demo_chat(platform: LocalPlatform, console: Console) -> None:
    from openai import OpenAI

    package = EXAMPLES / "tiny-llm"
    # 250 CPU training steps on the bundled corpus (about half a minute, once: the weights are
    # kept) teach the tiny model to answer the corpus's questions in short English sentences.
    # A subprocess, so the demo (a plinth module) never imports the engine or torch.
    prepare = [sys.executable, "-m", "gpu_nodes.engine.tiny_model", "--out"]
    prepare += [str(package / "weights"), "--train-steps", "250", "--keep-current"]
    console.print(f"[bold]$ python {' '.join(prepare[1:])}[/]")
    if subprocess.run(prepare, timeout=PUSH_TIMEOUT_S).returncode != 0:
        raise SystemExit("preparing the tiny model failed")
    plinth_cli(["push", str(package), "--promote"], platform.state_dir, console)
    ep = platform.endpoints
    client = OpenAI(base_url=f"{ep.gateway_url}/v1", api_key=ep.api_key)
    console.print("[bold]OpenAI SDK: chat.completions.create(model='tiny-llm', ...)[/]")
    completion = client.chat.completions.create(
        model="tiny-llm",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=24,
        temperature=0,
    )
    console.print(f"[green]chat completion:[/] {completion.choices[0].message.content!r}")
    console.print(f"usage: {completion.usage}")


def main() -> None:
    console = Console()
    state_dir = REPO_ROOT / ".plinth-demo"
    # Each demo starts from an empty platform: deployments a previous run (or a previous version
    # of Plinth) left behind must not answer for the ones this run pushes.
    shutil.rmtree(state_dir, ignore_errors=True)
    console.print(f"[bold]Starting Plinth[/] (state in {state_dir})")
    platform = start_platform(state_dir, "127.0.0.1", free_port(), free_port())
    try:
        ep = platform.endpoints
        console.print(f"control plane {ep.control_plane_url}, gateway {ep.gateway_url}")
        demo_predict(platform, console)
        demo_chat(platform, console)
    finally:
        platform.stop()
    console.print("[bold green]Demo finished.[/]")


if __name__ == "__main__":
    main()
