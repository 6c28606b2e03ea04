"""The tiny model maker: HF-format files, shards, tokenizer, chat template, determinism."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

from gpu_nodes.engine.tiny_model import TinyModelSpec, ensure_tiny_model


def digest(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.suffix in {".json", ".safetensors"}
    }


def test_checkpoint_layout_and_sharding(tiny_model_dir: Path) -> None:
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert config["num_key_value_heads"] < config["num_attention_heads"]  # GQA
    index = json.loads((tiny_model_dir / "model.safetensors.index.json").read_text())
    shards = set(index["weight_map"].values())
    assert len(shards) >= 2
    assert all((tiny_model_dir / shard).is_file() for shard in shards)


def test_tokenizer_special_tokens_and_chat_template(tiny_model_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    assert tok.eos_token == "<|eot_id|>" and tok.bos_token == "<|begin_of_text|>"
    assert 2000 <= len(tok) <= 4096
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is two plus two?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "add", "arguments": {"a": 2, "b": 2}}}],
        },
        {"role": "tool", "content": "4"},
    ]
    rendered = str(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
    assert rendered.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>")
    assert '{"name": "add", "parameters": {"a": 2, "b": 2}}' in rendered
    assert "<|start_header_id|>ipython<|end_header_id|>\n\n4<|eot_id|>" in rendered
    assert rendered.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    text = "The quiet town."
    assert tok.decode(tok(text).input_ids, skip_special_tokens=True) == text


def test_cli_is_deterministic_from_seed(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "again"
    subprocess.run(
        [sys.executable, "-m", "gpu_nodes.engine.tiny_model", "--out", str(out), "--seed", "0"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert digest(out) == digest(tiny_model_dir)


def test_ensure_tiny_model_creates_only_when_missing(tiny_model_dir: Path) -> None:
    before = (tiny_model_dir / "config.json").stat().st_mtime_ns
    assert ensure_tiny_model(tiny_model_dir) == tiny_model_dir
    assert (tiny_model_dir / "config.json").stat().st_mtime_ns == before


def test_ensure_tiny_model_rebuilds_what_another_spec_made(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    assert ensure_tiny_model(copy) == copy  # same spec: kept as it is
    assert digest(copy) == digest(tiny_model_dir)
    ensure_tiny_model(copy, TinyModelSpec(seed=1))
    rebuilt, original = digest(copy), digest(tiny_model_dir)
    assert rebuilt.keys() == original.keys()
    assert rebuilt["model.safetensors.index.json"] == original["model.safetensors.index.json"]
    shards = [name for name in original if name.endswith(".safetensors")]
    assert all(rebuilt[name] != original[name] for name in shards)
