"""The same engine checks on CUDA (skipped cleanly when no GPU is present)."""

from __future__ import annotations

import pytest
import torch

from gpu_nodes.engine.config import EngineConfig
from gpu_nodes.engine.engine import LLMEngine
from gpu_nodes.engine.sampling_params import SamplingParams

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

PROMPTS = ["The model reads", "User: What is two plus two?\nAssistant:", "A quiet town near"]


def ids_of(outputs) -> list[int]:
    return [t for out in outputs for t in out.token_ids_delta]


def test_cuda_float32_greedy_matches_transformers(tiny_model_dir, run_engine) -> None:
    from transformers import AutoModelForCausalLM

    engine = LLMEngine(EngineConfig(str(tiny_model_dir), device="cuda", dtype="float32"))
    assert engine.runner.kv_cache.is_cuda
    hf: torch.nn.Module = AutoModelForCausalLM.from_pretrained(
        str(tiny_model_dir), dtype=torch.float32
    )
    hf = hf.to("cuda").eval()
    params = SamplingParams(max_tokens=16, temperature=0, ignore_eos=True)
    prompts = [list(engine.tokenizer(p).input_ids) for p in PROMPTS]
    got = run_engine(engine, {str(i): (p, params) for i, p in enumerate(prompts)})
    for i, prompt in enumerate(prompts):
        ids = list(prompt)
        with torch.no_grad():
            for _ in range(16):
                logits = hf(torch.tensor([ids], device="cuda")).logits[0, -1]
                ids.append(int(torch.argmax(logits)))
        assert ids_of(got[str(i)]) == ids[len(prompt) :]


def test_cuda_batch_equals_alone_and_bfloat16_runs(tiny_model_dir, run_engine) -> None:
    engine = LLMEngine(EngineConfig(str(tiny_model_dir), device="cuda", dtype="float32"))
    params = SamplingParams(max_tokens=12, temperature=0, ignore_eos=True)
    prompts = [[1, *range(10 + i, 20 + 2 * i)] for i in range(16)]
    alone = [ids_of(run_engine(engine, {"a": (p, params)})["a"]) for p in prompts]
    batch = run_engine(engine, {str(i): (p, params) for i, p in enumerate(prompts)})
    assert [ids_of(batch[str(i)]) for i in range(16)] == alone
    bf16 = LLMEngine(EngineConfig(str(tiny_model_dir), device="auto"))
    assert bf16.runner.dtype == torch.bfloat16
    out = run_engine(bf16, {"b": (prompts[0], params)})["b"]
    assert out[-1].completion_tokens == 12
