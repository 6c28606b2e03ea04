"""The engine's load on a replica's ``/metrics``: queue depth, KV-cache blocks, tokens.

Read from ``Engine.stats()`` when Prometheus scrapes, so generation pays nothing for it. Before
the engine loaded, and for engines that export their own metrics (vLLM, TensorRT-LLM), no engine
samples are reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gpu_nodes.openai.engine_port import EngineStats


class EngineStatsCollector(Collector):
    def __init__(self, stats: Callable[[], EngineStats | None]) -> None:
        self._stats = stats

    def describe(self) -> list[Metric]:
        return []  # the samples depend on whether the engine loaded

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        if stats is None:
            return
        gauges = (
            (
                "plinth_engine_waiting_sequences",
                "Sequences queued, not scheduled yet.",
                stats.waiting_sequences,
            ),
            (
                "plinth_engine_running_sequences",
                "Sequences being generated (in the batch).",
                stats.running_sequences,
            ),
            (
                "plinth_engine_kv_cache_used_blocks",
                "KV-cache blocks held by sequences.",
                stats.kv_cache_blocks_used,
            ),
            (
                "plinth_engine_kv_cache_blocks",
                "KV-cache blocks in all.",
                stats.kv_cache_blocks_total,
            ),
        )
        for name, documentation, value in gauges:
            yield GaugeMetricFamily(name, documentation, value=value)
        yield CounterMetricFamily(
            "plinth_engine_generated_tokens",
            "Tokens generated since the engine started (rate() gives tokens/s).",
            value=stats.generated_tokens,
        )
        yield CounterMetricFamily(
            "plinth_engine_preemptions",
            "Sequences preempted (KV cache full) and recomputed later.",
            value=stats.preemptions,
        )
