"""The idempotency middleware's spans: record, replay, conflict and mismatch, through
real servers (read with the OpenTelemetry SDK's in-memory exporter)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import acidic
from acidic._telemetry._otel import OtelObserver
from tests.support.http import apps
from tests.support.http.helpers import post, record_key


@pytest.fixture
def spans(app: acidic.App) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app.manager.observer = OtelObserver(provider)
    yield exporter
    provider.shutdown()


def _decisions(exporter: InMemorySpanExporter) -> list[tuple[str, object, object]]:
    return [
        (
            s.name,
            (s.attributes or {}).get("acidic.key"),
            (s.attributes or {}).get("http.response.status_code"),
        )
        for s in exporter.get_finished_spans()
        if s.name.startswith("acidic.http")
    ]


def test_middleware__a_span_per_decision(
    spans: InMemorySpanExporter, client: httpx.Client, base_url: str, counter: apps.Counter
) -> None:
    key = record_key("tele-1")
    assert post(client, "/echo", "tele-1", body=b"one").status_code == 201
    assert post(client, "/echo", "tele-1", body=b"one").status_code == 201
    assert post(client, "/echo", "tele-1", body=b"two").status_code == 422
    assert _decisions(spans) == [
        ("acidic.http record", key, None),
        ("acidic.http replay", key, 201),
        ("acidic.http mismatch", key, 422),
    ]
    record = spans.get_finished_spans()[0]
    assert record.attributes is not None
    assert record.attributes["http.request.method"] == "POST"
    assert record.attributes["url.path"] == "/echo"

    spans.clear()
    with httpx.Client(base_url=base_url, timeout=30) as other:
        first = threading.Thread(target=lambda: post(other, "/slow?seconds=1", "tele-2"))
        first.start()
        deadline = time.monotonic() + 5
        while counter.calls["slow"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert post(client, "/slow?seconds=1", "tele-2").status_code == 409
        first.join()
    names = [name for name, _, _ in _decisions(spans)]
    assert names == ["acidic.http record", "acidic.http conflict"]
