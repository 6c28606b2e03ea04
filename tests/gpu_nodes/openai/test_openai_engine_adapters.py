"""Engine adapters: the import-guarded ones fail clearly without their runtime; on a CUDA node
(``gpu`` marker) the built-in, vLLM and TensorRT-LLM adapters serve the same requests."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path

import jsonschema
import pytest
import torch

from gpu_nodes.engine.sampling_params import SamplingParams
from gpu_nodes.openai.engine_factory import load_engine
from gpu_nodes.openai.engine_port import Engine, EngineSettings, GenerationParams, StructuredOutput
from gpu_nodes.openai.exceptions import EngineUnavailable
from gpu_nodes.openai.generation import ChoiceJob, ChoiceResult, collect_choices

HAS_CUDA = torch.cuda.is_available()
SCHEMA = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}, "level": {"enum": ["low", "high"]}},
    "required": ["ok", "level"],
    "additionalProperties": False,
}


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.mark.skipif(_installed("vllm"), reason="vllm is installed here")
def test_vllm_missing_is_engine_unavailable(tiny_model: Path) -> None:
    with pytest.raises(EngineUnavailable, match="vllm is not installed on this node"):
        load_engine(EngineSettings(kind="vllm", model_path=tiny_model))


@pytest.mark.skipif(_installed("tensorrt_llm"), reason="tensorrt_llm is installed here")
def test_trt_llm_missing_is_engine_unavailable(tiny_model: Path) -> None:
    with pytest.raises(EngineUnavailable, match="tensorrt_llm is not installed on this node"):
        load_engine(EngineSettings(kind="trt_llm", model_path=tiny_model))


def _generate(engine: Engine, params: GenerationParams, n: int = 2) -> list[ChoiceResult]:
    prompt = list(engine.tokenizer.encode("The weather today is"))
    jobs = [ChoiceJob(i, f"adapter-{i}", prompt, params) for i in range(n)]
    return asyncio.run(collect_choices(engine, jobs))


def _check_engine(engine: Engine) -> None:
    greedy_params = SamplingParams(max_tokens=8, temperature=0.0, logprobs=2)
    greedy = _generate(engine, GenerationParams(greedy_params))
    assert greedy[0].text == greedy[1].text  # greedy is deterministic across a batch
    assert len(greedy[0].token_ids) == len(greedy[0].logprobs) <= 8
    structured = StructuredOutput(kind="json_schema", schema=SCHEMA)
    engine.compile_structured(structured)
    for result in _generate(engine, GenerationParams(SamplingParams(max_tokens=64), structured)):
        assert result.finish_reason == "stop"
        jsonschema.validate(json.loads(result.text), SCHEMA)


def test_builtin_engine_on_cpu(tiny_model: Path) -> None:
    engine = load_engine(EngineSettings(kind="builtin", model_path=tiny_model, device="cpu"))
    try:
        _check_engine(engine)
    finally:
        engine.shutdown()


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
def test_builtin_engine_on_cuda(tiny_model: Path) -> None:
    engine = load_engine(EngineSettings(kind="builtin", model_path=tiny_model, device="cuda"))
    try:
        _check_engine(engine)
    finally:
        engine.shutdown()


@pytest.mark.gpu
@pytest.mark.skipif(not (HAS_CUDA and _installed("vllm")), reason="needs CUDA and vllm")
def test_vllm_engine_on_cuda(tiny_model: Path) -> None:
    settings = EngineSettings(kind="vllm", model_path=tiny_model, max_model_len=512)
    engine = load_engine(settings)
    try:
        _check_engine(engine)
    finally:
        engine.shutdown()


@pytest.mark.gpu
@pytest.mark.skipif(
    not (HAS_CUDA and _installed("tensorrt_llm")), reason="needs CUDA and tensorrt_llm"
)
def test_trt_llm_engine_on_cuda(tiny_model: Path) -> None:
    settings = EngineSettings(kind="trt_llm", model_path=tiny_model, max_model_len=512)
    engine = load_engine(settings)
    try:
        _check_engine(engine)
    finally:
        engine.shutdown()
