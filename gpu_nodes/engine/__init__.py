"""Plinth's built-in LLM engine: paged KV cache, continuous batching, prefix caching."""
