"""`plinth remote ...`: named platforms in the user config (like kubectl contexts / Truss remotes).

`plinth up` adds (and selects) the remote `local` once its platform answers; `PLINTH_REMOTE=NAME`
picks another for one command, `plinth remote use NAME` for all of them.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from plinth.cli.options import ApiKeyOption, GatewayUrlOption, JsonOption
from plinth.cli.output import expected_errors, make_console, print_listing
from plinth.client import PlinthClient
from plinth.exceptions import PlinthError
from plinth.user_config import read_user_config, save_remote, user_config_path, write_user_config

remote_app = typer.Typer(help="Named platforms this CLI talks to.", no_args_is_help=True)
NameArgument = Annotated[str, typer.Argument(help="Remote name.")]


@remote_app.command("list")
def remote_list(json: JsonOption = False) -> None:
    """List remotes (API keys are never printed)."""
    with expected_errors():
        config = read_user_config()
        current = config.get("current_remote")
        remotes = {
            name: {key: value for key, value in remote.items() if key != "api_key"}
            for name, remote in sorted(config["remotes"].items())
        }
        rows = [
            ["*" if name == current else "", name, r.get("control_plane_url"), r.get("gateway_url")]
            for name, r in remotes.items()
        ]
        columns = ["current", "name", "control plane", "gateway"]
        body = {"current_remote": current, "remotes": remotes}
        print_listing(f"remotes ({user_config_path()})", columns, rows, body, json)


@remote_app.command("add")
def remote_add(
    name: NameArgument,
    url: Annotated[str, typer.Option("--url", help="Control plane URL.")],
    gateway_url: GatewayUrlOption = None,
    api_key: ApiKeyOption = None,
    use: Annotated[bool, typer.Option(help="Make it the current remote.")] = True,
) -> None:
    """Add a remote; it is written only once its control plane answers with this key."""
    with expected_errors():
        with PlinthClient(url, api_key) as client:
            client.list_models()  # proves the URL and the key before anything is saved
        path = save_remote(name, url, gateway_url or url, api_key, make_current=use)
        make_console().print(f"remote {escape(name)} saved in {escape(str(path))}")


@remote_app.command("use")
def remote_use(name: NameArgument) -> None:
    """Make NAME the current remote."""
    with expected_errors():
        config = read_user_config()
        if name not in config["remotes"]:
            known = ", ".join(sorted(config["remotes"])) or "none"
            raise PlinthError(f"no remote named {name!r} (known: {known})")
        config["current_remote"] = name
        write_user_config(config)
        make_console().print(f"current remote: {escape(name)}")


@remote_app.command("remove")
def remote_remove(name: NameArgument) -> None:
    """Forget a remote."""
    with expected_errors():
        config = read_user_config()
        if config["remotes"].pop(name, None) is None:
            raise PlinthError(f"no remote named {name!r}")
        if config.get("current_remote") == name:
            config["current_remote"] = None
        write_user_config(config)
        make_console().print(f"remote {escape(name)} removed")
