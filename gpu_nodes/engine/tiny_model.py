"""Make a tiny Llama-architecture checkpoint in Hugging Face format, deterministic from a seed.

    python -m gpu_nodes.engine.tiny_model --out DIR [--seed 0] [--train-steps 0]

Writes a byte-level BPE tokenizer (tokenizer.json + tokenizer_config.json with a Llama-3-style
chat template), config.json, generation_config.json and the weights as >= 2 safetensors shards
with model.safetensors.index.json (so shard loading is exercised). Used by the tests, the
`examples/tiny-llm` package and the engine benchmark.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

BOS = "<|begin_of_text|>"
EOT = "<|eot_id|>"
START_HEADER = "<|start_header_id|>"
END_HEADER = "<|end_header_id|>"
PAD = "<|pad|>"
SPECIAL_TOKENS = [BOS, EOT, START_HEADER, END_HEADER, PAD]

# Llama-3-style chat template: system/user/assistant/tool messages, optional tool list and tool
# calls, and add_generation_prompt.
CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if tools is defined and tools %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{- 'You can call these functions. To call one, reply with JSON "
    '{"name": function name, "parameters": arguments}.\\n\\n\' }}'
    "{%- for tool in tools %}{{- tool | tojson }}{{- '\\n' }}{%- endfor %}"
    "{{- '<|eot_id|>' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- set role = 'ipython' if message['role'] == 'tool' else message['role'] %}"
    "{{- '<|start_header_id|>' + role + '<|end_header_id|>\\n\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] | trim }}"
    "{%- elif message['content'] is not none %}"
    "{%- for part in message['content'] %}"
    "{%- if part['type'] == 'text' %}{{- part['text'] }}{%- endif %}"
    "{%- endfor %}"
    "{%- endif %}"
    "{%- if message['tool_calls'] is defined and message['tool_calls'] %}"
    "{%- for call in message['tool_calls'] %}"
    "{%- set fn = call['function'] if call['function'] is defined else call %}"
    "{{- '{\"name\": \"' + fn['name'] + '\", \"parameters\": ' }}"
    "{%- if fn['arguments'] is string %}{{- fn['arguments'] }}"
    "{%- else %}{{- fn['arguments'] | tojson }}{%- endif %}"
    "{{- '}' }}"
    "{%- endfor %}"
    "{%- endif %}"
    "{{- '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{%- endif %}"
)

CORPUS_PATH = Path(__file__).parent / "data" / "corpus.txt"


@dataclass
class TinyModelSpec:
    """Shape of the generated model; the defaults are the test model."""

    seed: int = 0
    vocab_size: int = 2048
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 8
    num_kv_heads: int = 4
    intermediate_size: int = 688
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False
    arch: str = "llama"  # "llama", "qwen2" (qkv bias) or "mistral"
    train_steps: int = 0
    max_shard_size: str = "4MB"


def _training_texts() -> list[str]:
    texts = CORPUS_PATH.read_text(encoding="utf-8").splitlines()
    # The repo's own docs add some technical vocabulary; they are optional.
    repo_root = Path(__file__).resolve().parents[2]
    for doc in sorted([repo_root / "README.md", *sorted((repo_root / "docs").glob("*.md"))]):
        if doc.is_file():
            texts.extend(doc.read_text(encoding="utf-8", errors="replace").splitlines())
    return [line for line in texts if line.strip()]


def build_tokenizer(vocab_size: int) -> Tokenizer:
    """Train a byte-level BPE tokenizer on the bundled corpus (deterministic)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_training_texts(), trainer=trainer)
    bos_id = tokenizer.token_to_id(BOS)
    # Like Llama 3: plain encodes start with BOS; the chat template writes its own BOS and
    # apply_chat_template encodes without special tokens.
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return tokenizer


def write_tokenizer(out: Path, tokenizer: Tokenizer, max_len: int) -> None:
    tokenizer.save(str(out / "tokenizer.json"))
    added = {
        str(tokenizer.token_to_id(tok)): {
            "content": tok,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for tok in SPECIAL_TOKENS
    }
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOT,
        "pad_token": PAD,
        "model_max_length": max_len,
        "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": added,
        "chat_template": CHAT_TEMPLATE,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    special_map = {"bos_token": BOS, "eos_token": EOT, "pad_token": PAD}
    (out / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2) + "\n")


def _make_hf_model(spec: TinyModelSpec, tokenizer: Tokenizer) -> Any:
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    common: dict[str, Any] = {
        "vocab_size": tokenizer.get_vocab_size(),
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_layers,
        "num_attention_heads": spec.num_heads,
        "num_key_value_heads": spec.num_kv_heads,
        "max_position_embeddings": spec.max_position_embeddings,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": spec.tie_word_embeddings,
        "bos_token_id": tokenizer.token_to_id(BOS),
        "eos_token_id": tokenizer.token_to_id(EOT),
        "pad_token_id": tokenizer.token_to_id(PAD),
        # A wider init than HF's 0.02 keeps random-weight outputs varied instead of flat.
        "initializer_range": 0.05,
    }
    torch.manual_seed(spec.seed)
    if spec.arch == "llama":
        return LlamaForCausalLM(LlamaConfig(**common))
    if spec.arch == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**common))
    if spec.arch == "mistral":
        return MistralForCausalLM(MistralConfig(**common, sliding_window=None))
    raise ValueError(f"unknown arch {spec.arch!r}: expected 'llama', 'qwen2' or 'mistral'")


