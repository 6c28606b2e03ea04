"""Loads a Hugging Face checkpoint into the engine's model, owns the paged KV cache, and runs one
forward per step over the flattened tokens of all scheduled sequences.

KV cache layout: [num_layers, 2, num_blocks, block_size, kv_heads, head_dim]; token t of a
sequence lives in slot block_table[t // block_size] * block_size + t % block_size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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
        return torch.bfloat16 if device.type == "cuda" else torch.float32
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


def load_weights(model: CausalLM, model_path: Path) -> None:
    """Copy HF-named tensors into the model, fusing q/k/v and gate/up projections."""
    raw: dict[str, torch.Tensor] = {}
    for file in _weight_files(model_path):
        if not file.is_file():
            raise ModelLoadError(f"weight shard {file.name} listed in the index is missing")
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 (safe_open has no __iter__)
                raw[name.removeprefix("model.")] = handle.get_tensor(name)
    params = dict(model.named_parameters())
    spec = model.spec

    def take(name: str) -> torch.Tensor:
        if name not in raw:
            raise ModelLoadError(f"weights are missing tensor {name!r}")
        return raw.pop(name)

    def put(target: str, tensor: torch.Tensor) -> None:
        param = params[target]
        if param.shape != tensor.shape:
            raise ModelLoadError(f"{target}: shape {tuple(tensor.shape)} != {tuple(param.shape)}")
        with torch.no_grad():
            param.copy_(tensor)

    put("embed_tokens.weight", take("embed_tokens.weight"))
    put("norm.weight", take("norm.weight"))
    lm_head = raw.pop("lm_head.weight", None)
    if lm_head is None:
        if not spec.tie_word_embeddings:
            raise ModelLoadError("weights are missing tensor 'lm_head.weight'")
        lm_head = params["embed_tokens.weight"].detach()
    put("lm_head.weight", lm_head)
    for i in range(spec.num_layers):
        p = f"layers.{i}."
        for norm in ("input_layernorm", "post_attention_layernorm"):
            put(f"{p}{norm}.weight", take(f"{p}{norm}.weight"))
        attn = f"{p}self_attn."
        qkv = [take(f"{attn}{n}_proj.weight") for n in "qkv"]
        put(f"{attn}qkv_proj.weight", torch.cat(qkv))
        if spec.qkv_bias:
            put(f"{attn}qkv_proj.bias", torch.cat([take(f"{attn}{n}_proj.bias") for n in "qkv"]))
        put(f"{attn}o_proj.weight", take(f"{attn}o_proj.weight"))
        if spec.o_bias:
            put(f"{attn}o_proj.bias", take(f"{attn}o_proj.bias"))
        mlp = f"{p}mlp."
        gate_up = [take(f"{mlp}gate_proj.weight"), take(f"{mlp}up_proj.weight")]
        put(f"{mlp}gate_up_proj.weight", torch.cat(gate_up))
        put(f"{mlp}down_proj.weight", take(f"{mlp}down_proj.weight"))
        if spec.mlp_bias:
            gate_up_bias = [take(f"{mlp}gate_proj.bias"), take(f"{mlp}up_proj.bias")]
            put(f"{mlp}gate_up_proj.bias", torch.cat(gate_up_bias))
            put(f"{mlp}down_proj.bias", take(f"{mlp}down_proj.bias"))


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
            model = CausalLM(self.spec)
        model = model.to_empty(device=self.device).to(self.dtype)
        load_weights(model, path)
        self.model = model.eval()
        self.num_blocks = num_blocks or self._blocks_from_budget(max_model_len, max_num_seqs)
        capacity = self.num_blocks * block_size
        limit = max_model_len or min(self.spec.max_position_embeddings, capacity)
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
        ids: list[int] = []
        positions: list[torch.Tensor] = []
        slots: list[torch.Tensor] = []
        logits_pos: dict[int, int] = {}
        for i in decodes:
            seq = scheduled[i].seq
            pos = seq.num_computed_tokens
            logits_pos[i] = len(ids)
            ids.append(seq.token_ids[pos])
            positions.append(torch.tensor([pos]))
            slots.append(self._slots(seq.block_table, pos, pos + 1))
        decode_slots, decode_mask = self._decode_keys([scheduled[i] for i in decodes])
        chunks: list[PrefillChunk] = []
        for i in prefills:
            seq, n = scheduled[i].seq, scheduled[i].num_new_tokens
            start = seq.num_computed_tokens
            chunk_slots = self._slots(seq.block_table, start, start + n)
            if start == 0:
                chunk = PrefillChunk(len(ids), n, None, None)
            else:
                q_pos = torch.arange(start, start + n)
                mask = torch.arange(start + n)[None, :] <= q_pos[:, None]
                key_slots = self._slots(seq.block_table, 0, start + n).to(self.device)
                chunk = PrefillChunk(len(ids), n, key_slots, mask.to(self.device))
            chunks.append(chunk)
            ids.extend(seq.token_ids[start : start + n])
            positions.append(torch.arange(start, start + n))
            slots.append(chunk_slots)
            if scheduled[i].completes:
                logits_pos[i] = len(ids) - 1
        rows = [-1] * len(scheduled)
        order = sorted(logits_pos)
        for row, i in enumerate(order):
            rows[i] = row
        meta = AttentionMetadata(
            slot_mapping=torch.cat(slots).to(self.device),
            num_decodes=len(decodes),
            decode_key_slots=decode_slots,
            decode_mask=decode_mask,
            prefills=chunks,
        )
        inputs = StepInputs(
            input_ids=torch.tensor(ids, dtype=torch.int64, device=self.device),
            positions=torch.cat(positions).to(self.device),
            meta=meta,
            logits_indices=torch.tensor(
                [logits_pos[i] for i in order], dtype=torch.int64, device=self.device
            ),
        )
        return inputs, rows

    def _decode_keys(
        self, decodes: list[ScheduledSeq]
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if not decodes:
            return None, None
        bs = self.block_size
        context_lens = torch.tensor([s.seq.num_computed_tokens + 1 for s in decodes])
        max_len = int(context_lens.max())
        max_blocks = (max_len + bs - 1) // bs
        tables = torch.zeros((len(decodes), max_blocks), dtype=torch.int64)
        for row, s in enumerate(decodes):
            used = s.seq.block_table[:max_blocks]
            tables[row, : len(used)] = torch.tensor(used, dtype=torch.int64)
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
