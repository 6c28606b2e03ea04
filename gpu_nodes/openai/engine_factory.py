"""Builds the ``Engine`` adapter a package's ``engine.kind`` names.

The adapters are imported only when chosen: vLLM and TensorRT-LLM import their runtime lazily and
raise ``EngineUnavailable`` when it is missing, so this package imports on a CPU-only laptop.
"""

from __future__ import annotations

from gpu_nodes.openai.engine_port import Engine, EngineSettings
from gpu_nodes.openai.exceptions import EngineLoadError


def load_engine(settings: EngineSettings) -> Engine:
    """Build the adapter for ``settings.kind`` (blocking: loads weights)."""
    if settings.kind == "builtin":
        if not settings.model_path.is_dir():
            raise EngineLoadError(
                f"config.yaml: field 'engine.model_path': '{settings.model_path}' is not a "
                "directory"
            )
        from gpu_nodes.openai.builtin_engine import BuiltinEngine

        return BuiltinEngine(settings)
    if settings.kind == "vllm":
        from gpu_nodes.openai.vllm_engine import VllmEngine

        return VllmEngine(settings)
    if settings.kind == "trt_llm":
        from gpu_nodes.openai.trtllm_engine import TrtLlmEngine

        return TrtLlmEngine(settings)
    raise EngineLoadError(
        f"config.yaml: field 'engine.kind': '{settings.kind}' is not one of builtin, vllm, trt_llm"
    )
