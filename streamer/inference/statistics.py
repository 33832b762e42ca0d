"""Triton's statistics API, parsed once for every reader (metrics, the dashboard, `streamer bench`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NS_PER_S = 1e9


@dataclass
class TritonStatistics:
    """Cumulative figures from Triton's statistics API for one model."""

    inferences: int = 0
    executions: int = 0
    successes: int = 0
    failures: int = 0
    queue_s: float = 0.0
    compute_s: float = 0.0
    batch_executions: dict[int, int] = field(default_factory=dict)

    @classmethod
    def from_json(cls, stats: dict[str, Any]) -> TritonStatistics:
        """Parse one `model_stats` entry (protobuf JSON: uint64 as strings, zeros left out)."""

        def duration(entry: dict[str, Any], key: str) -> tuple[int, int]:
            item = entry.get(key) or {}
            return int(item.get("count", 0)), int(item.get("ns", 0))

        inference = stats.get("inference_stats") or {}
        successes, _ = duration(inference, "success")
        failures, _ = duration(inference, "fail")
        _, queue_ns = duration(inference, "queue")
        compute_ns = sum(
            duration(inference, key)[1]
            for key in ("compute_input", "compute_infer", "compute_output")
        )
        batches: dict[int, int] = {}
        for entry in stats.get("batch_stats") or []:
            count, _ = duration(entry, "compute_infer")
            if count:
                batches[int(entry.get("batch_size", 0))] = count
        return cls(
            inferences=int(stats.get("inference_count", 0)),
            executions=int(stats.get("execution_count", 0)),
            successes=successes,
            failures=failures,
            queue_s=queue_ns / NS_PER_S,
            compute_s=compute_ns / NS_PER_S,
            batch_executions=batches,
        )
