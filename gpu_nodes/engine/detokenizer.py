"""Incremental detokenization with stop-string handling.

Text is decoded over a small sliding window of tokens (prefix_offset..read_offset) so each new
token costs O(window), and a delta is only released once it no longer ends in an incomplete
UTF-8 sequence. Text that could be the start of a stop string is held back until it is known
not to be one; a matched stop string and everything after it is never emitted.
"""

from __future__ import annotations

from typing import Any

REPLACEMENT_CHAR = "\ufffd"


class IncrementalDetokenizer:
    def __init__(self, tokenizer: Any, stop: list[str]) -> None:
        self._tokenizer = tokenizer
        self._stop = [s for s in stop if s]
        self._max_stop_len = max((len(s) for s in self._stop), default=0)
        self._tokens: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0
        self.text = ""
        self._emitted = 0
        self.stopped = False

    def _decode(self, tokens: list[int]) -> str:
        return str(self._tokenizer.decode(tokens, skip_special_tokens=True))

    def push(self, token_id: int) -> bool:
        """Add one generated token; return True if a stop string is now complete."""
        if self.stopped:
            return True
        self._tokens.append(token_id)
        prefix_text = self._decode(self._tokens[self._prefix_offset : self._read_offset])
        new_text = self._decode(self._tokens[self._prefix_offset :])
        if len(new_text) <= len(prefix_text) or new_text.endswith(REPLACEMENT_CHAR):
            return False  # incomplete multi-byte character: wait for more tokens
        self._add_text(new_text[len(prefix_text) :])
        self._prefix_offset = self._read_offset
        self._read_offset = len(self._tokens)
        return self.stopped

    def flush(self) -> None:
        """Decode whatever is still pending (called when the sequence finishes)."""
        if self.stopped or self._read_offset == len(self._tokens):
            return
        prefix_text = self._decode(self._tokens[self._prefix_offset : self._read_offset])
        new_text = self._decode(self._tokens[self._prefix_offset :])
        self._add_text(new_text[len(prefix_text) :])
        self._prefix_offset = self._read_offset = len(self._tokens)

    def _add_text(self, delta: str) -> None:
        old_len = len(self.text)
        self.text += delta
        if not self._stop:
            return
        search_from = max(0, old_len - self._max_stop_len + 1)
        hits = [i for i in (self.text.find(s, search_from) for s in self._stop) if i >= 0]
        if hits:
            self.text = self.text[: min(hits)]
            self.stopped = True

    def _holdback(self) -> int:
        """Length of the longest suffix of text that is a proper prefix of a stop string."""
        longest = 0
        for stop in self._stop:
            for k in range(min(len(stop) - 1, len(self.text)), longest, -1):
                if self.text.endswith(stop[:k]):
                    longest = k
                    break
        return longest

    def take_delta(self, final: bool) -> str:
        """Text not yet emitted; while not final, a possible stop-string prefix is held back."""
        end = len(self.text) if (final or self.stopped) else len(self.text) - self._holdback()
        if end <= self._emitted:
            return ""
        delta = self.text[self._emitted : end]
        self._emitted = end
        return delta
