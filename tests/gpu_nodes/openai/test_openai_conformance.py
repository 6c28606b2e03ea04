"""The official ``openai`` SDK against the tiny model, directly and through the gateway.

Every test runs three ways (the ``client`` fixture): straight at the replica, at the gateway's
``/v1`` (routing by the ``model`` field) and at the gateway's ``/models/{id}/production/v1``."""

from __future__ import annotations

import json
from typing import Any, Literal

import jsonschema
import openai
import pytest
from pydantic import BaseModel

pytestmark = pytest.mark.integration

MODEL = "tiny-chat"
INCLUDE_USAGE: Any = {"include_usage": True}
# Typed Any: the SDK's TypedDict parameters would reject plain dict literals under mypy.
HELLO: Any = [{"role": "user", "content": "Tell me about the weather in Paris."}]


def test_models_list_names_the_model(client: openai.OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    assert MODEL in ids


def test_chat_completion_shape(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=6)
    assert response.id.startswith("chatcmpl-")
    assert response.object == "chat.completion"
    assert response.model == MODEL
    assert response.created > 1_600_000_000
    [choice] = response.choices
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    usage = response.usage
    assert usage is not None
    assert usage.prompt_tokens > 0
    assert 1 <= usage.completion_tokens <= 6
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details is not None
    assert 0 <= (usage.prompt_tokens_details.cached_tokens or 0) <= usage.prompt_tokens


def test_stream_matches_non_stream_greedy(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=8, temperature=0)
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=HELLO, max_tokens=8, temperature=0, stream=True
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(chunk.id == chunks[0].id and chunk.id.startswith("chatcmpl-") for chunk in chunks)
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == whole.choices[0].message.content
    reasons = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices]
    assert reasons[-1] == whole.choices[0].finish_reason
    assert all(reason is None for reason in reasons[:-1])
    assert len(chunks) >= 3  # role, content deltas, finish: it was streamed, not one blob


def test_stream_include_usage_ends_with_usage_chunk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=HELLO,
        max_tokens=5,
        stream=True,
        stream_options=INCLUDE_USAGE,
    )
    chunks = list(stream)
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == 5 or chunks[-2].choices[0].finish_reason == "stop"
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(chunk.usage is None for chunk in chunks[:-1])


def test_n_choices(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=6, n=2, seed=3
    )
    assert [choice.index for choice in response.choices] == [0, 1]
    texts = [choice.message.content for choice in response.choices]
    assert texts[0] != texts[1]  # seed + i: the two samples differ
    assert response.usage is not None
    generated = response.usage.completion_tokens
    assert 2 <= generated <= 12


def test_streamed_n_choices_each_finish(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=HELLO, max_tokens=4, n=2, stream=True, temperature=0
        )
    )
    finished = {c.choices[0].index for c in chunks if c.choices and c.choices[0].finish_reason}
    assert finished == {0, 1}


def test_stop_string_cuts_output(client: openai.OpenAI) -> None:
    full = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=16, temperature=0
    ).choices[0]
    text = full.message.content or ""
    assert len(text) >= 6, f"greedy text too short for this test: {text!r}"
    windows = [text[i : i + 2] for i in range(len(text) // 2, len(text) - 1)]
    stop = next(w for w in windows if w.strip() and "\ufffd" not in w)
    cut = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=16, temperature=0, stop=[stop]
    ).choices[0]
    assert cut.message.content == text[: text.index(stop)]
    assert cut.finish_reason == "stop"


def test_seed_reproducible_at_temperature_one(client: openai.OpenAI) -> None:
    def sample(seed: int) -> str | None:
        response = client.chat.completions.create(
            model=MODEL, messages=HELLO, max_tokens=10, temperature=1.0, seed=seed
        )
        return response.choices[0].message.content

    first = sample(7)
    assert sample(7) == first
    assert first not in (sample(8), sample(9)) or sample(8) != sample(9)


def test_logprobs_and_top_logprobs(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=5, temperature=0, logprobs=True, top_logprobs=3
    )
    choice = response.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content is not None
    entries = choice.logprobs.content
    assert response.usage is not None
    assert len(entries) == response.usage.completion_tokens
    joined = "".join(entry.token for entry in entries)
    if "\ufffd" not in joined:  # a character split over tokens decodes per token as U+FFFD
        assert joined == choice.message.content
    for entry in entries:
        assert entry.logprob <= 0
        assert len(entry.top_logprobs) == 3
        values = [top.logprob for top in entry.top_logprobs]
        assert values == sorted(values, reverse=True)
        # Greedy: the chosen token is the most likely one.
        assert entry.top_logprobs[0].token == entry.token
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob, abs=1e-4)
        assert entry.bytes == list(entry.token.encode())