def _chat_training_texts() -> list[str]:
    """The corpus's ``User:`` / ``Assistant:`` pairs written the way CHAT_TEMPLATE renders a
    conversation, so a trained model answers after the assistant header and then stops."""
    lines = CORPUS_PATH.read_text(encoding="utf-8").splitlines()
    return [
        f"{BOS}{START_HEADER}user{END_HEADER}\n\n{question.removeprefix('User:').strip()}{EOT}"
        f"{START_HEADER}assistant{END_HEADER}\n\n{answer.removeprefix('Assistant:').strip()}{EOT}"
        for question, answer in itertools.pairwise(lines)
        if question.startswith("User:") and answer.startswith("Assistant:")
    ]


def _train(model: Any, tokenizer: Tokenizer, steps: int, seed: int) -> None:
    """Next-token prediction on the chat pairs and the corpus, so a few hundred CPU steps give
    short English answers (the demo asks one of the corpus's questions)."""
    texts = _chat_training_texts() + _training_texts()[:4000]
    encoded = tokenizer.encode_batch(texts, add_special_tokens=False)
    ids = torch.tensor([i for enc in encoded for i in enc.ids])
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    seq_len, batch = 64, 8
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - seq_len - 1, (batch,), generator=generator)
        window = torch.stack([ids[s : s + seq_len + 1] for s in starts.tolist()])
        loss = model(input_ids=window[:, :-1], labels=window[:, :-1].clone()).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


# Bumped when make_tiny_model's recipe changes, so ensure_tiny_model rebuilds old copies.
RECIPE_VERSION = 2
STAMP_NAME = ".plinth-tiny-model.json"


def _stamp(spec: TinyModelSpec) -> str:
    return json.dumps({"recipe": RECIPE_VERSION, **asdict(spec)}, sort_keys=True)


def make_tiny_model(out: Path, spec: TinyModelSpec | None = None) -> Path:
    """Create the checkpoint in `out` (created if missing) and return it."""
    spec = spec or TinyModelSpec()
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(spec.vocab_size)
    write_tokenizer(out, tokenizer, spec.max_position_embeddings)
    model = _make_hf_model(spec, tokenizer)
    if spec.train_steps > 0:
        _train(model, tokenizer, spec.train_steps, spec.seed)
    model.save_pretrained(str(out), max_shard_size=spec.max_shard_size, safe_serialization=True)
    generation = {
        "bos_token_id": tokenizer.token_to_id(BOS),
        "eos_token_id": [tokenizer.token_to_id(EOT)],
        "pad_token_id": tokenizer.token_to_id(PAD),
    }
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    (out / STAMP_NAME).write_text(_stamp(spec))  # last: a complete checkpoint
    return out


def ensure_tiny_model(directory: str | Path, spec: TinyModelSpec | None = None) -> Path:
    """Return `directory`, (re)creating the tiny model there unless it is complete and was made
    from this spec by this recipe."""
    spec = spec or TinyModelSpec()
    path = Path(directory)
    stamp = path / STAMP_NAME
    complete = (path / "config.json").is_file() and (path / "tokenizer.json").is_file()
    has_weights = any(path.glob("*.safetensors")) if path.is_dir() else False
    current = stamp.is_file() and stamp.read_text() == _stamp(spec)
    if not (complete and has_weights and current):
        for old in [*path.glob("*.safetensors"), *path.glob("*.safetensors.index.json")]:
            old.unlink()
        make_tiny_model(path, spec)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Make Plinth's tiny Llama test model.")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=int, default=256, help="hidden size")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=4)
    parser.add_argument("--intermediate", type=int, default=688)
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--arch", choices=["llama", "qwen2", "mistral"], default="llama")
    parser.add_argument("--train-steps", type=int, default=0, help="CPU training steps")
    parser.add_argument(
        "--keep-current",
        action="store_true",
        help="keep a complete model already made from this spec (ensure_tiny_model)",
    )
    args = parser.parse_args(argv)
    spec = TinyModelSpec(
        seed=args.seed,
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        num_layers=args.layers,
        num_heads=args.heads,
        num_kv_heads=args.kv_heads,
        intermediate_size=args.intermediate,
        arch=args.arch,
        train_steps=args.train_steps,
    )
    started = time.perf_counter()
    if args.keep_current:
        ensure_tiny_model(args.out, spec)
    else:
        make_tiny_model(args.out, spec)
    print(f"wrote {args.out} in {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
