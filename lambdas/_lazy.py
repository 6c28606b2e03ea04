"""Build an expensive object on first use and keep it for the life of the Lambda sandbox.

Lambda imports a handler module once per sandbox and calls the handler for every event;
building the app or the platform at import would slow every cold start of a sandbox that
never handles a request, and building it per event would throw away warm connections.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Lazy(Generic[T]):
    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._factory()
        return self._value
