"""OpenAI-compatible API (chat, completions, models) over an ``Engine`` port.

Entry point: :func:`gpu_nodes.openai.server.create_openai_app`. Engines: the built-in torch engine,
vLLM and TensorRT-LLM (the last two import-guarded), selected by the package's ``engine.kind``.
"""
