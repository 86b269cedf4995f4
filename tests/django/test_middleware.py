"""acidic.django.IdempotencyMiddleware, with sync and async views, through Django's
request handlers (WSGI for the sync client, ASGI for the async one)."""

from __future__ import annotations

import json

import pytest

from .conftest import Project

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REQUESTS = """
import asyncio, json
from django.test import AsyncClient, Client
from tests.django.project.rides.models import Booking

def show(r):
    return [r.status_code, r.content.decode(), r.headers.get("Idempotent-Replayed"),
            r.headers.get("Content-Type")]

out = {}
c = Client()
for path, prefix in (("/book/", "s"), ("/abook/", "a")):
    if prefix == "s":
        post = lambda **kw: c.post(path, **kw)
    else:
        ac = AsyncClient()
        post = lambda **kw: asyncio.run(ac.post(path, **kw))
    key = {"Idempotency-Key": prefix + "k1"}
    out[prefix + "first"] = show(post(data={"seat": "1A"}, headers=key))
    out[prefix + "again"] = show(post(data={"seat": "1A"}, headers=key))
    out[prefix + "other"] = show(post(data={"seat": "2B"}, headers=key))
    out[prefix + "bad"] = show(post(data={"seat": "3C"}, headers={"Idempotency-Key": "x" * 300}))
    out[prefix + "nokey"] = show(post(data={"seat": "4D"}))
out["bookings"] = sorted(Booking.objects.values_list("seat", flat=True))
print(json.dumps(out))
"""


def test_middleware__sync_and_async_views(project: Project) -> None:
    out = json.loads(project.shell(REQUESTS))
    for prefix in ("s", "a"):
        first, again = out[prefix + "first"], out[prefix + "again"]
        assert first[0] == 201
        assert first[2] is None
        assert again[:2] == first[:2]
        assert again[2] == "true"
        status, body, _, content_type = out[prefix + "other"]
        assert status == 422
        assert content_type == "application/problem+json"
        assert json.loads(body)["status"] == 422
        assert out[prefix + "bad"][0] == 400
        assert out[prefix + "nokey"][0] == 201  # keys are optional by default
    # One booking per key (and one per request without a key).
    assert out["bookings"] == ["1A", "1A", "4D", "4D"]
