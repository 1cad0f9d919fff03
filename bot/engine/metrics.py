"""Engine metrics, exposed for Prometheus and summarised by `tsuzuki status`.

One registry per app (not prometheus_client's global one), so several apps in one
process (tests, benchmarks) never share or clash over metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)


@dataclass
class EngineMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.queue_depth = Gauge(
            "tsuzuki_queue_depth", "Interactive requests waiting for the device", registry=r
        )
        self.refused = Counter(
            "tsuzuki_requests_refused_total",
            "Requests refused because the queue was full",
            registry=r,
        )
        self.batch_rows = Histogram(
            "tsuzuki_batch_rows",
            "Rows decoded together, per decode step (continuous batching)",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.tokens = Counter("tsuzuki_generated_tokens_total", "Tokens generated", registry=r)
        self.generation_seconds = Counter(
            "tsuzuki_generation_seconds_total", "Device time spent generating", registry=r
        )
        self.latency = Histogram(
            "tsuzuki_request_latency_seconds",
            "From request to answer, queue wait included",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.first_token = Histogram(
            "tsuzuki_time_to_first_token_seconds",
            "From request to its first generated token (queue wait and prompt included)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.verbatim_blocked = Counter(
            "tsuzuki_verbatim_blocked",
            "Tokens the leak guard turned down: they would have handed back a stored "
            "message whole, or a long run of one",
            registry=r,
        )
        self.train_step = Histogram(
            "tsuzuki_training_step_seconds",
            "Device time of one training step",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )


def _quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Upper bound of the bucket holding quantile q, from cumulative (le, count) pairs."""
    if not buckets or buckets[-1][1] == 0:
        return None
    target = q * buckets[-1][1]
    for bound, count in buckets:
        if count >= target:
            return bound
    return buckets[-1][0]


def summarise(exposition: str) -> list[str]:
    """`tsuzuki status` lines from a Prometheus text exposition of these metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, float] = {}
    buckets: dict[str, list[tuple[float, float]]] = {}
    platforms: dict[str, float] = {}
    failures: dict[str, float] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == "tsuzuki_platform_up":
                platforms[sample.labels["platform"]] = sample.value
            elif sample.name == "tsuzuki_platform_failures_total":
                failures[sample.labels["platform"]] = sample.value
            elif sample.name.endswith("_bucket"):
                le = float(sample.labels["le"])
                buckets.setdefault(sample.name.removesuffix("_bucket"), []).append(
                    (le, sample.value)
                )
            else:
                values[sample.name] = sample.value

    def q(name: str, quantile: float) -> str:
        bound = _quantile(sorted(buckets.get(name, [])), quantile)
        return "—" if bound is None else ("≤ " + (f"{bound:g}" if bound != float("inf") else "∞"))

    requests = values.get("tsuzuki_request_latency_seconds_count", 0)
    batches = values.get("tsuzuki_batch_rows_count", 0)  # decode steps
    gen_seconds = values.get("tsuzuki_generation_seconds_total", 0)
    tokens = values.get("tsuzuki_generated_tokens_total", 0)
    steps = values.get("tsuzuki_training_step_seconds_count", 0)
    blocked = values.get("tsuzuki_verbatim_blocked_total", 0)
    lines = []
    if platforms:
        lines.append(
            "platforms: "
            + ", ".join(
                f"{name} {'up' if up else 'down'}"
                + (f" ({failures[name]:.0f} failed connections)" if failures.get(name) else "")
                for name, up in sorted(platforms.items())
            )
        )
    lines += [
        f"queue depth {values.get('tsuzuki_queue_depth', 0):.0f}, "
        f"refused when full {values.get('tsuzuki_requests_refused_total', 0):.0f}",
        f"requests {requests:.0f}: latency p50 {q('tsuzuki_request_latency_seconds', 0.5)}s,"
        f" p95 {q('tsuzuki_request_latency_seconds', 0.95)}s; time to first token p50 "
        f"{q('tsuzuki_time_to_first_token_seconds', 0.5)}s",
        f"decode steps {batches:.0f}, mean rows "
        f"{values.get('tsuzuki_batch_rows_sum', 0) / batches if batches else 0:.1f}; "
        f"{tokens:.0f} tokens at {tokens / gen_seconds if gen_seconds else 0:.1f} tokens/s; "
        f"leak guard turned down {blocked:.0f}",
        f"training steps {steps:.0f}, mean "
        f"{values.get('tsuzuki_training_step_seconds_sum', 0) / steps if steps else 0:.2f}s",
    ]
    return lines
