"""Prometheus metrics shared by every server in the process (one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "synesthesia_requests_total", "RPCs handled, by method and status code", ["method", "code"]
)
LATENCY = Histogram(
    "synesthesia_request_seconds",
    "RPC latency in seconds, by method",
    ["method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BATCH_SIZE = Histogram(
    "synesthesia_batch_items",
    "Items per model forward pass, by modality",
    ["modality"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
ITEMS = Counter("synesthesia_items_total", "Items embedded, by modality", ["modality"])


def start_metrics_server(port: int, host: str = "127.0.0.1") -> None:
    from prometheus_client import start_http_server

    start_http_server(port, addr=host)
