"""Small helpers shared by the HTTP tests."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx

REPLAYED = "idempotent-replayed"
PROBLEM = "application/problem+json"


def _scope(caller: str) -> str:
    return hashlib.sha256(caller.encode()).hexdigest()[:12]


def record_key(key: str, caller: str = "") -> str:
    """The documented run key of a request's record:
    ``http-request:<12 hex of SHA-256(caller)>:<key>``."""
    return f"http-request:{_scope(caller)}:{key}"


def job_key(key: str, name: str = "job", caller: str = "") -> str:
    """The documented ``IdempotentRequest.job_key(name)``: ``http:<scope>:<key>/<name>``."""
    return f"http:{_scope(caller)}:{key}/{name}"


def post(
    client: httpx.Client,
    path: str,
    key: str | None = None,
    *,
    body: bytes | None = None,
    json_body: Any = None,
    user: str | None = None,
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> httpx.Response:
    """POST (or ``method``) with the key as an sf-string, as the draft specifies."""
    sent = dict(headers or {})
    if key is not None:
        sent["Idempotency-Key"] = '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if user is not None:
        sent["x-user"] = user
    if json_body is not None:
        body = json.dumps(json_body).encode()
        sent.setdefault("content-type", "application/json")
    return client.request(method, path, content=body, headers=sent)


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    """The response is an RFC 9457 problem of ``status`` and type ``slug``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    document: dict[str, Any] = response.json()
    assert document["type"] == f"urn:acidic:idempotency:{slug}"
    assert document["status"] == status
    assert document["title"]
    assert document["detail"]
    assert REPLAYED not in response.headers
    return document


def stored_headers(response: httpx.Response) -> list[tuple[str, str]]:
    """The headers a replay must repeat: all but those acidic does not store."""
    skipped = {"date", "server", "connection", "content-length", "set-cookie", REPLAYED}
    return [(n.lower(), v) for n, v in response.headers.multi_items() if n.lower() not in skipped]
