"""How an engine is built: the checkpoint, device and dtype, and the KV-cache / batching sizes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EngineConfig:
    model_path: str
    device: str = "auto"  # auto -> cuda if available else cpu
    dtype: str = "auto"  # float32 on cpu, bfloat16 on cuda
    block_size: int = 16
    num_blocks: int | None = None  # None -> derived from a memory budget
    max_num_seqs: int = 32
    max_num_batched_tokens: int = 2048  # per-step token budget (chunked prefill)
    max_model_len: int | None = None
    enable_prefix_caching: bool = True
