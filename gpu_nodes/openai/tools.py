"""Tool calling: the JSON shape a constrained tool call takes, and parsing it back.

A tool call is generated as ``{"name": <tool name>, "arguments": {<that tool's parameters>}}``.
``tool_choice="required"`` or a named tool constrains the output to that shape with a grammar
(several tools: an ``anyOf``). ``tool_choice="auto"`` lets the model answer freely; if the whole
answer (after an optional Llama ``<|python_tag|>``) is JSON of that shape naming a known tool --
``"parameters"`` is accepted for ``"arguments"``, as Llama 3 writes it -- it is returned as a tool
call, otherwise as text. When streaming with ``auto``, an answer that starts like a call (``{``
or the tag) is held back until it ends, then sent as a tool call or as text; others stream.
Only one call is produced per choice (``parallel_tool_calls`` is accepted and ignored).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from gpu_nodes.openai.engine_port import StructuredOutput
from gpu_nodes.openai.protocol import (
    ChatCompletionRequest,
    NamedToolChoice,
    ToolCall,
    ToolCallFunction,
    ToolDefinition,
)

_EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}
_TEXT_PREFIXES = ("<|python_tag|>",)


def new_tool_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _call_schema(tool: ToolDefinition) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "name": {"const": tool.function.name},
            "arguments": tool.function.parameters or _EMPTY_PARAMETERS,
        },
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def forced_tools(request: ChatCompletionRequest) -> list[ToolDefinition]:
    """The tools the output must call one of ([] when the model may answer in text)."""
    tools = request.tools or []
    choice = request.tool_choice
    if isinstance(choice, NamedToolChoice):
        return [tool for tool in tools if tool.function.name == choice.function.name]
    if choice == "required":
        return list(tools)
    return []


def tool_call_constraint(tools: list[ToolDefinition]) -> StructuredOutput:
    schemas = [_call_schema(tool) for tool in tools]
    schema = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    return StructuredOutput(kind="json_schema", schema=schema, param="tools")


def parse_tool_call(text: str, tools: list[ToolDefinition]) -> ToolCall | None:
    """A ``ToolCall`` if ``text`` is exactly one call of a known tool, else None."""
    stripped = text.strip()
    for prefix in _TEXT_PREFIXES:
        stripped = stripped.removeprefix(prefix).strip()
    if not stripped.startswith("{"):
        return None
    try:
        payload = json.loads(stripped)
    except json.JSONDecodeError:
        return None
    if not isinstance(payload, dict):
        return None
    name = payload.get("name")
    arguments = payload.get("arguments", payload.get("parameters"))
    if name not in {tool.function.name for tool in tools} or not isinstance(arguments, dict):
        return None
    return ToolCall(
        id=new_tool_call_id(),
        function=ToolCallFunction(name=str(name), arguments=json.dumps(arguments)),
    )


def tools_for_template(tools: list[ToolDefinition]) -> list[dict[str, Any]]:
    """Tools in the shape Hugging Face chat templates expect (OpenAI's)."""
    return [
        {
            "type": "function",
            "function": {
                "name": tool.function.name,
                "description": tool.function.description or "",
                "parameters": tool.function.parameters or _EMPTY_PARAMETERS,
            },
        }
        for tool in tools
    ]
