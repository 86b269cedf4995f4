"""RFC 9457 problem details: the bodies of the errors the middlewares answer with."""

from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = ["PROBLEM_TYPE_BASE", "Problem"]

#: Prefix of the ``type`` member of every problem acidic answers with; the suffix is
#: one of the slugs documented in docs/http.md (``missing-key``, ``key-in-use``, ...).
PROBLEM_TYPE_BASE = "urn:acidic:idempotency:"

_CONTENT_TYPE = "application/problem+json"


@dataclass(frozen=True, slots=True)
class Problem:
    """An error response: ``status``, a ``slug`` naming its type, a short ``title``,
    a ``detail`` for this occurrence, and extra response headers."""

    status: int
    slug: str
    title: str
    detail: str
    headers: tuple[tuple[str, str], ...] = ()

    def body(self) -> bytes:
        """The problem+json document."""
        document = {
            "type": PROBLEM_TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        return json.dumps(document, ensure_ascii=True).encode("ascii")

    def response_headers(self, body: bytes) -> list[tuple[str, str]]:
        """Content-Type, Content-Length and the extra headers, as (name, value) pairs."""
        return [
            ("content-type", _CONTENT_TYPE),
            ("content-length", str(len(body))),
            *self.headers,
        ]


def missing_key(header: str) -> Problem:
    return Problem(
        400,
        "missing-key",
        "Idempotency-Key required",
        f"this endpoint requires an {header} header; send a unique key per operation and "
        "the same key when retrying it",
    )


def invalid_key(detail: str) -> Problem:
    return Problem(400, "invalid-key", "Invalid Idempotency-Key", detail)


def key_in_use(detail: str) -> Problem:
    return Problem(409, "key-in-use", "Request in progress", detail, (("retry-after", "1"),))


def job_in_use(detail: str) -> Problem:
    return Problem(
        409,
        "key-in-use",
        "Request in progress",
        f"the job of this request is still locked by an earlier attempt ({detail}); retry later",
        (("retry-after", "1"),),
    )


def key_reused(detail: str) -> Problem:
    return Problem(422, "key-reused", "Idempotency-Key reused", detail)


def request_too_large(limit: int) -> Problem:
    return Problem(
        413,
        "request-too-large",
        "Request body too large",
        f"an idempotent request's body is held in memory to fingerprint it; the limit is "
        f"{limit} bytes",
    )


def incomplete_body(declared: int) -> Problem:
    return Problem(
        400,
        "incomplete-body",
        "Incomplete request body",
        f"the request declared {declared} bytes of body but sent fewer; nothing was done",
    )


def unavailable(detail: str) -> Problem:
    return Problem(
        503,
        "storage-unavailable",
        "Idempotency store unavailable",
        detail,
        (("retry-after", "1"),),
    )
