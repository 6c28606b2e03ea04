"""Benchmark of Plinth's built-in engine against Hugging Face generate(), in one run.

    .venv/bin/python bench/engine.py [--model DIR] [--tokens 64] [--device auto]

Builds a bench-sized Llama checkpoint with gpu_nodes.engine.tiny_model (cached under
$TMPDIR/plinth-bench-model unless --model is given), then measures:
  * output tokens/s for 1, 4 and 16 concurrent streams with continuous batching, against the
    same requests run one at a time through transformers' generate() (the baseline);
  * time to first token for a ~1,000-token prompt whose prefix is cached vs cold;
  * TTFT and inter-token latency p50/p99 for the 16-stream run.
Targets: >= 5x the sequential baseline at 16 streams; cached-prefix TTFT <= 0.2x cold.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gpu_nodes.engine.config import EngineConfig
from gpu_nodes.engine.engine import LLMEngine
from gpu_nodes.engine.sampling_params import SamplingParams
from gpu_nodes.engine.tiny_model import TinyModelSpec, ensure_tiny_model

BENCH_SPEC = TinyModelSpec(
    seed=1, hidden_size=512, num_layers=6, num_heads=8, num_kv_heads=4, intermediate_size=1376,
    max_shard_size="20MB",
)  # fmt: skip
STREAMS = (1, 4, 16)
SPEEDUP_TARGET = 5.0
CACHED_TTFT_TARGET = 0.2


@dataclass
class RunStats:
    tokens: int = 0
    seconds: float = 0.0
    ttft: list[float] = field(default_factory=list)
    itl: list[float] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))
    return ordered[index]


def make_prompts(count: int, length: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(1234)
    return [
        [0, *torch.randint(10, 2000, (length - 1,), generator=generator).tolist()]
        for _ in range(count)
    ]


def run_engine(engine: LLMEngine, prompts: list[list[int]], max_tokens: int) -> RunStats:
    params = SamplingParams(max_tokens=max_tokens, temperature=0, ignore_eos=True)
    stats = RunStats()
    started = time.perf_counter()
    last_seen: dict[str, float] = {}
    for i, prompt in enumerate(prompts):
        engine.add_request(f"r{i}-{started}", prompt, params)
    while engine.has_unfinished_requests():
        outputs = engine.step()
        now = time.perf_counter()
        for out in outputs:
            stats.tokens += len(out.token_ids_delta)
            previous = last_seen.get(out.request_id)
            if previous is None:
                stats.ttft.append(now - started)
            else:
                stats.itl.append(now - previous)
            last_seen[out.request_id] = now
    stats.seconds = time.perf_counter() - started
    return stats


def run_hf_sequential(hf: torch.nn.Module, prompts: list[list[int]], max_tokens: int) -> RunStats:
    stats = RunStats()
    device = next(hf.parameters()).device
    started = time.perf_counter()
    with torch.inference_mode():
        for prompt in prompts:
            ids = torch.tensor([prompt], device=device)
            out = hf.generate(  # type: ignore[operator]
                ids,
                max_new_tokens=max_tokens,
                min_new_tokens=max_tokens,
                do_sample=False,
                pad_token_id=0,
            )
            stats.tokens += out.shape[1] - ids.shape[1]
    stats.seconds = time.perf_counter() - started
    return stats


def ttft_once(engine: LLMEngine, prompt: list[int], request_id: str) -> float:
    params = SamplingParams(max_tokens=1, temperature=0, ignore_eos=True)
    started = time.perf_counter()
    engine.add_request(request_id, prompt, params)
    while engine.has_unfinished_requests():
        engine.step()
    return time.perf_counter() - started


def measure_prefix_ttft(engine: LLMEngine, repeats: int = 3) -> tuple[float, float, int]:
    """Median TTFT for ~1,000-token prompts: cold (new prefix) vs cached (shared prefix)."""
    prefix_len = 1000
    cold, cached = [], []
    hits = 0
    for r in range(repeats):
        generator = torch.Generator().manual_seed(100 + r)
        prefix = [0, *torch.randint(10, 2000, (prefix_len - 1,), generator=generator).tolist()]
        cold.append(ttft_once(engine, [*prefix, 11, 12, 13], f"cold-{r}"))
        cached.append(ttft_once(engine, [*prefix, 21, 22, 23, 24], f"cached-{r}"))
        hits = engine.block_manager.blocks_needed(prefix_len) - 1
    return statistics.median(cold), statistics.median(cached), hits * engine.config.block_size


def throughput_table(
    engine: LLMEngine, hf: torch.nn.Module, prompts: list[list[int]], tokens: int
) -> dict[int, tuple[RunStats, RunStats]]:
    """Continuous batching vs sequential HF generate() at 1, 4, 16 streams; prints the table."""
    rows = []
    results: dict[int, tuple[RunStats, RunStats]] = {}
    for streams in STREAMS:
        batch = prompts[:streams]
        ours = run_engine(engine, batch, tokens)
        baseline = run_hf_sequential(hf, batch, tokens)
        results[streams] = (ours, baseline)
        speedup = ours.tokens_per_s / baseline.tokens_per_s
        rows.append(
            f"| {streams:>7} | {ours.tokens_per_s:>12.1f} | {baseline.tokens_per_s:>13.1f} "
            f"| {speedup:>6.2f}x | {percentile(ours.ttft, 50) * 1e3:>11.1f} "
            f"| {percentile(ours.itl, 50) * 1e3:>7.1f} | {percentile(ours.itl, 99) * 1e3:>7.1f} |"
        )
    print()
    print("| streams | engine tok/s | HF seq. tok/s | speedup | TTFT p50 ms | ITL p50 | ITL p99 |")
    print("|---------|--------------|---------------|---------|-------------|---------|---------|")
    print("\n".join(rows))
    return results


def latency_table(ours16: RunStats, cold: float, cached: float, hit_tokens: int) -> None:
    print()
    print("| metric | value |")
    print("|---|---|")
    print(f"| TTFT cold, 1,003-token prompt (median of 3) | {cold * 1e3:.1f} ms |")
    cached_label = f"TTFT cached prefix ({hit_tokens} tokens hit), 1,004-token prompt"
    print(f"| {cached_label} | {cached * 1e3:.1f} ms |")
    print(f"| cached / cold | {cached / cold:.3f} |")
    print(f"| 16 streams TTFT p50 / p99 | {percentile(ours16.ttft, 50) * 1e3:.1f} / "
          f"{percentile(ours16.ttft, 99) * 1e3:.1f} ms |")  # fmt: skip
    print(f"| 16 streams ITL p50 / p99 | {percentile(ours16.itl, 50) * 1e3:.1f} / "
          f"{percentile(ours16.itl, 99) * 1e3:.1f} ms |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="checkpoint dir (HF layout)")
    parser.add_argument("--tokens", type=int, default=64, help="output tokens per request")
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads for both engine and baseline (0: torch default); 1 is the most "
        "stable on a shared, oversubscribed machine",
    )
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    model_dir = args.model or Path(tempfile.gettempdir()) / "plinth-bench-model"
    started = time.perf_counter()
    ensure_tiny_model(model_dir, BENCH_SPEC)
    print(f"model: {model_dir} (ready in {time.perf_counter() - started:.1f}s)")

    from transformers import AutoModelForCausalLM

    engine = LLMEngine(EngineConfig(model_path=str(model_dir), device=args.device))
    device, dtype = engine.runner.device, engine.runner.dtype
    hf: torch.nn.Module = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype)
    hf = hf.to(device).eval()
    print(f"device: {device}, dtype: {dtype}, threads: {torch.get_num_threads()}")
    prompts = make_prompts(max(STREAMS), args.prompt_len)
    run_engine(engine, prompts[:2], 4)  # warm-up (allocator, kernels)
    run_hf_sequential(hf, prompts[:1], 4)

    results = throughput_table(engine, hf, prompts, args.tokens)
    cold, cached, hit_tokens = measure_prefix_ttft(engine)
    latency_table(results[16][0], cold, cached, hit_tokens)
    speedup16 = results[16][0].tokens_per_s / results[16][1].tokens_per_s
    print()
    ok_speed = "PASS" if speedup16 >= SPEEDUP_TARGET else "FAIL"
    ok_cache = "PASS" if cached / cold <= CACHED_TTFT_TARGET else "FAIL"
    print(f"target 16-stream speedup >= {SPEEDUP_TARGET}x: {speedup16:.2f}x {ok_speed}")
    print(f"target cached TTFT <= {CACHED_TTFT_TARGET}x cold: {cached / cold:.3f}x {ok_cache}")


if __name__ == "__main__":
    main()
