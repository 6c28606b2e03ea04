"""Streaming model: predict returns a generator; the server sends each chunk as it comes.

Input: {"text": "...", "repeat": 1} streams the words of `text`; {"n": 5} streams
"chunk 0 " ... "chunk 4 ". `delay_s` (default 0.02, at most 1) spaces the chunks out so a
client sees them arrive separately.
"""

import time
from collections.abc import Iterator
from typing import Any

_MAX_CHUNKS = 10_000
_DEFAULT_DELAY_S = 0.02


class Model:
    def __init__(self, **kwargs: Any) -> None:
        self._loaded = False

    def load(self) -> None:
        self._loaded = True

    def predict(self, model_input: dict[str, Any]) -> Iterator[str]:
        if "n" in model_input:
            chunks = [f"chunk {index} " for index in range(int(model_input["n"]))]
        else:
            text = str(model_input.get("text", "hello from a streaming model"))
            chunks = [word + " " for word in text.split()] * max(
                int(model_input.get("repeat", 1)), 0
            )
        if len(chunks) > _MAX_CHUNKS:
            raise ValueError(f"too many chunks requested ({len(chunks)} > {_MAX_CHUNKS})")
        delay = min(max(float(model_input.get("delay_s", _DEFAULT_DELAY_S)), 0.0), 1.0)
        return self._chunks(chunks, delay)

    def _chunks(self, chunks: list[str], delay: float) -> Iterator[str]:
        for index, chunk in enumerate(chunks):
            if delay and index:
                time.sleep(delay)
            yield chunk
