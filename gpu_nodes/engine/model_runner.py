"""Loads a Hugging Face checkpoint into the engine's model, owns the paged KV cache, and runs one
forward per step over the flattened tokens of all scheduled sequences.

KV cache layout: [num_layers, 2, num_blocks, block_size, kv_heads, head_dim]; token t of a
sequence lives in slot block_table[t // block_size] * block_size + t % block_size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from gpu_nodes.engine.exceptions import ModelLoadError
from gpu_nodes.engine.model import AttentionMetadata, CausalLM, ModelSpec, PrefillChunk, rope_cache
from gpu_nodes.engine.scheduler import ScheduledSeq

CPU_KV_BUDGET_BYTES = 1 << 30  # at most 1 GiB of KV cache on CPU by default
CUDA_KV_FRACTION = 0.7  # of the GPU memory still free after loading the weights


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
            dtype
        ]
    except KeyError:
        raise ModelLoadError(
            f"dtype {dtype!r} is not supported: use auto, float32, bfloat16 or float16"
        ) from None


def read_config(model_path: Path) -> dict[str, Any]:
    config_file = model_path / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"no config.json in model_path {str(model_path)!r}")
    try:
        data = json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{config_file}: invalid JSON at line {exc.lineno}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{config_file}: expected a JSON object")
    return data


def _weight_files(model_path: Path) -> list[Path]:
    index = model_path / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map", {})
        return [model_path / name for name in sorted(set(weight_map.values()))]
    files = sorted(model_path.glob("*.safetensors"))
    if not files:
        raise ModelLoadError(f"no *.safetensors weights in {str(model_path)!r}")
    return files


def _read_tensors(model_path: Path) -> dict[str, torch.Tensor]:
    raw: dict[str, torch.Tensor] = {}
    for file in _weight_files(model_path):
        if not file.is_file():
            raise ModelLoadError(f"weight shard {file.name} listed in the index is missing")
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 (safe_open has no __iter__)
                raw[name.removeprefix("model.")] = handle.get_tensor(name)
    return raw


class _WeightLoader:
    """Copies HF-named tensors into the model, fusing q/k/v and gate/up projections."""

    def __init__(self, model: CausalLM, raw: dict[str, torch.Tensor]) -> None:
        self.raw = raw
        self.params = dict(model.named_parameters())
        self.spec = model.spec

    def take(self, name: str) -> torch.Tensor:
        if name not in self.raw:
            raise ModelLoadError(f"weights are missing tensor {name!r}")
        return self.raw.pop(name)

    def put(self, target: str, tensor: torch.Tensor) -> None:
        param = self.params[target]
        if param.shape != tensor.shape:
            raise ModelLoadError(f"{target}: shape {tuple(tensor.shape)} != {tuple(param.shape)}")
        with torch.no_grad():
            param.copy_(tensor)

    def fused(self, target: str, sources: list[str]) -> None:
        self.put(target, torch.cat([self.take(name) for name in sources]))

    def load(self) -> None:
        self.put("embed_tokens.weight", self.take("embed_tokens.weight"))
        self.put("norm.weight", self.take("norm.weight"))
        lm_head = self.raw.pop("lm_head.weight", None)
        if lm_head is None:
            if not self.spec.tie_word_embeddings:
                raise ModelLoadError("weights are missing tensor 'lm_head.weight'")
            lm_head = self.params["embed_tokens.weight"].detach()
        self.put("lm_head.weight", lm_head)
        for i in range(self.spec.num_layers):
            self.load_layer(f"layers.{i}.")

    def load_layer(self, p: str) -> None:
        spec = self.spec
        for norm in ("input_layernorm", "post_attention_layernorm"):
            self.put(f"{p}{norm}.weight", self.take(f"{p}{norm}.weight"))
        attn, mlp = f"{p}self_attn.", f"{p}mlp."
        self.fused(f"{attn}qkv_proj.weight", [f"{attn}{n}_proj.weight" for n in "qkv"])
        if spec.qkv_bias:
            self.fused(f"{attn}qkv_proj.bias", [f"{attn}{n}_proj.bias" for n in "qkv"])
        self.put(f"{attn}o_proj.weight", self.take(f"{attn}o_proj.weight"))
        if spec.o_bias:
            self.put(f"{attn}o_proj.bias", self.take(f"{attn}o_proj.bias"))
        self.fused(f"{mlp}gate_up_proj.weight", [f"{mlp}gate_proj.weight", f"{mlp}up_proj.weight"])
        self.put(f"{mlp}down_proj.weight", self.take(f"{mlp}down_proj.weight"))
        if spec.mlp_bias:
            self.fused(f"{mlp}gate_up_proj.bias", [f"{mlp}gate_proj.bias", f"{mlp}up_proj.bias"])
            self.put(f"{mlp}down_proj.bias", self.take(f"{mlp}down_proj.bias"))


def load_weights(model: CausalLM, model_path: Path) -> None:
    """Load a safetensors checkpoint (one file or index + shards) into the model."""
    _WeightLoader(model, _read_tensors(model_path)).load()


@dataclass
class _FlatBatch:
    """The step's tokens flattened, built up sequence by sequence."""

    ids: list[int] = field(default_factory=list)
    positions: list[torch.Tensor] = field(default_factory=list)
    slots: list[torch.Tensor] = field(default_factory=list)
    logits_pos: dict[int, int] = field(default_factory=dict)  # scheduled index -> token index

    def add(self, index: int, tokens: list[int], start: int, n: int, samples: bool) -> None:
        self.ids.extend(tokens[start : start + n])
        self.positions.append(torch.arange(start, start + n))
        if samples:
            self.logits_pos[index] = len(self.ids) - 1


