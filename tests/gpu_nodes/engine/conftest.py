"""Shared fixtures: the tiny model is built once per test session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gpu_nodes.engine.config import EngineConfig
from gpu_nodes.engine.engine import LLMEngine
from gpu_nodes.engine.outputs import RequestOutput
from gpu_nodes.engine.sampling_params import SamplingParams
from gpu_nodes.engine.tiny_model import TinyModelSpec, make_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-llama"), TinyModelSpec(seed=0))


@pytest.fixture(scope="session")
def tiny_engine(tiny_model_dir: Path) -> LLMEngine:
    """A shared CPU engine; tests using it must leave no request unfinished."""
    return LLMEngine(EngineConfig(model_path=str(tiny_model_dir), device="cpu"))


def run_to_completion(
    engine: LLMEngine, requests: dict[str, tuple[list[int], SamplingParams]], max_steps: int = 5000
) -> dict[str, list[RequestOutput]]:
    """Submit all requests, step until done (bounded), return each request's outputs."""
    for request_id, (prompt, params) in requests.items():
        engine.add_request(request_id, prompt, params)
    outputs: dict[str, list[RequestOutput]] = {rid: [] for rid in requests}
    for _ in range(max_steps):
        if not engine.has_unfinished_requests():
            break
        for out in engine.step():
            outputs[out.request_id].append(out)
    assert not engine.has_unfinished_requests(), "engine did not finish within max_steps"
    return outputs


@pytest.fixture
def run_engine() -> Iterator[Callable[..., dict[str, list[RequestOutput]]]]:
    """`run_engine(engine, {id: (prompt_ids, params)})` -> {id: [RequestOutput, ...]}."""
    yield run_to_completion


@pytest.fixture(scope="session")
def hf_model(tiny_model_dir: Path) -> object:
    """The same checkpoint through Hugging Face transformers (the reference implementation)."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval()


def hf_greedy_reference(model: object, prompt: list[int], steps: int) -> tuple[list[int], list]:
    """Greedy decoding with full (uncached) HF forwards; returns tokens and per-step logits."""
    import torch

    ids = list(prompt)
    tokens: list[int] = []
    all_logits = []
    with torch.no_grad():
        for _ in range(steps):
            logits = model(torch.tensor([ids])).logits[0, -1].float()  # type: ignore[operator]
            token = int(torch.argmax(logits))
            all_logits.append(logits)
            tokens.append(token)
            ids.append(token)
    return tokens, all_logits


@pytest.fixture
def hf_greedy() -> Iterator[Callable[..., tuple[list[int], list]]]:
    yield hf_greedy_reference