def test_completions_text_and_token_prompts(client: openai.OpenAI) -> None:
    text = client.completions.create(model=MODEL, prompt="The weather in", max_tokens=5)
    assert text.object == "text_completion"
    assert text.id.startswith("cmpl-")
    assert isinstance(text.choices[0].text, str)
    assert text.usage is not None and text.usage.completion_tokens <= 5
    tokens = client.completions.create(
        model=MODEL, prompt=[1, 200, 300, 400], max_tokens=4, temperature=0, logprobs=2
    )
    logprobs = tokens.choices[0].logprobs
    assert logprobs is not None and logprobs.tokens is not None
    assert tokens.usage is not None and tokens.usage.prompt_tokens == 4
    assert len(logprobs.tokens) == tokens.usage.completion_tokens
    assert all(len(top) <= 2 for top in logprobs.top_logprobs or [])


def test_completions_stream(client: openai.OpenAI) -> None:
    whole = client.completions.create(model=MODEL, prompt="Rain", max_tokens=6, temperature=0)
    chunks = list(
        client.completions.create(
            model=MODEL,
            prompt="Rain",
            max_tokens=6,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(chunk.choices[0].text for chunk in chunks if chunk.choices)
    assert text == whole.choices[0].text
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]


class Forecast(BaseModel):
    city: Literal["Paris", "Rome", "Oslo"]
    sunny: bool
    wind: Literal["calm", "breezy", "stormy"]


def test_parse_with_pydantic_response_format(client: openai.OpenAI) -> None:
    completion = client.chat.completions.parse(
        model=MODEL, messages=HELLO, response_format=Forecast, max_tokens=80
    )
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "stop"
    assert isinstance(message.parsed, Forecast)
    Forecast.model_validate_json(message.content or "")


def test_json_schema_response_validates(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {
            "ok": {"type": "boolean"},
            "level": {"enum": ["low", "high"]},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2},
        },
        "required": ["ok", "level", "tags"],
        "additionalProperties": False,
    }
    for seed in (1, 2):
        response = client.chat.completions.create(
            model=MODEL,
            messages=HELLO,
            max_tokens=80,
            seed=seed,
            response_format=_json_schema_format("status", schema),
        )
        choice = response.choices[0]
        assert choice.finish_reason == "stop"
        jsonschema.validate(json.loads(choice.message.content or ""), schema)


def test_json_object_output_is_json_when_finished(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=MODEL,
        messages=HELLO,
        max_tokens=24,
        seed=5,
        response_format=JSON_OBJECT,
    )
    choice = response.choices[0]
    content = choice.message.content or ""
    assert content.startswith("{")
    if choice.finish_reason == "stop":
        assert isinstance(json.loads(content), dict)
    else:  # a random model may write one long string: cut by max_tokens, honestly reported
        assert choice.finish_reason == "length"


WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "enum": ["Paris", "Rome"]},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
TIME_TOOL: Any = {
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


def test_required_tool_choice_returns_valid_tool_call(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=MODEL,
        messages=HELLO,
        tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice="required",
        max_tokens=120,
    )
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.id.startswith("call_")
    assert call.type == "function"
    tools = {tool["function"]["name"]: tool for tool in (WEATHER_TOOL, TIME_TOOL)}
    assert call.function.name in tools
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, tools[call.function.name]["function"]["parameters"])


def test_named_tool_choice_streamed(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=HELLO,
            tools=[WEATHER_TOOL, TIME_TOOL],
            tool_choice=GET_TIME_CHOICE,
            max_tokens=120,
            stream=True,
        )
    )
    deltas = [chunk.choices[0].delta for chunk in chunks if chunk.choices]
    calls = [call for delta in deltas for call in delta.tool_calls or []]
    [call] = calls
    assert call.function is not None and call.function.name == "get_time"
    jsonschema.validate(
        json.loads(call.function.arguments or ""), TIME_TOOL["function"]["parameters"]
    )
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


GET_TIME_CHOICE: Any = {"type": "function", "function": {"name": "get_time"}}
JSON_OBJECT: Any = {"type": "json_object"}
WIZARD: Any = [{"role": "wizard", "content": "hi"}]


