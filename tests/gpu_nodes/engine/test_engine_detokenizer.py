"""Incremental detokenization and stop strings, with the tiny model's real tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from gpu_nodes.engine.detokenizer import IncrementalDetokenizer


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


def stream(tokenizer, text: str, stop: list[str]) -> tuple[list[str], IncrementalDetokenizer]:
    detok = IncrementalDetokenizer(tokenizer, stop)
    deltas = []
    for token in tokenizer(text, add_special_tokens=False).input_ids:
        stopped = detok.push(token)
        deltas.append(detok.take_delta(final=stopped))
        if stopped:
            break
    else:
        detok.flush()
        deltas.append(detok.take_delta(final=True))
    return deltas, detok


def test_deltas_concatenate_to_text_including_multibyte(tokenizer) -> None:
    text = "Héllo wörld ✓ — the café serves 日本 tea."
    deltas, _ = stream(tokenizer, text, [])
    assert "".join(deltas) == text
    assert not any("\ufffd" in d for d in deltas)


@pytest.mark.parametrize(
    ("text", "stop", "expected"),
    [
        ("The river moves the heavy box. END of story", ["END"], "The river moves the heavy box. "),
        ("one two three four", ["three", "two"], "one "),  # earliest match wins
        ("a list of numbers", ["zzz"], "a list of numbers"),  # never matches: all flushed
        ("The gateway serves", ["serves"], "The gateway "),
    ],
)
def test_stop_strings(tokenizer, text: str, stop: list[str], expected: str) -> None:
    deltas, detok = stream(tokenizer, text, stop)
    assert "".join(deltas) == expected
    assert detok.stopped == (expected != text)


def test_possible_stop_prefix_is_held_back_then_released(tokenizer) -> None:
    detok = IncrementalDetokenizer(tokenizer, ["Assistant:"])
    emitted = ""
    for token in tokenizer("User: hi Assist", add_special_tokens=False).input_ids:
        detok.push(token)
        emitted += detok.take_delta(final=False)
    assert emitted == "User: hi "  # "Assist" could still become "Assistant:"
    for token in tokenizer("ance", add_special_tokens=False).input_ids:
        detok.push(token)
        emitted += detok.take_delta(final=False)
    assert emitted == "User: hi Assistance"
