"""Console output for the CLI: one red line per expected error, tables, status colours."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from plinth.exceptions import (
    ApiError,
    ConfigError,
    PlatformUnreachableError,
    PlinthError,
)

STATUS_STYLES = {
    "ACTIVE": "green",
    "FAILED": "red",
    "UNHEALTHY": "red",
    "INACTIVE": "dim",
    "BUILDING": "yellow",
    "DEPLOYING": "yellow",
    "LOADING_MODEL": "yellow",
}


def make_console(stderr: bool = False) -> Console:
    # soft_wrap: never break an id, URL or error line when output is not a terminal.
    return Console(stderr=stderr, soft_wrap=True, highlight=False)


def status_text(status: Any) -> str:
    text = escape(str(status))
    style = STATUS_STYLES.get(str(status))
    return f"[{style}]{text}[/]" if style else text


def format_time(value: Any) -> str:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else str(value)


def print_table(
    console: Console, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*[cell if isinstance(cell, str) else escape(str(cell)) for cell in row])
    console.print(table)


def error_message(error: PlinthError) -> list[str]:
    """The line(s) to print for an expected error."""
    if isinstance(error, PlatformUnreachableError):
        if error.what == "control plane":
            return [f"cannot reach control plane at {error.url}: is `plinth up` running?"]
        return [str(error)]
    if isinstance(error, ApiError):
        hint = ""
        if error.status in (401, 403):
            hint = " (check --api-key / PLINTH_API_KEY)"
        elif error.status == 404 and error.message.startswith("model "):
            hint = " (`plinth models` lists each model's id and name)"
        request = f" (request id {error.request_id})" if error.request_id else ""
        return [f"{error.status} {error.code}: {error.message}{hint}{request}"]
    if isinstance(error, ConfigError):
        return [str(item) for item in error.errors]
    return [str(error)]


@contextlib.contextmanager
def expected_errors() -> Iterator[None]:
    """Turn Plinth's own errors into red lines on stderr and exit code 1 (no traceback)."""
    try:
        yield
    except PlinthError as error:
        console = make_console(stderr=True)
        for line in error_message(error):
            console.print(f"[red]error:[/] {escape(line)}")
        raise typer.Exit(code=1) from None
    except KeyboardInterrupt:
        make_console(stderr=True).print("[yellow]interrupted[/]")
        raise typer.Exit(code=130) from None