def _json_schema_format(name: str, schema: dict[str, Any]) -> Any:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def _error_of(exc: openai.APIStatusError) -> dict[str, Any]:
    body = exc.response.json()
    assert set(body["error"]) >= {"message", "type", "param", "code"}
    return dict(body["error"])


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": MODEL}, "messages"),
        ({"model": MODEL, "messages": []}, "messages"),
        ({"model": MODEL, "messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"model": MODEL, "messages": HELLO, "max_tokens": 0}, "max_tokens"),
        ({"model": MODEL, "messages": HELLO, "n": 0}, "n"),
        ({"model": MODEL, "messages": HELLO, "temperature": 2.5}, "temperature"),
        ({"model": MODEL, "messages": HELLO, "max_tokens": 100_000}, "max_tokens"),
        ({"model": MODEL, "messages": HELLO, "tool_choice": "required"}, "tool_choice"),
    ],
)
def test_malformed_requests_are_400_naming_the_param(
    client: openai.OpenAI, body: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.post("/chat/completions", body=body, cast_to=object)
    error = _error_of(raised.value)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert param.split("[")[0] in error["message"] or param == "max_tokens"


def test_bad_role_through_sdk_create(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model=MODEL,
            messages=WIZARD,
        )
    assert _error_of(raised.value)["param"] == "messages[0].role"


def test_unknown_model_is_404_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="no-such-model", messages=HELLO, max_tokens=2)
    body = raised.value.response.json()
    assert body["error"]["param"] == "model" or "no-such-model" in body["error"]["message"]


def test_bad_schema_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model=MODEL,
            messages=HELLO,
            response_format=_json_schema_format("x", {"type": "no-such-type"}),
        )
    assert _error_of(raised.value)["param"] == "response_format.json_schema.schema"


def test_unknown_openai_fields_are_ignored(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=MODEL,
        messages=HELLO,
        max_tokens=2,
        user="someone",
        presence_penalty=0.5,
        extra_body={"a_future_openai_field": {"x": 1}, "top_k": 5},
    )
    assert response.choices[0].message.content is not None


def test_embeddings_not_supported(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.embeddings.create(model=MODEL, input="hello")
    assert "embeddings" in _error_of(raised.value)["message"]


def test_auto_tool_choice_answers_in_text_or_a_valid_call(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=MODEL, messages=HELLO, tools=[TIME_TOOL], tool_choice="auto", max_tokens=6
    )
    choice = response.choices[0]
    if choice.message.tool_calls:  # only if the model wrote exactly a get_time call
        assert choice.finish_reason == "tool_calls"
        arguments = json.loads(choice.message.tool_calls[0].function.arguments)  # type: ignore[union-attr]
        jsonschema.validate(arguments, TIME_TOOL["function"]["parameters"])
    else:
        assert isinstance(choice.message.content, str)
        assert choice.finish_reason in ("stop", "length")


def test_max_completion_tokens_bounds_output(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_completion_tokens=3, extra_body={"ignore_eos": True}
    )
    assert response.usage is not None and response.usage.completion_tokens == 3
    assert response.choices[0].finish_reason == "length"


def test_completions_batch_of_prompts_with_n(client: openai.OpenAI) -> None:
    response = client.completions.create(
        model=MODEL, prompt=["Sun", "Snow and"], n=2, max_tokens=3, temperature=0
    )
    assert [choice.index for choice in response.choices] == [0, 1, 2, 3]
    texts = [choice.text for choice in response.choices]
    assert texts[0] == texts[1] and texts[2] == texts[3]  # greedy: n copies agree
    single = client.completions.create(model=MODEL, prompt="Snow and", max_tokens=3, temperature=0)
    assert single.choices[0].text == texts[2]
    assert response.usage is not None and single.usage is not None
    assert response.usage.prompt_tokens > single.usage.prompt_tokens  # both prompts, once each


def test_streamed_logprobs(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=HELLO,
            max_tokens=4,
            temperature=0,
            logprobs=True,
            top_logprobs=1,
            stream=True,
        )
    )
    entries = [
        entry
        for chunk in chunks
        if chunk.choices and chunk.choices[0].logprobs
        for entry in chunk.choices[0].logprobs.content or []
    ]
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    joined = "".join(entry.token for entry in entries)
    if "\ufffd" not in joined:
        assert joined == text
    assert len(entries) >= 1
    assert all(len(entry.top_logprobs) == 1 for entry in entries)


def test_auto_tool_choice_stream_matches_non_stream(client: openai.OpenAI) -> None:
    common: Any = {"model": MODEL, "messages": HELLO, "tools": [TIME_TOOL], "max_tokens": 8}
    whole = client.chat.completions.create(**common, temperature=0).choices[0]
    chunks = list(client.chat.completions.create(**common, temperature=0, stream=True))
    deltas = [chunk.choices[0].delta for chunk in chunks if chunk.choices]
    calls = [call for delta in deltas for call in delta.tool_calls or []]
    if whole.message.tool_calls:
        assert [call.function.name for call in calls] == ["get_time"]  # type: ignore[union-attr]
    else:
        assert not calls
        assert "".join(delta.content or "" for delta in deltas) == whole.message.content
