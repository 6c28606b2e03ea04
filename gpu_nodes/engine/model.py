"""Llama / Qwen2 / Mistral-shaped decoder in plain torch, running over a paged KV cache.

One forward covers the flattened tokens of every scheduled sequence. Attention is done in two
groups: all single-token queries (decodes) as one padded batch gathered from the paged cache, and
each multi-token prefill chunk on its own (causal; earlier context gathered from the cache).
q/k/v and gate/up projections are fused into single matmuls at load time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gpu_nodes.engine.exceptions import ModelLoadError

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "mistral")


@dataclass
class ModelSpec:
    """The parts of a Hugging Face config.json the engine needs."""

    model_type: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    rms_norm_eps: float
    rope_theta: float
    rope_scaling: dict[str, Any] | None
    qkv_bias: bool
    o_bias: bool
    mlp_bias: bool
    tie_word_embeddings: bool
    max_position_embeddings: int
    hidden_act: str
    sliding_window: int | None = None  # attention window; max_model_len is capped to it

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> ModelSpec:
        model_type = str(cfg.get("model_type", ""))
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ModelLoadError(
                f"config.json model_type {model_type!r} is not supported; "
                f"expected one of {', '.join(SUPPORTED_MODEL_TYPES)}"
            )
        try:
            hidden = int(cfg["hidden_size"])
            heads = int(cfg["num_attention_heads"])
            rope_params = cfg.get("rope_parameters") or {}
            rope_scaling = cfg.get("rope_scaling") or None
            if rope_params.get("rope_type", "default") != "default":
                rope_scaling = rope_params
            attention_bias = bool(cfg.get("attention_bias", False))
            return cls(
                model_type=model_type,
                vocab_size=int(cfg["vocab_size"]),
                hidden_size=hidden,
                num_layers=int(cfg["num_hidden_layers"]),
                num_heads=heads,
                num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
                head_dim=int(cfg.get("head_dim") or hidden // heads),
                intermediate_size=int(cfg["intermediate_size"]),
                rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
                rope_theta=float(cfg.get("rope_theta") or rope_params.get("rope_theta", 10000.0)),
                rope_scaling=rope_scaling,
                qkv_bias=model_type == "qwen2" or attention_bias,
                o_bias=attention_bias,
                mlp_bias=bool(cfg.get("mlp_bias", False)),
                tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
                max_position_embeddings=int(cfg.get("max_position_embeddings", 2048)),
                hidden_act=str(cfg.get("hidden_act", "silu")),
                sliding_window=_sliding_window(model_type, cfg),
            )
        except KeyError as exc:
            raise ModelLoadError(f"config.json is missing field {exc.args[0]!r}") from exc


def _sliding_window(model_type: str, cfg: dict[str, Any]) -> int | None:
    # Qwen2 configs carry a sliding_window that is off unless use_sliding_window is true.
    if model_type == "qwen2" and not cfg.get("use_sliding_window", False):
        return None
    window = cfg.get("sliding_window")
    return int(window) if window else None


@dataclass
class PrefillChunk:
    token_start: int  # offset of the chunk in the flattened batch
    num_tokens: int
    key_slots: torch.Tensor | None  # [context_len] cache slots; None when the chunk is the context
    mask: torch.Tensor | None  # [num_tokens, context_len] bool; None -> plain causal


@dataclass
class AttentionMetadata:
    slot_mapping: torch.Tensor  # [T] cache slot for each new token
    num_decodes: int  # the first num_decodes tokens are single-token queries
    decode_key_slots: torch.Tensor | None  # [num_decodes, max_context]
    decode_mask: torch.Tensor | None  # [num_decodes, 1, 1, max_context] bool
    prefills: list[PrefillChunk]


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Attention(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.num_heads = spec.num_heads
        self.num_kv_heads = spec.num_kv_heads
        self.head_dim = spec.head_dim
        self.q_size = spec.num_heads * spec.head_dim
        self.kv_size = spec.num_kv_heads * spec.head_dim
        self.qkv_proj = nn.Linear(spec.hidden_size, self.q_size + 2 * self.kv_size, spec.qkv_bias)
        self.o_proj = nn.Linear(self.q_size, spec.hidden_size, bias=spec.o_bias)
        self.scale = spec.head_dim**-0.5

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        kv_cache: torch.Tensor,
        meta: AttentionMetadata,
    ) -> torch.Tensor:
        num_tokens = x.shape[0]
        q, k, v = self.qkv_proj(x).split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        q = q.view(num_tokens, self.num_heads, self.head_dim)
        k = k.view(num_tokens, self.num_kv_heads, self.head_dim)
        v = v.view(num_tokens, self.num_kv_heads, self.head_dim)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k_cache, v_cache = kv_cache[0], kv_cache[1]  # [num_slots, kv_heads, head_dim]
        k_cache.index_copy_(0, meta.slot_mapping, k)
        v_cache.index_copy_(0, meta.slot_mapping, v)
        out = torch.empty_like(q)
        if meta.num_decodes:
            self._decode_attention(q, k_cache, v_cache, meta, out)
        for chunk in meta.prefills:
            self._prefill_attention(q, k, v, k_cache, v_cache, chunk, out)
        return self.o_proj(out.view(num_tokens, self.q_size))

    def _decode_attention(
        self,
        q: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        meta: AttentionMetadata,
        out: torch.Tensor,
    ) -> None:
        """All single-token queries as one padded batch over keys gathered from the cache."""
        nd = meta.num_decodes
        assert meta.decode_key_slots is not None
        keys = k_cache[meta.decode_key_slots].transpose(1, 2)  # [B, kvh, L, d]
        values = v_cache[meta.decode_key_slots].transpose(1, 2)
        attn = F.scaled_dot_product_attention(
            q[:nd].unsqueeze(2),
            keys,
            values,
            attn_mask=meta.decode_mask,
            scale=self.scale,
            enable_gqa=True,
        )
        out[:nd] = attn.squeeze(2)

    def _prefill_attention(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        chunk: PrefillChunk,
        out: torch.Tensor,
    ) -> None:
        """One prefill chunk; a chunk starting at position 0 is its own whole context."""
        span = slice(chunk.token_start, chunk.token_start + chunk.num_tokens)
        if chunk.key_slots is None:
            keys, values = k[span], v[span]
        else:
            keys, values = k_cache[chunk.key_slots], v_cache[chunk.key_slots]
        attn = F.scaled_dot_product_attention(
            q[span].transpose(0, 1).unsqueeze(0),
            keys.transpose(0, 1).unsqueeze(0),
            values.transpose(0, 1).unsqueeze(0),
            attn_mask=chunk.mask,
            is_causal=chunk.mask is None,
            scale=self.scale,
            enable_gqa=True,
        )
        out[span] = attn.squeeze(0).transpose(0, 1)


class MLP(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        if spec.hidden_act != "silu":
            raise ModelLoadError(f"hidden_act {spec.hidden_act!r} is not supported (only silu)")
        self.intermediate_size = spec.intermediate_size
        self.gate_up_proj = nn.Linear(
            spec.hidden_size, 2 * spec.intermediate_size, bias=spec.mlp_bias
        )
        self.down_proj = nn.Linear(spec.intermediate_size, spec.hidden_size, bias=spec.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).split(self.intermediate_size, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class DecoderLayer(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(spec.hidden_size, spec.rms_norm_eps)
        self.self_attn = Attention(spec)
        self.post_attention_layernorm = RMSNorm(spec.hidden_size, spec.rms_norm_eps)
        self.mlp = MLP(spec)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        kv_cache: torch.Tensor,
        meta: AttentionMetadata,
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, kv_cache, meta)
        return x + self.mlp(self.post_attention_layernorm(x))


class CausalLM(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.embed_tokens = nn.Embedding(spec.vocab_size, spec.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(spec) for _ in range(spec.num_layers))
        self.norm = RMSNorm(spec.hidden_size, spec.rms_norm_eps)
        self.lm_head = nn.Linear(spec.hidden_size, spec.vocab_size, bias=False)

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        rope_cache: tuple[torch.Tensor, torch.Tensor],
        kv_caches: torch.Tensor,
        meta: AttentionMetadata,
        logits_indices: torch.Tensor,
    ) -> torch.Tensor:
        """Return float32 logits for the tokens at logits_indices."""
        x = self.embed_tokens(input_ids)
        cos = rope_cache[0][positions].unsqueeze(1).to(x.dtype)  # [T, 1, head_dim]
        sin = rope_cache[1][positions].unsqueeze(1).to(x.dtype)
        for layer, kv_cache in zip(self.layers, kv_caches, strict=True):
            x = layer(x, cos, sin, kv_cache, meta)
        x = self.norm(x[logits_indices])
        return self.lm_head(x).float()


def rope_cache(
    spec: ModelSpec, max_len: int, device: torch.device, hf_config: Any | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables [max_len, head_dim] in float32, computed like Hugging Face does."""
    scaling = 1.0
    rope_type = (spec.rope_scaling or {}).get("rope_type") or (spec.rope_scaling or {}).get("type")
    if rope_type and rope_type != "default":
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

        if rope_type not in ROPE_INIT_FUNCTIONS or hf_config is None:
            raise ModelLoadError(f"rope_scaling type {rope_type!r} is not supported")
        inv_freq, scaling = ROPE_INIT_FUNCTIONS[rope_type](hf_config, torch.device("cpu"))
        inv_freq = inv_freq.float()
    else:
        exponents = torch.arange(0, spec.head_dim, 2, dtype=torch.int64).float() / spec.head_dim
        inv_freq = 1.0 / (spec.rope_theta**exponents)
    positions = torch.arange(max_len, dtype=torch.int64).float()
    freqs = positions[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return (emb.cos() * scaling).to(device), (emb.sin() * scaling).to(device)
