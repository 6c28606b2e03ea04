"""Pure parts of the OpenAI layer: request validation, tool-call parsing, chat prompts, and
the xgrammar guide over the tiny model's real tokenizer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import xgrammar as xgr
from transformers import AutoTokenizer

from gpu_nodes.openai.engine_factory import load_engine
from gpu_nodes.openai.engine_port import EngineSettings, StructuredOutput
from gpu_nodes.openai.exceptions import EngineLoadError, InvalidRequest, ModelNotFound
from gpu_nodes.openai.guided import GrammarFactory
from gpu_nodes.openai.prompting import chat_prompt_ids, completion_prompt_ids
from gpu_nodes.openai.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    ToolDefinition,
    parse_request,
)
from gpu_nodes.openai.sampling import resolve_max_tokens
from gpu_nodes.openai.server import ServedModel
from gpu_nodes.openai.tools import parse_tool_call, tool_call_constraint

BASE = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
TOOL = ToolDefinition.model_validate(
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {
                "type": "object",
                "properties": {"utc": {"type": "boolean"}},
                "required": ["utc"],
                "additionalProperties": False,
            },
        },
    }
)


@pytest.mark.parametrize(
    ("patch", "param", "fragment"),
    [
        ({"messages": None}, "messages", "messages"),
        ({"messages": [{"role": "bot", "content": "x"}]}, "messages[0].role", "'user'"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content", "string"),
        ({"max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
        ({"max_completion_tokens": -1}, "max_completion_tokens", "greater"),
        ({"top_p": 1.5}, "top_p", "less than or equal to 1"),
        ({"top_logprobs": 21}, "top_logprobs", "20"),
        ({"stop": 5}, "stop", "string"),
        ({"stop": ["x"] * 17}, "stop", "16"),
        ({"tool_choice": "sometimes"}, "tool_choice", "none"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema", "required"),
        (
            {"tools": [TOOL.model_dump()], "tool_choice": {"function": {"name": "other"}}},
            "tool_choice",
            "other",
        ),
    ],
)
def test_chat_request_errors_name_the_param(
    patch: dict[str, Any], param: str, fragment: str
) -> None:
    body = {**BASE, **patch}
    body = {key: value for key, value in body.items() if value is not None}
    with pytest.raises(InvalidRequest) as raised:
        parse_request(ChatCompletionRequest, body)
    assert raised.value.param == param
    assert fragment in raised.value.message
    assert raised.value.to_body()["error"]["type"] == "invalid_request_error"


def test_unknown_fields_are_ignored_and_prompt_forms_parse() -> None:
    request = parse_request(ChatCompletionRequest, {**BASE, "store": True, "metadata": {"a": 1}})
    assert request.messages[0].text() == "hi"
    assert parse_request(CompletionRequest, {"model": "m", "prompt": "x"}).prompts() == ["x"]
    assert parse_request(CompletionRequest, {"model": "m", "prompt": [5, 6]}).prompts() == [[5, 6]]
    batch = parse_request(CompletionRequest, {"model": "m", "prompt": [[1], [2, 3]]})
    assert batch.prompts() == [[1], [2, 3]]
    with pytest.raises(InvalidRequest):
        parse_request(ChatCompletionRequest, ["not", "an", "object"])


def test_served_model_names() -> None:
    served = ServedModel(name="tiny", aliases={"tiny", "weights", "model", "m-123"})
    for name in ("tiny", "tiny@staging", "model", "m-123"):
        served.check(name)
    with pytest.raises(ModelNotFound) as raised:
        served.check("gpt-5")
    assert raised.value.status_code == 404 and raised.value.code == "model_not_found"


def test_max_tokens_resolution() -> None:
    assert resolve_max_tokens(None, 10, 100, prompt_param="messages") == 90
    assert resolve_max_tokens(5, 10, 100, prompt_param="messages") == 5
    with pytest.raises(InvalidRequest) as too_many:
        resolve_max_tokens(91, 10, 100, prompt_param="messages")
    assert too_many.value.param == "max_tokens"
    with pytest.raises(InvalidRequest) as too_long:
        resolve_max_tokens(None, 100, 100, prompt_param="prompt")
    assert too_long.value.param == "prompt"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"name": "get_time", "arguments": {"utc": true}}', {"utc": True}),
        ('<|python_tag|>{"name": "get_time", "parameters": {"utc": false}}', {"utc": False}),
        ('{"name": "other_tool", "arguments": {}}', None),
        ('{"name": "get_time", "arguments": "utc"}', None),
        ("The time is noon.", None),
        ('{"name": "get_time", "arguments": {"utc": tr', None),
    ],
)
def test_parse_tool_call(text: str, expected: dict[str, Any] | None) -> None:
    call = parse_tool_call(text, [TOOL])
    if expected is None:
        assert call is None
    else:
        assert call is not None and call.id.startswith("call_")
        assert call.function.name == "get_time"
        assert json.loads(call.function.arguments) == expected


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path) -> Any:
    return AutoTokenizer.from_pretrained(str(tiny_model))


def test_chat_prompt_uses_template_and_tools(tokenizer: Any) -> None:
    request = parse_request(
        ChatCompletionRequest,
        {
            "model": "m",
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "What time is it?"}]},
            ],
        },
    )
    plain = tokenizer.decode(chat_prompt_ids(tokenizer, request.messages, None))
    assert "Be brief." in plain and "What time is it?" in plain
    assert plain.rstrip().endswith("assistant<|end_header_id|>")
    with_tools = tokenizer.decode(chat_prompt_ids(tokenizer, request.messages, [TOOL]))
    assert "get_time" in with_tools
    with pytest.raises(InvalidRequest) as raised:
        completion_prompt_ids(tokenizer, [1, 10**9], len(tokenizer))
    assert raised.value.param == "prompt" and "position 1" in raised.value.message


def test_guide_constrains_tokens_and_terminates(tokenizer: Any) -> None:
    eos = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    factory = GrammarFactory(tokenizer, vocab_size=len(tokenizer), stop_token_ids=[eos])
    spec = tool_call_constraint([TOOL])
    assert factory.compile(spec) is factory.compile(spec)  # cached by schema
    guide = factory.guide(spec)
    bitmask = xgr.allocate_token_bitmask(1, factory.tokenizer_info.vocab_size)
    target = '{"name":"get_time","arguments":{"utc":true}}'
    for token in tokenizer.encode(target, add_special_tokens=False):
        guide.fill_bitmask(bitmask, 0)
        allowed = _allowed(bitmask, len(tokenizer))
        assert token in allowed and eos not in allowed
        assert guide.accept(token)
    guide.fill_bitmask(bitmask, 0)
    assert _allowed(bitmask, len(tokenizer)) == {eos}  # the object is complete: only stop
    assert not guide.is_terminated()
    assert guide.accept(eos) and guide.is_terminated()


def _allowed(bitmask: torch.Tensor, vocab: int) -> set[int]:
    logits = torch.zeros(1, vocab)
    xgr.apply_token_bitmask_inplace(logits, bitmask)
    return set(torch.nonzero(logits[0] == 0).flatten().tolist())


def test_bad_schema_is_invalid_request(tokenizer: Any) -> None:
    factory = GrammarFactory(tokenizer)
    bad = StructuredOutput(kind="json_schema", schema={"type": "nonsense"}, param="tools")
    with pytest.raises(InvalidRequest) as raised:
        factory.compile(bad)
    assert raised.value.param == "tools"


def test_load_engine_errors_name_the_field(tmp_path: Path) -> None:
    missing = EngineSettings(kind="builtin", model_path=tmp_path / "absent")
    with pytest.raises(EngineLoadError, match=r"engine\.model_path"):
        load_engine(missing)
    with pytest.raises(EngineLoadError, match=r"engine\.kind"):
        load_engine(EngineSettings(kind="onnx", model_path=tmp_path))


def test_engine_settings_resolve_model_path(tmp_path: Path) -> None:
    from plinth.spec.config import EngineSpec

    (tmp_path / "weights").mkdir()
    local = EngineSettings.from_spec(tmp_path, EngineSpec(model_path="weights", max_num_seqs=4))
    assert local.model_path == (tmp_path / "weights").resolve()
    assert local.model_reference() == str(local.model_path)
    assert local.kind == "builtin" and local.max_num_seqs == 4
    hub = EngineSettings.from_spec(tmp_path, EngineSpec(kind="vllm", model_path="org/some-model"))
    assert hub.model_reference() == "org/some-model"  # not a local dir: a hub repo id for vLLM


@pytest.mark.parametrize(
    ("text", "holding", "finish"),
    [
        ('  {"name":"get_time","arguments":{"utc":true}}', True, "tool_calls"),
        ('<|python_tag|>{"name":"get_time","parameters":{"utc":false}}', True, "tool_calls"),
        ('{"not": "a call"}', True, "stop"),
        ("<|pyth", None, "stop"),
        ("   ", None, "stop"),
        ("Noon, UTC.", False, "stop"),
    ],
)
def test_auto_tool_streaming_holds_json_like_answers(
    text: str, holding: bool | None, finish: str
) -> None:
    from gpu_nodes.openai.chat import PreparedChat, _ChunkWriter, _final_events, _StreamedChoice
    from gpu_nodes.openai.generation import ChoiceResult

    request = parse_request(ChatCompletionRequest, {**BASE, "tools": [TOOL.model_dump()]})
    prepared = PreparedChat(request, [], forced_tools=[], auto_tools=[TOOL], want_logprobs=False)
    choice = _StreamedChoice(ChoiceResult(text=text, finish_reason="stop"))
    choice.decide(prepared)
    assert choice.holding is holding
    events = [
        json.loads(e.removeprefix("data: "))
        for e in _final_events(_ChunkWriter("m", include_usage=False), prepared, 0, choice)
    ]
    assert events[-1]["choices"][0]["finish_reason"] == finish
    deltas = [event["choices"][0]["delta"] for event in events]
    if finish == "tool_calls":
        assert deltas[0]["tool_calls"][0]["function"]["name"] == "get_time"
    else:
        assert "".join(delta.get("content", "") for delta in deltas) == text
