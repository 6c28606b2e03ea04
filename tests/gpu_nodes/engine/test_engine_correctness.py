"""The engine against Hugging Face transformers, batching, chunking, preemption and caching."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gpu_nodes.engine.config import EngineConfig
from gpu_nodes.engine.engine import LLMEngine
from gpu_nodes.engine.sampling_params import SamplingParams
from gpu_nodes.engine.tiny_model import TinyModelSpec, make_tiny_model

PROMPTS = [
    "The model reads",
    "Hello world, this is a longer prompt about the river and the quiet town near the hill",
    "User: What is two plus two?\nAssistant:",
]
GREEDY = SamplingParams(max_tokens=24, temperature=0, ignore_eos=True)


def ids_of(outputs) -> list[int]:
    return [t for out in outputs for t in out.token_ids_delta]


def encode(engine: LLMEngine, text: str) -> list[int]:
    return list(engine.tokenizer(text).input_ids)


def test_greedy_matches_transformers(tiny_engine, hf_model, hf_greedy, run_engine) -> None:
    prompts = [encode(tiny_engine, p) for p in PROMPTS]
    results = run_engine(tiny_engine, {str(i): (p, GREEDY) for i, p in enumerate(prompts)})
    for i, prompt in enumerate(prompts):
        expected, _ = hf_greedy(hf_model, prompt, GREEDY.max_tokens)
        assert ids_of(results[str(i)]) == expected, f"prompt {i} diverges from transformers"
        last = results[str(i)][-1]
        assert last.finished and last.finish_reason == "length"
        assert last.completion_tokens == 24 and last.prompt_tokens == len(prompt)


def test_batch_of_16_equals_each_request_alone(tiny_engine, run_engine) -> None:
    words = "the cat reads a long letter near the window while rain falls on the garden"
    prompts = [
        encode(tiny_engine, " ".join(words.split()[: 2 + i % 13]) + f" {i}") for i in range(16)
    ]
    params = SamplingParams(max_tokens=12, temperature=0, ignore_eos=True)
    alone = {}
    for i, prompt in enumerate(prompts):
        alone[i] = ids_of(run_engine(tiny_engine, {f"alone-{i}": (prompt, params)})[f"alone-{i}"])
    batch = run_engine(tiny_engine, {f"b-{i}": (p, params) for i, p in enumerate(prompts)})
    for i in range(16):
        assert ids_of(batch[f"b-{i}"]) == alone[i], f"request {i} differs when batched"


def test_chunked_prefill_and_preemption_still_correct(tiny_model_dir, run_engine) -> None:
    # 14 blocks x 4 tokens = 56 slots for 4 requests needing ~40 each: preemption must happen;
    # an 8-token budget forces chunked prefill of every prompt.
    engine = LLMEngine(
        EngineConfig(
            model_path=str(tiny_model_dir),
            device="cpu",
            block_size=4,
            num_blocks=14,
            max_num_batched_tokens=8,
            max_model_len=56,
        )
    )
    reference = LLMEngine(EngineConfig(model_path=str(tiny_model_dir), device="cpu"))
    params = SamplingParams(max_tokens=24, temperature=0, ignore_eos=True)
    prompts = [encode(engine, p)[:16] for p in [*PROMPTS, "A small cat paints the blue door"]]
    got = run_engine(engine, {str(i): (p, params) for i, p in enumerate(prompts)})
    assert engine.num_preemptions > 0
    for i, prompt in enumerate(prompts):
        expected = ids_of(run_engine(reference, {"r": (prompt, params)})["r"])
        assert ids_of(got[str(i)]) == expected
        assert got[str(i)][-1].completion_tokens == 24
    assert engine.block_manager.num_free_blocks == 14


def test_prefix_cache_hit_is_reported_and_output_unchanged(tiny_engine, run_engine) -> None:
    prompt = encode(tiny_engine, " ".join(["the quiet town near the river"] * 8))
    assert len(prompt) > 40
    params = SamplingParams(max_tokens=8, temperature=0, ignore_eos=True)
    first = run_engine(tiny_engine, {"p1": (prompt, params)})["p1"]
    second = run_engine(tiny_engine, {"p2": (prompt, params)})["p2"]
    block = tiny_engine.config.block_size
    assert second[-1].cached_prompt_tokens == (len(prompt) - 1) // block * block
    assert ids_of(first) == ids_of(second)


def test_cached_block_at_another_position_is_not_reused(tiny_model_dir, run_engine) -> None:
    """After caching a prompt, a prompt made of one of its later blocks is computed afresh:
    same tokens and logprobs as an engine with no prefix cache."""
    config = {"model_path": str(tiny_model_dir), "device": "cpu", "block_size": 4}
    cached = LLMEngine(EngineConfig(**config))
    uncached = LLMEngine(EngineConfig(**config, enable_prefix_caching=False))
    first = encode(cached, PROMPTS[1])[:12]
    moved = [*first[4:8], first[0]]  # block 1 of `first` at position 0, then one more token
    params = SamplingParams(max_tokens=16, temperature=0, ignore_eos=True, logprobs=0)
    run_engine(cached, {"first": (first, params)})
    got = run_engine(cached, {"moved": (moved, params)})["moved"]
    expected = run_engine(uncached, {"moved": (moved, params)})["moved"]
    got_logprobs = [lp.logprob for out in got for lp in out.logprobs_delta or []]
    expected_logprobs = [lp.logprob for out in expected for lp in out.logprobs_delta or []]
    assert got_logprobs == pytest.approx(expected_logprobs, abs=1e-5)
    assert ids_of(got) == ids_of(expected)
    assert got[-1].cached_prompt_tokens == 0


def test_logprobs_match_log_softmax_of_transformers(
    tiny_engine, hf_model, hf_greedy, run_engine
) -> None:
    prompt = encode(tiny_engine, PROMPTS[2])
    params = SamplingParams(max_tokens=5, temperature=0, ignore_eos=True, logprobs=3)
    outputs = run_engine(tiny_engine, {"lp": (prompt, params)})["lp"]
    _, hf_logits = hf_greedy(hf_model, prompt, 5)
    entries = [e for out in outputs for e in (out.logprobs_delta or [])]
    assert len(entries) == 5
    for entry, logits in zip(entries, hf_logits, strict=True):
        reference = torch.log_softmax(logits, dim=-1)
        assert entry.logprob == pytest.approx(float(reference[entry.token_id]), abs=1e-4)
        assert len(entry.top) == 3
        top_ids = [t for t, _, _ in entry.top]
        assert top_ids == torch.topk(reference, 3).indices.tolist()
        assert entry.top[0][0] == entry.token_id
        assert entry.token == tiny_engine.tokenizer.decode([entry.token_id])


def test_seed_reproducible_and_seed_sensitive(tiny_engine, run_engine) -> None:
    prompt = encode(tiny_engine, PROMPTS[0])

    def sampled(seed: int, rid: str) -> list[int]:
        params = SamplingParams(max_tokens=16, temperature=1.0, top_p=0.95, seed=seed)
        params.ignore_eos = True
        return ids_of(run_engine(tiny_engine, {rid: (prompt, params)})[rid])

    assert sampled(123, "s1") == sampled(123, "s2")
    assert sampled(123, "s3") != sampled(124, "s4")


def test_seeded_sampling_same_alone_and_in_batch(tiny_engine, run_engine) -> None:
    prompt = encode(tiny_engine, PROMPTS[1])
    params = SamplingParams(max_tokens=10, temperature=0.8, top_k=50, seed=7, ignore_eos=True)
    alone = ids_of(run_engine(tiny_engine, {"a": (prompt, params)})["a"])
    others = {f"o{i}": (prompt[: 3 + i], SamplingParams(max_tokens=10)) for i in range(5)}
    batch = run_engine(tiny_engine, {"a": (prompt, params), **others})
    assert ids_of(batch["a"]) == alone


def test_stop_string_truncates_and_finishes(tiny_engine, run_engine) -> None:
    prompt = encode(tiny_engine, PROMPTS[0])
    params = SamplingParams(max_tokens=30, temperature=0, ignore_eos=True)
    full = "".join(o.text_delta for o in run_engine(tiny_engine, {"f": (prompt, params)})["f"])
    assert len(full) > 12
    stop = full[8:11]
    stop_params = SamplingParams(max_tokens=30, temperature=0, ignore_eos=True, stop=[stop])
    outputs = run_engine(tiny_engine, {"s": (prompt, stop_params)})["s"]
    text = "".join(o.text_delta for o in outputs)
    assert text == full[: full.index(stop)]
    assert outputs[-1].finish_reason == "stop"


def test_stop_token_id_finishes_without_its_text(tiny_engine, run_engine) -> None:
    prompt = encode(tiny_engine, PROMPTS[1])
    params = SamplingParams(max_tokens=10, temperature=0, ignore_eos=True)
    full = ids_of(run_engine(tiny_engine, {"f": (prompt, params)})["f"])
    target = full[3]
    cut = full.index(target)
    stop_params = SamplingParams(
        max_tokens=10, temperature=0, ignore_eos=True, stop_token_ids=[target]
    )
    outputs = run_engine(tiny_engine, {"s": (prompt, stop_params)})["s"]
    assert ids_of(outputs) == full[: cut + 1]
    assert outputs[-1].finish_reason == "stop"
    text = "".join(o.text_delta for o in outputs)
    assert text == tiny_engine.tokenizer.decode(full[:cut], skip_special_tokens=True)


class FixedSetGuide:
    """Allows only `allowed` token ids; terminates after `limit` accepted tokens."""

    def __init__(self, allowed: list[int], limit: int) -> None:
        self.allowed = allowed
        self.limit = limit
        self.accepted: list[int] = []
        self.rows_filled: list[int] = []

    def fill_bitmask(self, bitmask: torch.Tensor, row: int) -> None:
        self.rows_filled.append(row)
        bitmask[row] = 0
        for token in self.allowed:
            bitmask[row, token // 32] |= torch.tensor(1 << (token % 32)).to(torch.int32)

    def accept(self, token_id: int) -> bool:
        self.accepted.append(token_id)
        return token_id in self.allowed

    def is_terminated(self) -> bool:
        return len(self.accepted) >= self.limit


def test_token_guide_restricts_sampling(tiny_engine, run_engine) -> None:
    allowed = [5, 40, 33, 1500, 2047 if tiny_engine.vocab_size > 2047 else 7]
    prompt = encode(tiny_engine, PROMPTS[0])
    guide = FixedSetGuide(allowed, limit=6)
    params = SamplingParams(max_tokens=50, temperature=1.0, seed=1, guide=guide)
    other = SamplingParams(max_tokens=8, temperature=0, ignore_eos=True)
    results = run_engine(tiny_engine, {"g": (prompt, params), "free": (prompt, other)})
    tokens = ids_of(results["g"])
    assert tokens == guide.accepted and len(tokens) == 6
    assert set(tokens) <= set(allowed)
    assert results["g"][-1].finish_reason == "stop"
    assert not set(ids_of(results["free"])) <= set(allowed)


def test_eos_finishes_with_stop(tiny_engine, run_engine) -> None:
    eos = tiny_engine.tokenizer.eos_token_id
    guide = FixedSetGuide([eos], limit=100)
    params = SamplingParams(max_tokens=10, temperature=0, guide=guide)
    outputs = run_engine(tiny_engine, {"e": (encode(tiny_engine, "Hi"), params)})["e"]
    assert ids_of(outputs) == [eos]
    assert outputs[-1].finish_reason == "stop" and outputs[-1].text_delta == ""


@pytest.mark.parametrize(
    ("prompt", "params", "needle"),
    [
        ([], SamplingParams(), "empty"),
        ([1, 10**6], SamplingParams(), "outside the vocabulary"),
        ([1, 2], SamplingParams(temperature=-1), "temperature"),
        ([1, 2], SamplingParams(top_p=0), "top_p"),
        ([1, 2], SamplingParams(max_tokens=0), "max_tokens"),
        ([1, 2], SamplingParams(logprobs=99), "logprobs"),
    ],
)
def test_invalid_requests_are_rejected(tiny_engine, prompt, params, needle) -> None:
    from gpu_nodes.engine.exceptions import InvalidRequestError

    with pytest.raises(InvalidRequestError, match=needle):
        tiny_engine.add_request("bad", prompt, params)
    assert not tiny_engine.has_unfinished_requests()


def test_abort_returns_final_output(tiny_engine) -> None:
    tiny_engine.add_request("ab", [1, 2, 3], SamplingParams(max_tokens=100, ignore_eos=True))
    tiny_engine.step()
    tiny_engine.abort_request("ab")
    outputs = tiny_engine.step()
    assert [(o.request_id, o.finished, o.finish_reason) for o in outputs] == [("ab", True, "abort")]
    assert not tiny_engine.has_unfinished_requests()


@pytest.fixture(scope="module")
def tiny_qwen2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = TinyModelSpec(
        seed=3, arch="qwen2", hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
        intermediate_size=128, tie_word_embeddings=True, max_shard_size="500KB",
    )  # fmt: skip
    return make_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"), spec)


def test_qwen2_with_qkv_bias_and_tied_embeddings(tiny_qwen2_dir, hf_greedy, run_engine) -> None:
    from transformers import AutoModelForCausalLM

    config = (tiny_qwen2_dir / "config.json").read_text()
    assert '"model_type": "qwen2"' in config
    hf = AutoModelForCausalLM.from_pretrained(str(tiny_qwen2_dir), dtype=torch.float32).eval()
    # Random init leaves biases at zero; give them values so the bias path is really checked.
    with torch.no_grad():
        for layer in hf.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_(0, 0.5)
    hf.save_pretrained(str(tiny_qwen2_dir), max_shard_size="500KB")
    engine = LLMEngine(EngineConfig(model_path=str(tiny_qwen2_dir), device="cpu"))
    assert engine.runner.spec.qkv_bias and engine.runner.spec.tie_word_embeddings
    prompt = encode(engine, PROMPTS[1])
    got = ids_of(run_engine(engine, {"q": (prompt, GREEDY)})["q"])
    expected, _ = hf_greedy(hf, prompt, GREEDY.max_tokens)
    assert got == expected


class BrokenGuide(FixedSetGuide):
    def fill_bitmask(self, bitmask: torch.Tensor, row: int) -> None:
        if len(self.accepted) == 2:
            raise RuntimeError("grammar exploded")
        super().fill_bitmask(bitmask, row)


def test_failing_guide_aborts_only_its_request(tiny_engine, run_engine) -> None:
    guide = BrokenGuide([5, 6, 7], limit=100)
    guided = SamplingParams(max_tokens=20, temperature=0, guide=guide)
    plain = SamplingParams(max_tokens=6, temperature=0, ignore_eos=True)
    results = run_engine(tiny_engine, {"bad": ([1, 2, 3], guided), "ok": ([1, 2, 3], plain)})
    assert results["bad"][-1].finish_reason == "abort"
    assert ids_of(results["bad"]) == guide.accepted == ids_of(results["bad"])[:2]
    assert results["ok"][-1].finish_reason == "length"
    assert results["ok"][-1].completion_tokens == 6


def test_same_prompt_submitted_together_shares_the_prefix(tiny_engine, run_engine) -> None:
    prompt = encode(tiny_engine, "A curious child counts " * 10)
    params = SamplingParams(max_tokens=6, temperature=0, ignore_eos=True)
    results = run_engine(tiny_engine, {f"n{i}": (prompt, params) for i in range(3)})
    hits = sorted(results[f"n{i}"][-1].cached_prompt_tokens for i in range(3))
    assert hits[0] == 0 and hits[1] > 0 and hits[2] > 0
    assert ids_of(results["n0"]) == ids_of(results["n1"]) == ids_of(results["n2"])


def test_mistral_shaped_checkpoint_matches_transformers(
    tmp_path_factory, hf_greedy, run_engine
) -> None:
    from transformers import AutoModelForCausalLM

    spec = TinyModelSpec(
        seed=5, arch="mistral", hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=1,
        intermediate_size=96, max_shard_size="500KB",
    )  # fmt: skip
    model_dir = make_tiny_model(tmp_path_factory.mktemp("tiny-mistral"), spec)
    engine = LLMEngine(EngineConfig(model_path=str(model_dir), device="cpu"))
    assert engine.runner.spec.model_type == "mistral"
    hf = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    prompt = encode(engine, PROMPTS[2])
    got = ids_of(run_engine(engine, {"m": (prompt, GREEDY)})["m"])
    assert got == hf_greedy(hf, prompt, GREEDY.max_tokens)[0]


def test_max_model_len_beyond_model_is_rejected(tiny_model_dir) -> None:
    from gpu_nodes.engine.exceptions import ModelLoadError

    with pytest.raises(ModelLoadError, match="max_model_len 9000"):
        LLMEngine(EngineConfig(model_path=str(tiny_model_dir), device="cpu", max_model_len=9000))


def test_missing_checkpoint_is_a_clear_error(tmp_path) -> None:
    from gpu_nodes.engine.exceptions import ModelLoadError

    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        LLMEngine(EngineConfig(model_path=str(tmp_path), device="cpu"))


def test_generation_stops_at_max_model_len(tiny_model_dir, run_engine) -> None:
    engine = LLMEngine(EngineConfig(model_path=str(tiny_model_dir), device="cpu", max_model_len=40))
    params = SamplingParams(max_tokens=100, temperature=0, ignore_eos=True)
    outputs = run_engine(engine, {"m": (list(range(5, 35)), params)})["m"]
    assert outputs[-1].finish_reason == "length"
    assert outputs[-1].completion_tokens == 10
