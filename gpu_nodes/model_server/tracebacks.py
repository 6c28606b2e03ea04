"""Tracebacks trimmed to the user's own frames.

A user's ``predict`` is called through the server, FastAPI, anyio and thread pools; those frames
say nothing to the person who wrote the model, so they are dropped: the printed stack starts at the
first frame inside the package (the model directory or one of its package dirs) and keeps what
that frame called, libraries included.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from pathlib import Path

_SERVER_DIR = Path(__file__).resolve().parent


def _is_under(filename: str, roots: Sequence[Path]) -> bool:
    try:
        path = Path(filename).resolve()
    except (OSError, ValueError):
        return False
    return any(path.is_relative_to(root) for root in roots)


def format_user_traceback(exc: BaseException, user_roots: Sequence[Path]) -> str:
    """Format ``exc`` with the frames before the first user frame removed."""
    roots = [root.resolve() for root in user_roots]
    trace = traceback.TracebackException.from_exception(exc)
    frames = list(trace.stack)
    start = next((i for i, f in enumerate(frames) if _is_under(f.filename, roots)), None)
    if start is None:
        # No user frame (the failure is in the server or a library): drop only the server's own.
        kept = [f for f in frames if not _is_under(f.filename, [_SERVER_DIR])] or frames[-1:]
    else:
        kept = frames[start:]
    trace.stack = traceback.StackSummary.from_list(kept)
    return "".join(trace.format()).rstrip("\n")


def describe_exception(exc: BaseException) -> str:
    """One line for an HTTP error body: ``TypeName: message``."""
    message = str(exc)
    name = type(exc).__name__
    return f"{name}: {message}" if message else name
