"""Prometheus metrics of an enforcement point, in a registry of its own.

The relay counts bytes in plain integers on its hot path; ``EnforcementServer`` adds them
here on a timer, so a transfer never takes a metrics lock per chunk.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead


class EnforceMetrics:
    """The enforcement point's counters and gauges (names prefixed ``takedown_enforce_``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """One declaration per metric (long, and better read in one place than split)."""
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        p = "takedown_enforce_"
        self.flows = Counter(
            p + "flows",
            "Flows decided, by decision, subscriber class and content class.",
            ["decision", "subscriber_class", "content_class"],
            registry=r,
        )
        # the measure rides along so that a report can name it without scanning the set
        self.directive_flows = Counter(
            p + "directive_flows",
            "Flows each directive was applied to.",
            ["directive", "measure"],
            registry=r,
        )
        self.directive_bytes = Counter(
            p + "directive_bytes",
            "Bytes relayed (both directions) in flows each directive was applied to.",
            ["directive", "measure"],
            registry=r,
        )
        self.redecisions = Counter(
            p + "redecisions",
            "Live flows whose decision changed after a directive update.",
            ["from_decision", "to_decision"],
            registry=r,
        )
        self.bytes = Counter(
            p + "bytes",
            "Bytes relayed, by action (pass, throttle) and direction (up, down).",
            ["action", "direction"],
            registry=r,
        )
        self.sniff_failures = Counter(
            p + "sniff_failures",
            "Flows classified by destination address only: unknown bytes, silence, no name.",
            ["reason"],
            registry=r,
        )
        self.unparsed = Counter(
            p + "unparsed",
            "Flows whose first bytes gave no name (classified by IP directives only), by why.",
            ["reason"],
            registry=r,
        )
        self.client_timeouts = Counter(
            p + "client_timeouts",
            "Flows closed because the client was too slow, by stage.",
            ["stage"],
            registry=r,
        )
        self.upstream_failures = Counter(
            p + "upstream_failures", "Upstream connections that failed.", ["reason"], registry=r
        )
        self.handshake_errors = Counter(
            p + "handshake_errors", "Malformed CONNECT / SOCKS handshakes.", ["mode"], registry=r
        )
        self.accept_errors = Counter(
            p + "accept_errors", "Errors accepting connections.", ["reason"], registry=r
        )
        self.active = Gauge(
            p + "active_flows",
            "Flows open now, by decision.",
            ["decision"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.feed_sequence = Gauge(
            p + "feed_sequence",
            "Sequence number of the directive set in use.",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.feed_age = Gauge(
            p + "feed_age_seconds",
            "Age of the directive set in use (now - generated_at).",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.feed_updates = Counter(p + "feed_updates", "Directive sets applied.", registry=r)
        self.feed_rejected = Counter(
            p + "feed_rejected",
            "Feed updates not applied (refused by the feed, by validation, or failed), by why.",
            ["reason"],
            registry=r,
        )
        self.fail_open = Gauge(
            p + "fail_open",
            "1 while the feed is stale past expiry and nothing is enforced.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.directives_in_force = Gauge(
            p + "directives_in_force",
            "Directives in force now.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.workers = Gauge(
            p + "worker_up", "1 per live worker process.", registry=r, multiprocess_mode="livesum"
        )
        self.workers.set(1)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """A sample's current value (0.0 if absent): for tests and the CLI status line."""
        v = self.registry.get_sample_value(name, labels or {})
        return 0.0 if v is None else v

    def serve(self, host: str, port: int) -> int:
        """Serve /metrics over HTTP in a daemon thread; return the bound port."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        self._http = (server, thread)
        return int(server.server_address[1])

    def stop(self) -> None:
        """Stop the HTTP endpoint if it was started."""
        http = getattr(self, "_http", None)
        if http is not None:
            server, thread = http
            server.shutdown()
            server.server_close()
            if isinstance(thread, threading.Thread):
                thread.join(timeout=5)
            self._http = None


def use_multiprocess(path: str) -> None:
    """Make metrics created from now on in this process shared through files in ``path``.

    For ``--workers N``: each worker calls this before creating its EnforceMetrics, and the
    parent serves ``multiprocess_registry(path)``. prometheus-client picks its value class
    from the environment at import time, which is before the worker exists, hence the swap.
    """
    import os

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    values.ValueClass = values.MultiProcessValue()


def multiprocess_registry(path: str) -> CollectorRegistry:
    """A registry that sums (or takes the max of) every worker's metrics in ``path``."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)
    return registry


def worker_exited(path: str, pid: int) -> None:
    """Drop a dead worker's live gauges."""
    mark_process_dead(pid, path)


def serve_registry(registry: CollectorRegistry, host: str, port: int) -> int:
    """Serve a registry over HTTP in a daemon thread; return the bound port."""
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return int(server.server_address[1])
