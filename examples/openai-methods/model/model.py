"""Echo chat: answers with the last user message, as the OpenAI and Anthropic APIs would shape it.

Each method gets the request's JSON body. Returning a dict answers with JSON; returning (or
being) a generator streams, and each dict it yields becomes one server-sent event.
"""

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # content parts: keep the text ones
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


class Model:
    def __init__(self, **kwargs: Any) -> None:
        self._name = (kwargs.get("config") or {}).get("model_name") or "echo-chat"

    def predict(self, model_input: dict[str, Any]) -> dict[str, Any]:
        return {"echo": model_input}

    def chat_completions(self, body: dict[str, Any]) -> Any:
        words = ("echo: " + _last_user_text(body.get("messages", []))).split(" ")
        if body.get("stream"):
            return self._chat_chunks(words)
        message = {"role": "assistant", "content": " ".join(words)}
        return {
            **self._envelope("chat.completion"),
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": 1,
                "completion_tokens": len(words),
                "total_tokens": 1 + len(words),
            },
        }

    def _chat_chunks(self, words: list[str]) -> Iterator[dict[str, Any]]:
        envelope = self._envelope("chat.completion.chunk")
        for i, word in enumerate(words):
            delta = {"role": "assistant", "content": word} if i == 0 else {"content": " " + word}
            yield {**envelope, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        yield {**envelope, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}

    def completions(self, body: dict[str, Any]) -> dict[str, Any]:
        text = "echo: " + str(body.get("prompt", ""))
        choice = {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}
        return {**self._envelope("text_completion"), "choices": [choice]}

    def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        inputs = body.get("input", [])
        inputs = [inputs] if isinstance(inputs, str) else inputs
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": [b / 255 for b in hashlib.sha256(str(text).encode()).digest()[:8]],
            }
            for i, text in enumerate(inputs)
        ]
        usage = {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}
        return {"object": "list", "data": data, "model": self._name, "usage": usage}

    async def messages(self, body: dict[str, Any]) -> Any:
        text = "echo: " + _last_user_text(body.get("messages", []))
        if body.get("stream"):
            return self._message_events(text)
        return {
            "id": "msg_echo",
            "type": "message",
            "role": "assistant",
            "model": self._name,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
        }

    async def _message_events(self, text: str) -> AsyncIterator[dict[str, Any]]:
        yield {"type": "message_start", "message": {"id": "msg_echo", "role": "assistant"}}
        for word in text.split(" "):
            await asyncio.sleep(0)
            delta = {"type": "text_delta", "text": word + " "}
            yield {"type": "content_block_delta", "index": 0, "delta": delta}
        yield {"type": "message_stop"}

    def _envelope(self, kind: str) -> dict[str, Any]:
        return {
            "id": f"echo-{time.time_ns()}",
            "object": kind,
            "created": int(time.time()),
            "model": self._name,
        }