@dataclass
class StepInputs:
    input_ids: torch.Tensor
    positions: torch.Tensor
    meta: AttentionMetadata
    logits_indices: torch.Tensor


class ModelRunner:
    def __init__(
        self,
        model_path: str,
        device: str,
        dtype: str,
        block_size: int,
        num_blocks: int | None,
        max_model_len: int | None,
        max_num_seqs: int,
    ) -> None:
        path = Path(model_path)
        self.hf_config = read_config(path)
        self.spec = ModelSpec.from_config(self.hf_config)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.block_size = block_size
        with torch.device("meta"):
            model = CausalLM(self.spec).to(self.dtype)  # no memory yet: cast before placing
        model = model.to_empty(device=self.device)
        load_weights(model, path)
        self.model = model.eval()
        self.num_blocks = num_blocks or self._blocks_from_budget(max_model_len, max_num_seqs)
        capacity = self.num_blocks * block_size
        # Full attention equals sliding-window attention while the context fits the window.
        window = self.spec.sliding_window or self.spec.max_position_embeddings
        natural = min(self.spec.max_position_embeddings, window)
        limit = max_model_len or min(natural, capacity)
        if limit > natural:
            raise ModelLoadError(
                f"max_model_len {limit} exceeds what the model supports ({natural}: "
                "max_position_embeddings / sliding_window)"
            )
        if limit > capacity:
            raise ModelLoadError(
                f"max_model_len {limit} does not fit the KV cache "
                f"({self.num_blocks} blocks x {block_size} tokens)"
            )
        self.max_model_len = limit
        spec = self.spec
        self.kv_cache = torch.zeros(
            (spec.num_layers, 2, self.num_blocks, block_size, spec.num_kv_heads, spec.head_dim),
            dtype=self.dtype,
            device=self.device,
        )
        # The same memory seen as [layers, 2, slots, kv_heads, head_dim] for slot indexing.
        self.kv_slots = self.kv_cache.view(
            spec.num_layers, 2, self.num_blocks * block_size, spec.num_kv_heads, spec.head_dim
        )
        self.rope = rope_cache(spec, max(limit, 1), self.device, self._hf_config_object(path))

    def _hf_config_object(self, path: Path) -> Any | None:
        if not self.spec.rope_scaling:
            return None
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(str(path))

    def bytes_per_block(self) -> int:
        spec = self.spec
        element = torch.tensor([], dtype=self.dtype).element_size()
        return spec.num_layers * 2 * self.block_size * spec.num_kv_heads * spec.head_dim * element

    def _blocks_from_budget(self, max_model_len: int | None, max_num_seqs: int) -> int:
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            budget = int(free * CUDA_KV_FRACTION)
        else:
            budget = CPU_KV_BUDGET_BYTES
        by_budget = max(1, budget // self.bytes_per_block())
        seq_len = max_model_len or self.spec.max_position_embeddings
        useful = max_num_seqs * ((seq_len + self.block_size - 1) // self.block_size) + 1
        return min(by_budget, useful)

    # ---- step ------------------------------------------------------------------------------
    def _slots(self, block_table: list[int], start: int, end: int) -> torch.Tensor:
        positions = torch.arange(start, end)
        table = torch.tensor(block_table, dtype=torch.int64)
        return table[positions // self.block_size] * self.block_size + positions % self.block_size

    def prepare(self, scheduled: list[ScheduledSeq]) -> tuple[StepInputs, list[int]]:
        """Flatten the batch (decodes first); return inputs and, per scheduled entry that
        samples, its row in the logits (-1 for partial prefill chunks)."""
        decodes = [i for i, s in enumerate(scheduled) if s.num_new_tokens == 1]
        prefills = [i for i, s in enumerate(scheduled) if s.num_new_tokens > 1]
        flat = _FlatBatch()
        if decodes:
            self._add_decodes([scheduled[i] for i in decodes], decodes, flat)
        decode_slots, decode_mask = self._decode_keys([scheduled[i] for i in decodes])
        chunks = [self._prefill_chunk(scheduled[i], flat, i) for i in prefills]
        order = sorted(flat.logits_pos)
        rows = [-1] * len(scheduled)
        for row, i in enumerate(order):
            rows[i] = row
        meta = AttentionMetadata(
            slot_mapping=torch.cat(flat.slots).to(self.device),
            num_decodes=len(decodes),
            decode_key_slots=decode_slots,
            decode_mask=decode_mask,
            prefills=chunks,
        )
        inputs = StepInputs(
            input_ids=torch.tensor(flat.ids, dtype=torch.int64, device=self.device),
            positions=torch.cat(flat.positions).to(self.device),
            meta=meta,
            logits_indices=torch.tensor(
                [flat.logits_pos[i] for i in order], dtype=torch.int64, device=self.device
            ),
        )
        return inputs, rows

    def _add_decodes(self, items: list[ScheduledSeq], indices: list[int], flat: _FlatBatch) -> None:
        """Single-token entries, built with plain ints (the per-step hot path)."""
        bs = self.block_size
        positions: list[int] = []
        slots: list[int] = []
        for index, item in zip(indices, items, strict=True):
            seq = item.seq
            pos = seq.num_computed_tokens
            flat.ids.append(seq.token_ids[pos])
            flat.logits_pos[index] = len(flat.ids) - 1
            positions.append(pos)
            slots.append(seq.block_table[pos // bs] * bs + pos % bs)
        flat.positions.append(torch.tensor(positions, dtype=torch.int64))
        flat.slots.append(torch.tensor(slots, dtype=torch.int64))

    def _prefill_chunk(self, item: ScheduledSeq, flat: _FlatBatch, index: int) -> PrefillChunk:
        seq, n = item.seq, item.num_new_tokens
        start = seq.num_computed_tokens
        token_start = len(flat.ids)
        flat.add(index, seq.token_ids, start, n, item.completes)
        flat.slots.append(self._slots(seq.block_table, start, start + n))
        if start == 0:
            return PrefillChunk(token_start, n, None, None)
        # Earlier context comes from the cache: query i (position start+i) sees keys <= it.
        q_pos = torch.arange(start, start + n)
        mask = torch.arange(start + n)[None, :] <= q_pos[:, None]
        key_slots = self._slots(seq.block_table, 0, start + n).to(self.device)
        return PrefillChunk(token_start, n, key_slots, mask.to(self.device))

    def _decode_keys(
        self, decodes: list[ScheduledSeq]
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if not decodes:
            return None, None
        bs = self.block_size
        lens = [s.seq.num_computed_tokens + 1 for s in decodes]
        max_len = max(lens)
        max_blocks = (max_len + bs - 1) // bs
        padded = [(s.seq.block_table[:max_blocks] + [0] * max_blocks)[:max_blocks] for s in decodes]
        tables = torch.tensor(padded, dtype=torch.int64)
        context_lens = torch.tensor(lens)
        key_slots = (tables[:, :, None] * bs + torch.arange(bs)).view(len(decodes), -1)
        key_slots = key_slots[:, :max_len]
        mask = torch.arange(max_len)[None, :] < context_lens[:, None]
        return key_slots.to(self.device), mask[:, None, None, :].to(self.device)

    @torch.inference_mode()
    def execute(self, scheduled: list[ScheduledSeq]) -> tuple[torch.Tensor, list[int]]:
        """Run one forward; returns (float32 logits [num_sampling, vocab], row per entry)."""
        inputs, rows = self.prepare(scheduled)
        logits = self.model(
            inputs.input_ids,
            inputs.positions,
            self.rope,
            self.kv_slots,
            inputs.meta,
            inputs.logits_indices,
        )
        return logits, rows
