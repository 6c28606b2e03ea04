"""Turning chat messages and completion prompts into prompt token ids."""

from __future__ import annotations

import json
from typing import Any

from gpu_nodes.openai.exceptions import InvalidRequest
from gpu_nodes.openai.protocol import ChatMessage, ToolDefinition
from gpu_nodes.openai.tools import tools_for_template


def _arguments_as_object(arguments: str) -> Any:
    # HF chat templates render arguments as a mapping; keep the raw string if it is not JSON.
    try:
        return json.loads(arguments)
    except json.JSONDecodeError:
        return arguments


def template_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """OpenAI messages as the dicts ``apply_chat_template`` reads."""
    converted: list[dict[str, Any]] = []
    for message in messages:
        role = "system" if message.role == "developer" else message.role
        entry: dict[str, Any] = {"role": role, "content": message.text() or ""}
        if message.name:
            entry["name"] = message.name
        if message.tool_call_id:
            entry["tool_call_id"] = message.tool_call_id
        if message.tool_calls:
            entry["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": call.function.name,
                        "arguments": _arguments_as_object(call.function.arguments),
                    },
                }
                for call in message.tool_calls
            ]
        converted.append(entry)
    return converted


def chat_prompt_ids(
    tokenizer: Any, messages: list[ChatMessage], tools: list[ToolDefinition] | None
) -> list[int]:
    """Render with the tokenizer's chat template (generation prompt added) and tokenize."""
    if not getattr(tokenizer, "chat_template", None):
        raise InvalidRequest(
            "This model has no chat template; use /v1/completions instead.", param="messages"
        )
    try:
        text = tokenizer.apply_chat_template(
            template_messages(messages),
            tools=tools_for_template(tools) if tools else None,
            add_generation_prompt=True,
            tokenize=False,
        )
    except Exception as exc:  # jinja2 TemplateError and friends: the messages broke the template
        raise InvalidRequest(
            f"The messages cannot be rendered by the chat template: {exc}", param="messages"
        ) from None
    # The template writes the special tokens itself (BOS, headers): do not add them twice.
    return list(tokenizer.encode(str(text), add_special_tokens=False))


def completion_prompt_ids(tokenizer: Any, prompt: str | list[int], vocab_size: int) -> list[int]:
    if isinstance(prompt, str):
        return list(tokenizer.encode(prompt))
    for position, token_id in enumerate(prompt):
        if not 0 <= token_id < vocab_size:
            raise InvalidRequest(
                f"Token id {token_id} at position {position} is outside the vocabulary "
                f"(0..{vocab_size - 1}).",
                param="prompt",
            )
    return list(prompt)
